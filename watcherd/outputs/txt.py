"""NAME.txt (and NAME.<lang>.txt): one utterance per line, with "Speaker N: " (or the
speaker's name) when diarized."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watcherd.display import utf8_text
from watcherd.outputs.job import Job, Transcription, read_job


def of_transcription(transcription: Transcription) -> str:
    """The transcription as text; its full transcript when it has no utterances."""
    if not transcription.utterances:
        full = transcription.full_transcript.strip()
        return utf8_text(f"{full}\n" if full else "")
    diarized = transcription.diarized
    lines: list[str] = []
    for utterance in transcription.utterances:
        text = " ".join(utterance.text.split())
        if not text:
            continue
        if diarized and utterance.speaker is not None:
            text = f"{transcription.label(utterance.speaker)}: {text}"
        lines.append(text)
    return utf8_text("".join(f"{line}\n" for line in lines))


def render(job: Job, title: str | None = None) -> str:
    """NAME.txt of ``job`` (``title`` is not used: a text transcript has no heading)."""
    return of_transcription(job.transcription)


def render_txt(job: Mapping[str, Any]) -> str:
    """The transcript as text: one utterance per line, with "Speaker N: " when diarized."""
    return render(read_job(job))
