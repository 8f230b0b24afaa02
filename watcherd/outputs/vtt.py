"""NAME.vtt (and NAME.<lang>.vtt): WebVTT subtitles, Gladia's own when it sent them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watcherd.display import utf8_text
from watcherd.outputs.cues import cues, stamp
from watcherd.outputs.job import Job, Transcription, read_job


def of_transcription(transcription: Transcription) -> str:
    """Gladia's WebVTT subtitles when present, else cues generated from the utterances."""
    given = transcription.subtitle("vtt")
    if given is not None:
        # A player rejects a VTT without its header; Gladia's always has one, but be sure.
        return utf8_text(given if given.lstrip("\ufeff").startswith("WEBVTT")
                         else f"WEBVTT\n\n{given}")
    return utf8_text("WEBVTT\n\n" + "".join(
        f"{stamp(c.start_ms, '.')} --> {stamp(c.end_ms, '.')}\n{_escape(c.text)}\n\n"
        for c in cues(transcription)
    ))


def render(job: Job, title: str | None = None) -> str:
    """NAME.vtt of ``job`` (``title`` is not used)."""
    return of_transcription(job.transcription)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_vtt(job: Mapping[str, Any]) -> str:
    """WebVTT subtitles: Gladia's own when present, else cues generated from the utterances."""
    return render(read_job(job))
