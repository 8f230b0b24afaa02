"""Local checks on a source before anything is sent: size and duration limits."""

from __future__ import annotations

from pathlib import Path

from watcherd.errors import SourceError

MAX_BYTES = 1000 * 1024 * 1024
MAX_SECONDS = 135 * 60


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
