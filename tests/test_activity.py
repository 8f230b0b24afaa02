"""Activity: counters from committed transitions, hooks after commits, metrics text."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

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
