"""Copy a journal between backends (SQLite file to PostgreSQL and back) without re-paying.

Sources keep their ids, events, stored results, job times and finished jobs (hours used,
deletes wanted at Gladia), so the installation that moves
finds every finished file finished and every job in flight still known (a job id to poll, or
a maybe-created job to look up by its content key). Copying again is harmless: rows already
there are brought up to date, none is doubled. A destination that holds a different journal
(rows the source does not have) is refused, never merged into.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from watcherd.errors import JournalError
from watcherd.journal import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from watcherd.journal import Journal
from watcherd.journal.backends import is_postgres_url
from watcherd.journal.indexing import forget_indexed, index_stored
from watcherd.journal.queries import QUERIES, Dialect, adapt
from watcherd.journal.stored import (
    PATH_COLUMNS,
    SOURCE_FIELDS,
    column_value,
    decode_path,
    packed_job,
    pg_column_value,
    pg_local_path,
)

_SOURCE_COLUMNS = SOURCE_FIELDS
_EVENT_COLUMNS = ("id", "source_id", "at", "from_state", "to_state", "actor", "reason")
_RESULT_COLUMNS = ("content_key", "job_id", "job_json", "job_z", "created_at")
#: A copied result is written packed, by the journal's own store_result (job_json '').
_STORED_RESULT_COLUMNS = ("content_key", "job_id", "job_z", "created_at")
_JOB_TIME_COLUMNS = ("id", "at", "options_class", "audio_seconds", "seconds")
_REMOTE_JOB_COLUMNS = ("job_id", "engine", "watch_root", "content_key", "model",
                      "billing_seconds", "audio_seconds", "finished_at", "delete_wanted_at",
                      "delete_attempts", "next_delete_at", "deleted_at")
_FOLDED_COLUMNS = ("source_id", "first_seen", "done_at", "attempts", "last_error",
                  "folded_events", "folded_until")


@dataclass(frozen=True)
class JournalRows:
    """Everything a journal holds that a copy carries, paths as Python text (decoded)."""

    sources: tuple[dict[str, Any], ...]
    events: tuple[dict[str, Any], ...]
    results: tuple[dict[str, Any], ...]
    job_times: tuple[dict[str, Any], ...]
    remote_jobs: tuple[dict[str, Any], ...] = ()
    #: Summaries of events folded away (older than history_days).
    folded_history: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class CopyReport:
    """How many rows of each kind the destination now holds from the source."""

    sources: int
    events: int
    results: int
    job_times: int
    remote_jobs: int = 0


def copy_journal(src: str | Path, dst: str | Path, *,
                 roots: Mapping[str, str] | None = None) -> CopyReport:
    """Copy the journal at ``src`` into ``dst`` (each a SQLite file or a PostgreSQL URL).

    ``roots`` (``{watch id: local root}``, the config's watches) makes a PostgreSQL side hold
    paths relative to watch ids, as the nodes store them, and maps them back for SQLite.
    """
    roots = dict(roots or {})
    src_text, dst_text = str(src), str(dst)
    if src_text == dst_text or (
        not is_postgres_url(src_text) and not is_postgres_url(dst_text)
        and Path(dst_text).exists() and Path(src_text).resolve() == Path(dst_text).resolve()
    ):
        raise JournalError("the source and the destination of the copy are the same journal")
    rows = read_rows(src_text, roots=roots)
    if is_postgres_url(src_text):
        from watcherd.journal.postgres import redact_url

        src_text = redact_url(src_text)
    if is_postgres_url(dst_text):
        _write_pg(dst_text, rows, src_text, roots)
    else:
        _write_sqlite(Path(dst_text), rows, src_text)
    return CopyReport(len(rows.sources), len(rows.events), len(rows.results),
                      len(rows.job_times), len(rows.remote_jobs))


def read_rows(target: str, *, roots: Mapping[str, str] | None = None) -> JournalRows:
    """Read a whole journal in one consistent snapshot (paths local, through ``roots``)."""
    return (_read_pg(target, roots or {}) if is_postgres_url(target)
            else _read_sqlite(Path(target)))


def _decoded(row: dict[str, Any], decode: Any) -> dict[str, Any]:
    return {k: (decode(v) if k in PATH_COLUMNS and v is not None else v)
            for k, v in row.items()}


def _check_destination(conn: Any, dst_label: str, source_label: str, rows: JournalRows,
                       decode: Callable[[str], str]) -> None:
    """Refuse a destination that holds rows the source does not: it is another journal."""
    src_sources = {int(r["id"]): r["path"] for r in rows.sources}
    for r in conn.execute("SELECT id, path FROM sources"):
        source_id, path = int(r["id"]), decode(r["path"])
        if src_sources.get(source_id) != path:
            raise JournalError(
                f"{dst_label} already holds a different journal (its source {source_id}, "
                f"{path!r}, is not in {source_label}); copy into an empty database or a new "
                "file"
            )
    for table, copied in (("events", rows.events), ("job_times", rows.job_times)):
        if {int(r["id"]) for r in conn.execute(f"SELECT id FROM {table}")} - {
                int(r["id"]) for r in copied}:
            raise JournalError(
                f"{dst_label} was used after an earlier copy (it has events or job times "
                f"that {source_label} lacks); copy into an empty database or a new file"
            )


# -- both databases: the same statements on a sqlite3 or a psycopg connection ---------------


def _read_tables(conn: Any, dialect: Dialect, decode: Callable[[str], str]) -> JournalRows:
    """Every row of every table, in the caller's one snapshot, paths decoded."""
    sources = tuple(_decoded({k: r[k] for k in _SOURCE_COLUMNS}, decode)
                    for r in conn.execute(QUERIES[dialect]["all_sources"]))
    events, results, job_times, folded = (
        tuple(dict(r) for r in conn.execute(
            f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}"))
        for table, columns, order in (("events", _EVENT_COLUMNS, "id"),
                                      ("results", _RESULT_COLUMNS, "content_key"),
                                      ("job_times", _JOB_TIME_COLUMNS, "id"),
                                      ("folded_history", _FOLDED_COLUMNS, "source_id"))
    )
    remote_jobs = tuple(_decoded(dict(r), decode) for r in conn.execute(
        f"SELECT {', '.join(_REMOTE_JOB_COLUMNS)} FROM remote_jobs ORDER BY job_id"))
    # Packed job objects are carried byte for byte (both databases store the same bytes);
    # plain JSON text of an older journal is packed as it is: the copy is compact too.
    results = tuple({**r, "job_json": "", "job_z": packed_job(r["job_json"], r["job_z"])}
                    for r in results)
    return JournalRows(sources, events, results, job_times, remote_jobs, folded)


def _upsert(table: str, columns: tuple[str, ...], conflict: str) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)})"
            f" VALUES ({', '.join(':' + c for c in columns)}) ON CONFLICT {conflict}")


_SOURCE_UPDATES = ", ".join(f"{c} = excluded.{c}" for c in _SOURCE_COLUMNS if c != "id")
#: What a copy writes, in order, each row brought up to date or left as it is (a statement
#: of None: the journal's own query of that name).
_WRITES: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("sources", _SOURCE_COLUMNS, _upsert("sources", _SOURCE_COLUMNS,
                                         f"(id) DO UPDATE SET {_SOURCE_UPDATES}")),
    ("events", _EVENT_COLUMNS, _upsert("events", _EVENT_COLUMNS, "(id) DO NOTHING")),
    ("job_times", _JOB_TIME_COLUMNS, _upsert("job_times", _JOB_TIME_COLUMNS, "(id) DO NOTHING")),
    ("results", _STORED_RESULT_COLUMNS, None),
    ("folded_history", _FOLDED_COLUMNS, _upsert(
        "folded_history", _FOLDED_COLUMNS, "(source_id) DO UPDATE SET " + ", ".join(
            f"{c} = excluded.{c}" for c in _FOLDED_COLUMNS if c != "source_id"))),
    # A delete confirmed on either side stays confirmed.
    ("remote_jobs", _REMOTE_JOB_COLUMNS, _upsert(
        "remote_jobs", _REMOTE_JOB_COLUMNS, "(job_id) DO UPDATE SET deleted_at ="
        " COALESCE(remote_jobs.deleted_at, excluded.deleted_at)")),
)


def _write_tables(cur: Any, dialect: Dialect, rows: JournalRows,
                  value: Callable[[str, Any], Any]) -> None:
    """Write every row in the caller's transaction, the search index kept in step."""
    # Before the copied results replace the destination's, its index of them is taken out
    # (SQLite's index forgets words given again, from the result still stored).
    for row in rows.results:
        forget_indexed(cur.execute, dialect, row["content_key"])
    for table, columns, statement in _WRITES:
        cur.executemany(QUERIES[dialect]["store_result"] if statement is None
                        else adapt(dialect, statement),
                        [{c: value(c, r[c]) for c in columns} for r in getattr(rows, table)])
    # Indexed as the journal does when it stores one: the destination is searchable at once.
    for row in rows.results:
        index_stored(cur.execute, dialect, row)


# -- SQLite ----------------------------------------------------------------------------------


def _read_sqlite(path: Path) -> JournalRows:
    if not path.exists():
        raise JournalError(f"no journal at {path}: give the path of an existing journal file")
    Journal.open(path, readonly=True).close()  # clear errors: not a journal, too new, ...
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=10)
    if conn.execute("PRAGMA user_version").fetchone()[0] < SQLITE_SCHEMA_VERSION:
        conn.close()
        Journal.open(path).close()  # brought up to date in place, as `watcherd run` would
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                               timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("BEGIN")  # one snapshot for every table, even while a daemon writes
        rows = _read_tables(conn, "sqlite", decode_path)
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"cannot read the journal {path}: {exc}") from exc
    finally:
        conn.close()
    return rows


def _write_sqlite(path: Path, rows: JournalRows, source_label: str) -> None:
    # The exclusive open creates and migrates the file and keeps a daemon out while copying.
    with Journal.open(path, exclusive=True):
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=10)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                _check_destination(conn, str(path), source_label, rows, decode_path)
                _write_tables(conn, "sqlite", rows, column_value)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"cannot write the journal {path}: {exc}") from exc
        finally:
            conn.close()


# -- PostgreSQL ------------------------------------------------------------------------------


def _read_pg(url: str, roots: Mapping[str, str]) -> JournalRows:
    from watcherd.journal.postgres import check_version, connect, redact_url

    conn = connect(url)
    try:
        check_version(conn, redact_url(url))
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return _read_tables(conn, "postgres", partial(pg_local_path, roots=roots))
    finally:
        conn.close()


def _write_pg(url: str, rows: JournalRows, source_label: str,
              roots: Mapping[str, str]) -> None:
    import psycopg

    from watcherd.journal.postgres import connect, migrate, redact_url

    label = redact_url(url)
    conn = connect(url)
    try:
        migrate(conn, label)
        with conn.transaction():
            # Nodes wait while the copy runs: they see none of it or all of it.
            conn.execute("LOCK TABLE sources, events, results, job_times, remote_jobs,"
                         " search_fts, folded_history"
                         " IN SHARE ROW EXCLUSIVE MODE")
            _check_destination(conn, label, source_label, rows,
                               partial(pg_local_path, roots=roots))
            with conn.cursor() as cur:
                _write_tables(cur, "postgres", rows, partial(pg_column_value, roots=roots))
                # Ids were given explicitly: new rows continue after the highest one.
                for table in ("sources", "events", "job_times"):
                    cur.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                        f" COALESCE(MAX(id), 0) + 1, false) FROM {table}"
                    )
    except psycopg.Error as exc:
        raise JournalError(f"cannot write the journal {label}: {exc}") from None
    finally:
        conn.close()
