"""Plain values the renderers take besides the job: a note template, and facts of a source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MdTemplate:
    """A user's template for NAME.md (``md_template``), read and checked at start."""

    path: Path
    text: str


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What the journal knows of a source that the job does not say: for NAME.md's front
    matter and a note template."""

    source: str = ""
    engine: str = ""
    #: The job's date, YYYY-MM-DD ("" when unknown).
    date: str = ""
