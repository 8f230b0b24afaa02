"""The journal's logic, written once for both databases, against the named queries.

:class:`SQLJournal` implements every method whose meaning does not depend on the database;
a connector (:mod:`~watcherd.journal.sqlite`, :mod:`~watcherd.journal.postgres`) supplies
the connection, transactions, how a row and a value are stored (:mod:`watcherd.journal.stored`)
and what only it has: locking and pragmas (SQLite), leases, node names and LISTEN/NOTIFY
(PostgreSQL). The statements live in ``sql/queries.sql`` (:mod:`watcherd.journal.queries`).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import itertools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from watcherd.journal._base import (
    ENDED_STATES,
    RETRY_STATES,
    STATES,
    UNKNOWN_ID,
    FileStat,
    Journal,
    Source,
    State,
)
from watcherd.journal.indexing import (
    MAX_UTTERANCES,
    forget_indexed,
    index_result,
    index_stored,
    stored_job,
)
from watcherd.journal.queries import QUERIES, Dialect, adapt
from watcherd.journal.search import (
    Hit,
    IndexState,
    NoSearchIndex,
    QueryError,
    fts5_query,
    parse_query,
    snippet,
    tsquery,
    utterance_rows,
)
from watcherd.journal.stored import SOURCE_FIELDS, pack_job, pack_text, unpack_job
from watcherd.usage import UsageRow, job_usage

__all__ = ["SQLJournal", "assignments", "insert_source"]

# Matching utterances read per page, per file asked for (hits are grouped by file).
_HITS_READ_PER_FILE = 10


#: Folded transitions that count as an attempt: work on the file started (a Gladia job being
#: created, or a local transcription starting).
_FOLDS_ATTEMPT = frozenset({("uploaded", "submitting"), ("pending", "submitting"),
                           ("pending", "transcribing")})
# Meta keys of the background passes: where each stopped (so a restart goes on from there).
_PACKED_AFTER = "results_packed_after"
_PACKED_ALL = "results_packed"
_FOLDED_AFTER = "history_folded_after"


class SQLJournal(Journal):
    """What both SQL backends share; a connector sets :attr:`dialect` and the hooks below."""

    #: Which variant of each query in ``sql/queries.sql`` this connector runs.
    dialect: Dialect
    # The database connection (sqlite3 or psycopg; both have ``execute`` and cursors).
    _conn: Any

    # -- what a connector provides ---------------------------------------------------------

    @abc.abstractmethod
    def _row(self, row: Any) -> Source:
        """A database row as a :class:`Source` (paths decoded)."""

    @abc.abstractmethod
    def _enc(self, path: str) -> str:
        """A path as this database stores it."""

    @abc.abstractmethod
    def _dec(self, stored: str) -> str:
        """A stored path as this node's local path."""

    @abc.abstractmethod
    def _text(self, text: str) -> str:
        """Human text as this database can store it."""

    @abc.abstractmethod
    def _transaction(self, *, bulk: bool = False, notify: bool = False
                     ) -> contextlib.AbstractContextManager[Any]:
        """One transaction (``bulk``: may skip its flush; ``notify``: tell other nodes)."""

    @abc.abstractmethod
    def _move(self, source: Source, state: str, *, actor: str, reason: str | None,
              fence: bool = False, **changes: Any) -> None:
        """Update the row and append its event, inside the current transaction."""

    def _move_many(self, moves: Sequence[tuple[Source, dict[str, Any]]], state: str, *,
                   actor: str, reason: str) -> None:
        """:meth:`_move` for each ``(source, changes)``, all with the same columns changed
        (inside the current transaction). A backend may do it in fewer statements."""
        for source, changes in moves:
            self._move(source, state, actor=actor, reason=reason, **changes)

    @abc.abstractmethod
    def _create(self, path: str, root: str, state: str, *, now: float, actor: str,
                reason: str, **columns: Any) -> int | None:
        """Insert a new source (stored path and root) with its first event; its id, or None
        when the path has a row already (inside the current transaction)."""

    def _params(self, params: dict[str, Any]) -> Any:
        """Parameters as the driver takes them (SQLite has no arrays: see its connector)."""
        return params

    def _run(self, query: str, /, **params: Any) -> Any:
        """Run the named query of this dialect; the driver's cursor."""
        return self._conn.execute(QUERIES[self.dialect][query], self._params(params))

    def _run_text(self, text: str, params: dict[str, Any]) -> Any:
        """Run a statement built at run time (written for both, see :func:`adapt`)."""
        return self._conn.execute(adapt(self.dialect, text), self._params(params))

    def _rows(self, query: str, /, **params: Any) -> Iterator[Source]:
        return (self._row(r) for r in self._run(query, **params))

    # -- reading -------------------------------------------------------------------------

    def get(self, source_id: int) -> Source:
        """The source with this id."""
        row = self._run("get_source", id=source_id).fetchone()
        if row is None:
            raise KeyError(source_id)
        return self._row(row)

    def _get_many(self, ids: Sequence[int]) -> list[Source]:
        """These sources, in this order."""
        if not ids:
            return []
        by_id = {s.id: s for s in self._rows("sources_by_ids", ids=sorted(set(ids)))}
        return [by_id[i] for i in ids]

    def by_path(self, path: str) -> Source | None:
        """The source recorded at this path, if any."""
        row = self._run("source_by_path", path=self._enc(path)).fetchone()
        return None if row is None else self._row(row)

    def all(self) -> list[Source]:
        """Every source, oldest first."""
        return list(self._rows("all_sources"))

    def in_states(self, states: Sequence[str]) -> list[Source]:
        """Sources in any of these states, oldest first."""
        return list(self._rows("sources_in_states", states=list(states)))

    def state_since(self) -> dict[int, float]:
        """For each source, when it entered its current state."""
        return {int(r["id"]): float(r["at"]) for r in self._run("state_since")}

    def counts(self) -> dict[str, int]:
        """Number of sources per state (every state present, zero included)."""
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        for row in self._run("counts"):
            counts[row["state"]] = int(row["n"])
        return counts

    def events(self, source_id: int) -> list[dict[str, Any]]:
        """The transitions of one source, oldest first."""
        return [dict(r) for r in self._run("events", source_id=source_id)]

    def result_for(self, content_key: str) -> dict[str, Any] | None:
        """The finished job object stored for this content key, if one was received."""
        row = self._run("result_for", content_key=content_key).fetchone()
        if row is None:
            return None
        return unpack_job(row["job_json"], row["job_z"])

    def folded_history(self, source_id: int) -> dict[str, Any] | None:
        """The summary of a source's events folded away (older than ``history_days``)."""
        row = self._run("folded_history", source_id=source_id).fetchone()
        return None if row is None else dict(row)

    def output_base_taken(self, base: str, *, by_other_than: str) -> bool:
        """Whether another source already owns this output base (``DIR/STEM``)."""
        return self._run("output_base_taken", base=self._enc(base),
                         path=self._enc(by_other_than)).fetchone() is not None

    def outputs_of_content(self, content_key: str, *, other_than: str) -> list[Source]:
        """Sources with this content but another path whose written outputs are on record."""
        return list(self._rows("outputs_of_content", content_key=content_key,
                               path=self._enc(other_than)))

    def leader_for(self, content_key: str) -> Source | None:
        """The oldest active source with this content, which alone may create its job."""
        row = self._run("leader_for", content_key=content_key).fetchone()
        return None if row is None else self._row(row)

    def unsettled(self, *, limit: int = 500) -> list[Source]:
        """Pending sources not hashed yet, longest-quiet first."""
        return list(self._rows("unsettled", limit=limit))

    def due(self, now: float, *, limit: int = 1000, queued: bool = True) -> list[Source]:
        """Settled sources with remote work to do now; jobs already created come first.

        Four indexed reads instead of one sort of every queued row: with 100,000 files
        queued, each pass of the worker reads a few dozen rows, not the whole queue (and
        none of the queue with ``queued=False``). In a shared journal a source another node
        holds a live lease on is left out.
        """
        found: dict[int, Source] = {}
        names = ("due_remote", "due_waiting", "due_started", *(("due_queued",) if queued else ()))
        for name in names:
            for source in self._rows(name, now=now, limit=limit, me=self.node):
                found.setdefault(source.id, source)
        ordered = sorted(found.values(), key=lambda s: (
            s.job_id is None, s.submit_started_at is None, s.audio_url is None, s.id))
        return ordered[:limit]

    def next_attempt_at(self, after: float) -> float | None:
        """The earliest time after ``after`` that a waiting (or backing-off) source is due.

        Times already past are not returned: such a source is due now, and if it could not be
        started, what blocks it (a full plan, a leader) wakes the loop when it clears.
        """
        row = self._run("next_attempt_at", after=after).fetchone()
        value = row["t"] if row is not None else None
        return float(value) if value is not None else None

    def count_in_flight(self, *, exclude: set[int]) -> int:
        """Active sources whose Gladia job exists or may exist, except those in ``exclude``.

        In a shared journal, counted over every node: the plan's concurrency is the account's.
        """
        row = self._run("count_in_flight", exclude=sorted(exclude)).fetchone()
        return int(row["n"]) if row else 0

    def job_times(self) -> list[tuple[str, float | None, float]]:
        """Every remembered job time, oldest first: (kind, audio seconds, seconds)."""
        return [(r["options_class"], r["audio_seconds"], r["seconds"])
                for r in self._run("job_times")]

    # -- writing -------------------------------------------------------------------------

    def reschedule_waiting(self, now: float) -> int:
        """Make every waiting source due now (the API came back); returns how many."""
        with self._transaction(notify=True):
            cur = self._run("reschedule_waiting", now=now)
        return int(cur.rowcount)

    def transition(
        self, source: Source, state: State, *, actor: str, reason: str | None = None,
        **changes: Any,
    ) -> Source:
        """Move one source to ``state`` (with column changes) in one transaction.

        In a shared journal, refused (:class:`~watcherd.journal.LeaseLost`) while another
        node holds a live lease on the source.
        """
        return self._transition(source, state, actor=actor, reason=reason, fence=True,
                                **changes)

    def _transition(self, source: Source, state: str, *, actor: str, reason: str | None,
                    fence: bool, **changes: Any) -> Source:
        _check_columns(changes)
        if state == "done" and source.audio_url is not None:
            # The upload's URL serves only to create the job; a done row would keep it for
            # good (~64 B of a short file's 2 KB, issue 26). A later version uploads anew.
            changes.setdefault("audio_url", None)
        with self._transaction(notify=True):
            self._move(source, state, actor=actor, reason=reason, fence=fence, **changes)
        return self._after_transition(source)

    def _after_transition(self, before: Source) -> Source:
        """The source as committed, once every listener heard of it."""
        moved = self.get(before.id)
        self._notify(moved, before.state)
        return moved

    def observe_many(
        self, seen: Iterable[tuple[str, str, FileStat, str]], *, actor: str = "watcher",
    ) -> list[Source]:
        """Record files seen on disk: ``(path, watch_root, stat, options_json)`` each.

        New paths become ``pending``. A known path whose stat changed is settled again: a
        ``pending`` one restarts its settle clock, a finished or gone one becomes a new version
        (``pending``), and one in the middle of remote work is left alone (the worker notices
        the change when it re-checks the content before upload). Returns the sources that now
        need settling. Several nodes seeing one file merge into its one row.
        """
        now = time.time()
        items = [(self._enc(p), self._enc(r), st, self._text(o)) for p, r, st, o in seen]
        touched: list[int] = []
        with self._transaction(bulk=True, notify=True):
            # Known rows read and locked at once, in path order: two nodes scanning
            # overlapping folders lock in the same order and never deadlock.
            known: dict[str, Source] = {r["path"]: self._row(r) for r in self._run(
                "lock_sources_by_paths", paths=sorted({i[0] for i in items}))}
            for path, root, st, options_json in items:
                source = known.get(path)
                if source is None:
                    made = self._create(
                        path, root, "pending", now=now, actor=actor, reason="seen",
                        size=st.size, mtime_ns=st.mtime_ns, dev=st.dev, inode=st.inode,
                        changed_at=now, options_json=options_json,
                    )
                    if made is not None:
                        touched.append(made)
                        continue
                    # Inserted since the read (by another node, or earlier in this batch).
                    source = self._locked_by_path(path)
                needs_settling, wrote = self._observe_known(source, st, now, options_json,
                                                            actor)
                if needs_settling:
                    touched.append(source.id)
                if wrote:
                    known.pop(path, None)  # a repeat later in the batch reads it again
                else:
                    known[path] = source
        return self._get_many(touched)

    def _locked_by_path(self, stored_path: str) -> Source:
        row = self._run("lock_source_by_path", path=stored_path).fetchone()
        assert row is not None
        return self._row(row)

    def _observe_known(self, source: Source, st: FileStat, now: float, options_json: str,
                       actor: str) -> tuple[bool, bool]:
        """Apply one observation to a known row: (needs settling, row written)."""
        # Size and mtime, plus device and inode only where this node recorded them: another
        # machine sees one file on the share with other numbers, and its scan must never make
        # this node's finished files look changed (nor the other way round).
        same = source.size is not None and source.mtime_ns is not None and FileStat(
            source.size, source.mtime_ns,
            UNKNOWN_ID if source.dev is None else source.dev,
            UNKNOWN_ID if source.inode is None else source.inode,
        ).agrees(st)
        if source.state == "pending":
            if not same:
                self._run("restart_settling", size=st.size, mtime_ns=st.mtime_ns, dev=st.dev,
                          inode=st.inode, node=self.node, now=now, id=source.id)
            # Only a row not settled before is handed back.
            return not source.settled, not same
        if source.state in ENDED_STATES and (not same or source.state == "gone"):
            reason = "reappeared" if source.state == "gone" else "changed on disk"
            self._move(
                source, "pending", actor=actor, reason=reason,
                sha256=None, content_key=None, audio_url=None, job_id=None,
                submit_started_at=None, attempts=0, job_errors=0, next_attempt_at=None,
                last_error=None, note=None, options_json=options_json, size=st.size,
                mtime_ns=st.mtime_ns, dev=st.dev, inode=st.inode, changed_at=now,
            )
            return True, True
        return False, False

    def record_unreadable(self, path: str, root: str, options_json: str, reason: str
                          ) -> Source:
        """A path where a source should be but that cannot be read: a failed row with why."""
        now = time.time()
        reason = self._text(reason)
        with self._transaction(notify=True):
            made = self._create(self._enc(path), self._enc(root), "failed", now=now,
                                actor="worker", reason=reason, last_error=reason,
                                options_json=self._text(options_json))
            if made is None:
                source = self._locked_by_path(self._enc(path))
                made = source.id
                self._move(source, "failed", actor="worker", reason=reason, last_error=reason)
        return self.get(made)

    def settle_many(self, items: Iterable[tuple[Source, str, str, FileStat]]) -> list[int]:
        """Record hashed sources ``(source, sha256, content key, stat)`` in one transaction.

        Only a source still ``pending`` and unchanged since it was read (same ``changed_at``)
        is recorded; one that changed meanwhile is settled again later. Returns the ids
        recorded.
        """
        batch = list(items)
        recorded = []
        moves: list[tuple[Source, dict[str, Any]]] = []
        with self._transaction(bulk=True, notify=True):
            # Read and locked at once, in id order: two nodes never deadlock on a batch.
            current = {r["id"]: (r["state"], r["changed_at"], r["options_json"])
                       for r in self._run("lock_settling",
                                          ids=sorted({s.id for s, _, _, _ in batch}))}
            for source, digest, key, st in batch:
                if current.get(source.id) != ("pending", source.changed_at,
                                              source.options_json):
                    continue
                # Settling leaves the row's state, changed_at and options as they are, so a
                # repeat later in the batch is checked against the row as read (no re-read),
                # and the row as the worker read it is the row as it is now.
                moves.append((source, {
                    "sha256": digest, "content_key": key, "note": "queued", "size": st.size,
                    "mtime_ns": st.mtime_ns, "dev": st.dev, "inode": st.inode,
                }))
                recorded.append(source.id)
            # One statement each for the rows and their events where the backend can.
            self._move_many(moves, "pending", actor="worker", reason="settled and hashed")
        return recorded

    def retry(self, paths: Sequence[str] = (), *, all_failed: bool = False) -> list[Source]:
        """Put failed (or waiting) sources back in the queue now; returns those moved."""
        moved = []
        with self._transaction(notify=True):
            if all_failed:
                targets = list(self._rows("sources_failed"))
            else:
                encoded = [self._enc(p) for p in dict.fromkeys(paths)]
                found = {r["path"]: self._row(r)
                         for r in self._run("sources_by_paths", paths=encoded)}
                targets = [found[p] for p in encoded if p in found]
            for source in targets:
                if source.state not in RETRY_STATES:
                    continue
                # A job that ended in error is not reused: forget it so a new one is created.
                self._move(
                    source, "pending", actor="user", reason="watcherd retry",
                    attempts=0, job_errors=0, next_attempt_at=None, last_error=None,
                    note=None, job_id=None if source.state == "failed" else source.job_id,
                )
                moved.append(source.id)
        return self._get_many(moved)

    def reprocess(self, path: str, options_json: str) -> Source | None:
        """Transcribe a finished source again with these options (``retry --reprocess``).

        Same options and content: the stored result is reused and only the outputs are
        rewritten, so nothing is paid twice; new options make a new job.
        """
        source = self.by_path(path)
        if source is None or source.state not in ENDED_STATES:
            return None
        # A person's decision: not fenced by a lease a node may still hold on a failed row.
        return self._transition(
            source, "pending", actor="user", reason="watcherd retry --reprocess", fence=False,
            options_json=options_json, sha256=None, content_key=None, audio_url=None,
            job_id=None, submit_started_at=None, attempts=0, job_errors=0,
            next_attempt_at=None, last_error=None, note=None, changed_at=0.0,
        )

    def record_job_time(self, options_class: str, audio_seconds: float | None,
                        seconds: float, *, keep: int = 100) -> None:
        """Remember how long one finished job took (the newest ``keep`` per kind are kept)."""
        kind = self._text(options_class)
        with self._transaction():
            self._run("insert_job_time", at=time.time(), kind=kind,
                      audio_seconds=audio_seconds, seconds=seconds)
            self._run("trim_job_times", kind=kind, keep=keep)

    def store_result(self, source: Source, job: Mapping[str, Any], *,
                     delete: bool = False) -> None:
        """Keep a finished job object, keyed by content, before any output is written.

        In the same transaction: its hours, (``delete``) the intent to delete it at Gladia
        once a source of this content is done, and its transcript in the search index (a
        stored result is always found; a result stored again replaces its rows).
        """
        assert source.content_key is not None
        now = time.time()
        job_id = self._text(str(job.get("id", "")))
        used = job_usage(job, now=now)
        with self._transaction():
            # Before the result is replaced: SQLite's index forgets words given again.
            forget_indexed(self._conn.execute, self.dialect, source.content_key)
            self._run("store_result", content_key=source.content_key,
                      job_id=job_id, job_z=pack_job(job), created_at=now)
            if job_id:
                self._run("record_remote_job", job_id=job_id, engine=self._text(used.engine),
                          watch_root=self._enc(source.watch_root),
                          content_key=source.content_key,
                          model=None if used.model is None else self._text(used.model),
                          billing_seconds=used.billing_seconds,
                          audio_seconds=used.audio_seconds, finished_at=used.finished_at,
                          delete_wanted_at=now if delete else None)
            index_result(self._conn.execute, self.dialect, source.content_key, job)

    # -- hours used and deletes at Gladia (watcherd/usage.py) -------------------------------

    def usage(self, since: float) -> list[UsageRow]:
        """Hours used since ``since``, by folder, engine and model."""
        return [UsageRow(watch_root=self._dec(r["watch_root"]), engine=r["engine"],
                         model=r["model"], jobs=int(r["jobs"]),
                         billing_seconds=float(r["billing_seconds"] or 0.0),
                         audio_seconds=float(r["audio_seconds"] or 0.0))
                for r in self._run("usage_since", since=since)]

    def billed_since(self, since: float, engine: str = "gladia") -> float:
        """Seconds ``engine`` billed since ``since`` (over every node of a shared journal)."""
        row = self._run("billed_since", since=since, engine=engine).fetchone()
        return float(row["seconds"] or 0.0)

    def due_deletes(self, now: float, *, limit: int = 50) -> list[tuple[str, int]]:
        """Jobs to delete at Gladia now (with the attempts so far): wanted, not confirmed,
        their outputs written."""
        return [(r["job_id"], int(r["delete_attempts"]))
                for r in self._run("due_deletes", now=now, limit=limit)]

    def next_delete_at(self, now: float) -> float | None:
        """When the next deferred delete is due (None: none is)."""
        row = self._run("next_delete_at", now=now).fetchone()
        return None if row is None or row["t"] is None else float(row["t"])

    def deletes_pending(self) -> int:
        """Jobs whose delete at Gladia is wanted and not yet confirmed."""
        return int(self._run("delete_pending").fetchone()["n"])

    def delete_deferred(self, job_id: str, at: float) -> None:
        """Gladia refused the delete for now (403 while not deletable): try again ``at``."""
        with self._transaction():
            self._run("delete_deferred", job_id=job_id, at=at)

    def delete_done(self, job_id: str) -> None:
        """Gladia deleted the job (or had no such job any more)."""
        with self._transaction():
            self._run("delete_done", job_id=job_id, at=time.time())

    def drop_remote_jobs(self, before: float, *, limit: int = 500) -> int:
        """Drop one batch of finished jobs' rows that no longer serve (see :class:`Journal`)."""
        with self._transaction(bulk=True):
            return int(self._run("drop_remote_jobs", before=before, limit=limit).rowcount)

    # -- search --------------------------------------------------------------------------

    def search(self, query: str, *, folder: str | None = None, since: float | None = None,
               limit: int = 20) -> list[Hit]:
        """Done files whose transcript matches ``query``, newest first, one hit per file.

        ``folder`` keeps files under that folder, ``since`` those finished since then (epoch
        seconds). A query that cannot find anything by its form raises
        :class:`~watcherd.journal.search.QueryError` with what to type instead.
        """
        terms = parse_query(query)
        text = fts5_query(terms) if self.dialect == "sqlite" else tsquery(terms)
        prefix = None if folder is None else self._enc(folder.rstrip("/")) + "/"
        found: dict[int, Hit] = {}
        page = max(1, limit) * _HITS_READ_PER_FILE
        before: int | None = None
        said: dict[str, list[tuple[float, float, str, str]]] = {}  # utterances by result
        # Pages of matching utterances, newest first, until ``limit`` files have one (a word
        # said often in each file would fill a single page with a few files).
        while len(found) < limit:
            rows = self._search_page(query, text, prefix, since, before, page)
            for row in rows:
                source = self._row(row)
                if folder is not None and not _under(source.path, folder):
                    continue
                hit = found.get(source.id)
                if hit is not None:
                    found[source.id] = dataclasses.replace(hit, hits=hit.hits + 1)
                elif len(found) < limit:
                    utterance = self._utterance(said, row["indexed_key"],
                                                int(row["utterance_id"]))
                    if utterance is not None:
                        start, end, text = utterance
                        found[source.id] = Hit(source, start, end, snippet(text, terms), 1)
            if len(rows) < page:
                break
            before = int(rows[-1]["utterance_id"])
        return list(found.values())

    def _utterance(self, said: dict[str, list[tuple[float, float, str, str]]],
                   content_key: str, utterance_id: int) -> tuple[float, float, str] | None:
        """A hit's time and text, from its stored result (unpacked once per search); None
        when the result no longer has that utterance (it was stored again meanwhile)."""
        rows = said.get(content_key)
        if rows is None:
            stored = self._run("result_for", content_key=content_key).fetchone()
            rows = said[content_key] = utterance_rows(stored_job(stored))
        place = utterance_id & (MAX_UTTERANCES - 1)
        if place >= len(rows):
            return None
        start, end, text, _ = rows[place]
        return start, end, self._text(text)

    def _search_page(self, query: str, text: str, prefix: str | None, since: float | None,
                     before: int | None, page: int) -> list[Any]:
        try:
            return list(self._run("search", query=text, folder=prefix, since=since,
                                  before=before, limit=page))
        except Exception as exc:
            self._check_index(exc)
            if not self._query_refused(exc):
                raise
            raise QueryError(f"the search index cannot read {query!r}; search for plain "
                             "words, a \"phrase\" or a prefix*") from None

    def _check_index(self, exc: BaseException) -> None:
        """Raise NoSearchIndex when ``exc`` says the index's tables are missing."""
        if self._table_missing(exc):
            raise NoSearchIndex(
                f"the journal {self.location} has no search index yet (it was made by an "
                "older watcherd): start the daemon once (`watcherd run` or the service), "
                "which adds it and indexes the stored transcripts in the background"
            ) from None

    def _table_missing(self, exc: BaseException) -> bool:
        """Whether the database says a table does not exist (a connector knows how)."""
        return False

    def _query_refused(self, exc: BaseException) -> bool:
        """Whether the database refused the query text itself (never expected: terms are
        quoted; a connector says which of its errors that is)."""
        return False

    def _backlog_lock(self) -> None:
        """Keep other writers from indexing the backlog meanwhile (one writer: nothing)."""
        return None

    def index_backlog(self, *, limit: int = 50) -> int:
        """Index up to ``limit`` stored results the index lacks; how many were indexed.

        Results stored before the index existed (an upgraded journal) are indexed this way,
        a batch per call, by the daemon in the background after it is ready. Each batch is
        one short transaction; a result another node indexed meanwhile is skipped.
        """
        with self._transaction():
            self._backlog_lock()
            backlog = self._run("search_backlog", limit=limit).fetchall()
            for row in backlog:
                index_stored(self._conn.execute, self.dialect, row)
        return len(backlog)

    def search_state(self) -> IndexState:
        """Results stored, results indexed and utterance rows (``doctor`` compares them)."""
        try:
            row = self._run("search_state").fetchone()
        except Exception as exc:
            self._check_index(exc)
            raise
        return IndexState(int(row["results"]), int(row["indexed"]), int(row["utterances"]))

    # -- upkeep: small batches the daemon runs in the background ---------------------------

    def pack_results(self, *, limit: int = 100, max_bytes: int = 4 << 20) -> int:
        """Compress one batch of results still stored as plain JSON (journals written before
        results were packed); returns how many rows it looked at (0: none are left).

        The pass walks the primary key from where it stopped (kept in ``meta``), so each
        batch reads only its own rows, and READY=1 never waits for it.
        """
        if self._get_meta(_PACKED_ALL) == "1":
            return 0
        with self._transaction(bulk=True):
            after = self._get_meta(_PACKED_AFTER) or ""
            rows = self._run("results_after", after=after, limit=limit).fetchall()
            budget = max_bytes
            seen = 0
            for row in rows:
                seen += 1
                after = row["content_key"]
                if row["plain"]:
                    text = row["job_json"]
                    self._run("pack_result", content_key=after, job_z=pack_text(text))
                    budget -= len(text)
                    if budget <= 0:
                        break  # an hour-long object is 1 MB of JSON: a batch stays short
            if seen < limit and seen == len(rows):
                self._set_meta(_PACKED_ALL, "1")  # rows stored from now on are packed
            self._set_meta(_PACKED_AFTER, after)
        return seen

    def fold_history(self, before: float, *, limit: int = 500) -> int:
        """Fold one batch of events older than ``before`` into ``folded_history``; returns how
        many events it looked at (0: nothing older is left to look at).

        Per source: first seen, last done, attempts (transitions that started work), the
        last error and how many events were folded up to when. The event that brought a
        source into its current state is never folded (it says since when it is in it), nor
        is the source row or its result. The pass goes on in event id order from where it
        stopped (``meta``); a source whose older events were kept is folded again with its
        next batch.
        """
        with self._transaction(bulk=True):
            after = int(self._get_meta(_FOLDED_AFTER) or 0)
            # Ids follow time: the batch ends at the first event young enough to keep.
            rows = list(itertools.takewhile(
                lambda r: float(r["at"]) < before,
                self._run("events_after", after=after, limit=limit).fetchall()))
            if not rows:
                return 0
            ids = sorted({int(r["source_id"]) for r in rows})
            list(self._run("lock_sources_by_ids", ids=ids))  # another node folds in turn
            for source_id in ids:
                self._fold_source(source_id, before)
            self._set_meta(_FOLDED_AFTER, str(max(int(r["id"]) for r in rows)))
        return len(rows)

    def _fold_source(self, source_id: int, before: float) -> None:
        entered = self._run("entered_state", source_id=source_id).fetchone()
        keep = entered["id"] if entered is not None and entered["id"] is not None else None
        if keep is None:
            return  # no event says since when it is in its state: nothing is folded
        events = self._run("foldable_events", source_id=source_id, before=before,
                           keep=keep).fetchall()
        if not events:
            return
        old = self._run("folded_history", source_id=source_id).fetchone()
        first_seen = min(float(events[0]["at"]), float(old["first_seen"]) if old else 1e300)
        done_at = old["done_at"] if old else None
        attempts = int(old["attempts"]) if old else 0
        last_error = old["last_error"] if old else None
        for event in events:
            if event["to_state"] == "done":
                done_at = event["at"]
            if (event["from_state"], event["to_state"]) in _FOLDS_ATTEMPT:
                attempts += 1
            if event["to_state"] in ("failed", "waiting") and event["reason"]:
                last_error = event["reason"]
        self._run("store_folded_history", source_id=source_id, first_seen=first_seen,
                  done_at=done_at, attempts=attempts, last_error=last_error,
                  folded_events=(int(old["folded_events"]) if old else 0) + len(events),
                  folded_until=float(events[-1]["at"]))
        self._run("delete_events", source_id=source_id, before=before, keep=keep)

    def _get_meta(self, key: str) -> str | None:
        row = self._run("get_meta", key=key).fetchone()
        return None if row is None else str(row["value"]) if row["value"] is not None else None

    def _set_meta(self, key: str, value: str) -> None:
        self._run("set_meta", key=key, value=value)


def _under(path: str, folder: str) -> bool:
    folder = folder.rstrip("/")
    return path.startswith(folder + "/") or not folder


def insert_source(path: str, root: str, state: str, now: float, columns: Mapping[str, Any]
                  ) -> tuple[str, dict[str, Any]]:
    """The statement (for :func:`adapt`) and parameters that add a new source row, nothing
    when its path has one already; ``columns`` hold stored values."""
    values = {"path": path, "watch_root": root, "state": state, **columns, "attempts": 0,
              "job_errors": 0, "created_at": now, "updated_at": now}
    text = (f"INSERT INTO sources ({', '.join(values)})"
            f" VALUES ({', '.join(':' + name for name in values)}) ON CONFLICT (path) DO NOTHING")
    return text, values


def assignments(changes: Mapping[str, Any]) -> str:
    """``SET`` assignments for these columns, as named parameters (prefixed ``set_``)."""
    return ", ".join(f"{name} = :set_{name}" for name in changes)


def _check_columns(changes: Mapping[str, Any]) -> None:
    unknown = set(changes) - set(SOURCE_FIELDS)
    if unknown:
        raise ValueError(f"unknown journal columns: {sorted(unknown)}")
