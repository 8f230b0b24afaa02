"""NAME.summary.md: the summarization add-on's result, written whatever the formats."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import watcherd.outputs.markdown as md
from watcherd.display import utf8_text
from watcherd.outputs.job import Job, read_job

SUMMARY_SUFFIX: str = "summary.md"


def render(job: Job, title: str | None = None) -> str:
    """NAME.summary.md of a job that has a summary (``job.summary`` is not None)."""
    heading = f"# Summary of {md.inline(md.source_name(job, title))}"
    return utf8_text("\n".join([heading, "", *md.value(job.summary, bullets=True)]) + "\n")


def render_summary(job: Mapping[str, Any], *, title: str | None = None) -> str | None:
    """NAME.summary.md: the summarization add-on's result, or None when there is none."""
    read = read_job(job)
    return None if read.summary is None else render(read, title)
