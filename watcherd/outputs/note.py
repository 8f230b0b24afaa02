"""NAME.md for notes apps: YAML front matter that Obsidian and Logseq read, or a user's template.

The front matter holds title, date, duration (seconds), language, speakers, engine, model,
job id and source path, written with ``yaml.safe_dump`` (quoting and escaping are PyYAML's,
so any title or path reads back as the same string). A ``md_template`` gets the same fields
as placeholders, plus ``{front_matter}`` (the block itself), ``{report}`` (the Markdown report
watcherd writes) and ``{transcript}`` (its transcript part alone).
"""

from __future__ import annotations

import os
from typing import Any

import yaml

import watcherd.outputs.markdown as markdown
import watcherd.outputs.md as md
from watcherd.display import utf8_text
from watcherd.outputs.facts import Facts, MdTemplate
from watcherd.outputs.job import Job
from watcherd.outputs.templates import fill

#: The front matter's keys, in the order written; each is a placeholder of md_template too.
_FRONT_MATTER_FIELDS: tuple[str, ...] = (
    "title", "date", "duration", "language", "speakers", "engine", "model", "job_id", "source",
)
#: Every placeholder a md_template may use.
TEMPLATE_FIELDS: tuple[str, ...] = (*_FRONT_MATTER_FIELDS, "front_matter", "report",
                                    "transcript")


def _readable_path(path: str) -> str:
    """A path as text: bytes that are not UTF-8 become U+FFFD (YAML holds only Unicode)."""
    try:
        return os.fsencode(path).decode("utf-8", errors="replace")
    except UnicodeEncodeError:
        return utf8_text(path)


def front_matter(job: Job, title: str | None, facts: Facts) -> dict[str, Any]:
    """The front matter's values (plain YAML types) of this job."""
    params = job.raw.get("request_params")
    model = params.get("model") if isinstance(params, dict) else None
    if not model:  # the local engine says which Whisper model in its own part of the job
        own = job.raw.get("watcherd")
        model = own.get("model") if isinstance(own, dict) else None
    given = job.raw.get("engine")
    engine = facts.engine or (given if isinstance(given, str) else "")
    transcription = job.transcription
    return {
        # One line, as the heading shows it (a file name may hold a newline).
        "title": " ".join(utf8_text(markdown.source_name(job, title)).split()),
        "date": facts.date or job.completed_at[:10] or None,
        "duration": round(job.duration, 1),
        "language": job.language,
        "speakers": [utf8_text(transcription.label(n)) for n in transcription.speakers],
        "engine": utf8_text(engine) or None,
        "model": utf8_text(model) if isinstance(model, str) and model else None,
        "job_id": utf8_text(job.id) or None,
        "source": _readable_path(facts.source) if facts.source else None,
    }


def _front_matter_block(values: dict[str, Any]) -> str:
    """The YAML block between ``---`` lines, as notes apps expect it at the top."""
    text = yaml.safe_dump(values, sort_keys=False, allow_unicode=True, default_flow_style=False,
                          width=1_000_000)
    return f"---\n{text}---\n"


def render(job: Job, title: str | None, facts: Facts, template: MdTemplate | None) -> str:
    """NAME.md: front matter then the report, or the user's template filled in."""
    values = front_matter(job, title, facts)
    block = _front_matter_block(values)
    report = md.render(job, title)
    if template is None:
        return f"{block}\n{report}"
    shown = {key: _shown(value) for key, value in values.items()}
    shown["duration"] = markdown.clock(job.duration)
    shown |= {"front_matter": block, "report": report,
              "transcript": "\n".join(md.transcript_lines(job.transcription)) + "\n"}
    return utf8_text(fill(template.text, shown))


def _shown(value: object) -> str:
    """A front matter value as template text: lists joined by ", ", none as ""."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def render_default(job: Job, title: str | None = None) -> str:
    """NAME.md with its front matter, for a source of which nothing more is known."""
    return render(job, title, Facts(), None)
