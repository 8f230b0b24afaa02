"""Local checks on a source before anything is sent: emptiness, size and duration limits, and
content that is plainly not a recording."""

from __future__ import annotations

from pathlib import Path

from watcherd.errors import SourceError

MAX_BYTES = 1000 * 1024 * 1024
MAX_SECONDS = 135 * 60
_HEAD_BYTES = 4096

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


def audio_duration(path: Path) -> float | None:
    """The duration in seconds read from the container's headers, or None if unknown."""
    try:
        import mutagen

        info = mutagen.File(str(path))
    except Exception:
        # mutagen raises many kinds of errors on odd files; an unknown duration is not fatal,
        # Gladia has the final word on whether the file is audio.
        return None
    length = getattr(getattr(info, "info", None), "length", None)
    return float(length) if isinstance(length, int | float) and length > 0 else None


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


def check_source(path: Path, size: int) -> None:
    """Refuse, before any upload, a file Gladia would refuse anyway."""
    if size == 0:
        raise SourceError("the file is empty; replace it with the full recording")
    if size > MAX_BYTES:
        raise SourceError(
            f"the file is {size / 1024 / 1024:.0f} MB, over Gladia's 1000 MB limit; "
            "split it or compress it (e.g. to mono MP3) and drop the parts in"
        )
    seconds = audio_duration(path)
    if seconds is not None and seconds > MAX_SECONDS:
        raise SourceError(
            f"the recording lasts {seconds / 60:.0f} minutes, over Gladia's 135-minute limit; "
            "split it into parts of about 60 minutes"
        )
    if seconds is None:
        what = not_media(_head(path))
        if what is not None:
            raise SourceError(
                f"the file is not audio or video (it holds {what}): it is probably corrupt or "
                "misnamed; replace it with the recording (a changed file is picked up again; "
                "`watcherd retry` checks it again)"
            )


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(_HEAD_BYTES)
    except FileNotFoundError:
        raise SourceError("disappeared before upload", transient=True) from None
    except PermissionError:
        raise SourceError(
            "permission denied reading the file: give the watcherd user read access"
        ) from None
