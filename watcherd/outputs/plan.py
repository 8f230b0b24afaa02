"""Which files a job produces: one per format, the translations, and the summary.

One plan serves both :func:`output_paths` (what would be written) and
:func:`watcherd.outputs.writing.write_outputs` (what is written), so the two never disagree.
With ``subtitle_names = "media"`` the transcript's subtitles are NAME.<lang>.srt/.vtt (the
detected language), as Jellyfin, Plex, Kodi and Bazarr look for them; a translation into that
same language then keeps only its NAME.<lang>.txt, so no file is written twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import watcherd.outputs.note as note
import watcherd.outputs.summary as summary
from watcherd.outputs.facts import Facts
from watcherd.outputs.formats import ALWAYS_TRANSLATED, RENDERERS, TRANSLATED, checked_formats
from watcherd.outputs.job import Job, read_job
from watcherd.outputs.naming import with_suffix
from watcherd.outputs.settings import OutputSettings

# The formats named after the language with subtitle_names = "media".
_MEDIA_FORMATS = ("srt", "vtt")


@dataclass(frozen=True)
class Planned:
    """One output of a job: its suffix (such as "srt" or "fr.txt") and how to render it."""

    suffix: str
    render: Callable[[], str]


def plan(job: Job, wanted: Sequence[str], title: str | None,
         settings: OutputSettings | None = None, facts: Facts | None = None) -> list[Planned]:
    """Every output of ``job`` for the (checked) formats ``wanted``, in writing order."""
    settings = settings or OutputSettings()
    job = job.named(dict(settings.speakers))
    media = settings.subtitle_names == "media" and job.language is not None
    planned: list[Planned] = []
    for fmt in wanted:
        suffix = f"{job.language}.{fmt}" if media and fmt in _MEDIA_FORMATS else fmt
        if fmt == "md":
            render = partial(note.render, job, title, facts or Facts(), settings.md_template)
        else:
            render = partial(RENDERERS[fmt], job, title)
        planned.append(Planned(suffix, render))
    taken = {p.suffix for p in planned}
    planned += [p for p in _translation_plan(job, wanted) if p.suffix not in taken]
    if job.summary is not None:
        planned.append(Planned(summary.SUMMARY_SUFFIX, partial(summary.render, job, title)))
    return planned


def _translation_plan(job: Job, formats: Sequence[str]) -> list[Planned]:
    """The translation outputs: NAME.<lang>.txt for each, and srt/vtt when asked for."""
    planned: list[Planned] = []
    for translation in job.translations:
        for fmt, render in TRANSLATED.items():
            if fmt == ALWAYS_TRANSLATED or fmt in formats:
                planned.append(Planned(f"{translation.lang}.{fmt}",
                                       partial(render, translation.transcription)))
    return planned


def output_paths(base: Path, formats: Sequence[str] | OutputSettings,
                 job: Mapping[str, Any]) -> list[Path]:
    """Every path :func:`write_outputs` would write for this job (add-ons too), unwritten."""
    settings = OutputSettings.of(formats)
    read = read_job(job)
    wanted = checked_formats(settings.formats)
    return [with_suffix(base, p.suffix) for p in plan(read, wanted, None, settings)]


def render_translations(job: Mapping[str, Any], formats: Sequence[str]) -> dict[str, str]:
    """Each usable translation rendered: suffix like "fr.txt" or "fr.srt" -> text."""
    return {p.suffix: p.render() for p in _translation_plan(read_job(job), formats)}
