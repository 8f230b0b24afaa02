"""The SQLite journal: one file that holds every source's state and every transition.

The default backend, embedded, with one writer process (a lock file beside the journal).
WAL mode; intents and results are fsynced, bulk bookkeeping is not (see ``_transaction``).
A connector: the logic is :class:`~watcherd.journal.sqljournal.SQLJournal`'s, the statements
are in ``sql/queries.sql``; here are the file, its lock, pragmas and how a numbered migration
(``sql/sqlite/NNNN_*.sql``, see :mod:`watcherd.journal.migrations`) is applied.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import operator
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import structlog

from watcherd.errors import JournalError
from watcherd.journal import migrations
from watcherd.journal._base import (
    JournalCorrupt,
    JournalLocked,
    JournalNotReady,
    JournalSpace,
    Source,
)
from watcherd.journal.queries import QUERIES, adapt
from watcherd.journal.sqljournal import SQLJournal, assignments, insert_source
from watcherd.journal.stored import (
    PATH_COLUMNS,
    SOURCE_FIELDS,
    column_value,
    decode_path,
    encode_path,
    safe_text,
)
from watcherd.journal.unavailable import sqlite_reason

MIGRATIONS = migrations.load("sqlite")
SCHEMA_VERSION = len(MIGRATIONS)
# The WAL is checkpointed every 1,000 pages (SQLite's default, said here on purpose) and cut
# back to this size after a checkpoint, so a burst of writes never leaves a huge file behind.
WAL_LIMIT_BYTES = 64 << 20
# Free pages returned to the file system per upkeep step (incremental auto-vacuum), and how
# many may stay free for new rows to reuse.
_VACUUM_PAGES = 512
KEEP_FREE_PAGES = 1024
# Per table (dbstat reads every page) without being asked to (status) only below this size.
_DETAIL_UP_TO = 512 << 20
_log = structlog.get_logger("watcherd.journal")
# Where the path columns are among a Source's fields (they are decoded on reading).
_PATH_INDEXES = tuple(i for i, name in enumerate(SOURCE_FIELDS) if name in PATH_COLUMNS)


@functools.cache
def _picker(columns: tuple[str, ...]) -> Callable[[sqlite3.Row], list[Any]]:
    """A row of these columns (in this order) as a Source's field values, in field order.

    A journal's column order is its history's (a migration appends columns), so the places
    are looked up by name, once per layout.
    """
    pick = operator.itemgetter(*(columns.index(name) for name in SOURCE_FIELDS))
    return lambda row: list(pick(row))


def _listed(item: Any) -> Any:
    """An item of a list parameter as json_each can hand it back whole."""
    if isinstance(item, str) and item.startswith("\x00"):
        return "\x01" + item[1:]
    return item


class SQLiteJournal(SQLJournal):
    """The SQLite journal. Open it with :meth:`open`; close it with :meth:`close`."""

    dialect = "sqlite"

    def __init__(self, path: Path, conn: sqlite3.Connection, lock_fd: int | None, *,
                 readonly: bool = False) -> None:
        super().__init__()
        self.path = path
        self.readonly = readonly
        self._conn: sqlite3.Connection = conn
        self._lock_fd = lock_fd

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    def open(  # type: ignore[override]  # a factory for a file path only
        cls, path: Path, *, exclusive: bool = False, readonly: bool = False,
    ) -> SQLiteJournal:
        """Open (creating and migrating if needed) the journal at ``path``.

        ``exclusive`` takes the journal's lock file so that only one worker drives it; a second
        one gets :class:`JournalLocked`. ``readonly`` opens an existing journal for inspection.
        """
        lock_fd = None
        try:
            if readonly:
                if not path.exists():
                    raise JournalError(
                        f"no journal at {path} yet: start `watcherd run` (or `watcherd "
                        "transcribe FILE`) first, or pass the --config that names your journal"
                    )
                conn = sqlite3.connect(
                    f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=10
                )
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                if exclusive:
                    lock_fd = _take_lock(path)
                # Owner-only: the journal holds job results, which may carry private text.
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
                conn = sqlite3.connect(str(path), isolation_level=None, timeout=10)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 10000")
            if not readonly:
                if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
                    # A new file: free pages go back to the file system bit by bit (reclaim).
                    # Only possible before the first table; older journals switch through
                    # `watcherd journal compact` (a full VACUUM).
                    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA wal_autocheckpoint = 1000")
                conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
                conn.execute("PRAGMA synchronous = FULL")
                if exclusive and not _stopped_cleanly(conn):
                    # Only after a crash: a full check is linear in the journal's size, and a
                    # clean stop left nothing half-written (the daemon re-checks in the
                    # background once it is ready; `watcherd doctor` checks on demand).
                    _check_integrity(conn)
                _migrate(conn)
                if exclusive:
                    _mark_clean(conn, False)
            else:
                _check_version(conn, path)
        except sqlite3.DatabaseError as exc:
            if lock_fd is not None:
                os.close(lock_fd)
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise JournalError(f"the journal {path} is busy ({exc}); try again") from exc
            raise JournalCorrupt(
                f"the journal {path} cannot be read ({exc}); move it aside and restart, "
                "watcherd rebuilds what it can from the outputs"
            ) from exc
        except OSError as exc:
            if lock_fd is not None:
                os.close(lock_fd)
            raise JournalError(
                f"cannot open the journal {path}: {exc.strerror or exc}; check that its folder "
                "is writable or set [journal] path"
            ) from exc
        return cls(path, conn, lock_fd, readonly=readonly)

    def close(self) -> None:
        """Close the database and release the lock; a writer records that it stopped cleanly."""
        if self._lock_fd is not None:
            with contextlib.suppress(sqlite3.Error):
                _mark_clean(self._conn, True)
        self._conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def location(self) -> Path:
        """The journal file."""
        return self.path

    def integrity_problem(self) -> str | None:
        """SQLite's quick_check on a read-only connection (see :func:`check_integrity`)."""
        return check_integrity(self.path)

    def _unavailable_reason(self, exc: BaseException) -> str | None:
        if self.readonly and isinstance(exc, sqlite3.Error) and (
                getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY):
            return None  # opened read-only on purpose: a write through it is a bug
        return sqlite_reason(exc)

    def _table_missing(self, exc: BaseException) -> bool:
        # A column: results' doc_id, missing from a journal read before its migration.
        return isinstance(exc, sqlite3.OperationalError) and (
            "no such table" in str(exc) or "no such column" in str(exc))

    def _query_refused(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and (
            "fts5" in str(exc) or "syntax error" in str(exc))

    def probe_write(self) -> None:
        """One small fsynced write (a row of ``meta``): it fails while the disk does."""
        with self._transaction():
            self._set_meta("write_probe", repr(time.time()))

    def reclaim(self) -> None:
        """Checkpoint the WAL (and cut it back once it grew past its limit) and return a few
        free pages to the file system; cheap, so the daemon calls it every minute.

        Under steady load the automatic checkpoints can fall behind readers (the page,
        `watcherd status`); a PASSIVE one never waits for them, and a TRUNCATE one waits a
        moment at most, so the worker is never held up.
        """
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        wal = self.path.with_name(self.path.name + "-wal")
        with contextlib.suppress(OSError):
            if wal.stat().st_size > WAL_LIMIT_BYTES:
                self._conn.execute("PRAGMA busy_timeout = 200")
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    self._conn.execute("PRAGMA busy_timeout = 10000")
        auto = self._conn.execute("PRAGMA auto_vacuum").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        if auto == 2 and free > KEEP_FREE_PAGES:
            self._conn.execute(f"PRAGMA incremental_vacuum({min(_VACUUM_PAGES, free)})")

    def compact(self, progress: Callable[[float], None] = lambda done: None) -> tuple[int, int]:
        """A full VACUUM (``watcherd journal compact``): every free page given back, and
        incremental auto-vacuum switched on for a journal made before it existed. Closes the
        journal; returns (bytes before, bytes after). ``progress`` gets 0..1 as it goes.

        The compacted copy is written beside the journal (VACUUM INTO, so it needs only the
        compacted size free, not twice the journal in the temp folder) and renamed over it
        while this process holds the journal's lock. The journal leaves WAL mode first, so
        no WAL file is left that could be replayed into the new file.
        """
        if self._lock_fd is None:
            raise JournalError("compact needs the journal opened exclusively")
        conn, wal = self._conn, self.path.with_name(self.path.name + "-wal")
        before = self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        target = self.path.with_name(self.path.name + ".compacting")
        target.unlink(missing_ok=True)
        _mark_clean(conn, True)  # the copy is a cleanly stopped journal
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] != "delete":
            raise JournalError(
                f"another program is reading the journal {self.path} (`watcherd status`, the "
                "page of a daemon on another config?); close it and run compact again")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # the copy gets it
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        used = (conn.execute("PRAGMA page_count").fetchone()[0]
                - conn.execute("PRAGMA freelist_count").fetchone()[0]) * page

        def report() -> int:
            with contextlib.suppress(OSError):
                progress(min(1.0, target.stat().st_size / max(used, 1)))
            return 0  # go on

        conn.set_progress_handler(report, 2000)
        try:
            conn.execute("VACUUM INTO ?", (str(target),))
            with open(target, "rb") as copied:
                os.fsync(copied.fileno())
            conn.set_progress_handler(None, 0)
            conn.close()
            os.replace(target, self.path)
            _fsync_dir(self.path.parent)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
        progress(1.0)
        return before, self.path.stat().st_size

    def space(self, *, detail: bool = True) -> JournalSpace:
        """The file, its WAL and free pages; per table and all indexes (from SQLite's dbstat
        table when this SQLite has it, else the page counts only) when ``detail`` or the file
        is small enough to read quickly."""
        return measure_space(self._conn, self.path, detail=detail)

    @contextlib.contextmanager
    def _transaction(self, *, bulk: bool = False, notify: bool = False
                     ) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so a concurrent `watcherd retry` waits
        # instead of failing half way through. One process writes: nobody to notify.
        #
        # A bulk transaction (files seen, files hashed) is committed without its own fsync:
        # after a power cut it may be lost, which costs only a re-scan or a re-hash. Every
        # other transaction (each intent before a remote call, each result) is fsynced, and
        # its fsync makes the bulk ones before it durable too.
        if bulk:
            self._conn.execute("PRAGMA synchronous = NORMAL")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT (disk full, I/O error) can leave the transaction open, and
                # SQLite may already have rolled back after an error: roll back only what is
                # still open, and never let the rollback hide the error that caused it.
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                raise
        finally:
            if bulk:
                self._conn.execute("PRAGMA synchronous = FULL")

    # -- how values are stored -------------------------------------------------------------

    def _row(self, row: sqlite3.Row) -> Source:
        # Positional, through a picker made once per column layout: the worker reads every
        # file's row two or three times on its way to the queue (100,000 at a first start),
        # and a dict by name per row cost three times as much.
        values = _picker(tuple(row.keys()))(row)
        for index in _PATH_INDEXES:
            if values[index] is not None:
                values[index] = decode_path(values[index])
        return Source.from_values(values)

    def _enc(self, path: str) -> str:
        return encode_path(path)

    def _dec(self, stored: str) -> str:
        return decode_path(stored)

    def _text(self, text: str) -> str:
        return safe_text(text)

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        # SQLite has no arrays: a list goes in as JSON text, which the query reads back with
        # json_each (see sql/queries.sql), a NUL-marked path with U+0001 for its mark (the
        # ANY fragment in journal/queries.py puts the NUL back).
        return {k: json.dumps([_listed(item) for item in v]) if isinstance(v, list) else v
                for k, v in params.items()}

    # -- transitions ---------------------------------------------------------------------

    def _move(self, source: Source, state: str, *, actor: str, reason: str | None,
              fence: bool = False, **changes: Any) -> None:
        # ``fence`` guards leases, which a journal with one writer does not have.
        now = time.time()
        changes = {"state": state, "updated_at": now, **changes}
        self._run_text(f"UPDATE sources SET {assignments(changes)} WHERE id = :id", {
            "id": source.id,
            **{f"set_{name}": column_value(name, value) for name, value in changes.items()},
        })
        self._run("insert_event", source_id=source.id, at=now, from_state=source.state,
                  to_state=state, actor=safe_text(actor),
                  reason=None if reason is None else safe_text(reason))

    def _move_many(self, moves: Sequence[tuple[Source, dict[str, Any]]], state: str, *,
                   actor: str, reason: str) -> None:
        # A batch settled at once: one executemany for the rows and one for their events,
        # not two statements per row (issue 22 item 3).
        if not moves:
            return
        now = time.time()
        names = ["state", "updated_at", *moves[0][1]]
        text = adapt(self.dialect, f"UPDATE sources SET {assignments(dict.fromkeys(names))}"
                                   " WHERE id = :id")
        self._conn.executemany(text, [
            {"id": source.id, "set_state": state, "set_updated_at": now,
             **{f"set_{name}": column_value(name, value) for name, value in changes.items()}}
            for source, changes in moves
        ])
        actor, reason = safe_text(actor), safe_text(reason)
        self._conn.executemany(QUERIES[self.dialect]["insert_event"], [
            {"source_id": source.id, "at": now, "from_state": source.state, "to_state": state,
             "actor": actor, "reason": reason}
            for source, _ in moves
        ])

    def _create(self, path: str, root: str, state: str, *, now: float, actor: str,
                reason: str, **columns: Any) -> int | None:
        text, values = insert_source(path, root, state, now, columns)
        cur = self._run_text(text, values)
        if cur.rowcount == 0:
            return None
        source_id: int | None = cur.lastrowid
        assert source_id is not None
        self._run("insert_event", source_id=source_id, at=now, from_state=None,
                  to_state=state, actor=safe_text(actor), reason=reason)
        return source_id


def measure_space(conn: sqlite3.Connection, path: Path, *, detail: bool = True
                  ) -> JournalSpace:
    """What a SQLite journal takes: tables, their indexes together, free pages and the WAL."""
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0]) * page
    wal_path = path.with_name(path.name + "-wal")
    wal = wal_path.stat().st_size if wal_path.exists() else 0
    parts: dict[str, int] = {}
    how = "page counts"
    if detail or pages * page <= _DETAIL_UP_TO:
        try:
            rows = conn.execute(
                "SELECT s.name AS name, s.tbl_name AS tbl, s.type AS type, SUM(d.pgsize) AS size"
                " FROM dbstat d JOIN sqlite_schema s ON s.name = d.name GROUP BY d.name"
            ).fetchall()
        except sqlite3.OperationalError:
            rows = []  # this SQLite was built without the dbstat table
        for row in rows:
            key = "indexes" if row[2] == "index" else str(row[0])
            parts[key] = parts.get(key, 0) + int(row[3])
        how = "dbstat" if rows else how
    if not parts:
        parts["tables and indexes"] = pages * page - free
    parts["free pages"] = free
    parts["WAL"] = wal
    ordered = tuple(sorted(parts.items(), key=lambda kv: -kv[1]))
    return JournalSpace(pages * page + wal, ordered, how)


def open_or_recover(path: Path) -> SQLiteJournal:
    """Open the journal exclusively; a damaged one is moved aside (never overwritten).

    The fresh journal is then refilled by the startup scan, and finished work is recognised
    from the outputs next to each source (their NAME.json carries the content key), so nothing
    is transcribed or paid for again.
    """
    try:
        return SQLiteJournal.open(path, exclusive=True)
    except JournalCorrupt as exc:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            part = path.with_name(path.name + suffix)
            if part.exists():
                part.rename(aside.with_name(aside.name + suffix))
        log_corrupt(str(exc), aside)
        return SQLiteJournal.open(path, exclusive=True)


def log_corrupt(message: str, aside: Path) -> None:
    """Say loudly that the journal was moved aside, and where to."""
    _log.error(
        "journal_corrupt_moved_aside", error=message, moved_to=str(aside),
        hint="a new journal was started; finished files are recognised from their outputs",
    )


def _stopped_cleanly(conn: sqlite3.Connection) -> bool:
    """Whether the last writer closed the journal (a crash leaves the mark unset)."""
    try:
        row = conn.execute(QUERIES["sqlite"]["get_meta"], {"key": "clean_stop"}).fetchone()
    except sqlite3.OperationalError:
        return False  # no meta table yet: a new or older journal
    return row is not None and row[0] == "1"


def _mark_clean(conn: sqlite3.Connection, clean: bool) -> None:
    conn.execute(QUERIES["sqlite"]["set_meta"],
                 {"key": "clean_stop", "value": "1" if clean else "0"})


def check_integrity(path: Path) -> str | None:
    """Run SQLite's quick_check on a read-only connection; None when sound, else what failed.

    The daemon runs it in the background after a clean start, so a damaged page is still
    reported without delaying READY=1.
    """
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        return str(exc)
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        conn.close()
    return None if rows == ["ok"] else "; ".join(map(str, rows[:5]))


def _check_integrity(conn: sqlite3.Connection) -> None:
    row = conn.execute("PRAGMA quick_check").fetchone()
    if row is None or row[0] != "ok":
        raise sqlite3.DatabaseError(f"integrity check failed: {row[0] if row else 'no answer'}")


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _take_lock(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalLocked(
            f"another watcherd process is already using the journal {path}; stop it first "
            "(or give this one its own [journal] path)"
        ) from None
    return fd


def _check_version(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        raise JournalNotReady(f"the journal {path} is still being created; try again")
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"the journal {path} was written by a newer watcherd (schema {version}); "
            "upgrade watcherd"
        )


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to SCHEMA_VERSION, one numbered SQL file at a time.

    Each file runs in its own immediate transaction with its version number, so a crash in
    a step leaves the journal at the step before, and the next open runs it again.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"schema {version} is newer than this watcherd knows")
    for step in MIGRATIONS[version:]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations.statements(step.text):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {step.version}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
