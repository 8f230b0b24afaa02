"""A stop with the local engine: a file about to finish finishes, one far from it restarts."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.local_daemon import SHORT_TEXT, events, local_config, row, running_local
from tests.speech import ENGLISH_TEXT, repeat_wav, speak
from watcherd.config import Config, GladiaConfig, WatchConfig
from watcherd.engines.local.estimate import PRIOR_SPEED, Run, Speed
from watcherd.engines.local.model import bundled_model, local_engine_installed
from watcherd.engines.local.pipeline import LocalPipeline
from watcherd.engines.local.runner import TranscriberPool
from watcherd.folders import Folders
from watcherd.journal import Journal
from watcherd.progress import ProgressBoard
from watcherd.worker import EngineRoutes, Worker

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
        engine = TranscriberPool(bundled_model(), workers=1)
        await engine.start()
        folders = Folders(config.watches)
        pipeline = LocalPipeline(journal, engine, outputs_for=folders.outputs_for,
                                 progress=board)
        worker = Worker(config, journal, EngineRoutes.single(pipeline, 1), folders=folders,
                        finish_grace=grace)
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


def test_a_short_file_is_finished_on_sigterm(tmp_path: Path, inbox: Path) -> None:
    """SIGTERM as a short recording's transcription starts (before any progress report): its
    length and the engine's speed say it ends within the grace, so it is finished first."""
    with running_local(tmp_path, local_config(tmp_path, [inbox])) as daemon:
        audio = speak(SHORT_TEXT, inbox / "short.wav")
        daemon.wait_for_event("transcription_started", timeout=120)
        assert daemon.terminate(timeout=120) == 0
    assert events(daemon, "finishing_before_stop"), daemon.log_path.read_text()
    assert row(daemon, audio)["state"] == "done"
    assert (inbox / "short.txt").exists()


def test_speed_is_assumed_then_learned() -> None:
    """Before any file the estimate uses the documented speed; then the measured one."""
    speed = Speed()
    run = Run(started=100.0, audio_seconds=15.0)
    assert speed.seconds_left(run, now=100.0) == pytest.approx(15.0 / PRIOR_SPEED)
    speed.learn(audio_seconds=10.0, wall_seconds=10.0)  # this machine: real time
    assert speed.seconds_left(run, now=101.0) == pytest.approx(14.0)
    # Past the expected end without a report: about to end, not "never".
    assert speed.seconds_left(run, now=200.0) == 0.0
    # A progress report: the file's own pace wins (2 s for a quarter: 6 s more).
    assert speed.seconds_left(Run(100.0, 15.0, fraction=0.25), now=102.0) == pytest.approx(6.0)
    assert speed.seconds_left(Run(100.0, None), now=100.0) is None
    # A first tiny fraction after a slow start (decoding, the VAD pass) is not the pace: the
    # rest of the audio at the engine's speed caps it (not 10 s / 0.001 = 2.8 h).
    assert speed.seconds_left(Run(100.0, 15.0, fraction=0.001), now=110.0) == pytest.approx(
        15.0 * 0.999 / speed.value)


@given(st.lists(st.tuples(st.floats(0.0, 1e5), st.floats(0.0, 1e5)), max_size=20))
def test_learned_speed_stays_positive_and_finite(files: list[tuple[float, float]]) -> None:
    """Whatever files were measured (empty, instant, huge), the speed stays usable."""
    speed = Speed()
    for audio_seconds, wall_seconds in files:
        speed.learn(audio_seconds, wall_seconds)
    assert 0.0 < speed.value < math.inf
