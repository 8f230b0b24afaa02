"""The journal's SQL, by name: ``sql/queries.sql`` read once, fitted to each database.

Every statement the journal runs is written once there (procrastinate's ``sql/queries.sql``
is the model). A block starts with ``-- name: NAME`` (for both databases) or ``-- name: NAME
(postgres)`` (what only that database has). Parameters are ``:name`` (SQLite's own style;
turned into psycopg's ``%(name)s`` here). ``{ACTIVE_STATES}`` and the other state sets are
filled from :mod:`watcherd.journal._base`, so no state list is written in SQL; the few places
where the databases really differ are named fragments (:data:`FRAGMENTS`), filled per dialect.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from watcherd.journal._base import ACTIVE_STATES, IN_FLIGHT_STATES, REMOTE_STATES, WAKE_STATES

__all__ = ["FRAGMENTS", "QUERIES", "Dialect", "Queries", "adapt", "parse"]

Dialect = Literal["sqlite", "postgres"]
_DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgres")

_HEADER = re.compile(r"^-- name: (\w+)(?: \((\w+)\))?\s*$", re.MULTILINE)
# A parameter, never PostgreSQL's ``::type`` cast.
_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_TOKEN = re.compile(r"\{([A-Z_]+)(?::(\w+))?\}")
_STATE_SETS: dict[str, tuple[str, ...]] = {
    "ACTIVE_STATES": ACTIVE_STATES,
    "REMOTE_STATES": REMOTE_STATES,
    "IN_FLIGHT_STATES": IN_FLIGHT_STATES,
    "WAKE_STATES": WAKE_STATES,
}


# The server's clock in epoch seconds: leases use it, so nodes whose clocks disagree still
# agree on when a lease ran out.
_PG_NOW = "extract(epoch from clock_timestamp())::float8"

#: Where the databases really differ, by fragment name: ``{NAME}`` or ``{NAME:ARG}``.
FRAGMENTS: dict[Dialect, dict[str, str]] = {
    "sqlite": {
        # SQLite has no arrays: a list parameter arrives as JSON text (SQLiteJournal._params).
        # json_each ends a text at a NUL, and a path that is not UTF-8 is stored behind a NUL
        # mark (stored.encode_path): such an item arrives marked with U+0001 instead (no
        # journal path begins with it: the others are absolute) and gets its NUL back here.
        "ANY": "IN (SELECT CASE WHEN substr(value, 1, 1) = char(1)"
               " THEN char(0) || substr(value, 2) ELSE value END FROM json_each(:{arg}))",
        # BEGIN IMMEDIATE already holds the whole file's write lock.
        "FOR_UPDATE": "",
        # The planner is told which partial index answers the worker's queue.
        "INDEXED_BY": "INDEXED BY {arg}",
        # One writer: nobody else holds leases.
        "LEASE_FREE": "",
        # One machine: every device and inode number is this one's.
        "STAT_NODE": "",
    },
    "postgres": {
        "ANY": "= ANY(:{arg})",
        "FOR_UPDATE": "FOR UPDATE",
        "INDEXED_BY": "",
        # A source another node holds a live lease on is not this node's to do.
        "LEASE_FREE": f"AND (node IS NULL OR lease_until IS NULL OR lease_until <= {_PG_NOW}"
                      " OR node = :me)",
        "SERVER_NOW": _PG_NOW,
        # Whose device and inode numbers these are (another node's mean nothing here).
        "STAT_NODE": "stat_node = :node,",
    },
}


def _fill(dialect: Dialect, match: re.Match[str]) -> str:
    name, arg = match.group(1), match.group(2)
    states = _STATE_SETS.get(name)
    if states is not None:
        return "(" + ",".join(f"'{state}'" for state in states) + ")"
    return FRAGMENTS[dialect][name].format(arg=arg)


@functools.lru_cache(maxsize=1024)
def adapt(dialect: Dialect, text: str) -> str:
    """A statement written for both (``:name``, ``{FRAGMENT}``) as ``dialect`` runs it.

    Cached: statements built at run time repeat (one ``UPDATE`` per set of columns changed),
    and each file on its way to the queue runs several.
    """
    text = _TOKEN.sub(lambda m: _fill(dialect, m), text)
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
    return {d: Queries(d, {n: adapt(d, s) for n, s in (shared | variants[d]).items()})
            for d in _DIALECTS}


QUERIES = parse(
    (resources.files("watcherd.journal") / "sql" / "queries.sql").read_text(encoding="utf-8")
)
