"""Transcript outputs: render a finished job as txt/json/srt/vtt/md and write them atomically.

A "job" is the full job object as ``GET /v2/pre-recorded/{id}`` returns it (the local engine
produces the same shape). It is read once, leniently, into typed form (:mod:`.job`); each
format's renderer (:mod:`.txt`, :mod:`.jsondoc`, :mod:`.srt`, :mod:`.vtt`, :mod:`.md`, listed
in :mod:`.formats`) turns that into text; :mod:`.plan` says which files a job produces;
:mod:`.writing` writes them atomically so a reader never sees half a transcript, and temp
files carry :data:`TEMP_MARKER` so the watcher never mistakes them (or the outputs, named by
:mod:`.naming`) for recordings.

Add-ons add their own files whatever the formats: ``NAME.<lang>.txt`` per translation and
``NAME.summary.md`` for a summary. An add-on that failed (``success: false``) is logged and
noted in ``NAME.md``; the transcript is written all the same. With PII redaction Gladia
redacts the transcription itself, so every output is already redacted.

Any source name works: outputs keep the raw stem (bytes that are not UTF-8 included), and a
stem too long for ``NAME.<lang>.txt`` plus the temp file to fit 255 bytes is shortened
deterministically (:func:`output_base`). Outputs take the source's read/write permission bits
(``mode=``). Any JSON-shaped job renders, replacing what cannot be encoded (U+FFFD in text,
``\\uXXXX`` in NAME.json), or is refused with a ValueError before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from watcherd.outputs.facts import Facts, MdTemplate
from watcherd.outputs.formats import FORMATS, RENDERERS, checked_formats
from watcherd.outputs.job import AddonFailure, addon_failures, read_job
from watcherd.outputs.jsondoc import render_json, scrub_job
from watcherd.outputs.md import render_md
from watcherd.outputs.naming import (
    BASE_MAX_BYTES,
    OUTPUT_SUFFIXES,
    TEMP_MARKER,
    Naming,
    base_fits,
    is_output_or_temp,
    naming_for,
    output_base,
    output_base_candidates,
    with_suffix,
)
from watcherd.outputs.plan import output_paths, render_translations
from watcherd.outputs.settings import OutputSettings
from watcherd.outputs.srt import render_srt
from watcherd.outputs.summary import SUMMARY_SUFFIX, render_summary
from watcherd.outputs.txt import render_txt
from watcherd.outputs.vtt import render_vtt
from watcherd.outputs.writing import atomic_write, file_mode, sweep_temp_files, write_outputs


def render(fmt: str, job: Mapping[str, Any]) -> str:
    """The job rendered in one of :data:`FORMATS`; ValueError for any other format."""
    checked_formats([fmt])
    return RENDERERS[fmt](read_job(job), None)


__all__ = [
    "BASE_MAX_BYTES",
    "FORMATS",
    "OUTPUT_SUFFIXES",
    "SUMMARY_SUFFIX",
    "TEMP_MARKER",
    "AddonFailure",
    "Facts",
    "MdTemplate",
    "Naming",
    "OutputSettings",
    "addon_failures",
    "atomic_write",
    "base_fits",
    "file_mode",
    "is_output_or_temp",
    "naming_for",
    "output_base",
    "output_base_candidates",
    "output_paths",
    "read_job",
    "render",
    "render_json",
    "render_md",
    "render_srt",
    "render_summary",
    "render_translations",
    "render_txt",
    "render_vtt",
    "scrub_job",
    "sweep_temp_files",
    "with_suffix",
    "write_outputs",
]
