"""The worker loop: take hints, settle and hash sources, and drive due work through an engine.

It is the only code that writes the journal (design.md, invariant 4): watcher threads hand paths
over through :meth:`Worker.hint_threadsafe`, blocking file work runs in threads, and every
result comes back to this loop before it is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import math
import stat
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import structlog

from watcherd import media, outcomes, roots
from watcherd.config import Config, WatchConfig
from watcherd.errors import SourceError
from watcherd.fileops import StorageTimeout, run_on
from watcherd.folders import Folders
from watcherd.fserrors import classify
from watcherd.health import ApiHealth
from watcherd.identity import (
    content_key,
    hash_file,
    options_json,
    source_keys,
    stored_result,
)
from watcherd.journal import (
    ACTIVE_STATES,
    UNKNOWN_ID,
    FileStat,
    Journal,
    JournalUnavailable,
    LeaseLost,
    Source,
)
from watcherd.pause import JournalPause
from watcherd.recover import job_from_outputs
from watcherd.retry import RetryPolicy
from watcherd.watcher import StorageFacts, WatchIndex, storage_facts

log = structlog.get_logger("watcherd.worker")

class Pipeline(Protocol):
    """An engine's way of taking one settled source to ``done`` (or to a retry or failure)."""

    #: True when its jobs live elsewhere and count against a plan (Gladia), so the worker
    #: counts them even while no task watches them and probes while the API is down.
    remote_jobs: bool

    async def drive(self, source_id: int) -> None:
        """Take the source as far as it can go now; every outcome lands in the journal."""


#: A file closed after writing, or renamed into place, settles after this short quiet time
#: (capped by its watch's settle_seconds) instead of the full one. Not zero: some writers
#: close and reopen the file to append, and the wait lets their next write show.
COMPLETE_SETTLE_SECONDS = 0.5
#: How long a source may keep changing before ``status`` says so in its note.
STILL_WRITING_AFTER_SECONDS = 10.0
#: How often that note is brought up to date (each update is a journal event).
STILL_WRITING_REFRESH_SECONDS = 30.0
#: The window over which the note counts changes.
CHANGE_WINDOW_SECONDS = 600.0
#: A hashing batch ends at this many files or bytes: small files share one trip to a thread,
#: and one large file does not hold up many small ones.
HASH_BATCH_FILES = 64
HASH_BATCH_BYTES = 64 * 1024 * 1024
#: How many unsettled sources are read from the journal at once, and below how many queued for
#: hashing the next ones are read.
UNSETTLED_BATCH = 1000
HASH_REFILL_BELOW = 4 * HASH_BATCH_FILES
#: Hinted files are journaled this many per transaction, letting the loop run in between.
INTAKE_CHUNK = 5000
#: How many due sources one dispatch pass reads beyond eight per engine slot.
DUE_BATCH = 64
#: On a stop, a local transcription estimated to end within this many seconds is let finish.
FINISH_GRACE_SECONDS = 10.0
#: The longest the loop sleeps with nothing due (it also wakes on every hint and timer).
IDLE_CHECK_SECONDS = 5.0
#: How long a tick waits for the stat of hinted paths; slower storages finish in the background.
INTAKE_WAIT_SECONDS = 1.0
#: How long one stat batch may take before its storage is taken as hung.
FILE_TIMEOUT = 60.0
#: The journal is asked for unsettled sources at least this often even when nothing here
#: changed, since the pipeline may send a source back to settling.
SETTLE_RECHECK_SECONDS = 1.0
#: While the journal cannot be written, a probe write is tried after this long, the wait
#: doubling up to JOURNAL_RETRY_MAX: a freed disk is noticed within half a minute.
JOURNAL_RETRY_FIRST = 1.0
JOURNAL_RETRY_MAX = 30.0
#: A pause that starts this soon after the last one ended is the same trouble coming back
#: (a disk with just enough room for the probe): no new warning, and the backoff goes on.
JOURNAL_RELAPSE_SECONDS = 60.0


@dataclass(frozen=True)
class Seen:
    """What a thread found at a hinted path: a file's stat, nothing, or a reason to ignore it."""

    path: Path
    stat: FileStat | None
    problem: str | None = None
    watch: WatchConfig | None = None
    #: The problem may go away by itself (EIO, ESTALE...): never a reason to fail the file.
    transient: bool = False
    #: For a path that is not there: whether its storage is (read in the same thread).
    facts: StorageFacts | None = None


#: What a path that is neither a regular file nor a folder is, for the reason ``status`` shows.
_SPECIAL_KINDS: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_kind(mode: int) -> str | None:
    """What a non-regular, non-folder file is ("a named pipe (FIFO)"), or None."""
    for test, what in _SPECIAL_KINDS:
        if test(mode):
            return what
    return None


def _look_one(path: Path, index: WatchIndex | None, root: Path | None) -> Seen | None:
    try:
        # Through the watch roots' resolver: a link that leads out of its watch folder is
        # never stat'ed as a source (nor read, hashed or uploaded later).
        st = roots.current().locate(path).stat()
    except roots.LinkOutside as exc:
        # Recorded under its folder's watch even when its name is no recording's (a link to
        # a folder): status says why it is not transcribed.
        watch = index.owner(path) if index is not None else None
        return Seen(path, None, exc.message, watch=watch)
    except OSError as exc:
        problem = classify(exc)
        if problem.kind == "missing":
            facts = storage_facts(path, root) if root is not None else None
            return Seen(path, None, facts=facts)
        reason = f"cannot read it: {problem.message}"
        if exc.errno == errno.ELOOP:
            reason += " (the link points back at itself); fix or remove the link"
        else:
            reason += f"; {problem.hint}"
        watch = index.watch_for(path) if index is not None else None
        return Seen(path, None, reason, watch=watch, transient=problem.retryable)
    except ValueError:
        # An embedded NUL cannot come from the file system, only from a bad hint: ignore it.
        return None
    if stat.S_ISDIR(st.st_mode):
        return None
    if stat.S_ISLNK(st.st_mode):
        # Only a link that resolution could not get past (a loop) is still a link here.
        watch = index.watch_for(path) if index is not None else None
        return Seen(path, None, "cannot read it: too many levels of symbolic links (the link "
                    "points back at itself); fix or remove the link", watch=watch)
    if not stat.S_ISREG(st.st_mode):
        # Never opened: reading a FIFO or a device blocks or never ends.
        what = special_kind(st.st_mode) or "not a regular file"
        watch = index.watch_for(path) if index is not None else None
        return Seen(path, None, f"ignored: it is {what}, not a recording file; nothing is read "
                    "from it", watch=watch)
    watch = index.watch_for(path) if index is not None else None
    return Seen(path, FileStat.of(st), watch=watch)


def _look(paths: Iterable[Path], index: WatchIndex | None = None,
          root: Path | None = None) -> list[Seen]:
    """Stat each path (in a thread), and find which watch accepts it when ``index`` is given.

    One path's trouble never costs the others their turn: whatever a path raises becomes a
    problem of that path alone.
    """
    seen = []
    for path in paths:
        try:
            item = _look_one(path, index, root)
        except Exception as exc:  # a bug or an odd file system: that path alone
            item = Seen(path, None, f"cannot look at it: {_short(exc)}", transient=True)
        if item is not None:
            seen.append(item)
    return seen


def _short(exc: BaseException, limit: int = 300) -> str:
    """An exception as one bounded line: its type, its message, where it was raised."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"


def _stat_of(source: Source) -> FileStat:
    """The stat the journal holds for a source."""
    return FileStat(source.size or 0, source.mtime_ns or 0,
                    UNKNOWN_ID if source.dev is None else source.dev,
                    UNKNOWN_ID if source.inode is None else source.inode)


@dataclass(frozen=True)
class InFlight:
    """An attempt handed from one generation's worker to the next's (see Worker.hand_over)."""

    engine: str
    pipeline: Pipeline
    task: asyncio.Task[None]


@dataclass(frozen=True)
class HashFailure:
    """Why a file could not be hashed, with what its path looked like right after."""

    error: SourceError
    #: The file's stat after the failure; None when it could not be read or is not there.
    stat_now: FileStat | None = None
    #: Set when the path is not there: whether its storage is away or the file was deleted.
    facts: StorageFacts | None = None


HashOutcome = tuple[str, FileStat] | HashFailure


def _failure(source: Source, error: SourceError) -> HashFailure:
    """Complete a hashing error with a fresh look at the path (still in the thread)."""
    if not error.transient:
        return HashFailure(error)
    path = Path(source.path)
    try:
        return HashFailure(error, stat_now=FileStat.of(roots.current().locate(path).stat()))
    except OSError as exc:
        if classify(exc).kind != "missing":
            return HashFailure(error)
    return HashFailure(error, facts=storage_facts(path, Path(source.watch_root)))


def _hash_all(batch: Sequence[Source], unlimited: frozenset[int] = frozenset()
              ) -> list[tuple[Source, HashOutcome]]:
    """Hash each source of a batch (in a thread), checking it still has its journaled stat.

    Each file's outcome is its own: an error of any kind becomes that file's outcome, and the
    other files of the batch are still hashed and recorded.
    """
    outcomes: list[tuple[Source, HashOutcome]] = []
    for source in batch:
        try:
            path = Path(source.path)
            if source.size is not None:
                # Limits first: a 2 GB or 3-hour file is refused without reading it whole.
                # Local-engine folders have no upload limits, only the emptiness check.
                if source.id in unlimited:
                    media.check_before_hash(path, source.size, max_seconds=math.inf,
                                            max_bytes=sys.maxsize)
                else:
                    media.check_before_hash(path, source.size)
            outcomes.append((source, hash_file(path, _stat_of(source))))
            continue
        except SourceError as exc:
            error = exc
        except OSError as exc:
            error = media.read_error(exc)  # the same words as every other read of a source
        except Exception as exc:
            error = SourceError(f"cannot be hashed: {_short(exc)}", transient=True)
        try:
            outcomes.append((source, _failure(source, error)))
        except Exception:
            outcomes.append((source, HashFailure(error)))
    return outcomes


@dataclass
class _Settling:
    """What the loop remembers of one source while it settles; losing it only costs time."""

    size: int | None
    mtime_ns: int | None
    since: float
    heard_at: float = 0.0
    complete: FileStat | None = None
    changes: deque[tuple[float, bool]] = field(default_factory=deque)
    noted_at: float | None = None
    retry_at: float = 0.0
    settle_seconds: float | None = None


class _SettleBook:
    """The loop's memory for intake and settling (hints and timing only, never state)."""

    def __init__(self) -> None:
        self.sources: dict[str, _Settling] = {}
        self.complete: set[Path] = set()
        self.options: dict[int, tuple[WatchConfig, str]] = {}
        self.dirty = True
        self.checked_at = 0.0
        self.next_at = math.inf
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf


def _span(seconds: float) -> str:
    """A duration in words for a note: "40 seconds", "3 minutes"."""
    if seconds < 120:
        count, unit = max(1, round(seconds)), "second"
    else:
        count, unit = round(seconds / 60), "minute"
    return f"{count} {unit}{'' if count == 1 else 's'}"


def still_writing_note(changes: Sequence[tuple[float, bool]], span: float) -> str:
    """The note of a source that keeps changing: how often its size (or mtime) changed."""
    sized = sum(1 for _, size_changed in changes if size_changed)
    if sized:
        return f"still being written (size changed {sized} times in the last {_span(span)})"
    return f"still being modified (changed {len(changes)} times in the last {_span(span)})"


class Worker:
    """Settles sources and drives them through the engine, with bounded concurrency."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        pipeline: Pipeline | None,
        *,
        no_engine_reason: str | None = None,
        max_concurrent: int | None = None,
        engines: Mapping[str, tuple[Pipeline, int]] | None = None,
        engine_of: Callable[[WatchConfig | None], str | None] | None = None,
        extra_watches: Sequence[WatchConfig] = (),
        idle_seconds: float = IDLE_CHECK_SECONDS,
        hash_workers: int = 2,
        retry: RetryPolicy | None = None,
        file_timeout: float = FILE_TIMEOUT,
        health: ApiHealth | None = None,
        folders: Folders | None = None,
        node: str | None = None,
        lease_seconds: float | None = None,
        finish_grace: float = FINISH_GRACE_SECONDS,
    ) -> None:
        self.config = config
        self.journal = journal
        # A shared journal (several nodes): this node leases what it drives, renews the
        # leases while it works and leaves alone what other nodes hold or it cannot do.
        self.shared = journal.shared
        self.node = node or journal.node or config.node_name
        self.lease_seconds = lease_seconds or config.lease_seconds
        self.pipeline = pipeline
        self.no_engine_reason = no_engine_reason
        self.max_concurrent = max_concurrent or config.gladia.max_concurrent_jobs
        self.folders = folders or Folders(tuple(config.watches) + tuple(extra_watches))
        self.watches = self.folders.watches
        self.idle_seconds = idle_seconds
        self.retry = retry or config.retry
        self.file_timeout = file_timeout
        self.finish_grace = finish_grace
        self._hints: set[Path] = set()
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._hashing: dict[int, asyncio.Task[None]] = {}
        self._looking: set[asyncio.Future[None]] = set()
        # Sources whose NAME.json was (being) read for a result left by an earlier journal.
        self._outputs_checked: set[int] = set()
        self._checking_outputs: set[int] = set()
        self._hash_slots = asyncio.Semaphore(hash_workers)
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            # Bound now, so watcher threads started before run() can already hand paths over.
            self._loop = asyncio.get_running_loop()
        # Paths the journal refused to record (a bug): logged once, not retried every scan.
        self._unrecordable: set[str] = set()
        # Sources whose failure could not even be recorded: not dispatched before this time.
        self._quarantine: dict[int, float] = {}
        # The source that probed the API last while it was down or the key rejected.
        self._last_probe: int | None = None
        # While set, the journal cannot be written: all work is paused until a probe works.
        self._pause: JournalPause | None = None
        self._pause_delay = JOURNAL_RETRY_FIRST
        self._pause_retry_at = 0.0
        self._pause_ended_at = -math.inf
        self._pause_listeners: list[Callable[[JournalPause | None], None]] = []
        # Engine name -> (pipeline, how many sources it may drive at once).
        if engines is None:
            engines = {} if pipeline is None else {"default": (pipeline, self.max_concurrent)}
        self.engines = dict(engines)
        self.engine_of = engine_of or (lambda watch: "default")
        self._engine_running: dict[int, str] = {}
        # The pipeline each running attempt goes through: after a reload that changed an
        # engine's settings, adopted attempts finish on the engine they started on.
        self._pipeline_of: dict[int, Pipeline] = {}
        # One view of the remote API, shared with the engine that reports to it.
        if health is None:
            remote = [p for p, _ in self.engines.values() if getattr(p, "remote_jobs", False)]
            health = getattr(remote[0], "health", None) if remote else None
        self.health: ApiHealth = health if health is not None else ApiHealth(journal)
        self.health.subscribe(self._wake.set)

    # -- hand-over from other threads ---------------------------------------------------

    def hint_threadsafe(self, path: Path, *, complete: bool = False) -> None:
        """Called from watcher threads: look at ``path`` soon (see :meth:`hint`)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(functools.partial(self.hint, path, complete=complete))

    def hints_threadsafe(self, paths: Sequence[Path]) -> None:
        """Called from scan threads: look at all of ``paths`` soon (one wake-up for all)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._hint_many, list(paths))

    def _hint_many(self, paths: list[Path]) -> None:
        for path in paths:
            self.hint(path)

    def complete_threadsafe(self, path: Path) -> None:
        """Called from watcher threads: ``path`` was closed after writing or renamed into place."""
        self.hint_threadsafe(path, complete=True)

    def hint(self, path: Path, *, complete: bool = False) -> None:
        """Called on the loop: look at ``path`` on the next tick.

        ``complete`` says an event reported the file finished (closed after writing, renamed
        into place): unless it changes again it then settles after COMPLETE_SETTLE_SECONDS.
        A later plain hint (a write) takes that back.
        """
        self._hints.add(path)
        if complete:
            self._book.complete.add(path)
        else:
            self._book.complete.discard(path)
        self._wake.set()

    def add_explicit(self, path: Path, watch: WatchConfig) -> None:
        """A file named on the command line: transcribe it with ``watch``'s settings."""
        self.folders.add_explicit(path, watch)
        self.hint(path)

    # -- state the daemon shows ---------------------------------------------------------

    @property
    def api_down_since(self) -> float | None:
        """When the API last became unreachable, or None while it answers."""
        return self.health.down_since

    @property
    def auth_problem(self) -> str | None:
        """The message of a rejected API key while remote work is paused."""
        return self.health.auth_problem

    @property
    def journal_pause(self) -> JournalPause | None:
        """Why all work is paused (the journal cannot be written), or None while it runs."""
        return self._pause

    def on_pause_change(self, listener: Callable[[JournalPause | None], None]) -> None:
        """Call ``listener`` (on the loop) with the pause when it starts or changes, and with
        None when work resumes."""
        self._pause_listeners.append(listener)

    # -- the journal's storage -------------------------------------------------------------

    def _journal_failed(self, exc: JournalUnavailable) -> None:
        """A journal write failed for its storage: pause all work until a probe works.

        Nothing is recorded about the file whose write hit it (it cannot be), and nothing is
        needed: the journal still holds the last committed step of every file, which is where
        each one goes on from once the journal takes writes again.
        """
        now = time.time()
        if self._pause is not None:
            if exc.reason != self._pause.reason:
                log.debug("journal_unavailable_reason", reason=exc.reason)
                self._set_pause(JournalPause(exc.reason, self._pause.since))
            return
        relapse = now - self._pause_ended_at < JOURNAL_RELAPSE_SECONDS
        if not relapse:
            self._pause_delay = JOURNAL_RETRY_FIRST
        self._pause_retry_at = now + self._pause_delay
        if relapse:
            log.info("journal_unavailable_again", reason=exc.reason, detail=exc.detail,
                     retry_in=round(self._pause_delay, 1))
        else:
            log.warning("journal_unavailable", reason=exc.reason, detail=exc.detail,
                        hint="all work is paused, no file is failed or skipped; watcherd "
                        f"tries the journal again every {JOURNAL_RETRY_FIRST:g} to "
                        f"{JOURNAL_RETRY_MAX:g} s and resumes by itself")
        self._set_pause(JournalPause(exc.reason, now))
        self._wake.set()

    def _try_resume(self) -> None:
        """While paused: one probe write; resume on success, else wait longer (backoff)."""
        pause = self._pause
        assert pause is not None
        try:
            self.journal.probe_write()
        except Exception as exc:
            self._pause_delay = min(self._pause_delay * 2, JOURNAL_RETRY_MAX)
            self._pause_retry_at = time.time() + self._pause_delay
            if isinstance(exc, JournalUnavailable):
                if exc.reason != pause.reason:
                    self._set_pause(JournalPause(exc.reason, pause.since))
            else:
                # Not a storage failure (a bug, a node name taken meanwhile): say it, and
                # stay paused, since it is not known whether writes work.
                log.error("journal_probe_failed", error=_short(exc),
                          retry_in=round(self._pause_delay, 1))
            return
        now = time.time()
        log.info("journal_writable_again", paused_seconds=round(now - pause.since, 1),
                 hint="work resumes where the journal says each file was")
        self._pause_ended_at = now
        self._set_pause(None)
        self._book.dirty = True
        self._wake.set()

    def _set_pause(self, pause: JournalPause | None) -> None:
        self._pause = pause
        for listener in self._pause_listeners:
            try:
                listener(pause)
            except Exception as exc:  # a display of the pause must never stop the worker
                log.warning("pause_listener_failed", error=_short(exc))

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then leave every source in a resumable state."""
        self._loop = asyncio.get_running_loop()
        helpers = []
        if self.shared:
            helpers = [asyncio.ensure_future(self._keep_leases(stop)),
                       asyncio.ensure_future(self._hear_changes(stop))]
        try:
            while not stop.is_set():
                # Cleared before the tick, so a wake-up that arrives during it is not lost.
                self._wake.clear()
                try:
                    if self._pause is not None and time.time() >= self._pause_retry_at:
                        self._try_resume()
                    try:
                        await self.tick()
                    except LeaseLost as exc:
                        # A note or state this node wanted to write on a source another node
                        # holds: that node decides; the next tick goes on.
                        log.info("source_held_elsewhere", source_id=exc.source_id,
                                 holder=exc.holder)
                    timeout = self._sleep_for()
                except JournalUnavailable as exc:
                    self._journal_failed(exc)
                    timeout = self._sleep_for()  # paused: it reads nothing from the journal
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    {waiter, stopper}, timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                stopper.cancel()
        finally:
            for helper in helpers:
                helper.cancel()
            await self.shutdown()
            if helpers:
                await asyncio.wait(helpers, timeout=5)

    # -- several nodes -------------------------------------------------------------------

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        """Renew this node's leases every third of a lease; stop attempts whose lease was lost.

        A node paused past its lease (a frozen VM, a long GC) may find another node took a
        source over: its attempt there ends quietly, and the journal fences any late write
        (:class:`LeaseLost`), so the two never both act on one source.
        """
        interval = self.lease_seconds / 3
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if stop.is_set():
                return
            if self._pause is not None:
                continue  # the journal cannot take the renewal; the pause is said already
            try:
                held = set(self.journal.renew(self.node, self.lease_seconds))
            except JournalUnavailable as exc:
                self._journal_failed(exc)
                continue
            except Exception as exc:
                # The database is away: the attempts go on, and their writes are fenced
                # if the leases run out meanwhile.
                log.warning("lease_renew_failed", node=self.node, error=_short(exc))
                continue
            for source_id, task in list(self._running.items()):
                if source_id not in held and not task.done():
                    log.warning("lease_lost", node=self.node, source_id=source_id,
                                hint="another node took this file over; it finishes it")
                    task.cancel()

    async def _hear_changes(self, stop: asyncio.Event) -> None:
        """Wake the loop when another node commits a change (LISTEN/NOTIFY), not by polling.

        The wait runs in a thread on the journal's own listening connection, one short
        bounded wait at a time so that stopping is never held up.
        """
        wait = min(self.lease_seconds, 1.0)
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                changed = await loop.run_in_executor(None, self.journal.wait_for_change, wait)
            except Exception as exc:
                if self._pause is None and not isinstance(exc, JournalUnavailable):
                    log.warning("journal_changes_not_heard", error=_short(exc),
                                hint="the loop still looks at the journal every lease period")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.lease_seconds)
                continue
            if changed:
                self._book.dirty = True
                self._wake.set()

    def _sleep_for(self) -> float:
        """Seconds until something is due: the loop sleeps until then or the next hint.

        Hints, finished tasks and timers wake it earlier; ``idle_seconds`` bounds the sleep so
        changes made by another process (``watcherd retry``) are seen without a signal.
        """
        now = time.time()
        if self._pause is not None:
            return max(0.0, self._pause_retry_at - now)
        # Shared: other nodes' changes wake the loop (NOTIFY); a lease that runs out makes
        # no notification, so the journal is looked at again within a lease period.
        idle = max(self.idle_seconds, self.lease_seconds) if self.shared else self.idle_seconds
        when = now + idle
        when = min(when, self._book.next_at)
        if self._book.sources:
            when = min(when, self._book.checked_at + SETTLE_RECHECK_SECONDS)
        next_due = self.journal.next_attempt_at(now)
        if next_due is not None:
            when = min(when, next_due)
        if self._quarantine:
            when = min(when, min(self._quarantine.values()))
        if self.health.auth_problem is not None:
            when = min(when, self.health.auth_problem_at + self.retry.auth_pause)
        return max(0.0, when - now)

    async def shutdown(self) -> None:
        """Abandon waits and in-flight calls; the journal already holds where each one was.

        A local transcription that should end within ``finish_grace`` seconds (estimated
        by its engine: from its progress, or its length and the engine's speed) is let finish
        first: stopping it would throw its work away and run it again from the beginning.
        """
        finishing = {
            task for source_id, task in self._running.items()
            if self._finishing(source_id)
        }
        if finishing:
            log.info("finishing_before_stop", files=len(finishing),
                     grace_seconds=self.finish_grace)
            await asyncio.wait(finishing, timeout=self.finish_grace)
        tasks = [*self._running.values(), *self._hashing.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self._running.clear()

    def _finishing(self, source_id: int) -> bool:
        """Whether the engine driving this source says it will end within the stop grace."""
        pipeline = self._pipeline_of.get(source_id)
        if pipeline is None:
            return False
        check = getattr(pipeline, "finishing_within", None)
        return bool(check(source_id, self.finish_grace)) if callable(check) else False

    def hand_over(self) -> dict[int, InFlight]:
        """Give up the running attempts, for the worker of the next generation (a reload) to
        :meth:`adopt`: stopping this worker then leaves them running."""
        handed = {
            source_id: InFlight(self._engine_running[source_id], self._pipeline_of[source_id],
                                task)
            for source_id, task in self._running.items()
            if not task.done() and source_id in self._pipeline_of
        }
        for source_id in handed:
            del self._running[source_id]
            self._engine_running.pop(source_id, None)
            self._pipeline_of.pop(source_id, None)
        return handed

    def adopt(self, attempts: Mapping[int, InFlight]) -> None:
        """Take over attempts another worker handed over: they count against their engine's
        concurrency, are not started twice, and a stop treats them as this worker's own."""
        for source_id, attempt in attempts.items():
            if attempt.task.done():
                continue
            self._running[source_id] = attempt.task
            self._engine_running[source_id] = attempt.engine
            self._pipeline_of[source_id] = attempt.pipeline
            attempt.task.add_done_callback(self._adopted_ended)

    def _adopted_ended(self, _: asyncio.Future[None]) -> None:
        # The attempt wakes the worker that started it; this one must look too.
        self._book.dirty = True
        self._wake.set()

    async def tick(self) -> None:
        """One pass: record hints, settle what is ready, start what is due.

        Nothing while the journal cannot be written: hints are kept for the first pass after.
        """
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._pause is not None:
            return
        if self._hints:
            hints, self._hints = self._hints, set()
            await self._intake(hints)
        # Each step awaits: a write that failed meanwhile (in a task) pauses the rest too.
        if self._pause is None:
            await self._settle()
        if self._pause is None:
            self._dispatch()

    def idle(self) -> bool:
        """True when nothing is running or waiting to be looked at."""
        return not (self._hints or self._running or self._hashing or self._looking)

    # -- intake --------------------------------------------------------------------------

    #: How long a source may keep changing before its note says so (tests shorten it).
    still_writing_after: float = STILL_WRITING_AFTER_SECONDS

    @functools.cached_property
    def _book(self) -> _SettleBook:
        return _SettleBook()

    @property
    def _index(self) -> WatchIndex:
        return self.folders.index

    def _watch_of(self, path: Path) -> WatchConfig | None:
        return self.folders.watch_of(path)

    def _watch_of_source(self, source: Source) -> WatchConfig | None:
        return self.folders.watch_of_source(source)

    def _ours(self, source: Source) -> bool:
        """Whether a watch of this worker covers ``source``; if not, say why in its note.

        A journal outlives configs: files another config watched stay as they are, neither
        hashed nor dispatched, until a daemon watching their folder runs.
        """
        if self._watch_of_source(source) is not None:
            return True
        note = None if self.shared else self.folders.unwatched_note(source)
        if note is not None and source.note != note:
            self.journal.annotate(source, actor="worker", reason="folder not watched",
                                  note=note)
        return False

    def _options_text(self, watch: WatchConfig) -> str:
        cached = self._book.options.get(id(watch))
        if cached is None or cached[0] is not watch:
            cached = (watch, options_json(watch.options))
            self._book.options[id(watch)] = cached
        return cached[1]

    async def _intake(self, paths: set[Path]) -> None:
        """Stat hinted paths off the loop, one task per storage, and journal what was seen.

        Each watch root is looked at in its own thread pool with a timeout, and the tick waits
        at most INTAKE_WAIT_SECONDS for them: a hung mount delays only its own files.
        """
        book = self._book
        complete = paths & book.complete
        book.complete -= complete
        groups: dict[Path, list[Path]] = {}
        for path in paths:
            groups.setdefault(self._root_of(path), []).append(path)
        tasks = []
        for root, group in groups.items():
            task = asyncio.ensure_future(self._look_group(root, group, complete))
            self._looking.add(task)
            task.add_done_callback(self._looking.discard)
            tasks.append(task)
        await asyncio.wait(tasks, timeout=INTAKE_WAIT_SECONDS)

    def _root_of(self, path: Path) -> Path:
        """The watch root holding ``path`` (the innermost), or its folder for a named file."""
        if self.folders.explicit(path) is not None:
            return path.parent
        best: Path | None = None
        for watch in self.watches:
            if path.is_relative_to(watch.path) and (
                best is None or len(watch.path.parts) > len(best.parts)
            ):
                best = watch.path
        return best if best is not None else path.parent

    async def _look_group(self, root: Path, paths: list[Path], complete: set[Path]) -> None:
        try:
            seen = await run_on(root, _look, sorted(paths), self._index, root,
                                timeout=self.file_timeout)
        except StorageTimeout as exc:
            log.warning("storage_not_answering", root=str(root), error=exc.strerror,
                        files=len(paths), retry_in=self.retry.storage_retry)
            loop = asyncio.get_running_loop()
            for path in paths:
                loop.call_later(self.retry.storage_retry, self.hint, path)
            return
        try:
            self._record_seen(seen, complete)
        except JournalUnavailable as exc:
            # Looked at again after the pause: recording a path twice is harmless.
            self._hints.update(paths)
            self._book.complete.update(complete & set(paths))
            self._journal_failed(exc)

    def _record_seen(self, seen: list[Seen], complete: set[Path]) -> None:
        """Journal seen files in transactions of INTAKE_CHUNK; note vanished ones."""
        book = self._book
        batch = []
        settle: dict[str, float] = {}
        for item in seen:
            if item.stat is None:
                self._vanished(item)
                continue
            watch = self.folders.explicit(item.path) or item.watch
            if watch is None:
                continue
            batch.append((str(item.path), str(watch.path), item.stat, self._options_text(watch)))
            settle[str(item.path)] = watch.settle_seconds
        if not batch:
            return
        for start in range(0, len(batch), INTAKE_CHUNK):
            now = time.time()
            for source in self._observe(batch[start:start + INTAKE_CHUNK]):
                self._heard(source, now, complete=Path(source.path) in complete,
                            settle_seconds=settle.get(source.path))
        book.dirty = True
        self._wake.set()

    def _observe(self, batch: Sequence[tuple[str, str, FileStat, str]]) -> list[Source]:
        """Journal a batch of seen files; one that cannot be recorded never sinks the rest."""
        try:
            return self.journal.observe_many(batch)
        except JournalUnavailable:
            raise  # no file's fault: the worker pauses, and the batch is seen again after
        except Exception as exc:
            if len(batch) == 1:
                path = batch[0][0]
                if path not in self._unrecordable:
                    self._unrecordable.add(path)
                    log.error("source_not_recorded", source=path, error=_short(exc),
                              hint="this file is skipped until watcherd restarts; please "
                              "report it")
                return []
        # Split in halves until the file at fault is alone: the others are recorded.
        middle = len(batch) // 2
        return self._observe(batch[:middle]) + self._observe(batch[middle:])

    def _heard(self, source: Source, now: float, *, complete: bool,
               settle_seconds: float | None) -> None:
        """Note a hint for a settling source: restart its quiet time, count a change."""
        entry = self._book.sources.get(source.path)
        if entry is None:
            entry = _Settling(source.size, source.mtime_ns, since=now,
                              settle_seconds=settle_seconds)
            self._book.sources[source.path] = entry
        elif (source.size, source.mtime_ns) != (entry.size, entry.mtime_ns):
            entry.changes.append((now, source.size != entry.size))
            entry.size, entry.mtime_ns = source.size, source.mtime_ns
        entry.heard_at = now
        entry.retry_at = 0.0  # seen again: whatever storage was away is back
        # Any later plain hint takes "complete" back: the stat read for the close may already
        # include a write whose event is only arriving now.
        entry.complete = _stat_of(source) if complete else None

    def _vanished(self, item: Seen) -> None:
        source = self.journal.by_path(str(item.path))
        watch = self.folders.explicit(item.path) or item.watch
        if item.problem is not None and item.transient:
            # EIO, ESTALE, a share reconnecting: it may read fine in a moment. A done file
            # stays done, anything else waits; the next scan or event looks again.
            if source is not None and source.state in ACTIVE_STATES and (
                source.last_error != item.problem
            ):
                self.journal.annotate(source, actor="worker", reason=item.problem,
                                      last_error=item.problem)
            if source is None or source.state not in ACTIVE_STATES:
                log.warning("source_unreadable", source=str(item.path), reason=item.problem)
            return
        if item.problem is not None and watch is not None and (
            source is None or source.state in ("done", "gone")
        ):
            # Unreadable where a source should be (a link loop, no permission on the entry):
            # say so in status instead of skipping it silently.
            self.journal.record_unreadable(str(item.path), str(watch.path),
                                           self._options_text(watch), item.problem)
            log.error("source_failed", source=str(item.path), reason=item.problem)
            return
        if source is None or source.state not in ACTIVE_STATES:
            self._book.sources.pop(str(item.path), None)
            return
        if item.problem is not None:
            if source.last_error != item.problem:
                self.journal.annotate(source, actor="worker",
                                      reason=item.problem, last_error=item.problem)
            return
        task = self._running.get(source.id)
        if self._storage_away(source, item.facts):
            return
        if task is not None:
            self._stop_deleted(source, task)
            return
        self.journal.transition(
            source, "gone", actor="watcher", reason="source deleted before it was done",
            last_error="the source disappeared before it was transcribed",
        )
        self._book.sources.pop(source.path, None)
        log.warning("source_gone", source=source.path)

    def _stop_deleted(self, source: Source, task: asyncio.Task[None]) -> None:
        """A source deleted while an attempt works on it: record ``gone``, then stop the attempt
        (the local engine's worker process drops the file, an upload is abandoned).

        Only while nothing exists elsewhere yet (no Gladia job made, or maybe made) and no
        result is kept: stopping then loses nothing, and the work would be for nobody. Past
        that point the attempt goes on and finds out itself.
        """
        if (source.job_id is not None or source.submit_started_at is not None
                or stored_result(self.journal, source) is not None):
            return
        reason = f"source disappeared while {source.state}; its work was stopped"
        # Recorded before the attempt is stopped: its own cleanup sees the source is gone.
        self.journal.transition(
            source, "gone", actor="watcher", reason=reason,
            last_error="the source disappeared before it was transcribed",
        )
        self._book.sources.pop(source.path, None)
        task.cancel()
        log.warning("source_gone", source=source.path, reason=reason)

    def _storage_away(self, source: Source, facts: StorageFacts | None) -> bool:
        """True (and noted) when a missing source's root or file system is away, not deleted."""
        if facts is None:
            return False
        away = facts.away(None if source.dev == UNKNOWN_ID else source.dev)
        if away is None:
            return False
        note = f"cannot see the file: {away}; it is looked for again when it comes back"
        if source.note != note:
            self.journal.annotate(source, actor="worker", reason="storage unavailable",
                                  note=note)
            log.warning("source_storage_away", source=source.path, reason=away)
        entry = self._book.sources.get(source.path)
        if entry is None:
            entry = _Settling(source.size, source.mtime_ns, since=time.time())
            self._book.sources[source.path] = entry
        entry.retry_at = time.time() + self.retry.storage_retry
        return True

    # -- settling ------------------------------------------------------------------------

    async def _settle(self) -> None:
        """Start hashing every source quiet for long enough; note the ones that never are."""
        book = self._book
        now = time.time()
        if (not book.dirty and now < book.next_at
                and now - book.checked_at < SETTLE_RECHECK_SECONDS):
            return
        book.dirty, book.checked_at = False, now
        limit = UNSETTLED_BATCH
        unsettled = self.journal.unsettled(limit=limit)
        next_at = math.inf
        ready: list[Source] = []
        for source in unsettled:
            if source.id in self._hashing or not self._ours(source):
                continue
            entry = book.sources.get(source.path)
            if entry is None:
                # Sent back to settling by someone else, or left pending by an earlier run.
                entry = _Settling(source.size, source.mtime_ns, since=now)
                book.sources[source.path] = entry
            ready_at = self._ready_at(source, entry)
            if now >= ready_at:
                ready.append(source)
            else:
                next_at = min(next_at, ready_at)
                self._note_still_writing(source, entry, now)
        if len(unsettled) < limit:
            # The whole set was seen: forget sources that left settling some other way.
            keep = {source.path for source in unsettled}
            for path in [p for p in book.sources if p not in keep]:
                del book.sources[path]
        book.next_at = next_at
        self._wake_at(next_at)
        self._start_hashing(ready)

    def _ready_at(self, source: Source, entry: _Settling) -> float:
        """When the source will have been quiet long enough to be hashed."""
        if entry.settle_seconds is None:
            watch = self._watch_of_source(source)
            entry.settle_seconds = watch.settle_seconds if watch is not None else 0.0
        settle = entry.settle_seconds
        if entry.complete is not None and entry.complete == _stat_of(source):
            settle = min(settle, COMPLETE_SETTLE_SECONDS)
        quiet_since = max(source.changed_at or 0.0, entry.heard_at)
        # A file whose reading failed waits for its backoff (kept in the journal).
        return max(quiet_since + settle, entry.retry_at, source.next_attempt_at or 0.0)

    def _wake_at(self, when: float) -> None:
        """Make sure the loop ticks at ``when`` (a wall-clock time), not a tick later."""
        book = self._book
        loop = self._loop
        if loop is None or math.isinf(when) or book.timer_at <= when:
            return
        if book.timer is not None:
            book.timer.cancel()
        book.timer_at = when

        def fire() -> None:
            book.timer, book.timer_at = None, math.inf
            self._wake.set()

        book.timer = loop.call_at(loop.time() + max(0.0, when - time.time()), fire)

    def _note_still_writing(self, source: Source, entry: _Settling, now: float) -> None:
        """Say in ``status`` why a source that keeps changing is still pending."""
        if now - entry.since < self.still_writing_after:
            return
        while entry.changes and now - entry.changes[0][0] > CHANGE_WINDOW_SECONDS:
            entry.changes.popleft()
        if len(entry.changes) < 2:
            return
        if entry.noted_at is not None and now - entry.noted_at < STILL_WRITING_REFRESH_SECONDS:
            return
        entry.noted_at = now
        note = still_writing_note(entry.changes, min(now - entry.since, CHANGE_WINDOW_SECONDS))
        if note != source.note:
            self.journal.annotate(source, actor="worker", reason="not settled yet", note=note)

    def _start_hashing(self, ready: Sequence[Source]) -> None:
        """Hash ready sources in batches, each batch one task in ``_hashing`` for its sources."""
        by_root: dict[str, list[Source]] = {}
        for source in ready:
            by_root.setdefault(source.watch_root, []).append(source)
        # A batch never mixes storages: each is hashed in its own storage's threads.
        for group in by_root.values():
            batch: list[Source] = []
            size = 0
            for source in group:
                batch.append(source)
                size += source.size or 0
                if len(batch) >= HASH_BATCH_FILES or size >= HASH_BATCH_BYTES:
                    self._spawn_hash(batch)
                    batch, size = [], 0
            if batch:
                self._spawn_hash(batch)

    def _spawn_hash(self, batch: list[Source]) -> None:
        task = asyncio.ensure_future(self._hash(batch))
        for source in batch:
            self._hashing[source.id] = task

    async def _hash(self, batch: list[Source]) -> None:
        """Hash a batch in a thread (at most ``hash_workers`` at once), then record each."""
        try:
            async with self._hash_slots:
                # Each storage hashes in its own threads, bounded in time by the bytes to read
                # (at 4 MB/s at worst): a hung mount fails its batch's reads, not the loop.
                budget = self.file_timeout + sum(s.size or 0 for s in batch) / (4 * 1024 * 1024)
                try:
                    unlimited = frozenset(
                        s.id for s in batch
                        if self.engine_of(self._watch_of_source(s)) == "local"
                    )
                    outcomes = await run_on(Path(batch[0].watch_root), _hash_all, batch,
                                            unlimited, timeout=budget)
                except StorageTimeout as exc:
                    failure = HashFailure(SourceError(f"cannot read it: {exc.strerror}",
                                                      transient=True))
                    outcomes = [(s, failure) for s in batch]
            hashed = []
            try:
                for source, outcome in outcomes:
                    if isinstance(outcome, HashFailure):
                        self._settle_failed(source, outcome)
                    else:
                        hashed.append((source, *outcome))
                self._hashed(hashed)
            except JournalUnavailable as exc:
                # The sources stay unsettled in the journal: hashed again after the pause.
                self._journal_failed(exc)
        finally:
            for source in batch:
                self._hashing.pop(source.id, None)
            if len(self._hashing) < HASH_REFILL_BELOW:
                # Ask the journal for more only when the queue runs low: each question sorts
                # every unsettled row, which is costly with 100,000 of them.
                self._book.dirty = True
            self._wake.set()

    def _hashed(self, hashed: list[tuple[Source, str, FileStat]]) -> None:
        """Record settled sources' content in one transaction: they are now queued."""
        recorded = set(self.journal.settle_many(
            (source, digest, content_key(digest, source.options_json), st)
            for source, digest, st in hashed
        ))
        for source, digest, _ in hashed:
            if source.id in recorded:
                self._book.sources.pop(source.path, None)
                log.info("source_ready", source=source.path, sha256=digest[:16])

    def _settle_failed(self, source: Source, failure: HashFailure) -> None:
        current = self.journal.get(source.id)
        if current.state != "pending":
            return
        exc = failure.error
        if exc.transient:
            if failure.stat_now is not None:
                if not failure.stat_now.agrees(_stat_of(current)):
                    self.hint(Path(source.path))  # it changed: observe restarts the clock
                else:
                    # Unchanged, yet it could not be read (EIO, ESTALE, EMFILE...): back off,
                    # counted in the journal, and fail after a budget instead of re-reading
                    # it in a tight loop.
                    self._read_failed(current, exc.message)
                return
            if failure.facts is None:
                self._read_failed(current, exc.message)  # its folder cannot be read either
                return
            if self._storage_away(current, failure.facts):
                return
            self.journal.transition(
                current, "gone", actor="worker", reason=f"source {exc.message}",
                last_error="the source disappeared before it was transcribed",
            )
            self._book.sources.pop(source.path, None)
            log.warning("source_gone", source=source.path)
            return
        self.journal.transition(current, "failed", actor="worker", reason=exc.message,
                                last_error=exc.message)
        self._book.sources.pop(source.path, None)
        log.error("source_failed", source=source.path, reason=exc.message)

    def _read_failed(self, source: Source, reason: str) -> None:
        """A pending file that could not be read: wait with backoff, fail after the budget."""
        attempts = source.attempts + 1
        if attempts >= self.retry.read_error_budget:
            message = (f"the file {reason} ({attempts} attempts failed); fix the storage or "
                       "the file and run `watcherd retry`")
            self.journal.transition(source, "failed", actor="worker", reason=message,
                                    last_error=message, attempts=attempts)
            self._book.sources.pop(source.path, None)
            log.error("source_failed", source=source.path, reason=message)
            return
        delay = self.retry.delay(attempts)
        self.journal.annotate(
            source, actor="worker", reason=f"cannot read it: {reason}", attempts=attempts,
            next_attempt_at=time.time() + delay, last_error=f"the file {reason}; retrying",
        )
        self._book.dirty = True
        log.warning("source_unreadable", source=source.path, reason=reason,
                    retry_in=round(delay, 1))

    # -- dispatch ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        for source_id, task in list(self._running.items()):
            if task.done():
                del self._running[source_id]
                self._engine_running.pop(source_id, None)
                self._pipeline_of.pop(source_id, None)
                if not task.cancelled() and task.exception() is not None:
                    log.error("worker_bug", source_id=source_id,
                              error=repr(task.exception()))
        # Enough rows to fill every engine several times over; the rest wait for a later pass.
        capacity = sum(limit for _, limit in self.engines.values())
        due = self.journal.due(time.time(), limit=DUE_BATCH + 8 * capacity)
        if not due:
            return
        now = time.time()
        if self._quarantine:
            self._quarantine = {k: t for k, t in self._quarantine.items() if t > now}
            due = [s for s in due if s.id not in self._quarantine]
        # A rejected key fails every call: remote work waits for the next re-check.
        remote_paused = self.health.auth_problem is not None and (
            now - self.health.auth_problem_at < self.retry.auth_pause
        )
        probing = self.health.down_since is not None or self.health.auth_problem is not None
        if probing and self._last_probe is not None:
            # Rotate the probe: the file that probed last goes to the back, so one file whose
            # own request keeps failing cannot hold every other file back.
            due = [s for s in due if s.id != self._last_probe] + [
                s for s in due if s.id == self._last_probe
            ]
        # Jobs created (or maybe created) earlier count against the plan's concurrency even
        # while no task is looking at them.
        in_flight = self.journal.count_in_flight(exclude=set(self._running))
        no_engine: list[Source] = []
        for source in due:
            if source.id in self._running:
                continue
            if not self._ours(source):
                continue  # a folder this node does not watch: another node's or config's
            name = self._engine_name(source, now)
            if name is None or name not in self.engines:
                if not self.shared:
                    no_engine.append(source)
                # Shared: left for a node that has this folder's engine.
                continue
            pipeline, limit = self.engines[name]
            busy = sum(1 for n in self._engine_running.values() if n == name)
            if pipeline.remote_jobs:
                if remote_paused:
                    continue
                if probing and busy:
                    continue  # one probe at a time while the API is down or the key rejected
                # A source holding a (maybe) job is already counted in in_flight: it must still
                # be driven, or maybe-jobs filling the plan would block each other forever.
                counted = source.job_id is not None or source.submit_started_at is not None
                if not counted and busy + in_flight >= limit:
                    continue
            elif busy >= limit:
                continue
            try:
                if not self._may_start(source):
                    continue
            except LeaseLost:
                continue  # another node is working on it right now
            if self.shared and not self.journal.claim([source.id], self.node,
                                                      self.lease_seconds):
                continue  # another node claimed it first
            if probing and pipeline.remote_jobs:
                self._last_probe = source.id
            self._engine_running[source.id] = name
            self._pipeline_of[source.id] = pipeline
            self._running[source.id] = asyncio.ensure_future(self._drive(pipeline, source.id))
        if no_engine:
            self._note_no_engine(no_engine)

    def _engine_name(self, source: Source, now: float) -> str | None:
        """The engine for this source: its folder's, or local when Gladia is down too long."""
        watch = self._watch_of_source(source)
        name = self.engine_of(watch)
        if (
            name == "gladia" and watch is not None and watch.fallback == "local"
            and "local" in self.engines and self.health.down_since is not None
            and now - self.health.down_since >= self.config.fallback_after_seconds
            and source.job_id is None and source.submit_started_at is None
        ):
            reason = "Gladia unreachable too long: transcribed by the local engine (fallback)"
            if source.note != reason:
                self.journal.annotate(source, actor="worker", reason="fallback", note=reason)
                log.warning("fallback_to_local", source=source.path)
            return "local"
        return name

    def _may_start(self, source: Source) -> bool:
        """False while another copy of the same content is the one creating its job."""
        assert source.content_key is not None
        cached = stored_result(self.journal, source) is not None
        if not cached and source.job_id is None and source.audio_url is None and (
            source.submit_started_at is None
        ) and source.id not in self._outputs_checked:
            # Read a NAME.json left by an earlier journal first, off the loop; the source is
            # started once that is known.
            if source.id not in self._checking_outputs:
                self._checking_outputs.add(source.id)
                task = asyncio.ensure_future(self._recover_from_outputs(source))
                self._looking.add(task)
                task.add_done_callback(self._looking.discard)
            return False
        leader = None
        for key in source_keys(source):
            leader = self.journal.leader_for(key)
            if leader is not None and not self.shared and self._watch_of_source(leader) is None:
                # Another config's file, left alone here: waiting for it would be for ever
                # (the job lookup by content still finds any job it made).
                leader = None
            if leader is not None and leader.id != source.id:
                break
        if not cached and leader is not None and leader.id != source.id:
            if source.note != f"same content as {leader.path}; waiting for its result":
                self.journal.annotate(
                    source, actor="worker", reason="duplicate content",
                    note=f"same content as {leader.path}; waiting for its result",
                )
            return False
        return True

    async def _recover_from_outputs(self, source: Source) -> None:
        """Take the result from an existing NAME.json made for this content (journal lost)."""
        try:
            found = await run_on(Path(source.watch_root), job_from_outputs, source,
                                 timeout=self.file_timeout)
        except Exception as exc:
            # Unreadable outputs are no result: the source goes on to the engine.
            log.warning("outputs_not_checked", source=source.path, error=_short(exc))
            found = None
        finally:
            self._checking_outputs.discard(source.id)
            self._outputs_checked.add(source.id)
            self._wake.set()
        if found is None:
            return
        try:
            source = self.journal.get(source.id)
            if source.content_key is None or source.job_id is not None:
                return
            base, job = found
            with contextlib.suppress(LeaseLost):  # another node holds it: it finds the same
                self._adopt_outputs(source, base, job)
        except JournalUnavailable as exc:
            self._outputs_checked.discard(source.id)  # read again after the pause
            self._journal_failed(exc)

    def _adopt_outputs(self, source: Source, base: Path, job: dict[str, Any]) -> None:
        """Record a result found in existing outputs (its NAME.json) for this source."""
        source = self.journal.annotate(
            source, actor="worker", output_base=str(base),
            reason="result recovered from the existing outputs; no new job",
        )
        self.journal.store_result(source, job)
        log.info("result_recovered", source=source.path, job_id=job.get("id"))

    async def _drive(self, pipeline: Pipeline, source_id: int) -> None:
        """One attempt, inside the source's fault boundary: whatever happens stays with it."""
        try:
            before = self.journal.get(source_id).updated_at
            await pipeline.drive(source_id)
        except asyncio.CancelledError:
            raise
        except JournalUnavailable as exc:
            # Not this file's fault, and nothing about it can be recorded: the journal still
            # says its last committed step (an intent before each remote call), where it goes
            # on from after the pause; a job created meanwhile is found by its content key.
            self._journal_failed(exc)
        except LeaseLost as exc:
            # Another node took the source over (this one paused past its lease): that node
            # goes on from the journal; this attempt ends without writing anything.
            log.warning("lease_lost", source_id=source_id, holder=exc.holder)
        except Exception as exc:
            self._contain(source_id, exc)
        else:
            self._check_progress(source_id, before)
        finally:
            if self.shared:
                self._release(source_id)
            # The attempt may have sent the source back to settling: look at once.
            self._book.dirty = True
            self._wake.set()

    def _release(self, source_id: int) -> None:
        """Give up this node's lease once an attempt ends: any node may take the next one."""
        try:
            self.journal.release([source_id], self.node)
        except JournalUnavailable:
            pass  # the lease runs out by itself; the pause is said already
        except Exception as exc:
            # The lease then simply runs out.
            log.warning("lease_release_failed", source_id=source_id, error=_short(exc))

    def _contain(self, source_id: int, exc: BaseException) -> None:
        """An attempt ended in an exception nobody foresaw: record it, back off, or fail."""
        try:
            self._contain_unforeseen(source_id, exc)
        except LeaseLost as lost:
            log.warning("lease_lost", source_id=source_id, holder=lost.holder)

    def _contain_unforeseen(self, source_id: int, exc: BaseException) -> None:
        error = _short(exc)
        log.error("source_attempt_failed", source_id=source_id, error=error,
                  hint="the file is retried later; other files are not affected")
        try:
            source = self.journal.get(source_id)
            attempts = source.attempts + 1
            if attempts >= self.retry.unexpected_budget:
                outcomes.fail(
                    self.journal, source_id,
                    f"watcherd could not process this file ({error}; {attempts} attempts "
                    "failed): an answer it does not understand or a bug; run `watcherd retry` "
                    "to try again, and please report it", attempts=attempts,
                )
                return
            delay = self.retry.delay(attempts)
            outcomes.wait(self.journal, source_id,
                          f"unexpected error: {error}; retrying later", delay, attempts=attempts)
        except JournalUnavailable as again:
            self._journal_failed(again)  # the journal's storage, not this file: pause all
        except Exception as again:
            # Even the record failed (a bug): keep the source out of dispatch for a while, in
            # memory, so it cannot spin; the journal still says where it was.
            self._quarantine[source_id] = time.time() + self.retry.retry_cap
            log.error("source_quarantined", source_id=source_id, error=_short(again),
                      retry_in=self.retry.retry_cap)

    def _check_progress(self, source_id: int, before: float) -> None:
        """An attempt that changed nothing would be dispatched again at once: make it wait."""
        try:
            source = self.journal.get(source_id)
        except KeyError:
            return
        except JournalUnavailable as exc:
            self._journal_failed(exc)
            return
        if source.updated_at != before or source.state not in ACTIVE_STATES:
            return
        if source.state == "waiting" and (source.next_attempt_at or 0.0) > time.time():
            return
        self._contain(source_id, RuntimeError("the attempt ended without recording an outcome"))

    def _note_no_engine(self, due: list[Source]) -> None:
        reason = self.no_engine_reason or "no transcription engine is configured"
        for source in due:
            if source.note != reason:
                self.journal.annotate(source, actor="worker", reason="no engine", note=reason)

    # -- for ``transcribe`` --------------------------------------------------------------

    def outputs_for(self, source: Source) -> tuple[str, ...]:
        """The output formats configured for this source's watch."""
        return self.folders.outputs_for(source)


def unfinished(journal: Journal, paths: Iterable[str]) -> list[str]:
    """The paths among ``paths`` whose source is not yet done, failed or gone."""
    left = []
    for path in paths:
        source = journal.by_path(path)
        if source is None or source.state not in ("done", "failed", "gone"):
            left.append(path)
    return left
