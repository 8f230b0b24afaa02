"""One line of a health report: how it stands, what was seen, and the fix.

`watcherd doctor` gathers them; engines contribute their own (the Gladia engine checks its key
and the API, for example) without knowing about the report around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Finding", "Level", "ok"]

Level = Literal["OK", "WARN", "FAIL"]


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report: how it stands, what was seen, and the fix if needed."""

    level: Level
    topic: str
    detail: str
    fix: str | None = None


def ok(topic: str, detail: str) -> Finding:
    """A finding that says all is well."""
    return Finding("OK", topic, detail)
