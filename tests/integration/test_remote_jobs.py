"""The journal's remote_jobs on both backends: hours counted once per job, delete intents."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from watcherd.journal import FileStat, Journal, SQLiteJournal
from watcherd.journal.postgres import PostgresJournal
from watcherd.usage import billing_period, earliest_shown

pytest_plugins = ("tests.pg",)


# -- the journal: hours and delete intents, both backends --------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    if request.param == "sqlite":
        opened: Journal = SQLiteJournal.open(tmp_path / "j.db")
    else:
        opened = PostgresJournal.open(request.getfixturevalue("pg_url"), node="n1",
                                      roots={"inbox": "/in"})
    try:
        yield opened
    finally:
        opened.close()


def _done_job(job_id: str, seconds: float, model: str = "solaria-1") -> dict[str, Any]:
    return {"id": job_id, "status": "done", "completed_at": "2026-12-03T10:00:00Z",
            "request_params": {"model": model},
            "result": {"metadata": {"audio_duration": seconds / 2, "billing_time": seconds}}}


def _settled(journal: Journal, name: str, key: str) -> Any:
    (source,) = journal.observe_many([(f"/in/{name}", "/in", FileStat(1, 1, 1, 1), "{}")])
    return journal.transition(source, "submitted", actor="test", sha256="0" * 64,
                              content_key=key)


def test_hours_are_counted_once_per_job(journal: Journal) -> None:
    a = _settled(journal, "a.wav", "wf2-a")
    b = _settled(journal, "b.wav", "wf2-b")
    journal.store_result(a, _done_job("j1", 60))
    journal.store_result(a, _done_job("j1", 60))  # stored again: not billed again
    journal.store_result(b, _done_job("j2", 30, "solaria-3"))
    since = billing_period(time.mktime((2026, 12, 3, 0, 0, 0, 0, 0, 0)) - time.timezone).start
    rows = journal.usage(since)
    assert [(r.watch_root, r.engine, r.model, r.jobs, r.billing_seconds) for r in rows] == [
        ("/in", "gladia", "solaria-1", 1, 60.0), ("/in", "gladia", "solaria-3", 1, 30.0)]
    assert journal.billed_since(since) == 90.0
    assert journal.billed_since(since + 40 * 86400) == 0.0


def test_delete_is_due_once_a_source_is_done(journal: Journal) -> None:
    a = _settled(journal, "a.wav", "wf2-a")
    journal.store_result(a, _done_job("j1", 60), delete=True)
    assert journal.due_deletes(time.time()) == []  # outputs not written yet
    journal.transition(journal.get(a.id), "done", actor="test", done_at=time.time())
    assert journal.due_deletes(time.time()) == [("j1", 0)]
    journal.delete_deferred("j1", time.time() + 60)
    assert journal.due_deletes(time.time()) == []
    assert journal.next_delete_at(time.time()) is not None
    assert journal.due_deletes(time.time() + 61) == [("j1", 1)]
    assert journal.deletes_pending() == 1
    journal.delete_done("j1")
    assert journal.due_deletes(time.time() + 61) == [] and journal.deletes_pending() == 0


def _finished(job_id: str, when: float) -> dict[str, Any]:
    """A done job object that completed at ``when`` (UTC epoch seconds)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    return {**_done_job(job_id, 60), "completed_at": stamp}


def test_rows_that_no_longer_serve_are_dropped(journal: Journal) -> None:
    """Issue 26: a finished job's row is dropped once no billing month the hours report can
    show holds it and nothing is left to delete at Gladia; the month's rows and pending
    deletes stay, and the month's hours read the same."""
    now = time.time()
    old = now - 70 * 86400
    cases = {"old-kept-nothing": (old, False), "old-deleted": (old, True),
             "old-pending": (old, True), "recent-deleted": (now - 60, True)}
    for name, (when, delete) in cases.items():
        source = _settled(journal, f"{name}.wav", f"key-{name}")
        journal.store_result(source, _finished(name, when), delete=delete)
        journal.transition(journal.get(source.id), "done", actor="test", done_at=now)
    for job_id in ("old-deleted", "recent-deleted"):
        journal.delete_done(job_id)
    period = billing_period(now)
    before = journal.usage(period.start)
    assert journal.drop_remote_jobs(earliest_shown(now), limit=1) == 1  # a batch at a time
    assert journal.drop_remote_jobs(earliest_shown(now)) == 1
    assert journal.drop_remote_jobs(earliest_shown(now)) == 0
    assert journal.usage(period.start) == before
    assert [r.jobs for r in journal.usage(0)] == [2]  # the pending delete and this month's
    assert journal.deletes_pending() == 1
    assert journal.due_deletes(now) == [("old-pending", 0)]


def test_upkeep_drops_them_in_its_rounds(journal: Journal) -> None:
    """The daemon's upkeep step (both backends, the journal's one logic) does the dropping."""
    from watcherd import upkeep

    now = time.time()
    source = _settled(journal, "old.wav", "key-old")
    journal.store_result(source, _finished("old", now - 70 * 86400))
    assert upkeep.step(journal, 365, now=now) is True
    assert journal.usage(0) == []
    assert upkeep.step(journal, 365, now=now) is False


def test_journal_copy_keeps_hours_and_delete_intents(tmp_path: Path, pg_url: str) -> None:
    """SQLite → PostgreSQL → SQLite: the month's hours and a wanted delete travel along."""
    from watcherd.journal.copy import copy_journal

    first = tmp_path / "first.db"
    with SQLiteJournal.open(first) as journal:
        a = _settled(journal, "a.wav", "wf2-a")
        journal.store_result(a, _done_job("j1", 60), delete=True)
        journal.transition(journal.get(a.id), "done", actor="test", done_at=time.time())
    roots = {"inbox": "/in"}
    report = copy_journal(first, pg_url, roots=roots)
    assert report.remote_jobs == 1
    back = tmp_path / "back.db"
    copy_journal(pg_url, back, roots=roots)
    for opened in (PostgresJournal.open(pg_url, node="n1", roots=roots),
                   SQLiteJournal.open(back)):
        with opened as journal:
            (row,) = journal.usage(0.0)
            assert (row.watch_root, row.billing_seconds) == ("/in", 60.0)
            assert journal.due_deletes(time.time()) == [("j1", 0)]
