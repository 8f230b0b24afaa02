"""A source deleted while it is worked on: its work stops and it is recorded ``gone`` at once;
a folder that merely went away (unmounted, renamed) stops nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.daemon_harness import DaemonProcess, wait_until, write_config
from tests.local_daemon import SHORT_TEXT, alive, events, local_config, row, running_local
from tests.sim import GladiaSimulator, make_wav
from tests.speech import ENGLISH_TEXT, repeat_wav, speak
from watcherd.config import Config, GladiaConfig, WatchConfig
from watcherd.engines.local.model import bundled_model, local_engine_installed
from watcherd.engines.local.pipeline import LocalPipeline
from watcherd.engines.local.runner import TranscriberPool
from watcherd.folders import Folders
from watcherd.journal import Journal
from watcherd.worker import EngineRoutes, Worker

needs_local = pytest.mark.skipif(not local_engine_installed(),
                                 reason="the local extra is not installed")
KEY = "sk-deleted-source-test-123456"
#: Far longer than the test waits for ``gone``: the upload is still unanswered then.
UPLOAD_DELAY = 30.0


@needs_local
def test_deleting_a_file_stops_its_local_transcription(tmp_path: Path, inbox: Path) -> None:
    """rm while the local engine transcribes a long recording: the worker process drops the
    file (it is stopped), the source is gone with no transcript, and the next file is
    transcribed as usual."""
    recording = repeat_wav(speak(ENGLISH_TEXT, tmp_path / "one.wav"), tmp_path / "long.wav", 4)
    with running_local(tmp_path, local_config(tmp_path, [inbox])) as daemon:
        [ready] = events(daemon, "local_engine_ready")
        dropped = inbox / "long.wav"
        dropped.write_bytes(recording.read_bytes())
        daemon.wait_for_event("transcription_started", timeout=120)
        dropped.unlink()
        daemon.wait_for_event("source_gone", timeout=60)
        # Before its transcription could have ended: the worker process was stopped for it.
        assert not events(daemon, "transcribed")
        wait_until(lambda: not alive(ready["pid"]), timeout=30,
                   message="the worker process transcribing the deleted file to stop")
        history = row(daemon, dropped)
        assert history["state"] == "gone"
        assert not any("interrupted" in (e["reason"] or "") for e in history["events"])
        assert not dropped.with_suffix(".txt").exists()
        later = speak(SHORT_TEXT, inbox / "later.wav")
        wait_until(lambda: row(daemon, later)["state"] == "done", timeout=180,
                   message="the next file transcribed")
        assert daemon.terminate(timeout=60) == 0
        assert not daemon.tracebacks()


def test_deleting_a_file_abandons_its_upload(tmp_path: Path, inbox: Path) -> None:
    """rm while the file uploads to Gladia (the simulator holds the upload): the source is gone
    before the upload was answered, and no job is ever created for it."""
    with GladiaSimulator(api_key=KEY, job_seconds=0.2) as sim:
        sim.faults.add("upload", "delay", delay=UPLOAD_DELAY)
        config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                              journal=tmp_path / "journal.db", watches=[inbox])
        daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
        try:
            daemon.wait_for_event("ready")
            dropped = inbox / "memo.wav"
            make_wav(dropped, seconds=0.3, salt="deleted-upload")
            daemon.wait_for_event("upload_started")
            dropped.unlink()
            daemon.wait_for_event("source_gone", timeout=UPLOAD_DELAY - 5)
            # Requests are recorded when they end: the held upload has not.
            assert [r for r in sim.requests() if r.endpoint == "upload"] == []
            assert row(daemon, dropped)["state"] == "gone"
            assert daemon.terminate() == 0
            assert sim.jobs() == []
        finally:
            daemon.stop()


@needs_local
def test_a_vanished_watch_folder_stops_nothing(tmp_path: Path, inbox: Path) -> None:
    """The watch folder renamed away mid-transcription (as an unmount looks): a look at the
    missing file does not stop the work; with the folder back, the file is done."""
    audio = repeat_wav(speak(ENGLISH_TEXT, tmp_path / "one.wav"), inbox / "long.wav", 2)
    config = Config(source=None, gladia=GladiaConfig(), engine="local", local_model="base",
                    journal_path=tmp_path / "journal.db", log_format="json",
                    log_level="info", watches=(WatchConfig(path=inbox, settle_seconds=0.05),))
    away = tmp_path / "inbox.away"

    async def go() -> str:
        journal = Journal.open(config.journal_path, exclusive=True)
        engine = TranscriberPool(bundled_model(), workers=1)
        await engine.start()
        folders = Folders(config.watches)
        pipeline = LocalPipeline(journal, engine, outputs_for=folders.outputs_for)
        worker = Worker(config, journal, EngineRoutes.single(pipeline, 1), folders=folders)
        stop = asyncio.Event()
        runner = asyncio.ensure_future(worker.run(stop))
        worker.hint(audio)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while engine.busy() == 0:
            assert loop.time() < deadline, "the transcription did not start"
            await asyncio.sleep(0.01)
        pids = engine.worker_pids()
        inbox.rename(away)
        worker.hint(audio)  # what the next reconcile pass hands over
        while (row := journal.by_path(str(audio))) is not None and not row.note:
            assert loop.time() < deadline, "the missing file was not looked at"
            await asyncio.sleep(0.01)
        assert engine.worker_pids() == pids and engine.busy() == 1
        away.rename(inbox)
        while (row := journal.by_path(str(audio))) is not None and row.state != "done":
            assert row.state in ("transcribing", "pending"), row
            assert loop.time() < deadline + 120, "the file was not finished"
            await asyncio.sleep(0.05)
        stop.set()
        await runner
        await engine.close()
        journal.close()
        return row.state if row is not None else "missing"

    assert asyncio.run(go()) == "done"
