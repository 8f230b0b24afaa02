"""Which files a job produces: one per format, the translations, and the summary.

One plan serves both :func:`output_paths` (what would be written) and
:func:`watcherd.outputs.writing.write_outputs` (what is written), so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import watcherd.outputs.summary as summary
from watcherd.outputs.formats import ALWAYS_TRANSLATED, RENDERERS, TRANSLATED, checked_formats
from watcherd.outputs.job import Job, read_job
from watcherd.outputs.naming import with_suffix


@dataclass(frozen=True)
class Planned:
    """One output of a job: its suffix (such as "srt" or "fr.txt") and how to render it."""

    suffix: str
    render: Callable[[], str]


def plan(job: Job, wanted: Sequence[str], title: str | None) -> list[Planned]:
    """Every output of ``job`` for the (checked) formats ``wanted``, in writing order."""
    planned = [Planned(fmt, partial(RENDERERS[fmt], job, title)) for fmt in wanted]
    planned += translation_plan(job, wanted)
    if job.summary is not None:
        planned.append(Planned(summary.SUMMARY_SUFFIX, partial(summary.render, job, title)))
    return planned


def translation_plan(job: Job, formats: Sequence[str]) -> list[Planned]:
    """The translation outputs: NAME.<lang>.txt for each, and srt/vtt when asked for."""
    planned: list[Planned] = []
    for translation in job.translations:
        for fmt, render in TRANSLATED.items():
            if fmt == ALWAYS_TRANSLATED or fmt in formats:
                planned.append(Planned(f"{translation.lang}.{fmt}",
                                       partial(render, translation.transcription)))
    return planned


def output_paths(base: Path, formats: Sequence[str], job: Mapping[str, Any]) -> list[Path]:
    """Every path :func:`write_outputs` would write for this job (add-ons too), unwritten."""
    read = read_job(job)
    wanted = checked_formats(formats)
    return [with_suffix(base, p.suffix) for p in plan(read, wanted, None)]


def render_translations(job: Mapping[str, Any], formats: Sequence[str]) -> dict[str, str]:
    """Each usable translation rendered: suffix like "fr.txt" or "fr.srt" -> text."""
    return {p.suffix: p.render() for p in translation_plan(read_job(job), formats)}
