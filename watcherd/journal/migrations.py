"""The journal's migrations: numbered plain SQL files, one folder per database.

``sql/sqlite/NNNN_name.sql`` and ``sql/postgres/NNNN_name.sql`` are applied in order; a
journal records the last one it has (SQLite: ``PRAGMA user_version``; PostgreSQL: the
``schema_version`` table). Changing the schema is adding the next file to both folders; the
connectors only decide how a step is run atomically (a transaction around each file).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from importlib import resources
from typing import Literal

__all__ = ["Migration", "load", "statements"]

Dialect = Literal["sqlite", "postgres"]


@dataclass(frozen=True, order=True)
class Migration:
    """One numbered step: ``version`` (1, 2, ...), its file ``name`` and SQL ``text``."""

    version: int
    name: str
    text: str


def load(dialect: Dialect) -> tuple[Migration, ...]:
    """The numbered files of ``sql/<dialect>``, in order; they must be numbered 1..n."""
    folder = resources.files("watcherd.journal") / "sql" / dialect
    found = sorted(
        Migration(int(entry.name[:4]), entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql") and entry.name[:4].isdigit()
    )
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        # A packaging mistake, not a user's: fail loudly at import rather than half-migrate.
        raise RuntimeError(f"{dialect} journal migrations are not numbered 1..n: {versions}")
    return tuple(found)


def statements(text: str) -> list[str]:
    """Split a SQLite script into statements, so each runs inside the caller's transaction.

    (``executescript`` would commit first, and a step must be all or nothing.)
    """
    out: list[str] = []
    pending = ""
    for line in text.splitlines(keepends=True):
        if not pending and line.lstrip().startswith("--"):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip():
        raise RuntimeError(f"an unfinished SQL statement in a migration: {pending.strip()[:60]}")
    return out
