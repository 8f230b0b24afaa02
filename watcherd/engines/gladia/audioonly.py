"""Send only the audio: a source with a video track, or over Gladia's size limit, is uploaded
as its audio stream alone.

A one-hour meeting filmed in 1080p is 1-3 GB, over Gladia's 1000 MB limit, when its audio is
30-60 MB, and Gladia only ever uses the audio. With PyAV installed (the ``media`` or the
``local`` extra), such a source is read through the watch roots' resolver
(:func:`watcherd.media.open_source`: PyAV gets a file object on that descriptor, never a
path), its best audio stream is written to a file of its own (copied packet by packet when
Gladia takes the codec, else encoded as Opus, 16 kHz mono, at most 32 kb/s), that file is
streamed to Gladia and removed.

The file lives in the state folder beside the journal, named as watcherd's temp files are
(:func:`watcherd.outputs.naming.is_our_temp`: never taken for a recording), and is only ever
read through the descriptor that wrote it. So :func:`sweep` at start may remove every one a
crash left, even one a concurrent one-shot ``watcherd transcribe`` is still uploading: that
upload goes on reading its open descriptor.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import structlog

from watcherd import media
from watcherd.errors import SourceError
from watcherd.outputs import TEMP_MARKER, sweep_temp_files

__all__ = ["NO_AV_ENV", "Track", "TrackPlan", "extract", "load_av", "plan", "sweep"]

log = structlog.get_logger("watcherd.engines.gladia.audioonly")

NO_AV_ENV = media.NO_AV_ENV
load_av = media.load_av
#: The temp files' name: hidden, marked as ours, random ("." TEMP_PREFIX HEX SUFFIX).
TEMP_PREFIX = f"upload{TEMP_MARKER}-"

# Codecs Gladia takes (docs/gladia-contract.md: aac, ac3, eac3, flac, m4a, mp2, mp3, ogg,
# opus) and the container each is copied into. PCM is not among them on purpose: copied, it
# would be 10-30 times the size of the same speech in Opus.
_COPY_FORMATS: Mapping[str, tuple[str, str]] = {
    "aac": ("ipod", ".m4a"),  # the MP4 muxer with the M4A brand
    "mp3": ("mp3", ".mp3"),
    "mp2": ("mp2", ".mp2"),
    "ac3": ("ac3", ".ac3"),
    "eac3": ("eac3", ".eac3"),
    "flac": ("flac", ".flac"),
    "opus": ("ogg", ".opus"),
    "vorbis": ("ogg", ".ogg"),
}
# Anything else becomes Opus at what speech recognition needs: Gladia converts every upload
# to 16 kHz mono anyway. Constrained VBR keeps music and tones under the target as well
# (plain VBR went to 46 kb/s on a pure tone); 24 kb/s is transparent for speech.
_OPUS_RATE = 16_000
_OPUS_OPTIONS = {"b": "24000", "vbr": "constrained", "application": "voip"}
_OPUS_SUFFIX = ".opus"


@dataclass(frozen=True)
class TrackPlan:
    """How a source's audio alone is sent: which stream, copied or encoded, and why."""

    index: int  # the audio stream's index in the container
    codec: str
    muxer: str  # the container written
    suffix: str  # the uploaded part's extension
    copy: bool  # packets copied as they are (else decoded and encoded as Opus)
    reason: str  # for the log: "a video track" / "over Gladia's size limit"


@dataclass(frozen=True)
class Track:
    """The audio alone, in an open temp file positioned at its start; :meth:`close` removes it.

    ``file`` is read from its current offset by the upload; the path is only for removal.
    """

    file: IO[bytes]
    path: Path
    size: int
    plan: TrackPlan

    def close(self) -> None:
        """Close and remove the temp file (already removed by a sweep: fine)."""
        self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _is_picture(stream: Any) -> bool:
    """Cover art (an MP3's or M4A's picture) is a video stream that is not a video."""
    try:
        return bool(int(stream.disposition) & 0x400)  # AV_DISPOSITION_ATTACHED_PIC
    except (AttributeError, TypeError, ValueError):
        return False


def plan(path: Path, size: int, *, limit: int = media.MAX_BYTES) -> TrackPlan | None:
    """How to send the audio of ``path`` alone, or None to send the file as it is.

    None without PyAV, for a file without a video track within ``limit`` bytes, and for one
    PyAV cannot read (Gladia keeps the last word on it). Raises a permanent
    :class:`SourceError` for a video without an audio track (nothing to transcribe), and
    :func:`watcherd.media.read_error`'s for a file that cannot be read.
    """
    av = load_av()
    if av is None:
        return None
    with media.open_source(path) as fd:
        reader = media.SourceReader(fd, str(path))
        try:
            with av.open(reader, "r", container_options=media.AV_PROBE,
                         timeout=media.AV_TIMEOUT, io_open=media.no_nested_files) as container:
                videos = [s for s in container.streams.video if not _is_picture(s)]
                audio = container.streams.best("audio") if container.streams.audio else None
                found = None if audio is None else (int(audio.index),
                                                    str(audio.codec_context.name))
        except Exception:
            found, videos = None, []
            if reader.failure is None:
                return None  # not something PyAV reads: sent as it is, Gladia decides
        if reader.failure is not None:
            raise media.read_error(reader.failure)
    if not videos and size <= limit:
        return None
    if found is None:
        if videos:
            raise SourceError(media.not_audio("a video without any audio track: nothing to "
                                              "transcribe"))
        return None
    index, codec = found
    reason = "a video track" if videos else "over Gladia's size limit"
    copied = _COPY_FORMATS.get(codec)
    # A file over the limit with no video is all audio already: copying it would not shrink it.
    if copied is not None and videos:
        return TrackPlan(index, codec, copied[0], copied[1], copy=True, reason=reason)
    return TrackPlan(index, codec, "ogg", _OPUS_SUFFIX, copy=False, reason=reason)


def _temp_file(folder: Path, suffix: str) -> tuple[IO[bytes], Path]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{TEMP_PREFIX}{secrets.token_hex(6)}{suffix}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "w+b"), path


def extract(path: Path, track: TrackPlan, folder: Path) -> Track:
    """Write the audio stream ``track`` names to a new temp file in ``folder`` (blocking).

    Raises :class:`SourceError`: transient when the source cannot be read for now, permanent
    when its audio cannot be decoded; the temp file is removed on any failure.
    """
    av = load_av()
    if av is None:
        raise SourceError("PyAV is no longer importable; sending the file as it is",
                          transient=True)
    out, temp = _temp_file(folder, track.suffix)
    try:
        with media.open_source(path) as fd:
            reader = media.SourceReader(fd, str(path), budget=False)
            try:
                with av.open(reader, "r", io_open=media.no_nested_files) as source, \
                        av.open(out, "w", format=track.muxer) as target:
                    stream = source.streams[track.index]
                    if track.copy:
                        _copy(source, stream, target)
                    else:
                        _encode(av, source, stream, target)
            except SourceError:
                raise
            except Exception as exc:
                if reader.failure is not None:
                    raise media.read_error(reader.failure) from None
                raise SourceError(
                    f"its audio track ({track.codec}) cannot be read ({exc}): the recording "
                    f"is probably damaged; {media.REPLACE_IT}") from None
        out.flush()
        size = os.fstat(out.fileno()).st_size
        out.seek(0)
    except BaseException:
        out.close()
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    return Track(out, temp, size, track)


def _copy(source: Any, stream: Any, target: Any) -> None:
    """Remux: the stream's packets as they are, into the new container."""
    copied = target.add_stream_from_template(stream)
    for packet in source.demux(stream):
        if packet.dts is None:  # the demuxer's flush packet
            continue
        packet.stream = copied
        target.mux(packet)


def _encode(av: ModuleType, source: Any, stream: Any, target: Any) -> None:
    """Decode the stream and encode it as Opus, 16 kHz mono."""
    encoded = target.add_stream("libopus", rate=_OPUS_RATE, options=dict(_OPUS_OPTIONS))
    encoded.layout = "mono"
    resampler = av.AudioResampler(format="s16", layout="mono", rate=_OPUS_RATE)
    for frame in source.decode(stream):
        for mono in resampler.resample(frame):
            target.mux(encoded.encode(mono))
    for mono in resampler.resample(None):
        target.mux(encoded.encode(mono))
    target.mux(encoded.encode(None))


def sweep(folder: Path) -> int:
    """Remove the temp files a crash left in ``folder``; returns how many."""
    removed = sweep_temp_files(folder, older_than_seconds=0, prefix=f".{TEMP_PREFIX}")
    if removed:
        log.info("upload_temp_files_removed", folder=str(folder), count=removed)
    return removed
