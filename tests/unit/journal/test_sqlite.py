"""The journal: schema, transitions with their events, observing files, locking."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import journal_release01
from watcherd.errors import JournalError
from watcherd.journal import SCHEMA_VERSION, FileStat, Journal, JournalLocked


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A fresh journal in a temporary folder."""
    j = Journal.open(tmp_path / "state" / "journal.db", exclusive=True)
    yield j
    j.close()


def _stat(size: int = 10, mtime: int = 1) -> FileStat:
    return FileStat(size=size, mtime_ns=mtime, dev=1, inode=2)


class TestOpen:
    """Opening, migrating and locking the journal file."""

    def test_creates_schema_with_wal_and_version(self, journal: Journal, tmp_path: Path) -> None:
        """A new journal gets the current schema version and WAL mode."""
        conn = sqlite3.connect(tmp_path / "state" / "journal.db")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()

    def test_second_exclusive_open_is_refused(self, journal: Journal, tmp_path: Path) -> None:
        """Two workers on one journal would double-process files; the second is refused."""
        with pytest.raises(JournalLocked, match="already using the journal"):
            Journal.open(tmp_path / "state" / "journal.db", exclusive=True)

    def test_lock_released_on_close(self, tmp_path: Path) -> None:
        """After close, another worker may take the journal."""
        path = tmp_path / "j.db"
        Journal.open(path, exclusive=True).close()
        Journal.open(path, exclusive=True).close()

    def test_corrupt_file_gives_clear_error(self, tmp_path: Path) -> None:
        """A file that is not SQLite is reported, not overwritten."""
        path = tmp_path / "j.db"
        path.write_bytes(b"this is not a database" * 100)
        with pytest.raises(JournalError, match="cannot be read"):
            Journal.open(path)
        assert path.read_bytes().startswith(b"this is not a database")

    def test_readonly_missing_journal(self, tmp_path: Path) -> None:
        """Inspecting a journal that does not exist says how to get one."""
        with pytest.raises(JournalError, match="no journal"):
            Journal.open(tmp_path / "none.db", readonly=True)

    def test_newer_schema_refused(self, tmp_path: Path) -> None:
        """A journal from a newer watcherd is not downgraded."""
        path = tmp_path / "j.db"
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        with pytest.raises(JournalError):
            Journal.open(path)


class TestObserve:
    """Recording files seen on disk."""

    def test_new_file_is_pending_with_event(self, journal: Journal) -> None:
        """A new path becomes pending and its first event says it was seen."""
        [source] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        assert source.state == "pending"
        assert not source.settled
        events = journal.events(source.id)
        assert [(e["from_state"], e["to_state"], e["reason"]) for e in events] == [
            (None, "pending", "seen")
        ]

    def test_same_stat_twice_changes_nothing(self, journal: Journal) -> None:
        """Event storms on one unchanged file do not restart its settle clock."""
        [first] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        assert journal.get(first.id).changed_at == first.changed_at
        assert len(journal.all()) == 1

    def test_changed_pending_file_restarts_settling(self, journal: Journal) -> None:
        """A file still growing gets its new size and loses any hash."""
        [first] = journal.observe_many([("/in/a.mp3", "/in", _stat(10), "{}")])
        journal.transition(first, "pending", actor="test", sha256="x", content_key="k")
        journal.observe_many([("/in/a.mp3", "/in", _stat(20), "{}")])
        again = journal.get(first.id)
        assert again.size == 20 and again.sha256 is None and again.content_key is None

    def test_done_file_changed_becomes_new_version(self, journal: Journal) -> None:
        """A source edited after it was done is transcribed again."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(10), "{}")])
        s = journal.transition(s, "done", actor="test", job_id="j1", sha256="x",
                               content_key="k")
        journal.observe_many([("/in/a.mp3", "/in", _stat(11, 5), "{}")])
        again = journal.get(s.id)
        assert again.state == "pending" and again.job_id is None and again.sha256 is None
        assert journal.events(s.id)[-1]["reason"] == "changed on disk"

    def test_done_file_unchanged_stays_done(self, journal: Journal) -> None:
        """A rescan of a finished, unchanged source does nothing."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        journal.transition(s, "done", actor="test")
        journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        assert journal.get(s.id).state == "done"

    def test_gone_file_reappearing_is_pending(self, journal: Journal) -> None:
        """A source that disappeared and came back is picked up again."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        journal.transition(s, "gone", actor="test")
        journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        assert journal.get(s.id).state == "pending"


class TestTransitions:
    """State changes and their audit trail."""

    def test_transition_writes_row_and_event_together(self, journal: Journal) -> None:
        """Each transition updates the row and appends one event."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        s = journal.transition(s, "uploading", actor="worker", reason="upload started")
        s = journal.transition(s, "uploaded", actor="worker", audio_url="http://x/file/1")
        assert s.state == "uploaded" and s.audio_url == "http://x/file/1"
        assert [e["to_state"] for e in journal.events(s.id)] == ["pending", "uploading",
                                                                 "uploaded"]

    def test_unknown_column_is_rejected(self, journal: Journal) -> None:
        """A typo in a column name fails loudly instead of silently doing nothing."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        with pytest.raises(ValueError, match="unknown journal columns"):
            journal.transition(s, "done", actor="x", jobid="1")

    def test_failed_transaction_leaves_no_trace(self, journal: Journal) -> None:
        """A transition that fails half way is rolled back entirely."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        with pytest.raises(sqlite3.IntegrityError):
            journal.transition(s, "done", actor="x", path=None)
        assert journal.get(s.id).state == "pending"
        assert len(journal.events(s.id)) == 1

    def test_retry_moves_failed_back(self, journal: Journal) -> None:
        """`watcherd retry` puts a failed source back in the queue and forgets its failed job."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        journal.transition(s, "failed", actor="worker", job_id="j", last_error="bad",
                           attempts=3)
        [moved] = journal.retry(["/in/a.mp3"])
        assert moved.state == "pending" and moved.job_id is None and moved.attempts == 0
        assert moved.last_error is None

    def test_retry_all_failed_leaves_done(self, journal: Journal) -> None:
        """--all-failed touches only failed sources."""
        a, b = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}"),
                                     ("/in/b.mp3", "/in", _stat(), "{}")])
        journal.transition(a, "failed", actor="w")
        journal.transition(b, "done", actor="w")
        moved = journal.retry(all_failed=True)
        assert [m.path for m in moved] == ["/in/a.mp3"]
        assert journal.get(b.id).state == "done"

    def test_counts_cover_every_state(self, journal: Journal) -> None:
        """Counts include zero for states nobody is in."""
        journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        counts = journal.counts()
        assert counts["pending"] == 1 and counts["done"] == 0 and len(counts) == 10


class TestQueries:
    """What the worker asks the journal."""

    def test_due_puts_created_jobs_first(self, journal: Journal) -> None:
        """Sources whose job already exists are driven before new uploads."""
        a, b = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}"),
                                     ("/in/b.mp3", "/in", _stat(), "{}")])
        journal.transition(a, "pending", actor="w", sha256="1", content_key="k1")
        journal.transition(b, "submitted", actor="w", sha256="2", content_key="k2", job_id="j")
        assert [s.path for s in journal.due(0)] == ["/in/b.mp3", "/in/a.mp3"]

    def test_waiting_is_due_only_after_its_time(self, journal: Journal) -> None:
        """A scheduled retry is not due before next_attempt_at."""
        [a] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        journal.transition(a, "waiting", actor="w", sha256="1", content_key="k",
                           next_attempt_at=100.0)
        assert journal.due(99.0) == []
        assert [s.id for s in journal.due(100.0)] == [a.id]

    def test_leader_is_the_oldest_active_copy(self, journal: Journal) -> None:
        """Of two sources with the same content, only the first may create a job."""
        a, b = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}"),
                                     ("/in/b.mp3", "/in", _stat(), "{}")])
        journal.transition(a, "pending", actor="w", content_key="same", sha256="s")
        journal.transition(b, "pending", actor="w", content_key="same", sha256="s")
        leader = journal.leader_for("same")
        assert leader is not None and leader.id == a.id

    def test_results_are_kept_by_content(self, journal: Journal) -> None:
        """A stored result is found again by its content key."""
        [a] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        a = journal.transition(a, "submitted", actor="w", content_key="k", sha256="s")
        journal.store_result(a, {"id": "j", "status": "done", "result": {"x": "é"}})
        assert journal.result_for("k") == {"id": "j", "status": "done", "result": {"x": "é"}}
        assert journal.result_for("other") is None

    def test_output_base_taken_by_another_source(self, journal: Journal) -> None:
        """The same-stem rule: a base owned by one source is taken for the other."""
        a, _ = journal.observe_many([("/in/t.mp3", "/in", _stat(), "{}"),
                                     ("/in/t.wav", "/in", _stat(), "{}")])
        journal.transition(a, "done", actor="w", output_base="/in/t", done_at=1.0)
        assert journal.output_base_taken("/in/t", by_other_than="/in/t.wav")
        assert not journal.output_base_taken("/in/t", by_other_than="/in/t.mp3")
        assert not journal.output_base_taken("/in/x", by_other_than="/in/t.wav")


class TestMigrations:
    """Old journals are brought up to date, in place, without losing rows."""

    def test_v1_journal_migrates_to_current(self, tmp_path: Path) -> None:
        """A journal at schema 1 with a row opens at the current schema with the row intact."""
        path = tmp_path / "old.db"
        conn = sqlite3.connect(path)
        journal_release01.build(conn, 1)
        conn.execute(
            "INSERT INTO sources (path, watch_root, state, options_json, attempts, job_errors,"
            " created_at, updated_at) VALUES ('/in/a.wav', '/in', 'done', '{}', 0, 0, 1, 1)")
        conn.commit()
        conn.close()
        with Journal.open(path, exclusive=True) as j:
            assert [s.state for s in j.all()] == ["done"]
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        conn.close()
        assert "sources_unsettled" in names

    @staticmethod
    def _schema(conn: sqlite3.Connection) -> dict[str, object]:
        """Tables with their columns, indexes with their table, columns and uniqueness."""
        shape: dict[str, object] = {}
        for kind, name, table in conn.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ):
            if kind == "table":
                shape[name] = [tuple(r) for r in conn.execute(f'PRAGMA table_info("{name}")')]
            else:
                cols = [r[2] for r in conn.execute(f'PRAGMA index_info("{name}")')]
                unique = [r[2] for r in conn.execute(f'PRAGMA index_list("{table}")')
                          if r[1] == name]
                shape[name] = (table, cols, unique)
        return shape

    def test_sql_files_build_the_schema_release_01_built(self) -> None:
        """Files 1..3 give the tables, columns and indexes, name for name, that 0.1's
        sqlite-utils steps gave at schema 3, so old and new journals are the same."""

        reference = sqlite3.connect(":memory:")
        journal_release01.build(reference, 3)
        fresh = sqlite3.connect(":memory:")
        journal_release01.migrated_to(fresh, 3)
        assert self._schema(fresh) == self._schema(reference)

    @pytest.mark.parametrize("made_at", [1, 2, 3])
    def test_a_release_01_journal_migrates_to_a_new_journals_schema(
        self, tmp_path: Path, made_at: int
    ) -> None:
        """A journal 0.1 made at any version opens at the current one with a new one's schema."""
        old = tmp_path / "old.db"
        conn = sqlite3.connect(old)
        journal_release01.build(conn, made_at)
        conn.close()
        for path in (old, tmp_path / "new.db"):
            with Journal.open(path, exclusive=True):
                pass
        shapes = []
        for path in (old, tmp_path / "new.db"):
            conn = sqlite3.connect(path)
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            shapes.append(self._schema(conn))
            conn.close()
        assert shapes[0] == shapes[1]

    def test_a_failed_step_leaves_the_version_before(self, tmp_path: Path) -> None:
        """A step that fails half-way is rolled back whole: no table of it, the old version."""
        path = tmp_path / "old.db"
        conn = sqlite3.connect(path)
        journal_release01.build(conn, 2)
        conn.execute('CREATE TABLE "meta" ("clash" TEXT)')  # step 3 creates meta: it fails
        conn.commit()
        conn.close()
        with pytest.raises(JournalError):
            Journal.open(path, exclusive=True)
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        conn.close()
        assert "job_times" not in tables


class TestSettleMany:
    """Recording hashed sources in one transaction."""

    def test_only_unchanged_pending_sources_are_recorded(self, journal: Journal) -> None:
        """A source that changed after it was read is left for a later settle."""
        a, b = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}"),
                                     ("/in/b.mp3", "/in", _stat(), "{}")])
        journal.observe_many([("/in/b.mp3", "/in", _stat(size=99), "{}")])
        recorded = journal.settle_many([(a, "sa", "ka", _stat()), (b, "sb", "kb", _stat())])
        assert recorded == [a.id]
        assert journal.get(a.id).content_key == "ka"
        assert journal.get(b.id).content_key is None

    def test_a_batch_records_each_row_and_one_event_each(self, journal: Journal) -> None:
        """Issue 22 item 3 (the batch written in one statement per table): every recorded
        source has its own digest, key, note and stat, and exactly one "settled and hashed"
        event; a source that changed meanwhile has neither."""
        seen = journal.observe_many([(f"/in/{i}.wav", "/in", _stat(), "{}") for i in range(5)])
        journal.observe_many([("/in/3.wav", "/in", _stat(size=99), "{}")])
        recorded = journal.settle_many(
            (s, f"s{i}", f"k{i}", _stat(size=10 + i, mtime=7)) for i, s in enumerate(seen))
        assert recorded == [s.id for i, s in enumerate(seen) if i != 3]
        for i, source in enumerate(seen):
            row = journal.get(source.id)
            settled = [e for e in journal.events(source.id)
                       if e["reason"] == "settled and hashed"]
            if i == 3:
                assert (row.content_key, row.sha256, settled) == (None, None, [])
                continue
            assert (row.state, row.sha256, row.content_key, row.note) == (
                "pending", f"s{i}", f"k{i}", "queued")
            assert (row.size, row.mtime_ns) == (10 + i, 7)
            assert [(e["from_state"], e["to_state"], e["actor"]) for e in settled] == [
                ("pending", "pending", "worker")]


class TestRows:
    """Rows become sources by column name, whatever order a journal's history left them in."""

    def test_columns_in_another_order_read_the_same(self, journal: Journal,
                                                    tmp_path: Path) -> None:
        """A sources table whose columns are in reverse order (as migrations that append
        columns can leave an old journal) reads as the same sources, paths decoded."""
        latin1 = "/in/caf\udce9.wav"  # a name that is not UTF-8, stored behind its mark
        a, b = journal.observe_many([(latin1, "/in", _stat(), "{}"),
                                     ("/in/b.wav", "/in", _stat(), "{}")])
        journal.transition(b, "done", actor="w", sha256="s", content_key="k",
                           output_base="/in/b", done_at=1.0)
        before = journal.all()
        assert [s.path for s in before] == [latin1, "/in/b.wav"]
        conn = sqlite3.connect(tmp_path / "state" / "journal.db")
        names = [r[1] for r in conn.execute("PRAGMA table_info(sources)")]
        with conn:
            conn.execute("ALTER TABLE sources RENAME TO sources_old")
            conn.execute("CREATE TABLE sources AS SELECT "
                         + ", ".join(reversed(names)) + " FROM sources_old")
        conn.close()
        assert journal.all() == before
        assert journal.get(a.id) == before[0]
        assert journal.by_path("/in/b.wav") == before[1]
