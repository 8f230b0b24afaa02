"""Activity: counters from committed transitions, hooks after commits, metrics text."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from watcherd.activity import Activity
from watcherd.journal import FileStat, Journal


def _source(journal: Journal, path: str = "/in/a.wav") -> int:
    [s] = journal.observe_many([(path, "/in", FileStat(100, 1, 1, 1), "{}")])
    return s.id


class TestCounters:
    """Counters follow committed transitions only."""

    def test_upload_done_and_errors_counted(self, tmp_path: Path) -> None:
        """An upload adds its bytes, done adds audio seconds, waiting/failed count as errors."""
        with Journal.open(tmp_path / "j.db") as journal:
            activity = Activity(journal)
            sid = _source(journal)
            s = journal.transition(journal.get(sid), "uploading", actor="t", content_key="k",
                                   sha256="x")
            s = journal.transition(s, "uploaded", actor="t", audio_url="u")
            s = journal.transition(s, "waiting", actor="t")
            journal.store_result(s, {"id": "j", "status": "done",
                                     "result": {"metadata": {"audio_duration": 12.5}}})
            journal.transition(s, "done", actor="t")
            other = journal.get(_source(journal, "/in/b.wav"))
            journal.transition(other, "failed", actor="t", last_error="bad")
            assert activity.upload_bytes == 100
            assert activity.audio_seconds == 12.5
            assert activity.errors == {"transient": 1, "permanent": 1}
            assert activity.last_success is not None
            text = activity.metrics()
        assert 'watcherd_sources{state="done"} 1' in text
        assert "watcherd_upload_bytes_total 100" in text
        assert 'watcherd_errors_total{class="permanent"} 1' in text

    def test_metrics_textfile_written_atomically(self, tmp_path: Path) -> None:
        """The textfile holds the whole metrics text and no temp file is left."""
        target = tmp_path / "prom" / "watcherd.prom"
        target.parent.mkdir()
        with Journal.open(tmp_path / "j.db") as journal:
            activity = Activity(journal, metrics_textfile=target)
            _source(journal)
            activity.write_metrics()
        assert 'watcherd_sources{state="pending"} 1' in target.read_text()
        assert [p.name for p in target.parent.iterdir()] == ["watcherd.prom"]


class TestHooks:
    """on_done / on_failed commands run after the commit, with the source in env vars."""

    def test_done_hook_gets_source_and_outputs(self, tmp_path: Path) -> None:
        """The hook sees WATCHERD_SOURCE, STATE and OUTPUTS; a name with spaces is not split."""
        record = tmp_path / "record.txt"
        script = ("import os,sys; open(sys.argv[1],'w').write("
                  "os.environ['WATCHERD_SOURCE']+'|'+os.environ['WATCHERD_STATE']+'|'+"
                  "os.environ['WATCHERD_OUTPUTS'])")

        async def scenario() -> None:
            with Journal.open(tmp_path / "j.db") as journal:
                activity = Activity(journal, on_done=[sys.executable, "-c", script, str(record)])
                s = journal.get(_source(journal, "/in/my talk.wav"))
                s = journal.transition(s, "submitted", actor="t", content_key="k", sha256="x")
                journal.store_result(s, {"id": "j", "status": "done", "result": {}})
                journal.transition(s, "done", actor="t", output_base="/in/my talk")
                await activity.close(timeout=30)

        asyncio.run(scenario())
        source, state, outs = record.read_text().split("|")
        assert (source, state) == ("/in/my talk.wav", "done")
        assert "/in/my talk.txt" in outs and "/in/my talk.json" in outs

    def test_failing_hook_changes_nothing(self, tmp_path: Path) -> None:
        """A hook that exits 3 is logged; the source stays failed."""
        async def scenario() -> str:
            with Journal.open(tmp_path / "j.db") as journal:
                activity = Activity(journal, on_failed=[sys.executable, "-c",
                                                        "raise SystemExit(3)"])
                s = journal.get(_source(journal))
                journal.transition(s, "failed", actor="t", last_error="corrupt")
                await activity.close(timeout=30)
                return journal.get(s.id).state

        assert asyncio.run(scenario()) == "failed"

    def test_no_loop_means_no_hook(self, tmp_path: Path) -> None:
        """A transition made outside the daemon (a CLI command) runs no hook and no error."""
        with Journal.open(tmp_path / "j.db") as journal:
            Activity(journal, on_failed=[sys.executable, "-c", "pass"])
            s = journal.get(_source(journal))
            assert journal.transition(s, "failed", actor="t").state == "failed"


# A hook that marks itself running, logs how many hooks run with it, holds until the test
# releases it, then unmarks itself: argv[1] is the shared folder.
HOLDING_HOOK = (
    "import os, sys, time\n"
    "d = sys.argv[1]\n"
    "me = os.path.join(d, 'running', str(os.getpid()))\n"
    "open(me, 'w').close()\n"
    "n = len(os.listdir(os.path.join(d, 'running')))\n"
    "with open(os.path.join(d, 'log'), 'a') as f: f.write(f'start {n}\\n')\n"
    "deadline = time.monotonic() + 60\n"
    "while not os.path.exists(os.path.join(d, 'release')) and time.monotonic() < deadline:\n"
    "    time.sleep(0.01)\n"
    "os.unlink(me)\n"
    "with open(os.path.join(d, 'log'), 'a') as f: f.write('end\\n')\n"
)


async def wait_for(condition: Callable[[], bool], message: str, timeout: float = 30.0) -> None:
    """Let the loop run until ``condition`` holds; fail with ``message`` after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.02)


def hook_folder(tmp_path: Path) -> Path:
    """The shared folder of HOLDING_HOOK, with its empty 'running' folder."""
    (tmp_path / "hooks" / "running").mkdir(parents=True)
    return tmp_path / "hooks"


def hook_processes(shared: Path) -> int:
    """How many live processes run HOLDING_HOOK on ``shared`` (read from /proc)."""
    needle = os.fsencode(shared)
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile, or not ours to read
        if needle in argv:
            count += 1
    return count


class TestHookLimit:
    """At most max_hooks hooks run at once; the others wait their turn, within a bound."""

    def test_at_most_max_hooks_run_at_once_and_all_run(self, tmp_path: Path) -> None:
        """Six failures with max_hooks=2: two hooks run, four wait, all six run in the end."""
        shared = hook_folder(tmp_path)

        async def scenario() -> tuple[int, int]:
            with Journal.open(tmp_path / "j.db") as journal:
                activity = Activity(journal, max_hooks=2, hook_timeout=60,
                                    on_failed=[sys.executable, "-c", HOLDING_HOOK, str(shared)])
                for i in range(6):
                    s = journal.get(_source(journal, f"/in/{i}.wav"))
                    journal.transition(s, "failed", actor="t", last_error="bad")
                await wait_for(lambda: len(os.listdir(shared / "running")) >= 2,
                               "two hooks to run")
                queued = len(activity._hooks)
                # Every hook process that exists, started or not yet marked: a hook started
                # beyond the limit is there as soon as it is spawned, before its Python runs.
                running = hook_processes(shared)
                (shared / "release").touch()
                await activity.close(timeout=60)
                return queued, running

        queued, running = asyncio.run(scenario())
        assert (queued, running) == (6, 2)
        lines = (shared / "log").read_text().splitlines()
        starts = [int(line.split()[1]) for line in lines if line.startswith("start ")]
        assert len(starts) == 6 and lines.count("end") == 6
        assert max(starts) <= 2  # each hook counted the hooks running with it, itself included

    def test_past_the_waiting_bound_a_hook_is_skipped_with_a_warning(
        self, tmp_path: Path
    ) -> None:
        """With one running and one waiting allowed, a third failure's hook is skipped, logged."""
        shared = hook_folder(tmp_path)

        async def scenario() -> None:
            with Journal.open(tmp_path / "j.db") as journal:
                activity = Activity(journal, max_hooks=1, max_waiting_hooks=1, hook_timeout=60,
                                    on_failed=[sys.executable, "-c", HOLDING_HOOK, str(shared)])
                for i in range(3):
                    s = journal.get(_source(journal, f"/in/{i}.wav"))
                    journal.transition(s, "failed", actor="t", last_error="bad")
                await wait_for(lambda: len(os.listdir(shared / "running")) == 1, "one hook")
                (shared / "release").touch()
                await activity.close(timeout=60)

        with structlog.testing.capture_logs() as logs:
            asyncio.run(scenario())
        skipped = [e for e in logs if e["event"] == "hook_skipped"]
        assert [e["source"] for e in skipped] == ["/in/2.wav"]
        assert "will not run" in skipped[0]["hint"]
        assert (shared / "log").read_text().split().count("end") == 2

    def test_a_bad_limit_is_refused(self, tmp_path: Path) -> None:
        """max_hooks below 1 is a ValueError that names the value."""
        with Journal.open(tmp_path / "j.db") as journal, pytest.raises(ValueError, match="got 0"):
            Activity(journal, max_hooks=0)

    def test_a_name_with_a_colon_and_newline_gets_numbered_outputs(self, tmp_path: Path) -> None:
        """From the journal to the hook: ':' and a newline in a name, outputs exact and numbered."""
        record = tmp_path / "record.json"
        script = ("import json, os, sys; open(sys.argv[1], 'w').write(json.dumps("
                  "{k: v for k, v in os.environ.items() if k.startswith('WATCHERD_')}))")

        async def scenario() -> None:
            with Journal.open(tmp_path / "j.db") as journal:
                activity = Activity(journal, on_done=[sys.executable, "-c", script, str(record)])
                s = journal.get(_source(journal, "/in/a:b\nc.wav"))
                s = journal.transition(s, "submitted", actor="t", content_key="k", sha256="x")
                journal.store_result(s, {"id": "j", "status": "done", "result": {}})
                journal.transition(s, "done", actor="t", output_base="/in/a:b\nc")
                await activity.close(timeout=30)

        asyncio.run(scenario())
        env = json.loads(record.read_text())
        assert env["WATCHERD_SOURCE"] == "/in/a:b\nc.wav"
        assert env["WATCHERD_OUTPUT_COUNT"] == "2"
        assert [env["WATCHERD_OUTPUT_1"], env["WATCHERD_OUTPUT_2"]] == [
            "/in/a:b\nc.txt", "/in/a:b\nc.json"]
        assert json.loads(env["WATCHERD_OUTPUTS_JSON"]) == ["/in/a:b\nc.txt", "/in/a:b\nc.json"]
        assert "WATCHERD_OUTPUTS" not in env


class TestDuration:
    """Audio seconds come from the stored job, whatever it holds."""

    def test_odd_durations_count_as_zero(self, tmp_path: Path) -> None:
        """A huge, negative, infinite or non-numeric duration adds nothing and raises nothing."""
        with Journal.open(tmp_path / "j.db") as journal:
            activity = Activity(journal)
            for i, value in enumerate([10**400, -5, "NaN", "inf", None, "x", 3.5]):
                s = journal.get(_source(journal, f"/in/{i}.wav"))
                s = journal.transition(s, "submitted", actor="t", content_key=f"k{i}",
                                       sha256=f"x{i}")
                journal.store_result(s, {"id": "j", "status": "done",
                                         "result": {"metadata": {"audio_duration": value}}})
                journal.transition(s, "done", actor="t")
            assert activity.audio_seconds == 3.5
