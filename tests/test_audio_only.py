"""Send only the audio: a video is uploaded as its audio stream alone (issue 22, item 4).

Real videos made with PyAV, the real daemon against the simulator, which reports what each
upload's container holds (``streams``), so "only audio was sent" is read from the bytes
Gladia received, not from watcherd's own word.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon_harness import DaemonProcess, wait_until, write_config
from tests.sim import GladiaSimulator
from tests.video import make_video, stream_kinds
from watcherd.engines.gladia import audioonly
from watcherd.errors import SourceError
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


def upload_of(sim: GladiaSimulator, job_url: str) -> dict[str, object]:
    [upload] = [u for u in sim.uploads() if u["audio_url"] == job_url]
    return upload


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


# -- the pieces ----------------------------------------------------------------------------


def test_plan_sends_audio_files_as_they_are(tmp_path: Path) -> None:
    """A file without a video track, within the limit, is sent as it is (None); over the
    limit it is encoded as Opus (copying an audio file would not shrink it)."""
    audio = tmp_path / "voice.m4a"
    with av.open(str(audio), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16_000)
        stream.layout = "mono"
        import numpy as np

        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16_000), dtype=np.float32),
                                           format="flt", layout="mono")
        frame.rate, frame.pts = 16_000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    size = audio.stat().st_size
    assert audioonly.plan(audio, size) is None
    over = audioonly.plan(audio, size, limit=size - 1)
    assert over is not None and not over.copy and over.suffix == ".opus"
    assert over.reason == "over Gladia's size limit"


def test_plan_refuses_a_video_without_audio(tmp_path: Path) -> None:
    """A video with no audio track has nothing to transcribe: refused, for good, saying so."""
    video = make_video(tmp_path / "mute.mp4", seconds=1.0, audio_codec=None)
    assert stream_kinds(video) == ["video"]
    with pytest.raises(SourceError, match=r"no.* audio track") as caught:
        audioonly.plan(video, video.stat().st_size)
    assert not caught.value.transient


def test_plan_without_pyav_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``WATCHERD_NO_AV=1``: PyAV is not even imported, the file is sent as it is."""
    video = make_video(tmp_path / "v.mp4", seconds=1.0)
    monkeypatch.setenv(audioonly.NO_AV_ENV, "1")
    assert audioonly.load_av() is None
    assert audioonly.plan(video, video.stat().st_size) is None


def test_extracted_track_is_audio_only_and_removed_on_close(tmp_path: Path) -> None:
    """The track is an audio-only container in the spool folder, read from its start, and
    gone once closed."""
    video = make_video(tmp_path / "v.mp4", seconds=2.0)
    spool = tmp_path / "spool"
    plan = audioonly.plan(video, video.stat().st_size)
    assert plan is not None and plan.copy and plan.codec == "aac"
    track = audioonly.extract(video, plan, spool)
    try:
        assert temp_files(spool) == [track.path.name]
        data = track.file.read()
        assert len(data) == track.size
    finally:
        track.close()
    assert temp_files(spool) == []
    copy = tmp_path / "copy.m4a"
    copy.write_bytes(data)
    assert stream_kinds(copy) == ["audio"]


def test_sweep_removes_only_audio_tracks(tmp_path: Path) -> None:
    """The start-up sweep removes every leftover track, and nothing else of the folder."""
    (tmp_path / f".{audioonly.TEMP_PREFIX}0123456789ab.opus").write_bytes(b"x")
    keep = [tmp_path / "journal.db", tmp_path / ".journal.db.http.json",
            tmp_path / ".notes.txt.watcherd-tmp-0123456789ab"]
    for path in keep:
        path.write_bytes(b"y")
    assert audioonly.sweep(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), max_size=12),
       cut=st.one_of(st.none(), st.integers(0, 10**9)))
def test_damaged_video_property(tmp_path: Path, flips: list[tuple[int, int]],
                                cut: int | None) -> None:
    """A video with bytes changed or cut short (a file from outside: anything) is either sent
    whole (no plan), refused with a reason, or its audio track written; never a crash, and no
    temp file is ever left."""
    base = tmp_path / "base.mp4"
    if not base.exists():
        make_video(base, seconds=1.0)
    data = bytearray(base.read_bytes())
    for offset, value in flips:
        data[offset % len(data)] = value
    if cut is not None:
        del data[cut % len(data):]
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    spool = tmp_path / "spool"
    try:
        plan = audioonly.plan(damaged, len(data))
        if plan is not None:
            audioonly.extract(damaged, plan, spool).close()
    except SourceError as exc:
        assert str(exc)
    assert not spool.exists() or temp_files(spool) == []
