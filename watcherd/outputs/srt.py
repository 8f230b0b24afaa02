"""NAME.srt (and NAME.<lang>.srt): SubRip subtitles, Gladia's own when it sent them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watcherd.display import utf8_text
from watcherd.outputs.cues import cues, stamp
from watcherd.outputs.job import Job, Transcription, read_job


def of_transcription(transcription: Transcription) -> str:
    """Gladia's SubRip subtitles when present, else cues generated from the utterances."""
    given = transcription.subtitle("srt")
    if given is not None:
        return utf8_text(given)
    return utf8_text("".join(
        f"{n}\n{stamp(c.start_ms, ',')} --> {stamp(c.end_ms, ',')}\n{c.text}\n\n"
        for n, c in enumerate(cues(transcription), start=1)
    ))


def render(job: Job, title: str | None = None) -> str:
    """NAME.srt of ``job`` (``title`` is not used)."""
    return of_transcription(job.transcription)


def render_srt(job: Mapping[str, Any]) -> str:
    """SubRip subtitles: Gladia's own when present, else cues generated from the utterances."""
    return render(read_job(job))
