"""Send only the audio: a video is uploaded as its audio stream alone (issue 22, item 4).

Real videos made with PyAV, the real daemon against the simulator, which reports what each
upload's container holds (``streams``), so "only audio was sent" is read from the bytes
Gladia received, not from watcherd's own word."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon_harness import DaemonProcess, wait_until, write_config
from tests.sim import GladiaSimulator
from tests.video import make_video
from watcherd.engines.gladia import audioonly
from watcherd.journal import Journal

av = pytest.importorskip("av", reason="PyAV comes with the media (or local) extra")

KEY = "sk-test-audio-only-0123456789"
#: How this module's simulator runs (the shared ``sim`` fixture in conftest.py reads it).
SIM_OPTIONS = {"job_seconds": 0.2, "concurrency": 3}


def temp_files(folder: Path) -> list[str]:
    """The audio-track temp files in ``folder``."""
    return sorted(n for n in os.listdir(folder) if n.startswith(f".{audioonly.TEMP_PREFIX}"))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """The daemon's state folder: its journal, and where audio tracks are written."""
    folder = tmp_path / "state"
    folder.mkdir()
    return folder


@pytest.fixture
def start_daemon(tmp_path: Path, sim: GladiaSimulator, inbox: Path, state: Path
                 ) -> Iterator[Callable[..., DaemonProcess]]:
    """Starts daemons on the inbox (``upload=`` sets [gladia] upload; ``env=`` adds to the
    environment); kills any left running."""
    started: list[DaemonProcess] = []

    def start(*, upload: str | None = None, env: dict[str, str] | None = None
              ) -> DaemonProcess:
        config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                              journal=state / "journal.db", watches=[inbox])
        if upload is not None:
            text = config.read_text(encoding="utf-8")
            config.write_text(text.replace("[gladia]\n", f'[gladia]\nupload = "{upload}"\n', 1),
                              encoding="utf-8")
        daemon = DaemonProcess(config, tmp_path / f"daemon{len(started)}.log", env=env)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()


def done(path: Path) -> bool:
    """The source's transcript is written (both outputs)."""
    js = path.with_suffix(".json")
    return path.with_suffix(".txt").exists() and js.exists() and json.loads(
        js.read_text(encoding="utf-8"))["status"] == "done"


# -- the daemon, end to end ----------------------------------------------------------------


def test_video_is_uploaded_as_its_audio_only(
    start_daemon: Callable[..., DaemonProcess], sim: GladiaSimulator, inbox: Path, state: Path
) -> None:
    """An MP4 (AAC audio) is sent as its audio track copied into M4A, a Matroska with PCM
    audio as Opus: Gladia receives containers holding audio only, a few percent of the
    source's bytes; the content key is still the source's (its sha256), the job carries it,
    the outputs are written beside the source, and no temp file is left."""
    mp4 = make_video(inbox.parent / "talk.mp4", seconds=6.0, frame_bytes=60_000)
    mkv = make_video(inbox.parent / "call.mkv", seconds=6.0, audio_codec="pcm_s16le",
                     frame_bytes=60_000)
    daemon = start_daemon()
    for made in (mp4, mkv):
        made.rename(inbox / made.name)
    sources = [inbox / "talk.mp4", inbox / "call.mkv"]
    wait_until(lambda: all(done(p) for p in sources), timeout=60, message="both transcripts")
    assert daemon.terminate() == 0
    assert daemon.tracebacks() == []

    by_file = {u["filename"]: u for u in sim.uploads()}
    assert set(by_file) == {"talk.m4a", "call.opus"}
    assert by_file["talk.m4a"]["streams"] == ("audio",)
    assert by_file["talk.m4a"]["extension"] == "m4a"
    assert by_file["call.opus"]["streams"] == ("audio",)
    assert by_file["call.opus"]["extension"] == "opus"
    assert all(u["content_type"] == "application/octet-stream" for u in by_file.values())
    for source, name in ((sources[0], "talk.m4a"), (sources[1], "call.opus")):
        size = by_file[name]["size"]
        assert isinstance(size, int) and size <= 0.05 * source.stat().st_size
        # The audio lasts as long as the source.
        assert by_file[name]["audio_duration"] == pytest.approx(6.0, abs=0.5)

    with Journal.open(state / "journal.db", readonly=True) as journal:
        rows = {Path(s.path).name: s for s in (journal.by_path(str(p)) for p in sources) if s}
    jobs = {j["custom_metadata"]["wf_file"]: j for j in sim.jobs()}
    for source in sources:
        row = rows[source.name]
        assert row.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
        assert jobs[source.name]["custom_metadata"]["wf_key"] == row.content_key
        written = json.loads(source.with_suffix(".json").read_text(encoding="utf-8"))
        assert written["id"] == jobs[source.name]["id"] == row.job_id
    assert temp_files(state) == []


def test_upload_original_sends_the_whole_file(
    start_daemon: Callable[..., DaemonProcess], sim: GladiaSimulator, inbox: Path, state: Path
) -> None:
    """``[gladia] upload = "original"``: the video is sent as it is, byte for byte."""
    start_daemon(upload="original")
    video = make_video(inbox / "whole.mp4", seconds=2.0)
    wait_until(lambda: done(video), timeout=60, message="transcript")
    [upload] = sim.uploads()
    assert upload["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    assert upload["streams"] == ("video", "audio")
    assert temp_files(state) == []


def test_without_pyav_the_whole_file_is_sent(
    start_daemon: Callable[..., DaemonProcess], sim: GladiaSimulator, inbox: Path
) -> None:
    """Without PyAV (``WATCHERD_NO_AV=1`` makes the daemon behave as if it were not
    installed: the import is skipped, as a missing package skips it) the file goes whole."""
    start_daemon(env={audioonly.NO_AV_ENV: "1"})
    video = make_video(inbox / "plain.mp4", seconds=2.0)
    wait_until(lambda: done(video), timeout=60, message="transcript")
    [upload] = sim.uploads()
    assert upload["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    assert upload["filename"] == "plain.mp4"


def test_sigkill_mid_upload_leaves_no_temp_file_after_restart(
    start_daemon: Callable[..., DaemonProcess], sim: GladiaSimulator, inbox: Path, state: Path
) -> None:
    """The daemon killed while the audio track is being sent leaves the track beside the
    journal; the next start removes it, sends a new one and finishes the file."""
    sim.faults.add("upload", "delay", delay=60.0, count=1)
    first = start_daemon()
    video = make_video(inbox / "killed.mp4", seconds=3.0)
    left = wait_until(lambda: temp_files(state), timeout=30, message="the audio track written")
    # Then the request goes out and the simulator holds it: the track is being streamed.
    wait_until(lambda: _upload_started(first), timeout=30, message="the upload started")
    first.kill()
    assert temp_files(state) == left  # what a crash leaves
    sim.faults.clear()
    again = start_daemon()
    wait_until(lambda: done(video), timeout=60, message="transcript after restart")
    assert temp_files(state) == []
    assert again.terminate() == 0
    assert sim.uploads()[-1]["streams"] == ("audio",)


def _upload_started(daemon: DaemonProcess) -> bool:
    return any(line.get("event") == "upload_started" for line in daemon.log_lines())
