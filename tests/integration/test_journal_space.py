"""Issue 26, SQLite's side: old journals migrate without packing before READY, results come
back identically through every reader, space comes back (incremental auto-vacuum, a bounded
WAL, `watcherd journal compact`), and status/doctor say what takes the space."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests import journal_release01
from watcherd import upkeep
from watcherd.cli import main
from watcherd.journal import FileStat, Journal, SQLiteJournal
from watcherd.journal import sqlite as journal_sqlite

# A job object shaped like Gladia's: many words with their timings.
JOB = {"id": "job-1", "status": "done", "result": {"transcription": {
    "full_transcript": "hello there " * 300,
    "utterances": [{"start": i * 1.5, "end": i * 1.5 + 1.2, "text": "hello there", "words": [
        {"word": " hello", "start": i * 1.5, "end": i * 1.5 + 0.5, "confidence": 0.93},
        {"word": " there", "start": i * 1.5 + 0.6, "end": i * 1.5 + 1.2, "confidence": 0.88},
    ]} for i in range(300)]}}}


def _release01_journal(path: Path, results: int, *, job: dict[str, Any] = JOB) -> None:
    """A journal as watcherd 0.1 left it (schema 3, auto-vacuum off, plain JSON results),
    with ``results`` finished sources and their stored job objects."""
    conn = sqlite3.connect(path)
    journal_release01.build(conn, 3)
    for i in range(results):
        conn.execute(
            "INSERT INTO sources (path, watch_root, state, options_json, content_key, attempts,"
            " job_errors, created_at, updated_at) VALUES (?, '/in', 'done', '{}', ?, 0, 0,"
            " 1, 1)", (f"/in/f{i:04d}.wav", f"k{i:04d}"))
        conn.execute("INSERT INTO events (source_id, at, from_state, to_state, actor)"
                     " VALUES (?, 1, 'submitted', 'done', 'worker')", (i + 1,))
        conn.execute("INSERT INTO results (content_key, job_id, job_json, created_at)"
                     " VALUES (?, ?, ?, 1)", (f"k{i:04d}", f"job-{i}", json.dumps(job)))
    conn.commit()
    conn.close()


def _raw(path: Path, key: str) -> tuple[str, bytes | None]:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT job_json, job_z FROM results WHERE content_key = ?",
                           (key,)).fetchone()
    finally:
        conn.close()
    return row[0], row[1]


def _config(tmp_path: Path, journal: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'[journal]\npath = "{journal}"\n', encoding="utf-8")
    return config


class TestMigration:
    """A journal made by the current release (0.1's schema) opens at once and is packed in
    the background."""

    def test_open_does_not_pack_and_upkeep_does(self, tmp_path: Path) -> None:
        path = tmp_path / "journal.db"
        _release01_journal(path, 30)
        with Journal.open(path, exclusive=True) as journal:
            # Opening (what READY waits for) only adds a column: every row is still plain.
            assert _raw(path, "k0003")[1] is None
            assert journal.result_for("k0003") == JOB
            while upkeep.step(journal, 365, now=time.time()):
                pass
        for i in range(30):
            text, packed = _raw(path, f"k{i:04d}")
            assert text == "" and packed is not None
        with Journal.open(path, readonly=True) as journal:
            assert journal.result_for("k0003") == JOB
            assert [e["to_state"] for e in journal.events(1)] == ["done"]

    def test_a_batch_stops_at_its_byte_budget(self, tmp_path: Path) -> None:
        """An hour-long object is a megabyte of JSON: one batch packs a few MB at most."""
        path = tmp_path / "journal.db"
        _release01_journal(path, 6)
        size = len(json.dumps(JOB))
        with Journal.open(path, exclusive=True) as journal:
            assert journal.pack_results(limit=100, max_bytes=2 * size) == 2
            assert journal.pack_results(limit=100, max_bytes=100 * size) == 4
            assert journal.pack_results() == 0


class TestReaders:
    """Packed results read back identically by every reader."""

    def test_status_path_page_and_copy_read_the_same(self, tmp_path: Path) -> None:
        from watcherd.journal.copy import copy_journal

        path = tmp_path / "journal.db"
        with Journal.open(path, exclusive=True) as journal:
            [a] = journal.observe_many([("/in/a.wav", "/in", FileStat(1, 1, 1, 1), "{}")])
            a = journal.transition(a, "pending", actor="w", sha256="s", content_key="ka")
            journal.store_result(a, JOB)
        copied = tmp_path / "copy.db"
        copy_journal(path, copied)
        for target in (path, copied):
            with Journal.open(target, readonly=True) as journal:
                assert json.dumps(journal.result_for("ka")) == json.dumps(JOB)


class TestSpaceComesBack:
    """Incremental auto-vacuum on new journals, a bounded WAL, and `journal compact`."""

    def test_new_journal_returns_free_pages(self, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(journal_sqlite, "KEEP_FREE_PAGES", 10)
        path = tmp_path / "journal.db"
        with Journal.open(path, exclusive=True) as journal:
            assert isinstance(journal, SQLiteJournal)
            assert journal._conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
            [a] = journal.observe_many([("/in/a.wav", "/in", FileStat(1, 1, 1, 1), "{}")])
            a = journal.transition(a, "pending", actor="w", sha256="s", content_key="ka")
            journal.store_result(a, {"blob": [os.urandom(20).hex() for _ in range(20_000)]})
            journal.store_result(a, {"id": "small"})
            journal._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            free = journal._conn.execute("PRAGMA freelist_count").fetchone()[0]
            assert free > 100
            full = path.stat().st_size
            while journal._conn.execute("PRAGMA freelist_count").fetchone()[0] > 10:
                journal.reclaim()
            journal._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            assert path.stat().st_size < full - 90 * 4096
            assert journal.result_for("ka") == {"id": "small"}

    def test_wal_is_cut_back_past_its_limit(self, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(journal_sqlite, "WAL_LIMIT_BYTES", 64 * 1024)
        path = tmp_path / "journal.db"
        wal = tmp_path / "journal.db-wal"
        with Journal.open(path, exclusive=True) as journal:
            [a] = journal.observe_many([("/in/a.wav", "/in", FileStat(1, 1, 1, 1), "{}")])
            a = journal.transition(a, "pending", actor="w", sha256="s", content_key="ka")
            for i in range(40):
                journal.store_result(a, {"n": i, "text": [f"{i}-{j}" for j in range(3000)]})
            assert wal.stat().st_size > 64 * 1024
            journal.reclaim()
            assert wal.stat().st_size == 0

    def test_compact_shows_progress_shrinks_and_switches_auto_vacuum(
            self, tmp_path: Path) -> None:
        path = tmp_path / "journal.db"
        _release01_journal(path, 200)
        with Journal.open(path, exclusive=True) as journal:
            while journal.pack_results():
                pass  # the plain rows' pages are now free, but auto-vacuum is off
        before = path.stat().st_size
        result = CliRunner().invoke(main, ["journal", "compact", "--config",
                                           str(_config(tmp_path, path))])
        assert result.exit_code == 0, result.output
        assert "compacting" in result.stderr and "100%" in result.stderr
        assert "compacted" in result.stdout
        assert path.stat().st_size < before / 2
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
        assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        conn.close()
        assert not (tmp_path / "journal.db.compacting").exists()
        with Journal.open(path, exclusive=True) as journal:
            assert journal.result_for("k0150") == JOB
            assert len(journal.all()) == 200

    def test_compact_is_refused_while_a_daemon_holds_the_journal(self, tmp_path: Path) -> None:
        path = tmp_path / "journal.db"
        _release01_journal(path, 3)
        with Journal.open(path, exclusive=True):
            result = CliRunner().invoke(main, ["journal", "compact", "--config",
                                               str(_config(tmp_path, path))])
        assert result.exit_code != 0
        assert "stop it first" in result.output


class TestShown:
    """status and doctor say how big the journal is; status PATH shows folded history."""

    def test_status_and_doctor_say_the_size(self, tmp_path: Path) -> None:
        path = tmp_path / "journal.db"
        _release01_journal(path, 20)
        config = str(_config(tmp_path, path))
        with Journal.open(path, exclusive=True):
            pass
        status = CliRunner().invoke(main, ["status", "--config", config])
        assert status.exit_code == 0, status.output
        [line] = [ln for ln in status.output.splitlines() if ln.startswith("journal: ")]
        assert "results" in line and "per file" in line
        doctor = CliRunner().invoke(main, ["doctor", "--config", config])
        assert "journal size" in doctor.output and "dbstat" in doctor.output

    def test_status_path_shows_what_was_folded(self, tmp_path: Path) -> None:
        path = tmp_path / "journal.db"
        with Journal.open(path, exclusive=True) as journal:
            [a] = journal.observe_many([("/in/a.wav", "/in", FileStat(1, 1, 1, 1), "{}")])
            a = journal.transition(a, "waiting", actor="worker", reason="API down")
            a = journal.transition(a, "done", actor="worker")
            journal.fold_history(time.time() + 10)
        config = str(_config(tmp_path, path))
        human = CliRunner().invoke(main, ["status", "/in/a.wav", "--config", config])
        assert "2 older events folded" in human.output
        assert "last error: API down" in human.output
        data = json.loads(CliRunner().invoke(
            main, ["status", "/in/a.wav", "--json", "--config", config]).stdout)
        assert data[0]["folded"]["events"] == 2
        assert [e["to_state"] for e in data[0]["events"]] == ["done"]
