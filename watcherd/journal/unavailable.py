"""Whether an error from the journal's storage means "the journal cannot be written now".

One place decides it for every backend: a full disk, a file system remounted read-only, an
I/O error, a database server that went away or filled up. Such an error is not any one
file's fault, and it passes when the storage comes back, so the worker pauses all work and
retries (see :mod:`watcherd.worker`) instead of failing or setting aside the file whose write
happened to hit it. Every other error stays that call's own.
"""

from __future__ import annotations

import errno
import sqlite3

from watcherd.errors import JournalError

__all__ = [
    "PG_UNREACHABLE",
    "STORAGE_ERRNOS",
    "JournalUnavailable",
    "errno_reason",
    "postgres_reason",
    "sqlite_reason",
]


class JournalUnavailable(JournalError):
    """The journal cannot be written now; ``reason`` says why in a person's words.

    ``reason`` names no path, host or secret, so it may be shown on the unauthenticated
    ``/healthz``; ``detail`` is the storage's own message (secrets cut out), for the log only.
    """

    def __init__(self, reason: str, *, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


#: errno values of a storage that cannot take writes now (not a bug, not one file's problem).
STORAGE_ERRNOS: dict[int, str] = {
    errno.ENOSPC: "the journal's disk is full",
    errno.EDQUOT: "the journal's disk quota is used up",
    errno.EROFS: "the journal's file system is read-only",
    errno.EIO: "the journal's disk reports I/O errors",
    errno.ENXIO: "the journal's device is gone",
    errno.ENODEV: "the journal's device is gone",
    errno.ESTALE: "the journal's network file system dropped the file (stale handle)",
}

# SQLite's primary result codes (the low byte of an extended code) that mean the storage,
# not the statement: https://www.sqlite.org/rescode.html
_SQLITE_CODES: dict[int, str] = {
    sqlite3.SQLITE_FULL: "the journal's disk is full",
    sqlite3.SQLITE_READONLY: "the journal's file system is read-only (or the file is)",
    sqlite3.SQLITE_IOERR: "the journal's disk reports I/O errors",
    sqlite3.SQLITE_CANTOPEN: "the journal's files cannot be opened (its folder is gone or "
                             "not writable)",
}

#: What a person does about it, added to every reason.
_WHAT_TO_DO = "free space or fix the disk; watcherd resumes by itself once it can write"


def errno_reason(code: int | None) -> str | None:
    """The reason for an OS error number that means the journal's storage is away, or None."""
    if code is None:
        return None
    what = STORAGE_ERRNOS.get(code)
    return None if what is None else f"{what} ({errno.errorcode.get(code, code)}); {_WHAT_TO_DO}"


def sqlite_reason(exc: BaseException) -> str | None:
    """The reason for a SQLite error that means the journal cannot be written, or None.

    Decided by SQLite's result code, never by message text. An OSError (opening a file beside
    the journal) is decided by its errno.
    """
    if isinstance(exc, OSError):
        return errno_reason(exc.errno)
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return None
    what = _SQLITE_CODES.get(code & 0xFF)
    if what is None:
        return None
    name = getattr(exc, "sqlite_errorname", None) or f"SQLite code {code}"
    return f"{what} ({name}); {_WHAT_TO_DO}"


# SQLSTATE classes and codes of a server that is away, full or refusing writes:
# https://www.postgresql.org/docs/current/errcodes-appendix.html
_PG_CLASSES: dict[str, str] = {
    "08": "the journal database cannot be reached (connection lost)",
    "53": "the journal database ran out of resources (disk full, memory, connections)",
    "58": "the journal database reports a system or I/O error",
}
_PG_CODES: dict[str, str] = {
    "53100": "the journal database's disk is full",
    "57P01": "the journal database is shutting down",
    "57P02": "the journal database crashed and is restarting",
    "57P03": "the journal database is starting up and not accepting connections yet",
    "25006": "the journal database is read-only (a standby, or default_transaction_read_only)",
}
_PG_WHAT_TO_DO = ("start the database or free its disk; watcherd resumes by itself once it "
                  "can write")
#: The reason when the database cannot be reached at all.
PG_UNREACHABLE = f"the journal database cannot be reached (connection lost); {_PG_WHAT_TO_DO}"


def postgres_reason(exc: BaseException) -> str | None:
    """The reason for a psycopg error that means the journal cannot be written, or None.

    An error with an SQLSTATE is decided by it. One without (psycopg raises those when the
    connection broke or could not be made) is unavailable when it is an OperationalError or
    an InterfaceError (a closed connection), never any other class: a bug in a statement
    must stay visible.
    """
    try:
        import psycopg
    except ImportError:  # no driver, no PostgreSQL journal: nothing of it can fail here
        return None
    if not isinstance(exc, psycopg.Error):
        return errno_reason(exc.errno) if isinstance(exc, OSError) else None
    sqlstate = exc.sqlstate
    if sqlstate:
        what = _PG_CODES.get(sqlstate) or _PG_CLASSES.get(sqlstate[:2])
        return None if what is None else f"{what} (SQLSTATE {sqlstate}); {_PG_WHAT_TO_DO}"
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return PG_UNREACHABLE
    return None
