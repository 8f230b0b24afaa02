"""The journal: every source's state and every transition (design.md, invariant 1).

:class:`Journal` is the interface every backend implements; :func:`Journal.open` opens a SQLite
file or a PostgreSQL URL (chosen in :mod:`watcherd.journal.backends`). The logic is written
once in :mod:`watcherd.journal.sqljournal` against the named queries of ``sql/queries.sql``;
``sqlite.py`` and ``postgres.py`` are the connectors.
"""

from __future__ import annotations

from watcherd.journal._base import (
    ACTIVE_STATES,
    STATES,
    UNKNOWN_ID,
    CreateIntentHeld,
    FileStat,
    Journal,
    JournalCorrupt,
    JournalLocked,
    JournalNotReady,
    JournalSpace,
    LeaseLost,
    NodeNameTaken,
    PlanFull,
    Source,
    State,
    human_bytes,
)
from watcherd.journal.backends import open_journal
from watcherd.journal.sqlite import (
    SCHEMA_VERSION,
    SQLiteJournal,
    check_integrity,
    log_corrupt,
    open_or_recover,
)
from watcherd.journal.stored import decode_path, encode_path, safe_text
from watcherd.journal.unavailable import JournalUnavailable

__all__ = [
    "ACTIVE_STATES",
    "SCHEMA_VERSION",
    "STATES",
    "UNKNOWN_ID",
    "CreateIntentHeld",
    "FileStat",
    "Journal",
    "JournalCorrupt",
    "JournalLocked",
    "JournalNotReady",
    "JournalSpace",
    "JournalUnavailable",
    "LeaseLost",
    "NodeNameTaken",
    "PlanFull",
    "SQLiteJournal",
    "Source",
    "State",
    "check_integrity",
    "decode_path",
    "encode_path",
    "human_bytes",
    "log_corrupt",
    "open_journal",
    "open_or_recover",
    "safe_text",
]
