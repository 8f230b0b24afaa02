"""Markdown pieces shared by NAME.md and NAME.summary.md: text that renders literally."""

from __future__ import annotations

import os
import re

from watcherd.display import utf8_text
from watcherd.outputs.job import Job
from watcherd.outputs.jsondoc import json_text

# Markdown characters that would change how transcript text renders.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
_MD_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+[.)])")
_BULLET = re.compile(r"^[-*\u2022]\s+")


def inline(text: str) -> str:
    """``text`` on one line, its Markdown characters escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def cell(value: object) -> str:
    """A table cell: a string escaped, any other JSON value as its JSON text."""
    return inline(value if isinstance(value, str) else json_text(value))


def paragraphs(text: str, *, bullets: bool = False) -> list[str]:
    """Plain text as Markdown paragraphs that render literally (bullet lines kept if asked)."""
    out: list[str] = []
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            if out and out[-1]:
                out.append("")
            continue
        if bullets and _BULLET.match(line):
            out.append("- " + inline(_BULLET.sub("", line)))
            continue
        escaped = inline(line)
        out.append(_MD_LINE_START.sub(r"\1\\\2", escaped))
        if not bullets:
            out.append("")
    while out and not out[-1]:
        out.pop()
    return out


def raw(value: object) -> list[str]:
    """A value whose shape we do not know, kept as JSON in a fenced block."""
    text = json_text(value, indent=2)
    fence = "```"
    while fence in text:
        fence += "`"
    return [f"{fence}json", text, fence]


def value(given: object, *, bullets: bool = False) -> list[str]:
    """An add-on's text as paragraphs, or any other JSON value as a fenced block."""
    return paragraphs(given, bullets=bullets) if isinstance(given, str) else raw(given)


def clock(seconds: float) -> str:
    """A time as M:SS or H:MM:SS, for people."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def source_name(job: Job, fallback: str | None) -> str:
    """The recording's name for a heading: the uploaded file's, else ``fallback``'s."""
    return job.filename or (_readable_name(fallback) if fallback else "") or "Transcript"


def _readable_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 become U+FFFD, like a file manager shows."""
    try:
        return os.fsencode(name).decode("utf-8", errors="replace")
    except UnicodeEncodeError:
        return utf8_text(name)

