"""Issue 26: the indexes of sources hold only the rows their queries read, so a year of done
files costs no index space beyond the lookups by path, content key, output base and state;
and a journal made before (SQLite schema 8, PostgreSQL schema 7) migrates and its worker's
queries read the same rows."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import journal_release01
from tests.integration.test_journal_backends import _settled
from watcherd.journal import Journal, Source
from watcherd.journal import postgres as journal_pg
from watcherd.journal import sqlite as journal_sqlite
from watcherd.journal.postgres import PostgresJournal

pytest_plugins = ("tests.pg",)

# The indexes of sources that a done row has to be in: a file is found by its path (every
# scan), its content (duplicates, moved outputs, search), its output base (names taken) and
# its state (counts, the status page).
FOR_EVERY_ROW = {"idx_sources_path", "idx_sources_content_key", "idx_sources_output_base",
                 "idx_sources_state_next_attempt_at"}


def _index_cells(path: Path) -> dict[str, int]:
    """Entries per index of sources (dbstat: cells of the leaf pages)."""
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sources'")]
        return {name: int(conn.execute(
            "SELECT coalesce(sum(ncell), 0) FROM dbstat WHERE name = ? AND pagetype = 'leaf'",
            (name,)).fetchone()[0]) for name in names}
    finally:
        conn.close()


def test_done_files_are_only_in_the_indexes_every_row_needs(tmp_path: Path) -> None:
    """Done files (job id and content key kept) are in none of the worker's partial
    indexes, no index by job id is kept, and a done row keeps no upload URL."""
    path = tmp_path / "journal.db"
    with Journal.open(path, exclusive=True) as journal:
        for i in range(40):
            s = _settled(journal, f"/in/f{i}.wav", f"k{i}")
            s = journal.transition(s, "uploaded", actor="w", audio_url=f"http://x/{i}")
            s = journal.transition(s, "submitted", actor="w", job_id=f"job-{i}")
            journal.store_result(s, {"id": f"job-{i}"})
            journal.transition(s, "done", actor="w", done_at=time.time(),
                               output_base=f"/in/f{i}")
        # Nor is its upload's URL kept: it served only to create the job.
        assert {s.audio_url for s in journal.all()} == {None}
        assert {s.job_id for s in journal.all()} == {f"job-{i}" for i in range(40)}
    cells = _index_cells(path)
    assert {name for name, n in cells.items() if n} == FOR_EVERY_ROW
    assert all(cells[name] == 40 for name in FOR_EVERY_ROW)


# -- a journal made before the narrower indexes ---------------------------------------------

_COLUMNS = ("path", "watch_root", "state", "options_json", "content_key", "audio_url",
            "job_id", "submit_started_at", "attempts", "job_errors", "next_attempt_at",
            "changed_at", "created_at", "updated_at")


def _rows(now: float) -> list[tuple[Any, ...]]:
    """One source in each situation the worker's queries tell apart."""
    def row(name: str, state: str, key: str | None, *, url: str | None = None,
            job: str | None = None, started: float | None = None, at: float | None = None,
            changed: float | None = None) -> tuple[Any, ...]:
        return (f"/in/{name}.wav", "/in", state, "{}", key, url, job, started, 0, 0, at,
                changed, 1.0, 1.0)
    return [
        row("unsettled-late", "pending", None, changed=now - 5),
        row("unsettled-unknown", "pending", None),
        row("unsettled-early", "pending", None, changed=now - 50),
        row("queued", "pending", "kq"),
        row("uploaded-back", "pending", "ku", url="http://x/u"),
        row("submitted", "submitted", "ks", url="http://x/s", job="job-s"),
        row("creating", "submitting", "kc", started=now - 1),
        row("waiting-due", "waiting", "kw", at=now - 1),
        row("waiting-later", "waiting", "kl", at=now + 3600),
        row("done", "done", "kd", url="http://x/d", job="job-d"),
    ]


def names(sources: list[Source]) -> list[str]:
    return [s.path.rsplit("/", 1)[1][:-4] for s in sources]


def _check_queries(journal: Journal | PostgresJournal, now: float) -> None:
    assert names(journal.unsettled()) == ["unsettled-unknown", "unsettled-early",
                                          "unsettled-late"]
    due = names(journal.due(now))
    assert sorted(due) == ["creating", "queued", "submitted", "uploaded-back", "waiting-due"]
    assert due.index("uploaded-back") < due.index("queued")  # work begun goes first
    assert journal.count_in_flight(exclude=set()) == 2  # submitted, creating
    assert journal.counts()["pending"] == 5


def _fill_sqlite(path: Path, made_at: int, now: float) -> None:
    conn = sqlite3.connect(path)
    journal_release01.migrated_to(conn, made_at)
    conn.executemany(f"INSERT INTO sources ({', '.join(_COLUMNS)})"
                     f" VALUES ({', '.join('?' * len(_COLUMNS))})", _rows(now))
    conn.commit()
    conn.close()


def test_a_sqlite_journal_made_by_main_migrates_and_reads_the_same(tmp_path: Path) -> None:
    now = time.time()
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    _fill_sqlite(old, 8, now)
    with Journal.open(old, exclusive=True) as journal:
        _check_queries(journal, now)
    with Journal.open(new, exclusive=True):
        pass
    shapes = []
    for path in (old, new):
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == journal_sqlite.SCHEMA_VERSION
        shapes.append(conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"
                                   " WHERE name NOT LIKE 'sqlite_%' ORDER BY name").fetchall())
        conn.close()
    assert shapes[0] == shapes[1]
    assert "idx_sources_job_id" not in {name for _, name, _, _ in shapes[0]}


@pytest.fixture
def old_pg(pg_url: str) -> Iterator[Callable[[int, float], None]]:
    def make(made_at: int, now: float) -> None:
        conn = journal_pg.connect(pg_url)
        try:
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                         " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
            for step in journal_pg.MIGRATIONS[:made_at]:
                conn.execute(step.text.encode())
                conn.execute("INSERT INTO schema_version VALUES (%s, %s, 0)",
                             (step.version, step.name))
            for values in _rows(now):
                conn.execute(f"INSERT INTO sources ({', '.join(_COLUMNS)})"
                             f" VALUES ({', '.join(['%s'] * len(_COLUMNS))})", values)
        finally:
            conn.close()
    yield make


def test_a_postgres_journal_made_by_main_migrates_and_reads_the_same(
        pg_url: str, old_pg: Callable[[int, float], None]) -> None:
    now = time.time()
    old_pg(7, now)
    with PostgresJournal.open(pg_url, node="node-a") as journal:
        assert journal.schema_version() == journal_pg.SCHEMA_VERSION
        _check_queries(journal, now)
    conn = journal_pg.connect(pg_url)
    try:
        indexes = {r["indexname"]: r["indexdef"] for r in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sources'")}
    finally:
        conn.close()
    assert "sources_job_id" not in indexes
    for name in ("sources_unsettled", "sources_queue", "sources_inflight", "sources_started"):
        assert "WHERE" in indexes[name] and "'pending'" in indexes[name], name
