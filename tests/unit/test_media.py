"""Limits before work: emptiness, size and duration are refused before hashing, with the right
reason, for every container a user drops; reading headers never hangs, never reads what is not
a regular file, and every I/O error is classified."""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
import sys
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.sim.media import make_mp3, make_sparse_wav, make_wav
from watcherd import fserrors, media
from watcherd.errors import SourceError

WAV_BYTES_PER_SECOND = 32_000
GIB = 1024 * 1024 * 1024


def write_audio(path: Path, container: str, codec: str, seconds: float) -> None:
    """Encode ``seconds`` of a mono tone with PyAV into ``container`` (real media, small)."""
    av = pytest.importorskip("av")
    import numpy as np

    rate = 48_000 if codec == "libopus" else 16_000
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        count = int(seconds * rate)
        pcm = (np.sin(2 * np.pi * 440 * np.arange(count) / rate) * 8000).astype(np.int16)
        step = stream.codec_context.frame_size or 1024
        for start in range(0, count, step):
            frame = av.AudioFrame.from_ndarray(pcm[start:start + step].reshape(1, -1),
                                               format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def claim_duration(path: Path, seconds: float) -> None:
    """Rewrite the Segment Info Duration of a Matroska/WebM file to claim ``seconds``.

    The muxer writes Duration (EBML id 0x4489) as an 8-byte float in milliseconds (the default
    TimecodeScale) in the Info element, the first such element in the file.
    """
    data = path.read_bytes()
    at = data.find(b"\x44\x89\x88")
    assert at > 0, "no 8-byte Duration element"
    path.write_bytes(data[:at + 3] + struct.pack(">d", seconds * 1000) + data[at + 11:])


# Containers mutagen cannot measure (PyAV does), and some it can; real encoders each.
CONTAINERS = [
    ("mkv", "matroska", "pcm_s16le"),
    ("mka", "matroska", "flac"),
    ("webm", "webm", "libopus"),
    ("avi", "avi", "pcm_s16le"),
    ("ts", "mpegts", "mp2"),
    ("flv", "flv", "aac"),
    ("wma", "asf", "mp2"),
    ("m4a", "mp4", "aac"),
    ("opus", "ogg", "libopus"),
]


class TestLimits:
    """Empty, too large, too long: refused before any hashing, with the right reason."""

    def test_empty(self, tmp_path: Path) -> None:
        """A 0-byte file is refused as empty, permanently, with what to do."""
        path = tmp_path / "empty.wav"
        path.write_bytes(b"")
        with pytest.raises(SourceError) as caught:
            media.check_before_hash(path, 0)
        assert "empty" in caught.value.message and "replace it" in caught.value.message
        assert caught.value.transient is False

    def test_two_gib_sparse_wav_is_over_the_size_limit(self, tmp_path: Path) -> None:
        """A 2 GiB sparse WAV gets the 1000 MB reason (not "cannot be decoded"), permanently."""
        path = tmp_path / "huge.wav"
        make_sparse_wav(path, 2 * GIB)
        for check in (media.check_before_hash, media.check_source):
            with pytest.raises(SourceError) as caught:
                check(path, path.stat().st_size)
            message = caught.value.message
            assert "2048 MB" in message and "1000 MB limit" in message and "split" in message
            assert "decode" not in message
            assert caught.value.transient is False

    def test_size_limit_needs_no_read(self, tmp_path: Path) -> None:
        """The size limit is decided from the stat size alone: the file is not even opened."""
        with pytest.raises(SourceError, match="1000 MB limit"):
            media.check_before_hash(tmp_path / "not-there.wav", media.MAX_BYTES + 1)

    def test_exactly_the_size_limit_is_accepted(self, tmp_path: Path) -> None:
        """1000 MB itself is within the limit (the file's header is still read)."""
        path = tmp_path / "edge.wav"
        make_sparse_wav(path, media.MAX_BYTES)
        media.check_before_hash(path, media.MAX_BYTES, max_seconds=float("inf"))

    def test_long_wav_header(self, tmp_path: Path) -> None:
        """A sparse WAV whose header says 136 minutes is refused with both durations named."""
        path = tmp_path / "long.wav"
        make_sparse_wav(path, 136 * 60 * WAV_BYTES_PER_SECOND + 44)
        with pytest.raises(SourceError) as caught:
            media.check_before_hash(path, path.stat().st_size)
        assert "136 minutes" in caught.value.message
        assert "135-minute limit" in caught.value.message and "split" in caught.value.message
        assert caught.value.transient is False

    def test_exactly_135_minutes_is_accepted(self, tmp_path: Path) -> None:
        """A WAV of exactly 135 minutes is within the limit."""
        path = tmp_path / "edge.wav"
        make_sparse_wav(path, 135 * 60 * WAV_BYTES_PER_SECOND + 44)
        media.check_before_hash(path, path.stat().st_size)

    @pytest.mark.parametrize(("ext", "container", "codec"),
                             [("mkv", "matroska", "pcm_s16le"), ("webm", "webm", "libopus")])
    def test_long_matroska_header(self, tmp_path: Path, ext: str, container: str,
                                  codec: str) -> None:
        """An MKV/WebM of one second whose Duration element says 3 hours is refused as
        180 minutes long: the duration comes from the header, nothing is decoded."""
        path = tmp_path / f"long.{ext}"
        write_audio(path, container, codec, 1.0)
        claim_duration(path, 3 * 3600)
        assert media.audio_duration(path) == pytest.approx(3 * 3600)
        with pytest.raises(SourceError) as caught:
            media.check_before_hash(path, path.stat().st_size)
        assert "180 minutes" in caught.value.message
        assert "135-minute limit" in caught.value.message
        with pytest.raises(SourceError, match="135-minute limit"):
            media.check_source(path, path.stat().st_size)

    def test_just_over_the_limit_never_reads_as_equal(self, tmp_path: Path) -> None:
        """135 minutes and 6 seconds is not shown as "135 minutes, over the 135-minute limit"."""
        path = tmp_path / "edge.mkv"
        write_audio(path, "matroska", "pcm_s16le", 1.0)
        claim_duration(path, 135 * 60 + 6)
        with pytest.raises(SourceError) as caught:
            media.check_before_hash(path, path.stat().st_size)
        assert "135.1 minutes" in caught.value.message

    def test_short_files_pass(self, tmp_path: Path) -> None:
        """Ordinary short WAV and MP3 files pass the check."""
        wav, mp3 = tmp_path / "a.wav", tmp_path / "b.mp3"
        make_wav(wav, seconds=1.0)
        make_mp3(mp3, seconds=2.0)
        media.check_before_hash(wav, wav.stat().st_size)
        media.check_before_hash(mp3, mp3.stat().st_size)


class TestEveryContainer:
    """The duration is read for every container a user drops (PyAV where mutagen cannot)."""

    @pytest.mark.parametrize(("ext", "container", "codec"), CONTAINERS)
    def test_duration_and_refusal(self, tmp_path: Path, ext: str, container: str,
                                  codec: str) -> None:
        """A real 2-second file measures about 2 s; a 1.5 s limit refuses it, 3 s does not."""
        path = tmp_path / f"two.{ext}"
        write_audio(path, container, codec, 2.0)
        assert media.audio_duration(path) == pytest.approx(2.0, abs=0.1)
        with pytest.raises(SourceError) as caught:
            media.check_before_hash(path, path.stat().st_size, max_seconds=1.5)
        assert "over the limit of 1.5 seconds" in caught.value.message
        assert caught.value.transient is False
        media.check_before_hash(path, path.stat().st_size, max_seconds=3.0)

    @pytest.mark.parametrize("ext", ["mkv", "webm", "avi", "ts"])
    def test_mutagen_alone_cannot(self, tmp_path: Path, ext: str) -> None:
        """These containers need PyAV: without it their duration is unknown, which is no
        refusal (skipped silently), and mutagen alone indeed gives nothing."""
        import mutagen

        ext_, container, codec = next(c for c in CONTAINERS if c[0] == ext)
        path = tmp_path / f"x.{ext_}"
        write_audio(path, container, codec, 2.0)
        try:
            found = mutagen.File(str(path))
        except Exception:
            found = None
        assert found is None
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(sys.modules, "av", None)  # import av -> ImportError
            assert media.audio_duration(path) is None
            media.check_before_hash(path, path.stat().st_size, max_seconds=1.0)


class TestNeverHangs:
    """Odd, huge or hostile files cannot make the duration check hang or read other files."""

    def test_garbage_transport_stream_is_read_within_budget(self, tmp_path: Path) -> None:
        """900 MB of MPEG-TS packets with no stream: some demuxers read such a file to its end;
        the probe stops at its byte budget and the duration is unknown."""
        path = tmp_path / "garbage.ts"
        with path.open("wb") as f:
            for i in range(5000):
                f.write(b"\x47" + bytes([i % 251]) * 187)
            f.truncate(900 * 1024 * 1024)
        read = _ReadCounter()
        with read:
            assert media.audio_duration(path) is None
        assert read.total <= 2 * media._PROBE_BYTES

    def test_playlist_never_opens_what_it_names(self, tmp_path: Path) -> None:
        """An HLS playlist naming a real recording beside it is not followed: the playlist
        itself has no duration (PyAV on its own would report the segments' 4 s)."""
        write_audio(tmp_path / "seg.ts", "mpegts", "mp2", 2.0)
        playlist = tmp_path / "list.m3u8"
        playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nseg.ts\n"
                            "#EXTINF:2.0,\nseg.ts\n#EXT-X-ENDLIST\n", encoding="utf-8")
        assert media.audio_duration(playlist) is None

    def test_fifo_is_never_opened(self, tmp_path: Path) -> None:
        """A FIFO (no writer: opening it for reading would block) is refused by kind, and its
        duration is unknown; neither call blocks."""
        fifo = tmp_path / "pipe.wav"
        os.mkfifo(fifo)
        outcome = _within_deadline(lambda: media.check_before_hash(fifo, 10), fifo)
        assert isinstance(outcome, SourceError) and outcome.transient is False
        assert "named pipe (FIFO)" in outcome.message and "ignores it" in outcome.message
        assert _within_deadline(lambda: media.audio_duration(fifo), fifo) is None

    def test_fifo_swapped_in_after_stat(self, tmp_path: Path) -> None:
        """A FIFO that takes a regular file's place between stat and open is opened without
        blocking and refused after the open."""
        fifo, regular = tmp_path / "pipe.wav", tmp_path / "real.wav"
        os.mkfifo(fifo)
        make_wav(regular, seconds=0.2)
        real_stat = os.stat

        def stale_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
            return real_stat(regular if Path(path) == fifo else path, *args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "stat", stale_stat)
            outcome = _within_deadline(lambda: media.check_before_hash(fifo, 10), fifo)
        assert isinstance(outcome, SourceError) and "named pipe (FIFO)" in outcome.message

    def test_other_kinds(self, tmp_path: Path) -> None:
        """A socket, a device (through a link), a folder: each refused with its kind."""
        sock_path = tmp_path / "s.wav"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(sock_path))
            (tmp_path / "dev.wav").symlink_to("/dev/null")
            (tmp_path / "dir.wav").mkdir()
            for name, words in (("s.wav", "is a socket"), ("dev.wav", "character device"),
                                ("dir.wav", "is a folder")):
                with pytest.raises(SourceError) as caught:
                    media.check_before_hash(tmp_path / name, 10)
                assert words in caught.value.message and caught.value.transient is False


@given(mode=st.sampled_from([stat.S_IFREG, stat.S_IFDIR, stat.S_IFIFO, stat.S_IFSOCK,
                             stat.S_IFCHR, stat.S_IFBLK, stat.S_IFLNK, 0]),
       bits=st.integers(0, 0o7777))
def test_not_regular_names_every_kind(mode: int, bits: int) -> None:
    """Only a regular file is read; every other kind gets a reason naming what it is."""
    why = media.not_regular(mode | bits)
    if mode == stat.S_IFREG:
        assert why is None
    else:
        assert why is not None and why.startswith("is ")


STEPS = ("stat", "open", "fstat", "read", "lseek")


def _inject(patch: pytest.MonkeyPatch, step: str, code: int, *, after: int = 0) -> None:
    """Make ``os.<step>`` raise ``OSError(code)`` on its call number ``after`` and later."""
    real = getattr(os, step)
    calls = [0]

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] > after:
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    patch.setattr(os, step, failing)


def _check_error_outcome(run: Callable[[], object], step: str, code: int, after: int) -> None:
    """Run with ``os.<step>`` failing; a SourceError must carry classify's decision, and the
    first call of every step is on the check's path, so failing it must refuse."""
    with pytest.MonkeyPatch.context() as patch:
        _inject(patch, step, code, after=after)
        try:
            run()
        except SourceError as exc:
            expected = fserrors.classify(OSError(code, os.strerror(code)))
            assert exc.transient is expected.retryable, (step, errno.errorcode[code])
            assert exc.message
        else:
            # A later call may not be needed (the headers were already read).
            assert after > 0, f"{step} failing with {errno.errorcode[code]} went unnoticed"


@given(code=st.sampled_from(sorted(errno.errorcode)), step=st.sampled_from(STEPS),
       after=st.integers(0, 3), data=st.binary(max_size=64))
def test_every_errno_in_the_duration_check(tmp_path_factory: pytest.TempPathFactory, code: int,
                                           step: str, after: int, data: bytes) -> None:
    """Any errno from stat, open, fstat, read or seek in check_before_hash or check_source is
    a SourceError (never another exception) whose transient flag is classify's decision."""
    path = tmp_path_factory.mktemp("errno") / "x.wav"
    make_wav(path, seconds=0.1)
    with path.open("ab") as f:
        f.write(data)
    size = path.stat().st_size
    _check_error_outcome(lambda: media.check_before_hash(path, size), step, code, after)
    _check_error_outcome(lambda: media.check_source(path, size), step, code, after)


@pytest.mark.parametrize("code", sorted(errno.errorcode))
def test_every_errno_on_open(tmp_path: Path, code: int) -> None:
    """Every errno raised by open in the check is a SourceError with classify's decision."""
    path = tmp_path / "x.wav"
    make_wav(path, seconds=0.1)
    with pytest.MonkeyPatch.context() as patch:
        _inject(patch, "open", code)
        with pytest.raises(SourceError) as caught:
            media.check_before_hash(path, path.stat().st_size)
    assert caught.value.transient is fserrors.classify(OSError(code, "x")).retryable


def test_error_messages_say_what_to_do(tmp_path: Path) -> None:
    """Each kind of read error reads as what happened and what to do."""
    path = tmp_path / "x.wav"
    make_wav(path, seconds=0.1)
    expected = {
        errno.ENOENT: "disappeared",
        errno.EACCES: "give the watcherd user read access",
        errno.EIO: "Input/output error (EIO)); retrying later",
        errno.ENOSPC: "retrying later",
        errno.EINVAL: "Invalid argument (EINVAL)); this file cannot be processed",
        errno.ELOOP: "the link points back at itself",
        errno.EROFS: "Read-only file system (EROFS)",
    }
    for code, words in expected.items():
        with pytest.MonkeyPatch.context() as patch:
            _inject(patch, "read", code)
            with pytest.raises(SourceError) as caught:
                media.check_before_hash(path, path.stat().st_size)
        assert words in caught.value.message, caught.value.message


@given(head=st.sampled_from([b"", b"\x1a\x45\xdf\xa3", b"RIFF\x00\x00\x00\x00AVI ",
                             b"\x47", b"OggS", b"fLaC", b"ID3", b"\x00\x00\x00\x18ftypmp42",
                             b"#EXTM3U\n", b"ffconcat version 1.0\n", b"RIFF\xff\xff\xff\xffWAVE"]),
       body=st.binary(max_size=4096),
       ext=st.sampled_from(["wav", "mp3", "mkv", "webm", "avi", "ts", "m4a", "ogg", "bin"]))
def test_arbitrary_bytes_never_crash_the_check(tmp_path_factory: pytest.TempPathFactory,
                                               head: bytes, body: bytes, ext: str) -> None:
    """Whatever a dropped file holds (container magic then anything), the checks either pass
    or refuse it with a SourceError: never another exception."""
    path = tmp_path_factory.mktemp("bytes") / f"x.{ext}"
    path.write_bytes(head + body)
    size = path.stat().st_size
    for check in (media.check_before_hash, media.check_source):
        try:
            check(path, size)
        except SourceError as exc:
            assert exc.message
    seconds = media.audio_duration(path)
    assert seconds is None or seconds > 0


@given(data=st.data())
def test_mutated_matroska_never_crashes(tmp_path_factory: pytest.TempPathFactory,
                                        data: st.DataObject) -> None:
    """A real MKV header with arbitrary bytes overwritten: a duration or None, nothing else."""
    folder = tmp_path_factory.mktemp("mkv")
    original = folder / "orig.mkv"
    write_audio(original, "matroska", "pcm_s16le", 0.2)
    blob = bytearray(original.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, min(len(blob), 400) - 1))
        blob[at] = data.draw(st.integers(0, 255))
    path = folder / "mutated.mkv"
    path.write_bytes(bytes(blob))
    seconds = media.audio_duration(path)
    assert seconds is None or seconds > 0


# -- helpers ----------------------------------------------------------------------------------


class _ReadCounter:
    """Counts the bytes every os.read returns while active."""

    def __init__(self) -> None:
        self.total = 0
        self._patch = pytest.MonkeyPatch()

    def __enter__(self) -> _ReadCounter:
        real = os.read

        def counting(fd: int, n: int) -> bytes:
            data = real(fd, n)
            self.total += len(data)
            return data

        self._patch.setattr(os, "read", counting)
        return self

    def __exit__(self, *exc: object) -> None:
        self._patch.undo()


def _within_deadline(call: Callable[[], object], fifo: Path, timeout: float = 20.0) -> object:
    """Run ``call`` in a thread; if it is still blocked after ``timeout``, unblock a reader of
    ``fifo`` by opening it for writing, and fail. Returns the result or the exception."""
    box: list[object] = []

    def run() -> None:
        try:
            box.append(call())
        except Exception as exc:
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(timeout)
        pytest.fail("the call blocked on a FIFO")
    return box[0]

