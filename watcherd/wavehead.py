"""A RIFF/WAVE file's duration from its first bytes, as mutagen would read it, without mutagen.

Before hashing, every source's duration is read to refuse one over Gladia's length limit. For
a WAV, mutagen's ``File()`` costs about 0.2 ms of Python (it scores two dozen formats, then
walks the chunks through many small reads and seeks): at 100,000 small files that is more
than their hashing. This reads the same header fields from one buffer.

It answers only when its answer is certainly mutagen's, and otherwise says "ask mutagen"
(None): the caller then probes as before, so a file whose header is odd, truncated, tagged or
named as another format is measured exactly as it always was.

Why not skip the probe when the size alone proves a file short? A header can claim any length
whatever the bytes that follow (a one-second file whose header says three hours), and such a
file is refused before any upload today; a bound on the size would let it through.
"""

from __future__ import annotations

import struct

__all__ = ["HEAD_BYTES", "wave_duration"]

#: How many bytes from the start of the file :func:`wave_duration` looks at. A WAV's ``fmt ``
#: and ``data`` chunk headers come within the first few hundred bytes (a broadcast WAV's
#: ``bext`` chunk is 602 bytes); a file whose ``data`` header lies further is left to mutagen.
HEAD_BYTES = 4096

_CHUNK = struct.Struct("<4sI")
_FMT = struct.Struct("<HHIIHH")
#: The names for which mutagen's WAVE type scores 3 on a RIFF/WAVE head, more than any other
#: format it knows can score there (tests/unit/test_wavehead.py checks every one): it is then
#: certainly the type mutagen picks.
_WAVE_NAMES = (".wav", ".wave")


def _chunk_id(raw: bytes) -> str | None:
    """A chunk id as mutagen reads it (ASCII, trailing spaces dropped), None where mutagen
    stops walking (not ASCII, empty, or not printable)."""
    try:
        text = raw.decode("ascii").rstrip()
    except UnicodeDecodeError:
        return None
    if not text or min(text) < " " or max(text) > "~":
        return None
    return text


def wave_duration(head: bytes, name: str) -> float | None:
    """The duration mutagen reads for a RIFF/WAVE file starting with ``head``, or None when
    only mutagen (or PyAV) can tell.

    ``head``: the file's first :data:`HEAD_BYTES` (all of it when shorter); ``name``: its file
    name, which mutagen also weighs when it picks a format. The duration is mutagen's: the
    first ``data`` chunk's declared size over the first ``fmt `` chunk's block alignment and
    sample rate (whatever the bytes that follow, like mutagen).
    """
    if not name.lower().endswith(_WAVE_NAMES) or len(head) < 12:
        return None
    riff, riff_size = _CHUNK.unpack_from(head)
    if riff != b"RIFF" or head[8:12] != b"WAVE" or riff_size < 4:
        return None
    end = 8 + riff_size + riff_size % 2  # mutagen walks subchunks up to the RIFF chunk's end
    offset = 12
    fmt: tuple[int, int] | None = None  # (sample rate, block align)
    data_size: int | None = None
    while offset < end:
        if offset + 8 > len(head):
            # Beyond what was read: mutagen would go on (or find the file ends here).
            return None
        raw_id, size = _CHUNK.unpack_from(head, offset)
        chunk = _chunk_id(raw_id)
        if chunk is None:
            break  # mutagen stops at an invalid chunk id, keeping the chunks before it
        if chunk in ("LIST", "RIFF", "id3", "ID3"):
            # A nested list is parsed further by mutagen (and can make it fail), and a tag
            # is loaded after the duration (a broken one fails the whole read): ask it.
            return None
        if chunk == "fmt" and fmt is None:
            if size < _FMT.size or offset + 8 + _FMT.size > len(head):
                return None
            _, _, rate, _, align, _ = _FMT.unpack_from(head, offset + 8)
            fmt = (rate, align)
        elif chunk == "data" and data_size is None:
            data_size = size
        offset += 8 + size + size % 2
    if fmt is None or data_size is None:
        return None
    rate, align = fmt
    if rate <= 0 or align <= 0:
        return None
    # Mutagen's arithmetic, in its order: frames (a float), then seconds.
    seconds = data_size / align / rate
    return seconds if seconds > 0 else None
