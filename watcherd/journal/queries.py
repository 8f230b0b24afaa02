"""The journal's SQL, by name: ``sql/queries.sql`` read once, fitted to each database.

Every statement the journal runs on both databases is written once there (procrastinate's
``sql/queries.sql`` is the model). A block starts with ``-- name: NAME`` (for both databases)
or ``-- name: NAME (sqlite)`` / ``(postgres)`` (a variant, only where the two really differ).
Parameters are ``:name`` (SQLite's own style; turned into psycopg's ``%(name)s`` here), and
``{STATE_SET}`` is filled with a state tuple of :mod:`watcherd.journal._base`, so no state
list is written in SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from watcherd.journal._base import ACTIVE_STATES, IN_FLIGHT_STATES, REMOTE_STATES, WAKE_STATES

__all__ = ["QUERIES", "Dialect", "Queries", "parse"]

Dialect = Literal["sqlite", "postgres"]
_DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgres")

_HEADER = re.compile(r"^-- name: (\w+)(?: \((\w+)\))?\s*$", re.MULTILINE)
# A parameter, never PostgreSQL's ``::type`` cast.
_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_STATE_SET = re.compile(r"\{([A-Z_]+)\}")
_STATE_SETS: dict[str, tuple[str, ...]] = {
    "ACTIVE_STATES": ACTIVE_STATES,
    "REMOTE_STATES": REMOTE_STATES,
    "IN_FLIGHT_STATES": IN_FLIGHT_STATES,
    "WAKE_STATES": WAKE_STATES,
}


def _states(match: re.Match[str]) -> str:
    return "(" + ",".join(f"'{state}'" for state in _STATE_SETS[match.group(1)]) + ")"


def _for(dialect: Dialect, text: str) -> str:
    text = _STATE_SET.sub(_states, text)
    if dialect == "postgres":
        text = _PARAM.sub(r"%(\1)s", text.replace("%", "%%"))
    return text


@dataclass(frozen=True)
class Queries:
    """The statements of one dialect, by name."""

    dialect: Dialect
    by_name: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.by_name[name]


def parse(text: str) -> dict[Dialect, Queries]:
    """Split a queries file into each dialect's statements (a variant wins over the shared)."""
    shared: dict[str, str] = {}
    variants: dict[Dialect, dict[str, str]] = {d: {} for d in _DIALECTS}
    heads = list(_HEADER.finditer(text))
    for head, following in zip(heads, [*heads[1:], None], strict=True):
        body = text[head.end():following.start() if following else len(text)]
        lines = [ln for ln in body.splitlines() if ln.strip() and not ln.lstrip().startswith("--")]
        sql = " ".join(ln.strip() for ln in lines).rstrip(";")
        name, dialect = head.group(1), head.group(2)
        if dialect is None:
            shared[name] = sql
        elif dialect in _DIALECTS:
            variants[dialect][name] = sql
        else:
            raise ValueError(f"queries.sql: unknown dialect {dialect!r} for {name}")
    return {d: Queries(d, {n: _for(d, s) for n, s in (shared | variants[d]).items()})
            for d in _DIALECTS}


QUERIES = parse(
    (resources.files("watcherd.journal") / "sql" / "queries.sql").read_text(encoding="utf-8")
)
