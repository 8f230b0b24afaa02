"""The journal's behaviour, run against both backends (SQLite file, real PostgreSQL), plus
what only the PostgreSQL journal does: leases, unique create intents, node names, LISTEN/NOTIFY
and copying a journal between backends."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcherd.errors import JournalError
from watcherd.journal import FileStat, Journal, Source, SQLiteJournal

if TYPE_CHECKING:
    from tests.pg import PgCluster

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e .[test]")

from watcherd.journal import postgres as journal_pg  # noqa: E402  (needs psycopg)
from watcherd.journal.copy import copy_journal, read_rows  # noqa: E402
from watcherd.journal.postgres import (  # noqa: E402
    CreateIntentHeld,
    LeaseLost,
    NodeNameTaken,
    PlanFull,
    PostgresJournal,
    pg_decode_path,
    pg_encode_path,
    redact_url,
)
from watcherd.journal.sqljournal import SQLJournal  # noqa: E402
from watcherd.journal.stored import pack_text, unpack_job  # noqa: E402

# The private PostgreSQL cluster's fixtures (pg_cluster, pg_url).
pytest_plugins = ("tests.pg",)

AnyJournal = Journal | PostgresJournal
# Hypothesis runs many examples on one journal (a database per example would be slow); each
# property below holds whatever rows earlier examples left.
on_fixture = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(params=["sqlite", "postgres"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyJournal]:
    """A fresh journal of each backend, opened as the one worker (SQLite) or one node (PG)."""
    j: AnyJournal
    if request.param == "sqlite":
        j = Journal.open(tmp_path / "state" / "journal.db", exclusive=True)
    else:
        j = PostgresJournal.open(request.getfixturevalue("pg_url"), node="node-a")
    yield j
    j.close()


def _integrity_error(journal: AnyJournal) -> type[Exception]:
    return sqlite3.IntegrityError if isinstance(journal, SQLiteJournal) else psycopg.IntegrityError


def _stat(size: int = 10, mtime: int = 1) -> FileStat:
    return FileStat(size=size, mtime_ns=mtime, dev=1, inode=2)


def _settled(journal: AnyJournal, path: str, key: str, **changes: Any) -> Source:
    [s] = journal.observe_many([(path, "/in", _stat(), "{}")])
    return journal.transition(s, "pending", actor="w", sha256=key, content_key=key, **changes)


# Paths as a file system hands them over: any bytes but NUL and "/", decoded by os.fsdecode
# (so names that are not UTF-8 hold lone surrogates), plus any text Python may pass.
names = st.one_of(
    st.binary(min_size=1, max_size=40).map(
        lambda b: os.fsdecode(b.replace(b"\x00", b"_").replace(b"/", b"_"))),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00/"), min_size=1,
            max_size=40),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(st.characters(codec=None)),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def test_same_public_methods_as_the_sqlite_journal() -> None:
    """Every public method of the SQLite journal exists on the PostgreSQL one, same signature
    (``open`` aside: it takes a URL and a node name instead of a path and a lock)."""
    import inspect

    for name, member in inspect.getmembers(Journal, callable):
        if name.startswith("_") or name == "open":
            continue
        other = getattr(PostgresJournal, name, None)
        assert other is not None, name
        assert inspect.signature(other) == inspect.signature(member), name


class TestObserve:
    """Recording files seen on disk."""

    def test_new_file_is_pending_with_event(self, journal: AnyJournal) -> None:
        """A new path becomes pending and its first event says it was seen."""
        [source] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        assert source.state == "pending" and not source.settled
        events = journal.events(source.id)
        assert [(e["from_state"], e["to_state"], e["reason"]) for e in events] == [
            (None, "pending", "seen")
        ]
        assert set(events[0]) == {"id", "source_id", "at", "from_state", "to_state", "actor",
                                  "reason"}

    def test_same_stat_twice_changes_nothing(self, journal: AnyJournal) -> None:
        """Event storms on one unchanged file do not restart its settle clock."""
        [first] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        assert journal.get(first.id).changed_at == first.changed_at
        assert len(journal.all()) == 1

    def test_one_batch_with_a_repeated_path(self, journal: AnyJournal) -> None:
        """A path seen twice in one batch is one row, settled from its last stat."""
        touched = journal.observe_many([("/in/a.mp3", "/in", _stat(1), "{}"),
                                        ("/in/a.mp3", "/in", _stat(2), "{}")])
        assert len(journal.all()) == 1 and journal.all()[0].size == 2
        assert {s.id for s in touched} == {journal.all()[0].id}

    def test_a_mixed_batch_answers_in_its_own_order(self, journal: AnyJournal) -> None:
        """New paths (created together), known ones (a name that is not UTF-8 among them) and
        a path repeated in the batch: each new row has one "seen" event, and the sources
        that need settling come back in the order the batch named them."""
        latin1 = "/in/caf\udce9.wav"
        [old_plain, old_marked] = journal.observe_many([("/in/old.wav", "/in", _stat(1), "{}"),
                                                        (latin1, "/in", _stat(1), "{}")])
        touched = journal.observe_many([
            ("/in/z.wav", "/in", _stat(1), "{}"),
            (latin1, "/in", _stat(2), "{}"),
            ("/in/new\udcff.wav", "/in", _stat(1), "{}"),
            ("/in/a.wav", "/in", _stat(1), "{}"),
            ("/in/old.wav", "/in", _stat(1), "{}"),  # unchanged: not touched
            ("/in/z.wav", "/in", _stat(3), "{}"),  # seen again, changed
        ])
        # old.wav is unchanged but not settled yet: it is handed back too.
        assert [s.path for s in touched] == [
            "/in/z.wav", latin1, "/in/new\udcff.wav", "/in/a.wav", "/in/old.wav", "/in/z.wav"]
        z = journal.by_path("/in/z.wav")
        assert journal.get(old_marked.id).size == 2 and z is not None and z.size == 3
        assert len(journal.all()) == 5
        for source in journal.all():
            seen = [e for e in journal.events(source.id) if e["reason"] == "seen"]
            assert len(seen) == 1, source.path
        assert journal.get(old_plain.id).changed_at == old_plain.changed_at

    def test_changed_pending_file_restarts_settling(self, journal: AnyJournal) -> None:
        """A file still growing gets its new size and loses any hash."""
        [first] = journal.observe_many([("/in/a.mp3", "/in", _stat(10), "{}")])
        journal.transition(first, "pending", actor="test", sha256="x", content_key="k")
        returned = journal.observe_many([("/in/a.mp3", "/in", _stat(20), "{}")])
        again = journal.get(first.id)
        assert again.size == 20 and again.sha256 is None and again.content_key is None
        assert returned == []  # as before: only a row unsettled before is handed back

    def test_done_file_changed_becomes_new_version(self, journal: AnyJournal) -> None:
        """A source edited after it was done is transcribed again."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(10), "{}")])
        s = journal.transition(s, "done", actor="test", job_id="j1", sha256="x",
                               content_key="k")
        [back] = journal.observe_many([("/in/a.mp3", "/in", _stat(11, 5), "{}")])
        again = journal.get(s.id)
        assert again == back
        assert again.state == "pending" and again.job_id is None and again.sha256 is None
        assert journal.events(s.id)[-1]["reason"] == "changed on disk"

    def test_done_file_unchanged_stays_done(self, journal: AnyJournal) -> None:
        """A rescan of a finished, unchanged source does nothing."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        journal.transition(s, "done", actor="test")
        assert journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")]) == []
        assert journal.get(s.id).state == "done"

    def test_gone_file_reappearing_is_pending(self, journal: AnyJournal) -> None:
        """A source that disappeared and came back is picked up again."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        journal.transition(s, "gone", actor="test")
        journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        assert journal.get(s.id).state == "pending"
        assert journal.events(s.id)[-1]["reason"] == "reappeared"

    def test_unreadable_path_is_a_failed_row_with_why(self, journal: AnyJournal) -> None:
        """A path that cannot be read is recorded as failed, and again on the same row."""
        first = journal.record_unreadable("/in/x.mp3", "/in", "{}", "permission denied")
        assert first.state == "failed" and first.last_error == "permission denied"
        again = journal.record_unreadable("/in/x.mp3", "/in", "{}", "still denied")
        assert again.id == first.id and again.last_error == "still denied"
        assert [e["to_state"] for e in journal.events(first.id)] == ["failed", "failed"]

    @on_fixture
    @given(name=names, base=names)
    def test_any_path_round_trips(self, journal: AnyJournal, name: str, base: str) -> None:
        """Every name a file system gives (non-UTF-8 included) comes back exactly."""
        path = f"/in/{name}"
        journal.observe_many([(path, "/in", _stat(), "{}")])
        source = journal.by_path(path)
        assert source is not None and source.path == path and source.watch_root == "/in"
        assert journal.get(source.id).path == path
        # The base is this path's own (earlier examples' rows stay in the journal).
        out = f"/out/{name}/{base}"
        moved = journal.annotate(source, actor="t", reason=f"seen {name}", output_base=out)
        assert moved.output_base == out
        assert journal.output_base_taken(out, by_other_than="/elsewhere")
        assert not journal.output_base_taken(out, by_other_than=path)
        # Found again by the queries that take a list of paths (`watcherd retry PATH`, and
        # the batch read of observe_many), whatever its name: a name that is not UTF-8 is
        # stored behind a mark, which SQLite's json_each alone would cut off.
        journal.transition(journal.get(source.id), "failed", actor="t", reason="x",
                           last_error="x")
        assert [s.path for s in journal.retry([path])] == [path]


class TestTransitions:
    """State changes and their audit trail."""

    def test_transition_writes_row_and_event_together(self, journal: AnyJournal) -> None:
        """Each transition updates the row and appends one event."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        s = journal.transition(s, "uploading", actor="worker", reason="upload started")
        s = journal.transition(s, "uploaded", actor="worker", audio_url="http://x/file/1")
        assert s.state == "uploaded" and s.audio_url == "http://x/file/1"
        assert [e["to_state"] for e in journal.events(s.id)] == ["pending", "uploading",
                                                                 "uploaded"]

    def test_unknown_column_is_rejected(self, journal: AnyJournal) -> None:
        """A typo in a column name fails loudly instead of silently doing nothing."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        with pytest.raises(ValueError, match="unknown journal columns"):
            journal.transition(s, "done", actor="x", jobid="1")

    def test_failed_transaction_leaves_no_trace(self, journal: AnyJournal) -> None:
        """A transition that fails half way is rolled back entirely."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        with pytest.raises(_integrity_error(journal)):
            journal.transition(s, "done", actor="x", path=None)
        assert journal.get(s.id).state == "pending"
        assert len(journal.events(s.id)) == 1

    def test_listeners_see_committed_transitions(self, journal: AnyJournal) -> None:
        """Listeners get the source as committed and the previous state; a failing one is
        logged, not raised."""
        seen: list[tuple[str, str, str]] = []

        def listener(source: Source, before: str) -> None:
            seen.append((source.state, before, journal.get(source.id).state))

        def broken(source: Source, before: str) -> None:
            raise RuntimeError("listener bug")

        journal.listeners += [broken, listener]
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        s = journal.transition(s, "uploading", actor="w")
        journal.annotate(s, actor="w", reason="note", note="hello")
        assert seen == [("uploading", "pending", "uploading"),
                        ("uploading", "uploading", "uploading")]

    def test_retry_moves_failed_back(self, journal: AnyJournal) -> None:
        """`watcherd retry` puts a failed source back in the queue and forgets its failed job."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        journal.transition(s, "failed", actor="worker", job_id="j", last_error="bad",
                           attempts=3)
        [moved] = journal.retry(["/in/a.mp3"])
        assert moved.state == "pending" and moved.job_id is None and moved.attempts == 0
        assert moved.last_error is None

    def test_retry_keeps_a_waiting_job(self, journal: AnyJournal) -> None:
        """A waiting source keeps its job id when retried now."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        journal.transition(s, "waiting", actor="w", job_id="j", next_attempt_at=1e12)
        [moved] = journal.retry(["/in/a.mp3", "/in/none.mp3"])
        assert moved.state == "pending" and moved.job_id == "j"
        assert moved.next_attempt_at is None

    def test_retry_all_failed_leaves_done(self, journal: AnyJournal) -> None:
        """--all-failed touches only failed sources."""
        a, b = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}"),
                                     ("/in/b.mp3", "/in", _stat(), "{}")])
        journal.transition(a, "failed", actor="w")
        journal.transition(b, "done", actor="w")
        moved = journal.retry(all_failed=True)
        assert [m.path for m in moved] == ["/in/a.mp3"]
        assert journal.get(b.id).state == "done"

    def test_reprocess_only_finished_sources(self, journal: AnyJournal) -> None:
        """Reprocessing a done source resets it with the new options; an active one is left."""
        a = _settled(journal, "/in/a.mp3", "ka")
        assert journal.reprocess("/in/a.mp3", '{"x": 1}') is None
        journal.transition(a, "done", actor="w", job_id="j", done_at=5.0)
        again = journal.reprocess("/in/a.mp3", '{"x": 1}')
        assert again is not None and again.state == "pending" and again.options == {"x": 1}
        assert again.content_key is None and again.job_id is None and again.changed_at == 0.0
        assert journal.reprocess("/in/none.mp3", "{}") is None

    def test_counts_cover_every_state(self, journal: AnyJournal) -> None:
        """Counts include zero for states nobody is in."""
        journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        counts = journal.counts()
        assert counts["pending"] == 1 and counts["done"] == 0 and len(counts) == 10

    def test_state_since_is_when_the_state_was_entered(self, journal: AnyJournal) -> None:
        """An annotation does not reset when a source entered its state."""
        [s] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        s = journal.transition(s, "uploading", actor="w")
        entered = journal.events(s.id)[-1]["at"]
        journal.annotate(s, actor="w", reason="progress", note="half")
        assert journal.state_since() == {s.id: entered}

    @on_fixture
    @given(reason=st.text(st.characters(codec=None)))
    def test_any_reason_text_is_stored(self, journal: AnyJournal, reason: str) -> None:
        """Reasons and errors from outside (any text, NUL or lone surrogates) never fail a
        transition, and plain text comes back as it was."""
        journal.observe_many([("/in/reasons.mp3", "/in", _stat(), "{}")])
        s = journal.by_path("/in/reasons.mp3")
        assert s is not None
        moved = journal.annotate(s, actor="t", reason=reason, last_error=reason)
        stored = journal.events(s.id)[-1]["reason"]
        plain = "\x00" not in reason and all(not 0xD800 <= ord(c) <= 0xDFFF for c in reason)
        if plain:
            assert stored == reason and moved.last_error == reason


class TestQueries:
    """What the worker asks the journal."""

    def test_due_puts_created_jobs_first(self, journal: AnyJournal) -> None:
        """Sources whose job already exists are driven before new uploads."""
        a, b = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}"),
                                     ("/in/b.mp3", "/in", _stat(), "{}")])
        journal.transition(a, "pending", actor="w", sha256="1", content_key="k1")
        journal.transition(b, "submitted", actor="w", sha256="2", content_key="k2", job_id="j")
        assert [s.path for s in journal.due(0)] == ["/in/b.mp3", "/in/a.mp3"]

    def test_due_order_and_limit(self, journal: AnyJournal) -> None:
        """Job ids first, then maybe-created jobs, then uploads, then new work by age."""
        new1 = _settled(journal, "/in/1.mp3", "k1")
        uploaded = _settled(journal, "/in/2.mp3", "k2", audio_url="u")
        maybe = _settled(journal, "/in/3.mp3", "k3", submit_started_at=1.0)
        job = _settled(journal, "/in/4.mp3", "k4", job_id="j")
        new2 = _settled(journal, "/in/5.mp3", "k5")
        journal.observe_many([("/in/unsettled.mp3", "/in", _stat(), "{}")])
        journal.transition(_settled(journal, "/in/6.mp3", "k6"), "done", actor="w")
        order = [job.id, maybe.id, uploaded.id, new1.id, new2.id]
        assert [s.id for s in journal.due(0)] == order
        # The limit bounds the answer; which started rows fill it is not ordered (both
        # backends read the started rows with a LIMIT and no ORDER BY).
        limited = [s.id for s in journal.due(0, limit=2)]
        assert len(limited) == 2 and set(limited) <= set(order[:3])
        # With no engine room for new work, only what was started is read.
        assert [s.id for s in journal.due(0, queued=False)] == order[:3]

    def test_waiting_is_due_only_after_its_time(self, journal: AnyJournal) -> None:
        """A scheduled retry is not due before next_attempt_at."""
        [a] = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        journal.transition(a, "waiting", actor="w", sha256="1", content_key="k",
                           next_attempt_at=100.0)
        assert journal.due(99.0) == []
        assert [s.id for s in journal.due(100.0)] == [a.id]
        assert journal.next_attempt_at(50.0) == 100.0
        assert journal.next_attempt_at(100.0) is None

    def test_reschedule_waiting_makes_them_due(self, journal: AnyJournal) -> None:
        """When the API comes back, every waiting source is due now."""
        a = _settled(journal, "/in/a.mp3", "ka")
        journal.transition(a, "waiting", actor="w", next_attempt_at=500.0)
        assert journal.reschedule_waiting(10.0) == 1
        assert journal.get(a.id).next_attempt_at == 10.0
        assert journal.reschedule_waiting(10.0) == 0

    def test_count_in_flight(self, journal: AnyJournal) -> None:
        """Jobs that exist or may exist count, finished ones and excluded ones do not."""
        a = _settled(journal, "/in/a.mp3", "ka", job_id="j1")
        b = _settled(journal, "/in/b.mp3", "kb", submit_started_at=1.0)
        c = _settled(journal, "/in/c.mp3", "kc", job_id="j3")
        journal.transition(c, "done", actor="w")
        _settled(journal, "/in/d.mp3", "kd")
        assert journal.count_in_flight(exclude=set()) == 2
        assert journal.count_in_flight(exclude={a.id}) == 1
        assert journal.count_in_flight(exclude={a.id, b.id}) == 0

    def test_unsettled_longest_quiet_first(self, journal: AnyJournal) -> None:
        """Settling starts with the file that has been quiet longest."""
        journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        journal.observe_many([("/in/b.mp3", "/in", _stat(), "{}")])
        journal.observe_many([("/in/a.mp3", "/in", _stat(5), "{}")])  # a changed: newest
        assert [s.path for s in journal.unsettled()] == ["/in/b.mp3", "/in/a.mp3"]
        assert [s.path for s in journal.unsettled(limit=1)] == ["/in/b.mp3"]

    def test_in_states_and_all(self, journal: AnyJournal) -> None:
        """Sources by state, oldest first."""
        a, b, c = journal.observe_many([(f"/in/{n}.mp3", "/in", _stat(), "{}") for n in "abc"])
        journal.transition(b, "failed", actor="w")
        journal.transition(c, "done", actor="w")
        assert [s.id for s in journal.in_states(["pending", "done"])] == [a.id, c.id]
        assert [s.id for s in journal.all()] == [a.id, b.id, c.id]

    def test_leader_is_the_oldest_active_copy(self, journal: AnyJournal) -> None:
        """Of two sources with the same content, only the first may create a job."""
        a = _settled(journal, "/in/a.mp3", "same")
        b = _settled(journal, "/in/b.mp3", "same")
        leader = journal.leader_for("same")
        assert leader is not None and leader.id == a.id
        journal.transition(b, "submitted", actor="w", job_id="j")
        leader = journal.leader_for("same")
        assert leader is not None and leader.id == b.id  # a created job leads
        assert journal.leader_for("other") is None

    def test_results_are_kept_by_content(self, journal: AnyJournal) -> None:
        """A stored result is found again by its content key, replaced by a newer one."""
        a = _settled(journal, "/in/a.mp3", "k")
        journal.store_result(a, {"id": "j", "status": "done", "result": {"x": "é"}})
        assert journal.result_for("k") == {"id": "j", "status": "done", "result": {"x": "é"}}
        journal.store_result(a, {"id": "j2"})
        assert journal.result_for("k") == {"id": "j2"}
        assert journal.result_for("other") is None

    @on_fixture
    @given(job=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
    def test_any_result_is_stored_losslessly(self, journal: AnyJournal,
                                             job: dict[str, Any]) -> None:
        """Whatever JSON the API returns (NUL, lone surrogates, big numbers) comes back equal."""
        source = journal.by_path("/in/r.mp3") or _settled(journal, "/in/r.mp3", "kr")
        journal.store_result(source, job)
        assert journal.result_for("kr") == job

    def test_output_base_taken_by_another_source(self, journal: AnyJournal) -> None:
        """The same-stem rule: a base owned by one source is taken for the other."""
        a, _ = journal.observe_many([("/in/t.mp3", "/in", _stat(), "{}"),
                                     ("/in/t.wav", "/in", _stat(), "{}")])
        journal.transition(a, "done", actor="w", output_base="/in/t", done_at=1.0)
        assert journal.output_base_taken("/in/t", by_other_than="/in/t.wav")
        assert not journal.output_base_taken("/in/t", by_other_than="/in/t.mp3")
        assert not journal.output_base_taken("/in/x", by_other_than="/in/t.wav")

    def test_job_times_keep_the_newest_per_kind(self, journal: AnyJournal) -> None:
        """Job times are remembered oldest first, the newest ``keep`` of each kind."""
        for n in range(5):
            journal.record_job_time("plain", float(n), 10.0 + n, keep=3)
        journal.record_job_time("diarize", None, 99.0, keep=3)
        assert journal.job_times() == [("plain", 2.0, 12.0), ("plain", 3.0, 13.0),
                                       ("plain", 4.0, 14.0), ("diarize", None, 99.0)]


class TestSettleMany:
    """Recording hashed sources in one transaction."""

    def test_only_unchanged_pending_sources_are_recorded(self, journal: AnyJournal) -> None:
        """A source that changed after it was read is left for a later settle."""
        a, b = journal.observe_many([("/in/a.mp3", "/in", _stat(), "{}"),
                                     ("/in/b.mp3", "/in", _stat(), "{}")])
        journal.observe_many([("/in/b.mp3", "/in", _stat(size=99), "{}")])
        recorded = journal.settle_many([(a, "sa", "ka", _stat()), (b, "sb", "kb", _stat())])
        assert recorded == [a.id]
        settled = journal.get(a.id)
        assert settled.content_key == "ka" and settled.note == "queued" and settled.settled
        assert journal.get(b.id).content_key is None


class TestCleanStop:
    """The mark that says whether the last writer stopped cleanly."""

    def test_clean_close_then_crash(self, journal: AnyJournal, tmp_path: Path) -> None:
        """A clean close is remembered; an open without close reads as a crash next time."""
        journal.close()
        if isinstance(journal, SQLiteJournal):
            from watcherd.journal.sqlite import _stopped_cleanly

            conn = sqlite3.connect(journal.path)
            assert _stopped_cleanly(conn)
            conn.close()
            return
        assert isinstance(journal, PostgresJournal)
        again = PostgresJournal.open(journal.url, node="node-a")
        assert again.stopped_cleanly
        again._conn.close()  # dies without closing: the connection ends, the mark stays unset
        third = PostgresJournal.open(journal.url, node="node-a")
        assert not third.stopped_cleanly
        third.close()


# -- PostgreSQL only -------------------------------------------------------------------------


@pytest.fixture
def nodes(pg_url: str) -> Iterator[Callable[[str], PostgresJournal]]:
    """Open journals as named nodes on one database; all closed after the test."""
    opened: list[PostgresJournal] = []

    def open_node(name: str) -> PostgresJournal:
        j = PostgresJournal.open(pg_url, node=name)
        opened.append(j)
        return j

    yield open_node
    for j in opened:
        j.close()


class TestPostgresOpen:
    """Connecting, schema versions and clear errors."""

    def test_schema_version_is_recorded(self, pg_url: str) -> None:
        """A new database gets every migration, once, even with two nodes starting together."""
        errors: list[BaseException] = []

        def start(name: str) -> None:
            try:
                PostgresJournal.open(pg_url, node=name).close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(f"n{i}",)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        with PostgresJournal.open(pg_url, readonly=True) as j:
            assert j.schema_version() == journal_pg.SCHEMA_VERSION >= 1
        with psycopg.connect(pg_url) as conn:
            versions = conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()
        assert [v[0] for v in versions] == list(range(1, journal_pg.SCHEMA_VERSION + 1))

    def test_newer_schema_refused(self, pg_url: str) -> None:
        """A journal written by a newer watcherd is not touched."""
        PostgresJournal.open(pg_url).close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("INSERT INTO schema_version VALUES (%s, 'future.sql', 0)",
                         (journal_pg.SCHEMA_VERSION + 1,))
        for readonly in (False, True):
            with pytest.raises(JournalError, match="newer watcherd"):
                PostgresJournal.open(pg_url, readonly=readonly)

    def test_readonly_on_an_empty_database(self, pg_url: str) -> None:
        """Inspecting a database with no journal says how to get one, and creates nothing."""
        with pytest.raises(JournalError, match="no journal"):
            PostgresJournal.open(pg_url, readonly=True)
        with psycopg.connect(pg_url) as conn:
            row = conn.execute("SELECT to_regclass('sources')").fetchone()
        assert row is not None and row[0] is None

    def test_readonly_refuses_writes(self, pg_url: str) -> None:
        """A read-only journal cannot change anything."""
        PostgresJournal.open(pg_url).close()
        with PostgresJournal.open(pg_url, readonly=True) as j, pytest.raises(psycopg.Error):
            j.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])

    def test_unreachable_database_names_no_password(self, pg_cluster: PgCluster) -> None:
        """A bad URL is a clear JournalError that never shows the password."""
        url = f"postgresql://u:s3cret-pw@/nodb?host={pg_cluster.root}/nosocket"
        with pytest.raises(JournalError) as info:
            PostgresJournal.open(url)
        text = str(info.value)
        assert "cannot reach the journal database" in text and "s3cret-pw" not in text
        assert info.value.__cause__ is None or "s3cret-pw" not in str(info.value.__cause__)

    @given(password=st.text(st.characters(codec="utf-8"), min_size=1))
    def test_redacted_url_hides_any_password(self, password: str) -> None:
        """Whatever the password, the URL shown in messages has it replaced, all else kept."""
        from urllib.parse import parse_qsl, quote, urlsplit

        secret = quote(password, safe="")
        shown = redact_url(f"postgresql://user:{secret}@db.example:5432/watcherd")
        assert shown == "postgresql://user:***@db.example:5432/watcherd"
        shown = redact_url(f"postgresql:///w?host=/run/pg&password={secret}")
        assert parse_qsl(urlsplit(shown).query) == [("host", "/run/pg"), ("password", "***")]


class TestPathCodec:
    """How the PostgreSQL journal stores paths (its text holds neither NUL nor surrogates)."""

    @given(name=names)
    def test_round_trip_and_storable(self, name: str) -> None:
        """Every path comes back exactly, and its stored form is valid UTF-8 without NUL."""
        stored = pg_encode_path(name)
        assert pg_decode_path(stored) == name
        stored.encode("utf-8")
        assert "\x00" not in stored

    @given(a=names, b=names)
    def test_one_to_one(self, a: str, b: str) -> None:
        """Two different paths never share a stored form (the unique index stays exact)."""
        if a != b:
            assert pg_encode_path(a) != pg_encode_path(b)

    def test_plain_paths_stay_readable(self) -> None:
        """A UTF-8 path is stored as itself; one that starts with the mark is quoted."""
        assert pg_encode_path("/in/été.mp3") == "/in/été.mp3"
        assert pg_encode_path("\uffffx") != "\uffffx"
        assert pg_decode_path(pg_encode_path("\uffffx")) == "\uffffx"


class TestNodes:
    """Node names are unique among running nodes."""

    def test_second_node_with_one_name_is_refused(self, nodes: Any, pg_url: str) -> None:
        """Two running nodes with one name are refused with a clear message."""
        first = nodes("box")
        with pytest.raises(NodeNameTaken, match="another watcherd node named 'box'"):
            PostgresJournal.open(pg_url, node="box")
        nodes("other-box")  # another name is fine
        first.close()
        nodes("box").close()  # the name is free once the first one stopped

    def test_crashed_node_name_is_free_at_once(self, pg_url: str) -> None:
        """A node that died (its connection ended) does not block its restart."""
        first = PostgresJournal.open(pg_url, node="box")
        first._conn.close()
        if first._listen_conn is not None:
            first._listen_conn.close()
        PostgresJournal.open(pg_url, node="box").close()

    def test_silent_holder_is_evicted(self, nodes: Any, pg_url: str) -> None:
        """A holder whose heartbeat stopped long ago (machine gone, connection half-open)
        is disconnected and its name taken over."""
        zombie = nodes("box")
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("UPDATE nodes SET heartbeat_at = heartbeat_at - 1000 WHERE name = 'box'")
        taker = nodes("box")
        assert taker.node == "box"
        with pytest.raises(psycopg.OperationalError):
            zombie._conn.execute("SELECT 1")

    def test_bad_node_name(self, pg_url: str) -> None:
        """An empty or unprintable node name is refused with what to do."""
        for bad in ("", " box", "a\nb"):
            with pytest.raises(JournalError, match=r"\[node\] name"):
                PostgresJournal.open(pg_url, node=bad)


class TestLeases:
    """Work is leased: claimed with SKIP LOCKED, renewed, lost when it runs out."""

    def test_claim_only_free_rows(self, nodes: Any) -> None:
        """A node gets only the sources nobody else holds a live lease on."""
        a, b = nodes("a"), nodes("b")
        s1, s2, s3 = (_settled(a, f"/in/{n}.mp3", f"k{n}") for n in "123")
        assert a.claim([s1.id, s2.id], "a", 60) == [s1.id, s2.id]
        assert b.claim([s1.id, s2.id, s3.id], "b", 60) == [s3.id]
        assert a.claim([s1.id], "a", 60) == [s1.id]  # claiming again renews
        assert set(a.leases()) == {s1.id, s2.id, s3.id}
        assert a.leases()[s3.id].node == "b"
        # Each node's queue leaves out what the other holds.
        assert [s.id for s in b.due(0)] == [s3.id]
        assert [s.id for s in a.due(0)] == [s1.id, s2.id]

    def test_expired_lease_is_taken_over(self, nodes: Any) -> None:
        """A lease that ran out (its node died) is claimable, and renew says it was lost."""
        a, b = nodes("a"), nodes("b")
        s1 = _settled(a, "/in/1.mp3", "k1")
        s2 = _settled(a, "/in/2.mp3", "k2")
        assert a.claim([s1.id], "a", 0) == [s1.id]  # zero seconds: over at once
        assert a.claim([s2.id], "a", 60) == [s2.id]
        assert b.claim([s1.id, s2.id], "b", 60) == [s1.id]
        assert a.renew("a", 60) == [s2.id]
        assert b.renew("b", 60) == [s1.id]

    def test_claim_skips_rows_locked_by_another_connection(self, nodes: Any,
                                                           pg_url: str) -> None:
        """A row another transaction has locked is skipped, not waited for."""
        a, b = nodes("a"), nodes("b")
        s1 = _settled(a, "/in/1.mp3", "k1")
        s2 = _settled(a, "/in/2.mp3", "k2")
        with psycopg.connect(pg_url) as other:
            other.execute("SELECT id FROM sources WHERE id = %s FOR UPDATE", (s1.id,))
            got: list[list[int]] = []
            worker = threading.Thread(target=lambda: got.append(b.claim([s1.id, s2.id], "b",
                                                                        60)))
            worker.start()
            worker.join(30)
            assert not worker.is_alive(), "claim waited for a locked row"
            other.rollback()
        assert got == [[s2.id]]
        assert b.claim([s1.id], "b", 60) == [s1.id]  # free once the lock is gone

    def test_release_frees_and_transition_is_fenced(self, nodes: Any) -> None:
        """Another node's live lease blocks this node's transitions until it is released."""
        a, b = nodes("a"), nodes("b")
        s = _settled(a, "/in/1.mp3", "k1")
        a.claim([s.id], "a", 60)
        with pytest.raises(LeaseLost, match="node 'a' holds the lease"):
            b.transition(b.get(s.id), "uploading", actor="worker")
        assert b.get(s.id).state == "pending" and len(b.events(s.id)) == 2
        moved = a.transition(a.get(s.id), "uploading", actor="worker")
        assert moved.state == "uploading"
        a.release([s.id], "a")
        assert b.leases() == {}
        assert b.transition(b.get(s.id), "uploaded", actor="worker").state == "uploaded"

    def test_close_releases_the_nodes_leases(self, nodes: Any) -> None:
        """A node that stops cleanly hands its files on at once."""
        a, b = nodes("a"), nodes("b")
        s = _settled(a, "/in/1.mp3", "k1")
        a.claim([s.id], "a", 60)
        a.close()
        assert b.claim([s.id], "b", 60) == [s.id]


class TestCreateIntent:
    """Never pay twice across nodes: one intent to create per content key."""

    def test_concurrent_nodes_make_one_intent(self, nodes: Any) -> None:
        """Two nodes racing to create the job for the same content: exactly one wins."""
        a, b = nodes("a"), nodes("b")
        for round_ in range(10):
            key = f"same-{round_}"
            sa = _settled(a, f"/a/{round_}.mp3", key)
            sb = _settled(b, f"/b/{round_}.mp3", key)
            barrier = threading.Barrier(2)
            outcomes: dict[str, str] = {}

            def race(j: PostgresJournal, s: Source, barrier: threading.Barrier = barrier,
                     outcomes: dict[str, str] = outcomes) -> None:
                barrier.wait(10)
                try:
                    j.take_create_intent(s, submit_started_at=1.0)
                    outcomes[j.node or ""] = "won"
                except CreateIntentHeld:
                    outcomes[j.node or ""] = "held"

            threads = [threading.Thread(target=race, args=(a, sa)),
                       threading.Thread(target=race, args=(b, sb))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sorted(outcomes.values()) == ["held", "won"]
            submitting = [s for s in a.all() if s.content_key == key
                          and s.state == "submitting"]
            assert len(submitting) == 1
            intent = a.create_intent(key)
            assert intent is not None and intent.source_id == submitting[0].id

    def test_intent_is_retaken_by_its_source_and_freed_by_failure(self, nodes: Any) -> None:
        """The holder may take it again (takeover); once it failed, a copy may take it."""
        a, b = nodes("a"), nodes("b")
        sa = _settled(a, "/a/x.mp3", "k")
        sb = _settled(b, "/b/x.mp3", "k")
        sa = a.take_create_intent(sa, submit_started_at=1.0)
        assert sa.state == "submitting" and sa.submit_started_at == 1.0
        with pytest.raises(CreateIntentHeld) as info:
            b.take_create_intent(sb)
        assert info.value.source_id == sa.id and info.value.node == "a"
        b.take_create_intent(b.get(sa.id))  # node b takes the same source over
        intent = a.create_intent("k")
        assert intent is not None and intent.node == "b"
        b.transition(b.get(sa.id), "failed", actor="worker", last_error="bad file")
        assert b.take_create_intent(sb).state == "submitting"
        b.release_create_intent(b.get(sb.id))
        assert b.create_intent("k") is None

    def test_plan_limit_counts_every_node(self, nodes: Any) -> None:
        """max_concurrent_jobs is the account's: a job in flight on one node fills the other's
        slot."""
        a, b = nodes("a"), nodes("b")
        sa = _settled(a, "/a/1.mp3", "k1")
        sb = _settled(b, "/b/2.mp3", "k2")
        a.take_create_intent(sa, max_in_flight=1, submit_started_at=1.0)
        with pytest.raises(PlanFull) as info:
            b.take_create_intent(sb, max_in_flight=1, submit_started_at=1.0)
        assert (info.value.in_flight, info.value.limit) == (1, 1)
        assert b.get(sb.id).state == "pending"
        b.take_create_intent(sb, max_in_flight=2, submit_started_at=1.0)

    def test_unsettled_source_has_no_intent(self, nodes: Any) -> None:
        """Without a content key there is nothing to make unique."""
        a = nodes("a")
        [s] = a.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        with pytest.raises(ValueError, match="no content key"):
            a.take_create_intent(s)


class TestNotify:
    """Idle nodes sleep until another node changes something."""

    def test_change_by_another_node_wakes_the_waiter(self, nodes: Any) -> None:
        """A commit on one node wakes another; a node's own changes do not wake itself."""
        a, b = nodes("a"), nodes("b")
        assert a.notify_channel == journal_pg.NOTIFY_CHANNEL
        assert not b.wait_for_change(0)
        a.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        assert b.wait_for_change(30)
        assert not b.wait_for_change(0)  # drained
        assert not a.wait_for_change(0)

    def test_waiter_wakes_while_sleeping(self, nodes: Any) -> None:
        """A change committed while a node waits ends its wait."""
        a, b = nodes("a"), nodes("b")
        result: list[bool] = []
        waiter = threading.Thread(target=lambda: result.append(b.wait_for_change(60)))
        waiter.start()
        [s] = a.observe_many([("/in/a.mp3", "/in", _stat(), "{}")])
        waiter.join(60)
        assert result == [True]
        a.claim([s.id], "a", 60)  # lease renewals are not announced
        assert not b.wait_for_change(0)
        a.release([s.id], "a")  # freed work is
        assert b.wait_for_change(30)


class TestCopy:
    """Moving a journal between backends without re-paying."""

    def _sqlite_journal(self, path: Path) -> None:
        weird = os.fsdecode(b"/in/caf\xe9.wav")  # Latin-1 name: not UTF-8
        with Journal.open(path, exclusive=True) as j:
            done = _settled(j, "/in/done.mp3", "kd")
            j.store_result(done, {"id": "job-d", "result": {"text": "héllo \x00 \ud83d"}})
            j.transition(done, "done", actor="worker", job_id="job-d", done_at=5.0,
                         output_base="/in/done")
            failed = _settled(j, weird, "kf")
            j.transition(failed, "failed", actor="worker", last_error="corrupt file")
            _settled(j, "/in/polling.mp3", "kp", job_id="job-p")  # in flight: a job to poll
            maybe = _settled(j, "/in/maybe.mp3", "km")
            j.transition(maybe, "submitting", actor="worker", submit_started_at=7.0)
            j.observe_many([("/in/new.mp3", "/in", _stat(), "{}")])
            j.record_job_time("plain", 60.0, 12.5)
            j.record_job_time("diarize", None, 30.0)

    def test_sqlite_to_postgres_and_back(self, tmp_path: Path, pg_url: str) -> None:
        """Done, failed and in-flight rows, events, results and job times survive both ways,
        and copying again changes nothing."""
        src = tmp_path / "journal.db"
        self._sqlite_journal(src)
        report = copy_journal(src, pg_url)
        assert (report.sources, report.results, report.job_times) == (5, 1, 2)
        original = read_rows(str(src))
        assert read_rows(pg_url) == original
        assert copy_journal(src, pg_url) == report  # idempotent
        assert read_rows(pg_url) == original
        with Journal.open(src, readonly=True) as old, PostgresJournal.open(pg_url) as new:
            assert new.all() == old.all()
            assert new.job_times() == old.job_times()
            assert new.result_for("kd") == old.result_for("kd")
            for s in old.all():
                assert new.events(s.id) == old.events(s.id)
            # New rows continue after the copied ids.
            [fresh] = new.observe_many([("/in/later.mp3", "/in", _stat(), "{}")])
            assert fresh.id == max(s.id for s in old.all()) + 1
        back = tmp_path / "back" / "journal.db"
        copy_journal(pg_url, back)
        copied = read_rows(str(back))
        assert copied.sources[:5] == original.sources and copied.events[:len(original.events)] \
            == original.events
        assert (copied.results, copied.job_times) == (original.results, original.job_times)

    def test_a_different_journal_is_not_merged(self, tmp_path: Path, pg_url: str) -> None:
        """A destination holding other rows is refused, and left as it was."""
        src = tmp_path / "journal.db"
        self._sqlite_journal(src)
        with PostgresJournal.open(pg_url) as other:
            other.observe_many([("/elsewhere/x.mp3", "/elsewhere", _stat(), "{}")])
        with pytest.raises(JournalError, match="already holds a different journal"):
            copy_journal(src, pg_url)
        with PostgresJournal.open(pg_url) as other:
            assert [s.path for s in other.all()] == ["/elsewhere/x.mp3"]

    def test_missing_source_and_same_target(self, tmp_path: Path) -> None:
        """Copying from nothing, or onto itself, says so."""
        with pytest.raises(JournalError, match="no journal at"):
            copy_journal(tmp_path / "none.db", tmp_path / "out.db")
        assert not (tmp_path / "out.db").exists()
        src = tmp_path / "journal.db"
        self._sqlite_journal(src)
        with pytest.raises(JournalError, match="same journal"):
            copy_journal(src, tmp_path / "." / "journal.db")

    def test_copy_refused_while_a_daemon_holds_the_sqlite_destination(
        self, tmp_path: Path, pg_url: str
    ) -> None:
        """Copying into a SQLite journal a daemon is using is refused."""
        src = tmp_path / "journal.db"
        self._sqlite_journal(src)
        copy_journal(src, pg_url)
        with Journal.open(tmp_path / "busy.db", exclusive=True), pytest.raises(
            JournalError, match="already using"
        ):
            copy_journal(pg_url, tmp_path / "busy.db")

    def test_rows_are_json_comparable(self, tmp_path: Path) -> None:
        """A result copied keeps its exact JSON text (key order included)."""
        src = tmp_path / "journal.db"
        self._sqlite_journal(src)
        [result] = read_rows(str(src)).results
        job = unpack_job(result["job_json"], result["job_z"])
        assert job["id"] == "job-d"
        with Journal.open(src, readonly=True) as journal:
            assert json.dumps(job) == json.dumps(journal.result_for("kd"))


def _sql(journal: Journal) -> SQLJournal:
    assert isinstance(journal, SQLJournal)
    return journal


def _stored_result(journal: AnyJournal, key: str) -> tuple[str, bytes | None]:
    """The raw results row: (job_json, job_z) as the database holds it."""
    row = _sql(journal)._run("result_for", content_key=key).fetchone()
    return row["job_json"], None if row["job_z"] is None else bytes(row["job_z"])


class TestSmallJournal:
    """Issue 26: results stored compressed, history folded, on both backends."""

    def test_results_are_stored_packed(self, journal: AnyJournal) -> None:
        """A stored job object takes its packed form (no JSON text) and reads back equal."""
        a = _settled(journal, "/in/a.mp3", "k")
        job = {"id": "j", "result": {"transcription": {"utterances": [
            {"words": [{"word": " hello", "start": i / 10, "end": i / 10 + 0.08,
                        "confidence": 0.9} for i in range(200)]}]}}}
        journal.store_result(a, job)
        text, packed = _stored_result(journal, "k")
        assert text == "" and packed is not None
        assert len(packed) < len(json.dumps(job)) / 3
        assert journal.result_for("k") == job

    def test_plain_rows_of_an_older_journal_are_packed_in_the_background(
        self, journal: AnyJournal
    ) -> None:
        """Rows written before packing (plain JSON) are read as they are, then packed by
        pack_results in batches, and read back identically."""
        jobs = {f"k{i:02d}": {"id": f"j{i}", "n": i, "text": "é" * i} for i in range(25)}
        for key, job in jobs.items():
            _sql(journal)._run_text(
                "INSERT INTO results (content_key, job_id, job_json, created_at)"
                " VALUES (:k, :j, :t, 1)", {"k": key, "j": job["id"],
                                            "t": json.dumps(job, separators=(",", ":"))})
        assert journal.result_for("k07") == jobs["k07"]
        assert _stored_result(journal, "k07")[1] is None
        batches = 0
        while journal.pack_results(limit=10):
            batches += 1
        assert batches == 3
        for key, job in jobs.items():
            # The stored text packed as it is (not parsed and written again, spaced anew).
            assert _stored_result(journal, key) == (
                "", pack_text(json.dumps(job, separators=(",", ":"))))
            assert journal.result_for(key) == job
        assert journal.pack_results() == 0  # done, and remembered

    def test_folding_keeps_state_result_and_says_what_was_folded(
        self, journal: AnyJournal
    ) -> None:
        """Events older than the cutoff fold into one summary; the source row, its result
        and the event that entered its current state stay."""
        a = _settled(journal, "/in/a.mp3", "k")
        a = journal.transition(a, "uploading", actor="worker")
        a = journal.transition(a, "waiting", actor="worker", reason="503 from the API")
        a = journal.transition(a, "pending", actor="worker", reason="retry")
        a = journal.transition(a, "uploading", actor="worker")
        a = journal.transition(a, "uploaded", actor="worker")
        a = journal.transition(a, "submitting", actor="worker")
        a = journal.transition(a, "submitted", actor="worker", job_id="j1")
        journal.store_result(a, {"id": "j1", "result": {}})
        a = journal.transition(a, "done", actor="worker", reason="transcript written",
                               done_at=123.0)
        a = journal.annotate(a, actor="worker", reason="outputs named")
        since = journal.state_since()[a.id]
        total = len(journal.events(a.id))
        cutoff = max(e["at"] for e in journal.events(a.id)) + 1
        while journal.fold_history(cutoff, limit=3):
            pass
        kept = journal.events(a.id)
        assert [(e["from_state"], e["to_state"]) for e in kept] == [
            ("submitted", "done"), ("done", "done")]
        assert journal.get(a.id) == a
        assert journal.result_for("k") == {"id": "j1", "result": {}}
        assert journal.state_since()[a.id] == since
        folded = journal.folded_history(a.id)
        assert folded is not None
        assert folded["folded_events"] == total - 2
        assert folded["attempts"] == 1
        assert folded["last_error"] == "503 from the API"
        assert folded["first_seen"] <= a.created_at + 1
        assert journal.fold_history(cutoff) == 0

    def test_young_events_are_not_folded(self, journal: AnyJournal) -> None:
        """Nothing younger than the cutoff is folded."""
        a = _settled(journal, "/in/a.mp3", "k")
        journal.transition(a, "uploading", actor="worker")
        assert journal.fold_history(0.0) == 0
        assert len(journal.events(a.id)) == 3
        assert journal.folded_history(a.id) is None

    def test_space_names_what_takes_it(self, journal: AnyJournal) -> None:
        """space() gives a total and its parts: results, events, sources, indexes."""
        a = _settled(journal, "/in/a.mp3", "k")
        journal.store_result(a, {"id": "j"})
        space = journal.space()
        names = dict(space.parts)
        assert {"results", "events", "sources", "indexes"} <= set(names)
        assert space.total >= sum(v for k, v in names.items() if k != "WAL") > 0
        assert "KiB" in space.describe(1) or "MiB" in space.describe(1)


class TestMigratedPostgres:
    """A PostgreSQL journal made with only the older migration files opens, migrates and
    reads its plain results back, then packs them."""

    def test_older_schema_migrates_and_keeps_results(self, pg_url: str) -> None:
        conn = journal_pg.connect(pg_url)
        try:
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                         " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
            for step in journal_pg.MIGRATIONS[:2]:
                conn.execute(step.text.encode())
                conn.execute("INSERT INTO schema_version VALUES (%s, %s, 0)",
                             (step.version, step.name))
            job = {"id": "j-old", "result": {"x": ["é", 1.5, None]}}
            conn.execute("INSERT INTO results (content_key, job_id, job_json, created_at)"
                         " VALUES ('kold', 'j-old', %s, 1)", (json.dumps(job),))
        finally:
            conn.close()
        with PostgresJournal.open(pg_url, node="node-a") as journal:
            assert journal.schema_version() == journal_pg.SCHEMA_VERSION
            assert journal.result_for("kold") == job
            assert journal.pack_results() == 1
            assert _stored_result(journal, "kold")[0] == ""
            assert journal.result_for("kold") == job


class TestCopyPacked:
    """A copy carries packed results and folded history, and packs plain ones."""

    def test_copy_round_trip_reads_identically(self, tmp_path: Path, pg_url: str) -> None:
        src = tmp_path / "journal.db"
        job = {"id": "job-c", "result": {"words": ["ü"] * 50}}
        with Journal.open(src, exclusive=True) as journal:
            a = _settled(journal, "/in/a.mp3", "kc")
            journal.store_result(a, job)
            journal.transition(a, "done", actor="worker")
            journal.fold_history(max(e["at"] for e in journal.events(a.id)) + 1)
            folded = journal.folded_history(a.id)
            _sql(journal)._run_text(
                "INSERT INTO results (content_key, job_id, job_json, created_at)"
                " VALUES ('plain', 'p', '{\"id\": \"p\"}', 1)", {})
            # Stored as an older writer spaced it: the copy packs this text, not a rewrite.
            _sql(journal)._run_text(
                "INSERT INTO results (content_key, job_id, job_json, created_at)"
                " VALUES ('spaced', 's', '{\"id\":\"s\"}', 1)", {})
        copy_journal(src, pg_url)
        back = tmp_path / "back.db"
        copy_journal(pg_url, back)
        for target in (pg_url, back):
            with Journal.open(target, readonly=True) as journal:
                source = journal.by_path("/in/a.mp3")
                assert source is not None
                assert journal.result_for("kc") == job
                assert journal.result_for("plain") == {"id": "p"}
                assert journal.folded_history(source.id) == folded
        assert all(r["job_json"] == "" for r in read_rows(str(back)).results)
        [spaced] = [r for r in read_rows(str(back)).results if r["content_key"] == "spaced"]
        assert spaced["job_z"] == pack_text('{"id":"s"}')
