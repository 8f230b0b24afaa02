"""NAME.md: a readable report of details, notes, summary, speakers, transcript and add-ons."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import watcherd.outputs.markdown as md
from watcherd.display import utf8_text
from watcherd.outputs.job import (
    AddonResults,
    Answer,
    Entity,
    Job,
    Sentiment,
    Transcription,
    read_job,
)

# The request parameters listed as "Add-ons" when set, in this order.
_ADDON_FLAGS = (
    "diarization", "translation", "subtitles", "summarization", "pii_redaction",
    "sentiment_analysis", "named_entity_recognition", "sentences", "punctuation_enhanced",
    "custom_vocabulary", "custom_spelling", "audio_to_llm",
)  # fmt: skip


def render(job: Job, title: str | None = None) -> str:
    """NAME.md of ``job``; ``title`` (the output base's name) heads it when Gladia sent none."""
    speakers = job.transcription.speakers
    lines = [f"# {md.inline(md.source_name(job, title))}", "", *_details(job, speakers), ""]
    if job.failures:
        lines += ["## Notes", ""]
        lines += [f"- {md.inline(f.describe())}; the transcript is complete."
                  for f in job.failures]
        lines.append("")
    if job.summary is not None:
        lines += ["## Summary", "", *md.value(job.summary, bullets=True), ""]
    if speakers:
        lines += ["## Speakers", "", *_speakers(job.transcription), ""]
    lines += ["## Transcript", "", *transcript_lines(job.transcription), ""]
    if job.translations:
        lines += ["## Translations", ""]
        for translation in job.translations:
            lines += [f"### {md.inline(translation.lang)}", "",
                      *transcript_lines(translation.transcription), ""]
    addons: list[tuple[str, AddonResults[Any] | None, Callable[[Any], list[str]]]] = [
        ("Sentiment", job.sentiment, partial(_sentiment, job.transcription)),
        ("Named entities", job.entities, _entities),
        ("Answers", job.answers, _answers),
    ]
    for heading, results, render_block in addons:
        if results is not None:
            block_lines = render_block(results)
            if block_lines:
                lines += [f"## {heading}", "", *block_lines, ""]
    return utf8_text("\n".join(lines).rstrip("\n") + "\n")


def render_md(job: Mapping[str, Any], *, title: str | None = None) -> str:
    """A readable Markdown report: details, notes, summary, speakers, transcript, add-ons."""
    return render(read_job(job), title)


def _details(job: Job, speakers: Sequence[int]) -> list[str]:
    rows: list[tuple[str, str]] = [("Duration", md.clock(job.duration))]
    languages = job.transcription.languages
    if languages:
        rows.append(("Language" if len(languages) == 1 else "Languages",
                     ", ".join(md.inline(x) for x in languages)))
    if speakers:
        rows.append(("Speakers", str(len(speakers))))
    addons = [flag.replace("_", " ") for flag in _ADDON_FLAGS if flag in job.enabled]
    if addons:
        rows.append(("Add-ons", ", ".join(addons)))
    if job.redaction is not None:
        bits = [md.inline(job.redaction.kinds)] if job.redaction.kinds else []
        bits.append(f"shown as {md.inline(job.redaction.shown)}")
        rows.append(("Personal data", "redacted by Gladia in this transcript and every output "
                     f"({'; '.join(bits)})"))
    if job.id:
        request = f" (request `{job.request_id}`)" if job.request_id else ""
        rows.append(("Job", f"`{job.id}`{request}"))
    if job.completed_at:
        rows.append(("Completed", md.inline(job.completed_at)))
    return [f"- **{label}:** {value}" for label, value in rows]


def _speakers(transcription: Transcription) -> list[str]:
    talk: dict[int, float] = {}
    turns: dict[int, int] = {}
    for utterance in transcription.utterances:
        speaker = utterance.speaker
        if speaker is None:
            continue
        talk[speaker] = talk.get(speaker, 0.0) + (utterance.end - utterance.start)
        turns[speaker] = turns.get(speaker, 0) + 1
    total = sum(talk.values()) or 1.0
    lines = ["| Speaker | Speaking time | Share | Turns |", "|---|---|---|---|"]
    for speaker in sorted(talk):
        lines.append(f"| {md.cell(transcription.label(speaker))} | {md.clock(talk[speaker])} | "
                     f"{round(100 * talk[speaker] / total)}% | {turns[speaker]} |")
    return lines


def transcript_lines(transcription: Transcription) -> list[str]:
    lines: list[str] = []
    diarized = transcription.diarized
    for utterance in transcription.utterances:
        text = md.inline(utterance.text)
        if not text:
            continue
        label = md.inline(transcription.label(utterance.speaker)) if diarized else ""
        stamp = f"[{md.clock(utterance.start)}]"
        lines += [f"**{stamp} {label}:** {text}" if label else f"**{stamp}** {text}", ""]
    if not lines:
        full = transcription.full_transcript.strip()
        lines = [*md.paragraphs(full), ""] if full else ["_No speech was recognised._", ""]
    return lines[:-1]


def _sentiment(transcription: Transcription, block: AddonResults[Sentiment]) -> list[str]:
    if block.rows is None:
        return md.value(block.results)
    lines = ["| Time | Speaker | Sentiment | Emotion | Text |", "|---|---|---|---|---|"]
    for row in block.rows:
        lines.append(
            f"| {md.clock(row.start)} | {md.cell(transcription.label(row.speaker))} | "
            f"{md.cell(row.sentiment)} | {md.cell(row.emotion)} | {md.cell(row.text)} |"
        )
    return lines


def _entities(block: AddonResults[Entity]) -> list[str]:
    if block.rows is None:
        return md.value(block.results)
    lines = ["| Type | Text | Time |", "|---|---|---|"]
    for row in block.rows:
        lines.append(f"| {md.cell(row.entity_type)} | {md.cell(row.text)} | "
                     f"{md.clock(row.start)} |")
    return lines


def _answers(block: AddonResults[Answer]) -> list[str]:
    lines: list[str] = []
    for answer in block.rows or ():
        lines += [f"### {md.inline(answer.prompt)}", "",
                  *md.value(answer.response, bullets=True), ""]
    if not lines and block.results:
        return md.raw(block.results)
    return lines[:-1]
