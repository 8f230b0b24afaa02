"""The journal: every source's state and every transition (design.md, invariant 1).

:class:`Journal` is the interface every backend implements; :func:`Journal.open` opens the
default SQLite backend. A new backend is one module here implementing :class:`Journal`.
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
    LeaseLost,
    NodeNameTaken,
    PlanFull,
    Source,
    State,
    decode_path,
    encode_path,
    safe_text,
)
from watcherd.journal.sqlite import (
    SCHEMA_VERSION,
    SQLiteJournal,
    check_integrity,
    log_corrupt,
    open_or_recover,
)
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
    "log_corrupt",
    "open_or_recover",
    "safe_text",
]
