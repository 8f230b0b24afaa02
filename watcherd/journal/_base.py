"""The journal's interface: states, the row of one source, and what every backend provides.

The journal holds every source's state and every transition (design.md, invariant 1). Every
state change in watcherd goes through a method of :class:`Journal`, each one a single
transaction that updates the source row and appends to the events table, so after a crash at
any instant the journal says exactly what was done and what to do next.

A backend subclasses :class:`Journal`; subclasses implement all abstract methods. The SQLite
backend (:mod:`watcherd.journal.sqlite`) is the default and the embedded one.
"""

from __future__ import annotations

import abc
import functools
import inspect
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, get_args

import structlog

from watcherd.errors import JournalError
from watcherd.journal.unavailable import JournalUnavailable
from watcherd.usage import UsageRow

if TYPE_CHECKING:
    from watcherd.journal.search import Hit, IndexState

_log = structlog.get_logger("watcherd.journal")

# In the order `status` lists them: the pipeline's steps, then how a source can end.
State = Literal[
    "pending",
    "uploading",
    "uploaded",
    "submitting",
    "submitted",
    "transcribing",
    "done",
    "waiting",
    "failed",
    "gone",
]
STATES: tuple[State, ...] = get_args(State)
# States from which the worker still has something to do.
ACTIVE_STATES: tuple[State, ...] = (
    "pending",
    "uploading",
    "uploaded",
    "submitting",
    "submitted",
    "transcribing",
    "waiting",
)
# The sets of states the journal's queries ask for (written into the SQL from here, never by
# hand; see watcherd/journal/queries.py).
#: In the middle of remote work (uploading to transcribing).
REMOTE_STATES: tuple[State, ...] = ("uploading", "uploaded", "submitting", "submitted",
                                    "transcribing")
#: Active states in which a Gladia job counts against the plan once it exists or may exist.
IN_FLIGHT_STATES: tuple[State, ...] = tuple(s for s in ACTIVE_STATES if s != "transcribing")
#: States whose ``next_attempt_at`` wakes the worker.
WAKE_STATES: tuple[State, ...] = ("waiting", "pending")
#: How a source can end (the worker has nothing left to do).
ENDED_STATES: tuple[State, ...] = ("done", "failed", "gone")
#: What ``watcherd retry`` puts back in the queue.
RETRY_STATES: tuple[State, ...] = ("failed", "waiting")


@dataclass(frozen=True)
class Source:
    """One row of the journal: what watcherd knows about one source file."""

    id: int
    path: str
    watch_root: str
    state: str
    size: int | None
    mtime_ns: int | None
    dev: int | None
    inode: int | None
    changed_at: float | None
    sha256: str | None
    options_json: str
    content_key: str | None
    audio_url: str | None
    job_id: str | None
    submit_started_at: float | None
    attempts: int
    job_errors: int
    next_attempt_at: float | None
    last_error: str | None
    note: str | None
    output_base: str | None
    engine: str | None
    done_at: float | None
    created_at: float
    updated_at: float
    #: The outputs last written for this source: a JSON list of their suffixes after
    #: ``output_base`` ("txt", "en.srt"), so it reads the same on every node of a shared
    #: journal; while a re-render moves them to a new base, {"base": OLD, "suffixes": [...]}
    #: (what is still to be removed there). None before any was recorded.
    outputs_json: str | None = None

    @classmethod
    def from_values(cls, values: Sequence[Any]) -> Self:
        """A row read from the journal, its values in field order.

        Built without the frozen ``__init__``, which sets each of its 27 fields through
        ``object.__setattr__``: at a first start with 100,000 files the journal builds about
        five rows per file, and that was a tenth of the worker's time (issue 22 item 3).
        """
        row = object.__new__(cls)
        row.__dict__.update(zip(_SOURCE_NAMES, values, strict=True))
        return row

    @property
    def written_outputs(self) -> tuple[str, ...]:
        """The paths of the outputs last written for this source (the journal's record)."""
        if not self.outputs_json:
            return ()
        value = json.loads(self.outputs_json)
        base = self.output_base
        if isinstance(value, dict):
            base, value = value.get("base"), value.get("suffixes")
        if not isinstance(base, str) or not isinstance(value, list):
            return ()
        return tuple(f"{base}.{suffix}" for suffix in value if isinstance(suffix, str))

    @property
    def options(self) -> dict[str, Any]:
        """The Gladia options this source is transcribed with."""
        value: dict[str, Any] = json.loads(self.options_json)
        return value

    @property
    def settled(self) -> bool:
        """True once the source was seen complete and hashed."""
        return self.sha256 is not None and self.content_key is not None


_SOURCE_NAMES = tuple(f.name for f in fields(Source))


@dataclass(frozen=True)
class FileStat:
    """The parts of ``os.stat`` that tell whether a file changed."""

    size: int
    mtime_ns: int
    dev: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        """Build from an ``os.stat`` result."""
        return cls(st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)

    def agrees(self, other: FileStat) -> bool:
        """Same size and mtime, and same device and inode where both sides know them.

        A shared journal hands a node the stat another node recorded: two machines see one
        file on a share with different device (and sometimes inode) numbers, so those are
        :data:`UNKNOWN_ID` there and only size and mtime can tell a change.
        """
        if (self.size, self.mtime_ns) != (other.size, other.mtime_ns):
            return False
        if UNKNOWN_ID not in (self.dev, other.dev) and self.dev != other.dev:
            return False
        return UNKNOWN_ID in (self.inode, other.inode) or self.inode == other.inode


@dataclass(frozen=True)
class JournalSpace:
    """What a journal takes on disk: ``total`` bytes and its ``parts`` (name, bytes), the
    biggest first (tables, "indexes", "free pages", "WAL"); ``how`` it was measured."""

    total: int
    parts: tuple[tuple[str, int], ...]
    how: str

    def describe(self, files: int | None = None) -> str:
        """One line: the total and its biggest parts (per source file when ``files``)."""
        each = f", {self.total / files / 1024:.1f} KiB per file" if files else ""
        parts = ", ".join(f"{name} {human_bytes(size)}" for name, size in self.parts if size)
        return f"{human_bytes(self.total)}{each}" + (f" ({parts})" if parts else "")


def human_bytes(size: float) -> str:
    """``size`` bytes the way a person reads it (1.2 MiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns at GiB


#: A device or inode number this node cannot know (recorded by another node).
UNKNOWN_ID = -1


class JournalLocked(JournalError):
    """Another watcherd process already works on this journal."""


class JournalNotReady(JournalError):
    """The journal file exists but its schema is still being created."""


class JournalCorrupt(JournalError):
    """The journal file is damaged; it can be moved aside and rebuilt from the outputs."""


# -- what a shared journal (several nodes) can refuse; backend-neutral, so the worker and the
# -- pipelines catch them without importing a database driver.


class NodeNameTaken(JournalError):
    """Another running watcherd node already uses this node name."""

    def __init__(self, message: str, *, name: str, host: str | None, pid: int | None) -> None:
        super().__init__(message)
        self.name, self.host, self.pid = name, host, pid


class LeaseLost(JournalError):
    """Another node holds a live lease on this source: this node must leave it alone."""

    def __init__(self, message: str, *, source_id: int, holder: str | None) -> None:
        super().__init__(message)
        self.source_id, self.holder = source_id, holder


class CreateIntentHeld(JournalError):
    """Another active source (maybe on another node) is creating the job for this content."""

    def __init__(self, message: str, *, content_key: str, node: str | None,
                 source_id: int | None) -> None:
        super().__init__(message)
        self.content_key, self.node, self.source_id = content_key, node, source_id


class PlanFull(JournalError):
    """The jobs in flight (running or queued at Gladia, over every node) reach the budget."""

    def __init__(self, message: str, *, in_flight: int, limit: int) -> None:
        super().__init__(message)
        self.in_flight, self.limit = in_flight, limit


class Journal(abc.ABC):
    """The journal every part of watcherd reads and the worker writes (one writer).

    Subclasses implement all abstract methods. Each method that changes state is one
    transaction; after it returns, the change is committed (intents and results durably).
    ``listeners`` are called after each committed transition with (source as it is now,
    previous state); a listener that raises is logged and never undoes the transition.
    """

    def __init__(self) -> None:
        self.listeners: list[Callable[[Source, str], None]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Make every public method of a backend raise :class:`JournalUnavailable` for a
        storage failure, so callers see one exception whatever the backend.

        Wrapped here rather than at each method, so that a method added later cannot forget
        it; the backend only says which of its errors are storage failures
        (:meth:`_unavailable_reason`).
        """
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            # Plain functions only: class and static methods, properties are left alone.
            if not name.startswith("_") and name != "close" and inspect.isfunction(value):
                setattr(cls, name, _guarded(value))

    def _unavailable_reason(self, exc: BaseException) -> str | None:
        """Why ``exc`` means the journal's storage cannot be written now, or None (a backend
        decides with :mod:`watcherd.journal.unavailable`)."""
        return None

    def _error_detail(self, exc: BaseException) -> str:
        """The storage's own message for the log (a backend cuts out what may be secret)."""
        return " ".join(str(exc).split())[:300]

    def _storage_failed(self, exc: BaseException) -> None:
        """Called once per storage failure before it is raised (a backend may drop a broken
        connection here, to open a new one at :meth:`probe_write`)."""
        return None

    def probe_write(self) -> None:
        """Make one small durable write; raises :class:`JournalUnavailable` while writes fail.

        The worker calls it, with backoff, while it pauses for the journal, and resumes when
        it returns.
        """
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str, *, exclusive: bool = False, readonly: bool = False
             ) -> Journal:
        """Open (creating and migrating if needed) the journal at ``path``.

        A ``postgresql://`` URL opens the PostgreSQL backend, anything else a SQLite file.
        ``exclusive`` makes this process the journal's one writer (a second one gets
        :class:`JournalLocked`; PostgreSQL journals are shared by design and ignore it);
        ``readonly`` opens an existing journal for inspection. The backend is chosen in
        :func:`watcherd.journal.backends.open_journal`, which registers itself here so that
        this interface imports no backend.
        """
        if _opener is None:
            raise RuntimeError("no journal backends registered: import watcherd.journal")
        return _opener(path, exclusive=exclusive, readonly=readonly)

    @abc.abstractmethod
    def close(self) -> None:
        """Close the journal; a writer records that it stopped cleanly."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    @abc.abstractmethod
    def location(self) -> Path | str:
        """Where the journal lives: a file path (SQLite) or a URL without its password."""

    @abc.abstractmethod
    def integrity_problem(self) -> str | None:
        """A full consistency check (slow on big journals): None when sound, else what failed."""

    # -- reading -------------------------------------------------------------------------

    @abc.abstractmethod
    def get(self, source_id: int) -> Source:
        """The source with this id (KeyError if there is none)."""

    @abc.abstractmethod
    def by_path(self, path: str) -> Source | None:
        """The source recorded at this path, if any."""

    @abc.abstractmethod
    def all(self) -> list[Source]:
        """Every source, oldest first."""

    @abc.abstractmethod
    def in_states(self, states: Sequence[str]) -> list[Source]:
        """Sources in any of these states, oldest first."""

    @abc.abstractmethod
    def state_since(self) -> dict[int, float]:
        """For each source, when it entered its current state."""

    @abc.abstractmethod
    def counts(self) -> dict[str, int]:
        """Number of sources per state (every state present, zero included)."""

    @abc.abstractmethod
    def events(self, source_id: int) -> list[dict[str, Any]]:
        """The transitions of one source, oldest first."""

    @abc.abstractmethod
    def result_for(self, content_key: str) -> dict[str, Any] | None:
        """The finished job object stored for this content key, if one was received."""

    @abc.abstractmethod
    def folded_history(self, source_id: int) -> dict[str, Any] | None:
        """The summary of a source's events folded away (older than ``history_days``):
        ``first_seen``, ``done_at``, ``attempts``, ``last_error``, ``folded_events`` and
        ``folded_until``; None when none were."""

    @abc.abstractmethod
    def space(self, *, detail: bool = True) -> JournalSpace:
        """How big the journal is and what takes the space (``detail``: per table, which
        reads every page of a SQLite file; without it only what costs nothing)."""

    # -- upkeep (the daemon runs it in the background, in small batches) -------------------

    @abc.abstractmethod
    def pack_results(self, *, limit: int = 100, max_bytes: int = 4 << 20) -> int:
        """Compress one batch of results stored before results were packed; rows looked
        at (0 when none are left)."""

    @abc.abstractmethod
    def fold_history(self, before: float, *, limit: int = 500) -> int:
        """Fold one batch of events older than ``before`` into per-source summaries; events
        looked at (0 when nothing older is left)."""

    @abc.abstractmethod
    def drop_remote_jobs(self, before: float, *, limit: int = 500) -> int:
        """Drop one batch of finished jobs' rows that no longer serve: finished before
        ``before`` (no billing month ``status --usage`` can show holds them) with no delete
        at Gladia still to do; rows dropped (0 when none are left)."""

    def reclaim(self) -> None:
        """Give back space the database can return cheaply now (SQLite: checkpoint the WAL,
        return a few free pages); nothing for a server database, whose autovacuum does it."""
        return None

    @abc.abstractmethod
    def output_base_taken(self, base: str, *, by_other_than: str) -> bool:
        """Whether another source already owns this output base (``DIR/STEM``)."""

    @abc.abstractmethod
    def outputs_of_content(self, content_key: str, *, other_than: str) -> list[Source]:
        """Sources with this content but another path whose written outputs are on record."""

    @abc.abstractmethod
    def leader_for(self, content_key: str) -> Source | None:
        """The oldest active source with this content, which alone may create its job."""

    @abc.abstractmethod
    def unsettled(self, *, limit: int = 500) -> list[Source]:
        """Pending sources not hashed yet, longest-quiet first."""

    @abc.abstractmethod
    def due(self, now: float, *, limit: int = 1000, queued: bool = True) -> list[Source]:
        """Settled sources with remote work to do now; jobs already created come first.

        ``queued=False`` leaves out the sources with nothing started yet (the queue proper),
        for a pass in which no engine has room for one.
        """

    @abc.abstractmethod
    def next_attempt_at(self, after: float) -> float | None:
        """The earliest time after ``after`` that a waiting (or backing-off) source is due."""

    @abc.abstractmethod
    def count_in_flight(self, *, exclude: set[int]) -> int:
        """Active sources whose Gladia job exists or may exist, except those in ``exclude``."""

    @abc.abstractmethod
    def job_times(self) -> list[tuple[str, float | None, float]]:
        """Every remembered job time, oldest first: (kind, audio seconds, seconds)."""

    # -- writing (the worker's loop only, design.md invariant 4) ---------------------------

    @abc.abstractmethod
    def transition(
        self, source: Source, state: State, *, actor: str, reason: str | None = None,
        **changes: Any,
    ) -> Source:
        """Move one source to ``state`` (with column changes) in one transaction."""

    def annotate(self, source: Source, *, actor: str, reason: str, **changes: Any) -> Source:
        """Change columns of a source without changing its state (still one logged event)."""
        return self.transition(source, source.state, actor=actor,  # type: ignore[arg-type]
                               reason=reason, **changes)

    @abc.abstractmethod
    def reschedule_waiting(self, now: float) -> int:
        """Make every waiting source due now (the API came back); returns how many."""

    @abc.abstractmethod
    def observe_many(
        self, seen: Iterable[tuple[str, str, FileStat, str]], *, actor: str = "watcher",
    ) -> list[Source]:
        """Record files seen on disk: ``(path, watch_root, stat, options_json)`` each.

        New paths become ``pending``. A known path whose stat changed is settled again: a
        ``pending`` one restarts its settle clock, a finished or gone one becomes a new version
        (``pending``), and one in the middle of remote work is left alone. Returns the sources
        that now need settling.
        """

    @abc.abstractmethod
    def settle_many(self, items: Iterable[tuple[Source, str, str, FileStat]]) -> list[int]:
        """Record hashed sources ``(source, sha256, content key, stat)``; returns ids recorded.

        Only a source still ``pending`` and unchanged since it was read is recorded.
        """

    @abc.abstractmethod
    def record_unreadable(self, path: str, root: str, options_json: str, reason: str
                          ) -> Source:
        """A path where a source should be but that cannot be read: a failed row with why."""

    @abc.abstractmethod
    def retry(self, paths: Sequence[str] = (), *, all_failed: bool = False) -> list[Source]:
        """Put failed (or waiting) sources back in the queue now; returns those moved."""

    @abc.abstractmethod
    def reprocess(self, path: str, options_json: str) -> Source | None:
        """Transcribe a finished source again with these options (``retry --reprocess``)."""

    @abc.abstractmethod
    def record_job_time(self, options_class: str, audio_seconds: float | None,
                        seconds: float, *, keep: int = 100) -> None:
        """Remember how long one finished job took (the newest ``keep`` per kind are kept)."""

    @abc.abstractmethod
    def store_result(self, source: Source, job: Mapping[str, Any], *,
                     delete: bool = False) -> None:
        """Keep a finished job object, keyed by content, before any output is written; with
        its hours, and (``delete``) the intent to delete it at Gladia once done."""

    @abc.abstractmethod
    def usage(self, since: float) -> list[UsageRow]:
        """Hours used since ``since``, by folder, engine and model."""

    @abc.abstractmethod
    def billed_since(self, since: float, engine: str = "gladia") -> float:
        """Seconds ``engine`` billed since ``since``."""

    @abc.abstractmethod
    def due_deletes(self, now: float, *, limit: int = 50) -> list[tuple[str, int]]:
        """Jobs to delete at Gladia now."""

    @abc.abstractmethod
    def next_delete_at(self, now: float) -> float | None:
        """When the next deferred delete is due."""

    @abc.abstractmethod
    def deletes_pending(self) -> int:
        """Jobs whose delete is wanted and not yet confirmed."""

    @abc.abstractmethod
    def delete_deferred(self, job_id: str, at: float) -> None:
        """The delete was refused for now: try again ``at``."""

    @abc.abstractmethod
    def delete_done(self, job_id: str) -> None:
        """The job is gone at Gladia."""

    # -- search (watcherd.journal.search) ----------------------------------------------------

    @abc.abstractmethod
    def search(self, query: str, *, folder: str | None = None, since: float | None = None,
               limit: int = 20) -> list[Hit]:
        """Done files whose transcript matches ``query``, newest first, one hit per file."""

    @abc.abstractmethod
    def index_backlog(self, *, limit: int = 50) -> int:
        """Index up to ``limit`` stored results the search index lacks; how many."""

    @abc.abstractmethod
    def search_state(self) -> IndexState:
        """Results stored, results indexed and utterance rows."""

    # -- several nodes (a shared journal); one process owns a SQLite journal, so there the
    # -- defaults below keep the one-machine behaviour.

    #: True when several daemons work this journal together (leases, create intents, NOTIFY).
    shared: bool = False
    #: This daemon's node name in a shared journal (None: not shared, or a command).
    node: str | None = None

    def claim(self, source_ids: Iterable[int], node: str, lease_seconds: float) -> list[int]:
        """Lease these sources to ``node``; returns the ids it now holds (all, unshared)."""
        return sorted(set(source_ids))

    def renew(self, node: str, lease_seconds: float) -> list[int]:
        """Extend ``node``'s leases; returns the ids it still holds (none to hold, unshared)."""
        return []

    def release(self, source_ids: Iterable[int], node: str) -> None:
        """Give up ``node``'s leases on these sources (nothing to give up, unshared)."""
        return None

    def holders(self) -> dict[int, str]:
        """Which node works on each source in flight, by source id (empty, unshared)."""
        return {}

    def map_roots(self, roots: Mapping[str, str]) -> None:
        """Adopt this node's ``{watch id: local root}`` (after a reload changed the watches).

        A shared journal stores paths relative to watch ids; a SQLite journal stores them
        absolute and needs no map.
        """
        return None

    def wait_for_change(self, timeout: float) -> bool:
        """Block until another writer commits a change (True) or ``timeout`` passes (False).

        Unshared, this process is the only writer: there is nothing to wait for.
        """
        return False

    def take_create_intent(
        self, source: Source, *, actor: str = "worker", reason: str | None = "creating job",
        max_in_flight: int | None = None, **changes: Any,
    ) -> Source:
        """Move ``source`` to ``submitting``: the intent to create its job (design.md, inv. 2).

        A shared journal makes the intent unique per content key over every node
        (:class:`CreateIntentHeld`) and counts the plan's jobs over every node; here the
        worker's own dispatch keeps copies apart. With ``max_in_flight``, :class:`PlanFull`
        when that many jobs (running or queued at Gladia) are in flight already: the same
        budget query as a shared journal's, over this process's sources (the only writer).
        """
        if max_in_flight is not None:
            in_flight = self.count_in_flight(exclude={source.id})
            if in_flight >= max_in_flight:
                raise PlanFull(f"{in_flight} jobs are in flight, the budget is {max_in_flight}",
                               in_flight=in_flight, limit=max_in_flight)
        return self.transition(source, "submitting", actor=actor, reason=reason, **changes)

    # -- for subclasses ------------------------------------------------------------------

    def _notify(self, moved: Source, previous: str) -> None:
        for listener in self.listeners:
            try:
                listener(moved, previous)
            except Exception:
                # A listener (metrics, hooks) must never undo or block a committed transition.
                _log.exception("journal_listener_failed", listener=repr(listener))


class Opener(Protocol):
    """What :meth:`Journal.open` calls: the one place that chooses a backend."""

    def __call__(self, path: Path | str, *, exclusive: bool, readonly: bool) -> Journal: ...


_opener: Opener | None = None


def register_opener(opener: Opener) -> None:
    """Make ``opener`` the function behind :meth:`Journal.open` (watcherd.journal.backends)."""
    global _opener
    _opener = opener


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` with storage failures raised as :class:`JournalUnavailable`."""

    @functools.wraps(method)
    def call(self: Journal, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except JournalUnavailable:
            raise
        except Exception as exc:
            reason = self._unavailable_reason(exc)
            if reason is None:
                raise
            self._storage_failed(exc)
            raise JournalUnavailable(reason, detail=self._error_detail(exc)) from exc

    return call
