"""The worker and the Gladia pipeline in-process: real journal, real client, real simulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from tests.sim import GladiaSimulator, expected_transcript, make_wav
from watcherd.config import Config, GladiaConfig, Secret, WatchConfig
from watcherd.engines.gladia.client import GladiaClient
from watcherd.engines.gladia.pipeline import GladiaPipeline
from watcherd.folders import Folders
from watcherd.journal import Journal
from watcherd.retry import RetryPolicy
from watcherd.worker import EngineRoutes, Worker

KEY = "sk-worker-test-key-42"
FAST = RetryPolicy(list_lag_grace=1.0, poll_start=0.05, poll_cap=0.3, retry_base=0.1, retry_cap=1.0)


#: How this module's simulator runs (the shared ``sim`` fixture in conftest.py reads it).
SIM_OPTIONS = {"job_seconds": 0.2, "concurrency": 10}


def _config(tmp_path: Path, sim: GladiaSimulator, *, max_jobs: int = 3,
            key: str = KEY, outputs: tuple[str, ...] = ("txt", "json")) -> Config:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    return Config(
        source=None,
        gladia=GladiaConfig(api_key=Secret(key), api_url=sim.base_url,
                            max_concurrent_jobs=max_jobs),
        engine="auto", local_model="base", journal_path=tmp_path / "journal.db",
        log_format="json", log_level="info",
        watches=(WatchConfig(path=inbox, settle_seconds=0.05, outputs=outputs),),
    )


async def _run(config: Config, files: list[Path],
               until: Callable[[Journal], bool], *, timeout: float = 30.0,
               before: Callable[[Journal], None] | None = None) -> Journal:
    """Run a worker on ``files`` until ``until(journal)``; return the (closed) journal path."""
    journal = Journal.open(config.journal_path, exclusive=True)
    assert config.gladia.api_key is not None
    client = GladiaClient(config.gladia.api_url, config.gladia.api_key)
    folders = Folders(config.watches)
    pipeline = GladiaPipeline(journal, client, retry=FAST, outputs_for=folders.outputs_for)
    worker = Worker(config, journal,
                    EngineRoutes.single(pipeline, config.gladia.max_concurrent_jobs),
                    folders=folders)
    stop = asyncio.Event()
    if before is not None:
        before(journal)
    runner = asyncio.ensure_future(worker.run(stop))
    for f in files:
        worker.hint(f)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not until(journal):
            if runner.done():
                runner.result()
            assert asyncio.get_running_loop().time() < deadline, (
                "timed out: " + json.dumps([(s.path, s.state, s.last_error)
                                           for s in journal.all()])
            )
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await runner
        await client.aclose()
        journal.close()
    return journal


def _states(path: Path) -> dict[str, str]:
    with Journal.open(path, readonly=True) as j:
        return {s.path: s.state for s in j.all()}


def _all_in(journal: Journal, state: str, n: int) -> bool:
    rows = journal.all()
    return len(rows) == n and all(s.state == state for s in rows)


def _txt(path: Path) -> str:
    return " ".join(path.with_suffix(".txt").read_text(encoding="utf-8").split())


class TestFlow:
    """The normal path and the concurrency bound."""

    def test_files_become_transcripts(self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """Each file gets its own transcript and the journal says done with the job id."""
        config = _config(tmp_path, sim)
        inbox = config.watches[0].path
        datas = {inbox / f"f{i}.wav": make_wav(inbox / f"f{i}.wav", seconds=0.3, salt=str(i))
                 for i in range(5)}
        asyncio.run(_run(config, list(datas), lambda j: _all_in(j, "done", 5)))
        for path, data in datas.items():
            assert _txt(path) == expected_transcript(data)
        with Journal.open(config.journal_path, readonly=True) as j:
            assert all(s.job_id for s in j.all())
            events = [e["to_state"] for e in j.events(j.all()[0].id)]
        assert events[:1] == ["pending"] and events[-1] == "done"
        assert {"uploading", "uploaded", "submitting", "submitted"} <= set(events)

    def test_never_more_jobs_than_the_plan_allows(self, tmp_path: Path,
                                                  sim: GladiaSimulator) -> None:
        """With max_concurrent_jobs = 2, no more than 2 jobs ever overlap at Gladia."""
        sim.job_seconds = 0.4
        config = _config(tmp_path, sim, max_jobs=2)
        inbox = config.watches[0].path
        files = [inbox / f"c{i}.wav" for i in range(6)]
        for i, f in enumerate(files):
            make_wav(f, seconds=0.2, salt=f"c{i}")
        asyncio.run(_run(config, files, lambda j: _all_in(j, "done", 6)))
        spans = [(_ts(job["created_at"]), _ts(job["completed_at"])) for job in sim.jobs()]
        peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
        assert len(spans) == 6 and peak <= 2

    def test_duplicate_content_one_job(self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """Two copies dropped together: one job, both get the transcript."""
        config = _config(tmp_path, sim)
        inbox = config.watches[0].path
        data = make_wav(inbox / "a.wav", seconds=0.3, salt="dup")
        (inbox / "b.wav").write_bytes(data)
        asyncio.run(_run(config, [inbox / "a.wav", inbox / "b.wav"],
                         lambda j: _all_in(j, "done", 2)))
        assert len(sim.jobs()) == 1
        assert _txt(inbox / "b.wav") == _txt(inbox / "a.wav") == expected_transcript(data)


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class TestNeverPayTwice:
    """Ambiguous creates are resolved by looking the content key up."""

    def test_lost_create_with_list_lag_is_adopted(self, tmp_path: Path) -> None:
        """The list shows the job only after a lag; the worker waits for it, no second job."""
        with GladiaSimulator(api_key=KEY, job_seconds=0.2, list_lag_seconds=0.6) as sim:
            sim.faults.add("create", "lose_response", count=1)
            config = _config(tmp_path, sim)
            f = config.watches[0].path / "lag.wav"
            data = make_wav(f, seconds=0.3, salt="lag")
            asyncio.run(_run(config, [f], lambda j: _all_in(j, "done", 1)))
            assert len(sim.jobs()) == 1
            assert _txt(f) == expected_transcript(data)

    def test_create_refused_connection_creates_once(self, tmp_path: Path,
                                                    sim: GladiaSimulator) -> None:
        """A create that reset before reaching the server is retried: still one job."""
        sim.faults.add("create", "reset", count=2)
        config = _config(tmp_path, sim)
        f = config.watches[0].path / "reset.wav"
        make_wav(f, seconds=0.3, salt="reset")
        asyncio.run(_run(config, [f], lambda j: _all_in(j, "done", 1)))
        assert len(sim.jobs()) == 1

    def test_crash_after_intent_resumes_by_lookup(self, tmp_path: Path,
                                                  sim: GladiaSimulator) -> None:
        """A journal left in `submitting` by a crash adopts the job Gladia already has."""
        config = _config(tmp_path, sim)
        f = config.watches[0].path / "crash.wav"
        data = make_wav(f, seconds=0.3, salt="crash")
        # First run: stop as soon as the job exists at Gladia.
        asyncio.run(_run(config, [f], lambda j: bool(sim.jobs())))
        # Simulate the crash window: job created, response never recorded.
        with Journal.open(config.journal_path) as j:
            [s] = j.all()
            j.transition(s, "submitting", actor="test", job_id=None, submit_started_at=1.0)
        asyncio.run(_run(config, [], lambda j: _all_in(j, "done", 1)))
        assert len(sim.jobs()) == 1
        assert _txt(f) == expected_transcript(data)


class TestErrors:
    """Classification of failures into retries and failures."""

    def test_bad_options_fail_with_validation_message(self, tmp_path: Path,
                                                      sim: GladiaSimulator) -> None:
        """Gladia's 400 validation errors reach the status with what to fix."""
        config = _config(tmp_path, sim)
        watch = WatchConfig(path=config.watches[0].path, settle_seconds=0.05,
                            options={"language_config": {"languages": ["xx-invalid"]}})
        config = Config(**{**config.__dict__, "watches": (watch,)})
        f = watch.path / "opts.wav"
        make_wav(f, seconds=0.3, salt="opts")
        asyncio.run(_run(config, [f], lambda j: _all_in(j, "failed", 1)))
        with Journal.open(config.journal_path, readonly=True) as j:
            [s] = j.all()
        assert s.last_error is not None and "400" in s.last_error
        assert "watcherd retry" in s.last_error and s.submit_started_at is None
        assert sim.jobs() == []

    def test_rejected_key_pauses_with_one_message(self, tmp_path: Path,
                                                  sim: GladiaSimulator) -> None:
        """A wrong key leaves files waiting with the reason; nothing fails, nothing hammers."""
        config = _config(tmp_path, sim, key="wrong")
        inbox = config.watches[0].path
        files = [inbox / f"k{i}.wav" for i in range(3)]
        for i, f in enumerate(files):
            make_wav(f, seconds=0.2, salt=f"key{i}")
        # Files that start before the 401 wait with its reason; one that would start after
        # it stays pending (the pause holds it back: it is never sent with a refused key).
        def settled(j: Journal) -> bool:
            rows = j.all()
            return (len(rows) == 3 and {s.state for s in rows} <= {"waiting", "pending"}
                    and any(s.state == "waiting" for s in rows))

        asyncio.run(_run(config, files, settled))
        with Journal.open(config.journal_path, readonly=True) as j:
            rows = j.all()
        waiting = [s for s in rows if s.state == "waiting"]
        assert waiting and all(s.last_error is None for s in rows if s.state == "pending")
        for source in waiting:
            assert "api_key" in (source.last_error or "")
            assert "wrong" not in (source.last_error or "")
            assert source.next_attempt_at is not None
        # Paused: nothing beyond the first attempt of each file reached the API.
        assert len([r for r in sim.requests() if r.endpoint == "upload"]) <= 3

    def test_empty_file_fails_others_continue(self, tmp_path: Path,
                                              sim: GladiaSimulator) -> None:
        """An empty file fails with a reason; a good file next to it is transcribed."""
        config = _config(tmp_path, sim)
        inbox = config.watches[0].path
        (inbox / "empty.wav").write_bytes(b"")
        make_wav(inbox / "good.wav", seconds=0.2, salt="good")
        asyncio.run(_run(config, [inbox / "empty.wav", inbox / "good.wav"],
                         lambda j: {s.state for s in j.all()} == {"failed", "done"}))
        with Journal.open(config.journal_path, readonly=True) as j:
            empty = j.by_path(str(inbox / "empty.wav"))
        assert empty is not None and "empty" in (empty.last_error or "")
        assert sim.uploads() and all(u["size"] > 0 for u in sim.uploads())

    def test_deleted_while_settling_is_gone(self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """A file removed before it settled becomes gone, with no upload."""
        config = _config(tmp_path, sim)
        watch = WatchConfig(path=config.watches[0].path, settle_seconds=1.0)
        config = Config(**{**config.__dict__, "watches": (watch,)})
        f = watch.path / "brief.wav"
        make_wav(f, seconds=0.2, salt="brief")

        async def scenario() -> None:
            journal = Journal.open(config.journal_path, exclusive=True)
            assert config.gladia.api_key is not None
            client = GladiaClient(config.gladia.api_url, config.gladia.api_key)
            worker = Worker(config, journal, EngineRoutes.single(
                GladiaPipeline(journal, client, retry=FAST), config.gladia.max_concurrent_jobs))
            worker.hint(f)
            await worker.tick()
            f.unlink()
            worker.hint(f)
            await worker.tick()
            [s] = journal.all()
            assert s.state == "gone"
            await client.aclose()
            journal.close()

        asyncio.run(scenario())
        assert sim.uploads() == []

    def test_outputs_retry_after_disk_error(self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """When outputs cannot be written the file waits; once fixed, no new job is made."""
        config = _config(tmp_path, sim)
        inbox = config.watches[0].path
        f = inbox / "blocked.wav"
        data = make_wav(f, seconds=0.2, salt="blocked")
        # A folder where the transcript should go makes the rename fail.
        (inbox / "blocked.txt").mkdir()
        (inbox / "blocked.txt" / "x").write_text("x")
        asyncio.run(_run(config, [f], lambda j: any(
            s.state == "waiting" and "cannot write" in (s.last_error or "") for s in j.all())))
        (inbox / "blocked.txt" / "x").unlink()
        (inbox / "blocked.txt").rmdir()
        asyncio.run(_run(config, [f], lambda j: _all_in(j, "done", 1)))
        assert _txt(f) == expected_transcript(data)
        assert len(sim.jobs()) == 1
