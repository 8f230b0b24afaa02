"""Local checks on a source before anything is sent: emptiness, size and duration limits, and
content that is plainly not a recording; and the one safe way to open a source for reading."""

from __future__ import annotations

import contextlib
import errno
import importlib
import io
import math
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from watcherd import fserrors, roots
from watcherd.errors import SourceError
from watcherd.wavehead import HEAD_BYTES, wave_duration

MAX_BYTES = 1000 * 1024 * 1024
#: Set to 1 to behave as if PyAV were not installed: a video is then sent whole.
NO_AV_ENV = "WATCHERD_NO_AV"
MAX_SECONDS = 135 * 60
_HEAD_BYTES = 4096

# O_NONBLOCK: opening a FIFO (or a device) never waits for a writer; on a regular file it
# changes nothing. O_NOCTTY: a terminal device never becomes our controlling terminal.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

# PyAV reads container headers only: at most this many bytes and this much stream time are
# probed, and no open or read may take longer than the timeout.
AV_PROBE = {"probesize": str(1024 * 1024), "analyzeduration": str(2_000_000)}
AV_TIMEOUT = (10.0, 10.0)
# Some demuxers read on past probesize when they find no stream (an MPEG-TS of garbage is read
# to its end), so each duration probe is also given at most this many bytes and seconds: past
# either, the file reads as ended and its duration is unknown. Real headers, and the tail a
# demuxer reads to estimate a duration, take far less.
_PROBE_BYTES = 16 * 1024 * 1024
_PROBE_SECONDS = 10.0

_KINDS: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISFIFO, "is a named pipe (FIFO)"),
    (stat.S_ISSOCK, "is a socket"),
    (stat.S_ISCHR, "is a character device"),
    (stat.S_ISBLK, "is a block device"),
)

# Signatures of common files that are certainly not audio or video. Only files mutagen could not
# read are checked, and only these are refused: anything else may be a format Gladia detects by
# content, so Gladia keeps the final word.
_NOT_MEDIA_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an office document)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x7fELF", "a program"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
)


#: What helps a file that is fine on disk but holds no recording: a changed file is settled and
#: tried again by itself, so `watcherd retry` (the same bytes again) would not help.
REPLACE_IT = "replace it with the recording (a changed file is picked up again)"
#: After a person fixes the file's permissions (no content change, so nothing is noticed).
_THEN_RETRY = "then run `watcherd retry` on it"
PERMISSION_DENIED = ("permission denied reading the file: give the watcherd user read access, "
                     + _THEN_RETRY)


def not_audio(detail: str) -> str:
    """The reason for a file that is not a recording at all (``detail``: what it holds)."""
    return f"not an audio or video file ({detail}); {REPLACE_IT}"


# -- reading a source safely ------------------------------------------------------------------


def not_regular(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is never read, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    for test, what in _KINDS:
        if test(mode):
            return f"{what}, not a recording; watcherd ignores it"
    return "is not a regular file, not a recording; watcherd ignores it"


def read_error(exc: OSError) -> SourceError:
    """The :class:`SourceError` for an ``OSError`` raised while opening or reading a source.

    The decision is :func:`watcherd.fserrors.classify`'s: ``transient`` is set exactly when the
    problem is retryable, and the message says what happened and what to do.
    """
    problem = fserrors.classify(exc)
    if problem.kind == "missing":
        return SourceError("disappeared while being read", transient=True)
    if problem.kind == "permission":
        return SourceError(PERMISSION_DENIED)
    if problem.retryable:  # transient, space
        return SourceError(
            f"cannot be read for now ({problem.message}); retrying later by itself",
            transient=True,
        )
    if exc.errno == errno.EISDIR:
        return SourceError("is a folder, not a file")
    if exc.errno == errno.ELOOP:
        return SourceError(
            f"cannot be read ({problem.message}): the link points back at itself; "
            "fix or remove the link"
        )
    return SourceError(f"cannot be read ({problem.message}); {problem.hint}")


@contextlib.contextmanager
def open_source(path: Path) -> Iterator[int]:
    """A read-only descriptor on ``path``, which is certainly a regular file beneath its root.

    The path goes through the watch roots' resolver (:mod:`watcherd.roots`): a link that leads
    out of its watch folder is refused (:class:`~watcherd.roots.LinkOutside`), and no folder on
    the way is followed if it became a link after the check (a transient error: the file is
    looked at again). Anything else than a regular file (a FIFO, a socket, a device, a folder)
    is refused before it is opened, and again after (it may have been swapped in between); the
    open never blocks. Every ``OSError`` becomes a :class:`SourceError` through
    :func:`read_error`.
    """
    place = roots.current().locate(path)
    try:
        with place.folder() as folder:
            why = not_regular(os.stat(place.name, dir_fd=folder, follow_symlinks=False).st_mode)
            if why is not None:
                raise SourceError(why)
            fd = roots.open_in(folder, place.name, _OPEN_FLAGS)
    except roots.LinkOnPath:
        raise SourceError(roots.SWAPPED, transient=True) from None
    except OSError as exc:
        raise read_error(exc) from None
    try:
        try:
            why = not_regular(os.fstat(fd).st_mode)
        except OSError as exc:
            raise read_error(exc) from None
        if why is not None:
            raise SourceError(why)
        yield fd
    finally:
        # A failed close of a descriptor only read from loses nothing.
        with contextlib.suppress(OSError):
            os.close(fd)


def _read_some(fd: int, size: int) -> bytes:
    """Up to ``size`` bytes from ``fd`` (fewer only at the end of the file)."""
    parts: list[bytes] = []
    left = size
    try:
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            parts.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise read_error(exc) from None
    return b"".join(parts)


class SourceReader(io.RawIOBase):
    """A raw file object over a descriptor from :func:`open_source` that remembers its failure.

    mutagen and PyAV wrap or swallow the errors of the file objects they read; the failure kept
    here lets the caller still classify an I/O error instead of taking it for odd content.
    """

    def __init__(self, fd: int, name: str, *, budget: bool = True) -> None:
        super().__init__()
        self._fd = fd
        self.name = name  # mutagen scores formats partly by the file name's extension
        self.failure: OSError | None = None
        # Probes read headers only, within a budget; a reader for the whole file has none.
        self._budget = budget
        self._left = math.inf
        self._deadline = math.inf
        self.start_probe()

    def start_probe(self) -> None:
        """Forget the last failure and give the next probe its byte and time budget."""
        self.failure = None
        if self._budget:
            self._left = _PROBE_BYTES
            self._deadline = time.monotonic() + _PROBE_SECONDS

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Always seekable: a regular file."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer``; remember an ``OSError`` before raising it."""
        view = memoryview(buffer).cast("B")
        if self._left <= 0 or time.monotonic() > self._deadline:
            return 0  # the probe's budget is spent: the file reads as ended
        try:
            data = os.read(self._fd, int(min(len(view), self._left)))
        except OSError as exc:
            self.failure = exc
            raise
        self._left -= len(data)
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the descriptor's offset; remember an ``OSError`` before raising it."""
        try:
            return os.lseek(self._fd, offset, whence)
        except OSError as exc:
            # EINVAL here is the parser's own bad offset (mutagen looks for a tag 128 bytes
            # before the end of a 40-byte file): odd content, not a failing disk.
            if exc.errno != errno.EINVAL:
                self.failure = exc
            raise

    def tell(self) -> int:
        """The descriptor's offset."""
        return self.seek(0, os.SEEK_CUR)


# -- duration ---------------------------------------------------------------------------------


def audio_duration(path: Path) -> float | None:
    """The duration in seconds read from the container's headers, or None if unknown."""
    try:
        with open_source(path) as fd:
            return _duration(fd, str(path))
    except SourceError:
        # An unknown duration is not fatal here: callers use it for time limits only.
        return None


def _duration(fd: int, name: str) -> float | None:
    """The duration from the headers of the open source: a plain WAV's from its first bytes,
    else mutagen's, then PyAV's.

    Raises :class:`SourceError` when reading failed (an I/O error, not odd content).
    """
    # One read, no mutagen, for the commonest recording format; what this cannot answer for
    # certain is probed below exactly as before (see watcherd.wavehead).
    try:
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError as exc:
        raise read_error(exc) from None
    seconds = wave_duration(_read_some(fd, HEAD_BYTES), name)
    if seconds is not None and math.isfinite(seconds):
        return seconds
    # Unbuffered on purpose: io.BufferedReader retries a raw read that raised EINTR, for ever
    # if it keeps failing; mutagen and PyAV read headers in pieces large enough as it is.
    reader = SourceReader(fd, name)
    for probe in (_mutagen_duration, _av_duration):
        reader.start_probe()
        try:
            reader.seek(0)
            seconds = probe(reader)
        except Exception:
            # mutagen and PyAV raise many kinds of errors on odd files: an unknown duration
            # is not fatal, Gladia has the final word on whether the file is audio.
            seconds = None
        if reader.failure is not None:
            raise read_error(reader.failure)
        if seconds is not None and math.isfinite(seconds) and seconds > 0:
            return seconds
    return None


def _mutagen_duration(reader: SourceReader) -> float | None:
    import mutagen

    info = mutagen.File(reader)
    length = getattr(getattr(info, "info", None), "length", None)
    return float(length) if isinstance(length, int | float) else None


def load_av() -> ModuleType | None:
    """PyAV, or None when it is not installed (or :data:`NO_AV_ENV` says to do without)."""
    if os.environ.get(NO_AV_ENV, "").strip() not in ("", "0"):
        return None
    try:
        return importlib.import_module("av")
    except ImportError:
        return None


def _av_duration(reader: SourceReader) -> float | None:
    try:
        import av
    except ImportError:  # the local extra is not installed: mutagen's answer is all we have
        return None
    with av.open(
        reader, "r", container_options=AV_PROBE, timeout=AV_TIMEOUT, io_open=no_nested_files,
    ) as container:
        if container.duration is not None and container.duration > 0:
            return float(container.duration) / av.time_base
        lengths = [
            float(s.duration * s.time_base)
            for s in container.streams
            if s.duration is not None and s.time_base is not None
        ]
        return max(lengths, default=None)


def no_nested_files(url: str, flags: int, options: dict[str, Any]) -> io.BytesIO:
    # Playlists and concat lists name other files or URLs: a dropped file must never make
    # watcherd open those, so every nested file reads as empty and only the file itself is
    # read. (Raising instead makes PyAV print a traceback to stderr.)
    return io.BytesIO(b"")


# -- checks -----------------------------------------------------------------------------------


def not_media(head: bytes) -> str | None:
    """What the first bytes of a file show it to be when that is plainly not a recording.

    Returns None when the bytes may be media (including every format we do not recognise).
    """
    for signature, what in _NOT_MEDIA_SIGNATURES:
        if head.startswith(signature):
            return what
    if _is_text(head):
        return "text"
    return None


def _is_text(head: bytes) -> bool:
    # Every audio and video container starts with binary header fields (sizes, sync words,
    # NUL bytes), so a head that is all printable text is not a recording.
    if len(head) < 16 or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            return False
        text = head[: exc.start].decode("utf-8")  # a character cut by the head's end
    printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
    return printable >= 0.98 * len(text)


def check_before_hash(
    path: Path, size: int, *, max_seconds: float = MAX_SECONDS, max_bytes: int = MAX_BYTES,
    fd: int | None = None,
) -> None:
    """Refuse, before the file is hashed, one that is empty, too large or too long.

    ``size`` is the stat size the caller already has: emptiness and the size limit need no
    read at all; the duration comes from the container's headers only. Raises a permanent
    :class:`SourceError` with the reason and what to do (a transient one when the file cannot
    be read for now).

    With PyAV importable, a file over Gladia's size limit whose duration is known and within
    the limit is let through: it may still be sent as its audio stream alone
    (:mod:`watcherd.engines.gladia.audioonly`), which the upload step decides (only it knows
    ``[gladia] upload``). One of unknown or excessive length is refused for its size, as
    without PyAV.

    ``fd``: the source already open (:func:`open_source`), read from instead of opening it
    again (the settle opens each file once for these checks and its hash).
    """
    _check_limits(path, size, max_seconds=max_seconds, max_bytes=max_bytes,
                  audio_alone=max_bytes == MAX_BYTES and load_av() is not None, fd=fd)


def _check_limits(path: Path, size: int, *, max_seconds: float, max_bytes: int,
                  audio_alone: bool = False, fd: int | None = None) -> float | None:
    """:func:`check_before_hash`, returning the duration it read (None if unknown).

    ``audio_alone``: a file over ``max_bytes`` passes when its duration is within the limit.
    """
    if size == 0:
        raise SourceError("the file is empty; replace it with the full recording")
    if size > max_bytes:
        seconds = _known_duration(path, fd) if audio_alone else None
        if seconds is not None and seconds <= max_seconds:
            return seconds
        limit = "Gladia's 1000 MB limit" if max_bytes == MAX_BYTES else (
            f"the {max_bytes / 1024 / 1024:.0f} MB limit")
        raise SourceError(
            f"the file is {size / 1024 / 1024:.0f} MB, over {limit}; "
            "split it or compress it (e.g. to mono MP3) and drop the parts in"
        )
    seconds = _duration_of(path, fd)
    if seconds is not None and seconds > max_seconds:
        raise SourceError(
            f"the recording lasts {_length(seconds, max_seconds)}, over "
            f"{_limit(max_seconds)}; split it into parts of about 60 minutes"
        )
    return seconds


def _duration_of(path: Path, fd: int | None) -> float | None:
    """The duration of ``path``, read from ``fd`` when it is already open."""
    if fd is not None:
        return _duration(fd, str(path))
    with open_source(path) as opened:
        return _duration(opened, str(path))


def _known_duration(path: Path, fd: int | None = None) -> float | None:
    try:
        return _duration_of(path, fd)
    except SourceError:
        return None  # unreadable now: the size is reason enough to refuse


def _limit(max_seconds: float) -> str:
    if max_seconds == MAX_SECONDS:
        return "Gladia's 135-minute limit"
    if max_seconds >= 120:
        return f"the limit of {max_seconds / 60:g} minutes"
    return f"the limit of {max_seconds:g} seconds"


def _length(seconds: float, limit: float) -> str:
    """Seconds in words, precise enough that a length over ``limit`` never reads as equal."""
    unit, value = ("minutes", seconds / 60) if limit >= 120 else ("seconds", seconds)
    bound = limit / 60 if unit == "minutes" else limit
    text = f"{value:.0f}"
    if float(text) <= bound:
        text = f"{value:.1f}" if round(value, 1) > bound else f"{value:.3f}"
    return f"{text} {unit}"


def check_source(path: Path, size: int, *, max_bytes: int = MAX_BYTES) -> None:
    """Refuse, before any upload, a file Gladia would refuse anyway.

    ``max_bytes``: the size limit on the file itself (larger when only its audio is sent).
    """
    seconds = _check_limits(path, size, max_seconds=MAX_SECONDS, max_bytes=max_bytes)
    if seconds is None:
        what = not_media(_head(path))
        if what is not None:
            raise SourceError(not_audio(f"it holds {what}; misnamed?"))


def _head(path: Path) -> bytes:
    with open_source(path) as fd:
        return _read_some(fd, _HEAD_BYTES)
