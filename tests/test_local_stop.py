"""A stop with the local engine: a file about to finish finishes, one far from it restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.speech import ENGLISH_TEXT, repeat_wav, speak
from watcherd.config import Config, GladiaConfig, WatchConfig
from watcherd.engines.local.model import bundled_model, local_engine_installed
from watcherd.engines.local.pipeline import LocalPipeline
from watcherd.engines.local.runner import LocalEngine
from watcherd.folders import Folders
from watcherd.journal import Journal
from watcherd.progress import ProgressBoard
from watcherd.worker import Worker

pytestmark = pytest.mark.skipif(not local_engine_installed(),
                                reason="the local extra is not installed")


class _Recording(ProgressBoard):
    """A board that also keeps every fraction reported (the page's board forgets at the end)."""

    def __init__(self) -> None:
        super().__init__()
        self.fractions: list[float] = []

    def report(self, source_id: int, *, fraction: float | None = None,
               expected_end: float | None = None, phase: str | None = None) -> None:
        """Record the fraction, then report as usual."""
        if fraction is not None:
            self.fractions.append(fraction)
        super().report(source_id, fraction=fraction, expected_end=expected_end, phase=phase)


def _stop_midway(tmp_path: Path, inbox: Path, grace: float) -> tuple[str, str | None]:
    """Transcribe a long recording, stop at its first progress; the source's state and note."""
    audio = repeat_wav(speak(ENGLISH_TEXT, tmp_path / "one.wav"), inbox / "long.wav", 4)
    config = Config(source=None, gladia=GladiaConfig(), engine="local", local_model="base",
                    journal_path=tmp_path / "journal.db", log_format="json",
                    log_level="info", watches=(WatchConfig(path=inbox, settle_seconds=0.05),))
    board = _Recording()

    async def go() -> tuple[str, str | None]:
        journal = Journal.open(config.journal_path, exclusive=True)
        engine = LocalEngine(bundled_model(), workers=1)
        await engine.start()
        folders = Folders(config.watches)
        pipeline = LocalPipeline(journal, engine, outputs_for=folders.outputs_for,
                                 progress=board)
        worker = Worker(config, journal, None, engines={"local": (pipeline, 1)},
                        engine_of=lambda w: "local", folders=folders, finish_grace=grace)
        stop = asyncio.Event()
        runner = asyncio.ensure_future(worker.run(stop))
        worker.hint(audio)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while not board.fractions:
            assert loop.time() < deadline, "no progress reported"
            await asyncio.sleep(0.01)
        stop.set()
        await runner
        await engine.close()
        row = journal.by_path(str(audio))
        journal.close()
        assert row is not None
        return row.state, row.note

    return asyncio.run(go())


def test_a_file_near_its_end_is_finished(tmp_path: Path, inbox: Path) -> None:
    """With a generous grace the file in progress is finished before the stop completes."""
    state, _ = _stop_midway(tmp_path, inbox, grace=3600.0)
    assert state == "done"
    assert (inbox / "long.txt").exists()


def test_a_file_far_from_its_end_starts_over(tmp_path: Path, inbox: Path) -> None:
    """With no grace it is stopped and goes back to the queue, saying so."""
    state, note = _stop_midway(tmp_path, inbox, grace=0.0)
    assert state == "pending"
    assert note is not None and "interrupted" in note
