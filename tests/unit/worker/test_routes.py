"""The worker chooses by an engine's capabilities, never by its name: which engine a file goes
through when the remote API stays down (a folder's fallback), and which files are held to
the upload limits. Engines here carry names no real engine has."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.sim import make_wav
from watcherd.config import Config, GladiaConfig, WatchConfig
from watcherd.folders import Folders
from watcherd.health import ApiHealth
from watcherd.journal import Journal
from watcherd.worker import EngineRoutes, EngineSlot, Worker


class _Recording:
    """A pipeline that records which sources it was asked to drive, then finishes them."""

    def __init__(self, journal: Journal, *, remote_jobs: bool) -> None:
        self.journal = journal
        self.remote_jobs = remote_jobs
        self.driven: list[int] = []

    async def drive(self, source_id: int) -> None:
        self.driven.append(source_id)
        source = self.journal.get(source_id)
        self.journal.transition(source, "failed", actor="test", reason="recorded by the test",
                                last_error="recorded by the test")


def _config(tmp_path: Path, watch: WatchConfig) -> Config:
    return Config(source=None, gladia=GladiaConfig(api_key=None), engine="auto",
                  local_model="base", journal_path=tmp_path / "journal.db", log_format="json",
                  log_level="info", watches=(watch,), fallback_after_seconds=60.0)


def test_a_folders_fallback_is_taken_by_capability(tmp_path: Path) -> None:
    """A remote engine ("far") whose API has been down longer than fallback_after_seconds: the
    folder's fallback ("near", computing here) transcribes the file; "far" is never asked."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watch = WatchConfig(path=inbox, settle_seconds=0.05, engine="far", fallback="near")
    config = _config(tmp_path, watch)

    async def go() -> tuple[list[int], list[int], str | None]:
        journal = Journal.open(config.journal_path, exclusive=True)
        far = _Recording(journal, remote_jobs=True)
        near = _Recording(journal, remote_jobs=False)
        health = ApiHealth(journal)
        health.down_since = time.time() - 3600  # unreachable for an hour
        routes = EngineRoutes(
            {"far": EngineSlot(far, 2, remote_jobs=True),
             "near": EngineSlot(near, 1, remote_jobs=False)},
            engine_of=lambda w: None if w is None else w.engine, health=health)
        worker = Worker(config, journal, routes, folders=Folders(config.watches))
        stop = asyncio.Event()
        runner = asyncio.ensure_future(worker.run(stop))
        path = inbox / "memo.wav"
        make_wav(path, salt="fallback")
        worker.hint(path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        try:
            while not near.driven and not far.driven:
                assert loop.time() < deadline, "no engine was asked in time"
                await asyncio.sleep(0.05)
            row = journal.by_path(str(path))
            return far.driven, near.driven, row.note if row is not None else None
        finally:
            stop.set()
            await runner
            journal.close()

    far_driven, near_driven, note = asyncio.run(go())
    assert far_driven == [] and len(near_driven) == 1
    assert note is not None and "fallback" in note


def test_upload_limits_follow_the_engines_capability(tmp_path: Path) -> None:
    """Files of a folder whose engine computes here are not held to the upload limits; a
    remote engine's are, and so are those of a folder with no engine (the stricter choice)."""
    journal = Journal.open(tmp_path / "journal.db", exclusive=True)
    try:
        routes = EngineRoutes(
            {"far": EngineSlot(_Recording(journal, remote_jobs=True), 1, remote_jobs=True),
             "near": EngineSlot(None, 1, remote_jobs=False)},
            engine_of=lambda w: None if w is None else w.engine)
        folder = tmp_path / "in"
        assert routes.limits_uploads(WatchConfig(path=folder, engine="far"))
        assert not routes.limits_uploads(WatchConfig(path=folder, engine="near"))
        assert routes.limits_uploads(WatchConfig(path=folder, engine="other"))
        assert routes.limits_uploads(None)
        # An engine that did not open is no engine to dispatch to.
        assert list(routes.usable()) == ["far"]
    finally:
        journal.close()
