"""watcherd.engines.gladia.audioonly: which sources send their audio alone, the track written
beside the journal and removed, the start-up sweep, damaged videos (real files made with PyAV)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.video import make_video, stream_kinds
from watcherd.engines.gladia import audioonly
from watcherd.errors import SourceError

av = pytest.importorskip("av", reason="PyAV comes with the media (or local) extra")

def temp_files(folder: Path) -> list[str]:
    """The audio-track temp files in ``folder``."""
    return sorted(n for n in os.listdir(folder) if n.startswith(f".{audioonly.TEMP_PREFIX}"))


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
