"""Engines report progress to the board the status page reads, and Gladia requests are counted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.sim import GladiaSimulator, make_wav
from tests.speech import ENGLISH_TEXT, repeat_wav, speak
from watcherd.config import Config, GladiaConfig, Secret, WatchConfig
from watcherd.engines.gladia.client import GladiaClient
from watcherd.engines.gladia.pipeline import GladiaPipeline
from watcherd.engines.local.model import bundled_model, local_engine_installed
from watcherd.engines.local.runner import TranscriberPool
from watcherd.folders import Folders
from watcherd.journal import Journal
from watcherd.progress import ProgressBoard
from watcherd.retry import RetryPolicy
from watcherd.worker import EngineRoutes, Worker

KEY = "sk-progress-test-key-3"
SIM_OPTIONS = {"job_seconds": 1.5, "concurrency": 3}
FAST = RetryPolicy(list_lag_grace=1.0, poll_start=0.1, poll_cap=0.3, retry_base=0.05,
                   retry_cap=0.4)


def test_gladia_phases_reach_the_board_and_requests_are_counted(
    tmp_path: Path, inbox: Path, sim: GladiaSimulator
) -> None:
    """While Gladia works the board says queued/processing; after, the file leaves it; every
    request is counted by endpoint with its status."""
    config = Config(
        source=None, gladia=GladiaConfig(api_key=Secret(KEY), api_url=sim.base_url),
        engine="auto", local_model="base", journal_path=tmp_path / "journal.db",
        log_format="json", log_level="info",
        watches=(WatchConfig(path=inbox, settle_seconds=0.05),),
    )
    board = ProgressBoard()
    counted: list[tuple[str, int | None]] = []
    phases: set[str] = set()

    async def go() -> None:
        journal = Journal.open(config.journal_path, exclusive=True)
        client = GladiaClient(sim.base_url, Secret(KEY),
                              on_request=lambda e, s: counted.append((e, s)))
        folders = Folders(config.watches)
        pipeline = GladiaPipeline(journal, client, retry=FAST, outputs_for=folders.outputs_for,
                                  progress=board)
        worker = Worker(config, journal,
                        EngineRoutes.single(pipeline, config.gladia.max_concurrent_jobs),
                        folders=folders, retry=FAST)
        stop = asyncio.Event()
        runner = asyncio.ensure_future(worker.run(stop))
        path = inbox / "memo.wav"
        make_wav(path, seconds=0.5, salt="progress")
        worker.hint(path)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while (row := journal.by_path(str(path))) is None or row.state != "done":
            assert loop.time() < deadline, "not done in time"
            phases.update(p.phase for p in board.snapshot().values() if p.phase)
            await asyncio.sleep(0.02)
        stop.set()
        await runner
        await client.aclose()
        assert board.snapshot() == {}
        journal.close()

    asyncio.run(go())
    assert phases & {"queued", "processing"}
    endpoints = {e for e, _ in counted}
    assert {"list", "upload", "create", "get"} <= endpoints
    assert ("create", 201) in counted and ("upload", 200) in counted


@pytest.mark.skipif(not local_engine_installed(), reason="the local extra is not installed")
def test_local_engine_reports_growing_fractions(tmp_path: Path) -> None:
    """faster-whisper yields segments as it goes: the engine passes on a growing share."""
    seen: list[float] = []
    sentence = speak(ENGLISH_TEXT, tmp_path / "one.wav")
    audio = repeat_wav(sentence, tmp_path / "long.wav", 3)

    async def go() -> None:
        engine = TranscriberPool(bundled_model(), workers=1)
        await engine.start()
        try:
            await engine.transcribe(audio, {}, on_progress=seen.append)
        finally:
            await engine.close()

    asyncio.run(go())
    assert seen, "no progress reported"
    assert all(0.0 < f <= 1.0 for f in seen)
    assert seen == sorted(seen)
