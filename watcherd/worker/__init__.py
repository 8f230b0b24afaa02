"""The worker loop: take hints, settle and hash sources, and drive due work through an engine.

It is the only code that writes the journal (design.md, invariant 4): watcher threads hand paths
over through :meth:`Worker.hint_threadsafe`, blocking file work runs in threads, and every
result comes back to this loop before it is recorded.

The loop composes three units, each in its own module: :mod:`~watcherd.worker.intake` (hints
-> stat through the roots resolver -> journal observe), :mod:`~watcherd.worker.settling`
(quiet-time clocks, hashing batches) and :mod:`~watcherd.worker.dispatch` (due sources,
concurrency per engine, the fault boundary per source), with
:mod:`~watcherd.worker.guard` pausing all of them while the journal cannot be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from watcherd.config import Config, WatchConfig
from watcherd.folders import Folders
from watcherd.health import ApiHealth
from watcherd.journal import Journal, JournalUnavailable, LeaseLost, Source
from watcherd.outputs.settings import OutputSettings
from watcherd.pause import JournalPause
from watcherd.retry import RetryPolicy
from watcherd.worker.common import WorkContext, log, one_line
from watcherd.worker.dispatch import FINISH_GRACE_SECONDS, Dispatch, InFlight
from watcherd.worker.guard import JOURNAL_RETRY_FIRST, JOURNAL_RETRY_MAX, JournalGuard
from watcherd.worker.intake import Intake
from watcherd.worker.routes import EngineRoutes, EngineSlot
from watcherd.worker.settling import COMPLETE_SETTLE_SECONDS, Settling

__all__ = ["COMPLETE_SETTLE_SECONDS", "JOURNAL_RETRY_FIRST", "JOURNAL_RETRY_MAX", "EngineRoutes",
           "EngineSlot", "InFlight", "Worker", "unfinished"]

#: The longest the loop sleeps with nothing due (it also wakes on every hint and timer).
IDLE_CHECK_SECONDS = 5.0
#: How long one stat or outputs read may take before its storage is taken as hung.
_FILE_TIMEOUT = 60.0
#: How many sources are hashed at once (each batch in its storage's threads).
_HASH_WORKERS = 2
#: How often a scan waiting for the worker to take its paths checks that the worker still runs.
_ROOM_WAIT_SECONDS = 0.5


class Worker:
    """Settles sources and drives them through their engine, with bounded concurrency."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        routes: EngineRoutes,
        *,
        folders: Folders | None = None,
        retry: RetryPolicy | None = None,
        file_timeout: float = _FILE_TIMEOUT,
        finish_grace: float = FINISH_GRACE_SECONDS,
    ) -> None:
        """``routes``: the engines and which one each folder uses (``EngineRoutes.single`` for
        one pipeline, ``EngineRoutes()`` for none, ``EngineRoutes.of`` for opened engines)."""
        self.config = config
        self.journal = journal
        # A shared journal (several nodes): this node leases what it drives, renews the
        # leases while it works and leaves alone what other nodes hold or it cannot do.
        self.shared = journal.shared
        self.node = journal.node or config.node_name
        self.lease_seconds = config.lease_seconds
        self.folders = folders or Folders(tuple(config.watches))
        self.idle_seconds = IDLE_CHECK_SECONDS
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Set once run() ends: scans no longer wait for the worker to take their paths.
        self._stopping = False
        with contextlib.suppress(RuntimeError):
            # Bound now, so watcher threads started before run() can already hand paths over.
            self._loop = asyncio.get_running_loop()
        self.guard = JournalGuard(journal, self._wake)
        ctx = WorkContext(journal=journal, folders=self.folders, retry=retry or config.retry,
                          file_timeout=file_timeout, shared=self.shared, wake=self._wake,
                          journal_failed=self.guard.failed, background=set())
        self._ctx = ctx
        self.settling = Settling(
            ctx, hash_workers=_HASH_WORKERS, hint=self.hint,
            limits_uploads=lambda s: routes.limits_uploads(self.folders.watch_of_source(s)))
        # One view of the remote API, shared with the engine that reports to it.
        self.health: ApiHealth = routes.health or ApiHealth(journal)
        self.dispatch = Dispatch(ctx, routes, self.health, recheck=self.settling.recheck,
                                 node=self.node, lease_seconds=self.lease_seconds,
                                 fallback_after=config.fallback_after_seconds,
                                 finish_grace=finish_grace)
        self.intake = Intake(ctx, self.settling, self.dispatch.running_task)
        # Once the journal takes writes again, settling looks at it at once.
        self.guard.listeners.append(self._resumed)
        self.health.subscribe(self._wake.set)

    def _resumed(self, pause: JournalPause | None) -> None:
        if pause is None:
            self.settling.recheck()

    # -- hand-over from other threads ---------------------------------------------------

    def hint_threadsafe(self, path: Path, *, complete: bool = False) -> None:
        """Called from watcher threads: look at ``path`` soon (see :meth:`hint`)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(functools.partial(self.hint, path, complete=complete))

    def hints_threadsafe(self, paths: Sequence[Path]) -> None:
        """Called from scan threads: look at all of ``paths`` soon (one wake-up for all).

        Waits first while the worker has INTAKE_BACKLOG paths still to journal (or a paused
        journal keeps them): a scan of 100,000 files then holds a backlog's worth of paths in
        memory, not all of them. The worker stopping ends the wait.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if not _on_loop(loop):
            while not (self.intake.room.wait(_ROOM_WAIT_SECONDS) or self._stopping
                       or loop.is_closed()):
                pass
        if not loop.is_closed():
            self.intake.posting(len(paths))
            loop.call_soon_threadsafe(self.intake.hint_posted, list(paths))

    def complete_threadsafe(self, path: Path) -> None:
        """Called from watcher threads: ``path`` was closed after writing or renamed into place."""
        self.hint_threadsafe(path, complete=True)

    def hint(self, path: Path, *, complete: bool = False) -> None:
        """Called on the loop: look at ``path`` on the next tick.

        ``complete`` says an event reported the file finished (closed after writing, renamed
        into place): unless it changes again it then settles after COMPLETE_SETTLE_SECONDS.
        A later plain hint (a write) takes that back.
        """
        self.intake.hint(path, complete=complete)

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
        return self.guard.pause

    def on_pause_change(self, listener: Callable[[JournalPause | None], None]) -> None:
        """Call ``listener`` (on the loop) with the pause when it starts or changes, and with
        None when work resumes."""
        self.guard.listeners.append(listener)

    @property
    def still_writing_after(self) -> float:
        """How long a source may keep changing before its note says so (tests shorten it)."""
        return self.settling.still_writing_after

    @still_writing_after.setter
    def still_writing_after(self, seconds: float) -> None:
        self.settling.still_writing_after = seconds

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
                timeout = await self._tick_safely()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    {waiter, stopper}, timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                stopper.cancel()
        finally:
            self._stopping = True  # a scan waiting for room stops waiting
            for helper in helpers:
                helper.cancel()
            await self.shutdown()
            if helpers:
                await asyncio.wait(helpers, timeout=5)

    async def _tick_safely(self) -> float:
        """One tick (after a probe of a paused journal); the seconds to sleep after it."""
        try:
            if self.guard.probe_due():
                self.guard.try_resume()
            try:
                await self.tick()
            except LeaseLost as exc:
                # A note or state this node wanted to write on a source another node holds:
                # that node decides; the next tick goes on.
                log.info("source_held_elsewhere", source_id=exc.source_id, holder=exc.holder)
            return self._sleep_for()
        except JournalUnavailable as exc:
            self.guard.failed(exc)
            return self._sleep_for()  # paused: it reads nothing from the journal

    async def tick(self) -> None:
        """One pass: record hints, settle what is ready, start what is due.

        Nothing while the journal cannot be written: hints are kept for the first pass after.
        """
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self.guard.pause is not None:
            return
        await self.intake.take_hints()
        # Each step awaits: a write that failed meanwhile (in a task) pauses the rest too.
        if self.guard.pause is None:
            await self.settling.settle()
        if self.guard.pause is None:
            self.dispatch.dispatch()

    def idle(self) -> bool:
        """True when nothing is running or waiting to be looked at."""
        return not (self.intake.hints or self.dispatch.running or self.settling.hashing
                    or self._ctx.background)

    def _sleep_for(self) -> float:
        """Seconds until something is due: the loop sleeps until then or the next hint.

        Hints, finished tasks and timers wake it earlier; ``idle_seconds`` bounds the sleep so
        changes made by another process (``watcherd retry``) are seen without a signal.
        """
        now = time.time()
        if self.guard.pause is not None:
            return max(0.0, self.guard.retry_at - now)
        # Shared: other nodes' changes wake the loop (NOTIFY); a lease that runs out makes
        # no notification, so the journal is looked at again within a lease period.
        idle = max(self.idle_seconds, self.lease_seconds) if self.shared else self.idle_seconds
        when = min(now + idle, self.settling.next_check_at())
        for due in (self.journal.next_attempt_at(now), self.dispatch.next_due_at()):
            if due is not None:
                when = min(when, due)
        return max(0.0, when - now)

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
            if self.guard.pause is not None:
                continue  # the journal cannot take the renewal; the pause is said already
            try:
                held = set(self.journal.renew(self.node, self.lease_seconds))
            except JournalUnavailable as exc:
                self.guard.failed(exc)
                continue
            except Exception as exc:
                # The database is away: the attempts go on, and their writes are fenced
                # if the leases run out meanwhile.
                log.warning("lease_renew_failed", node=self.node, error=one_line(exc))
                continue
            self.dispatch.drop_unleased(held)

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
                if self.guard.pause is None and not isinstance(exc, JournalUnavailable):
                    log.warning("journal_changes_not_heard", error=one_line(exc),
                                hint="the loop still looks at the journal every lease period")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.lease_seconds)
                continue
            if changed:
                self.settling.recheck()
                self._wake.set()

    # -- stopping and reloads ------------------------------------------------------------

    async def shutdown(self) -> None:
        """Abandon waits and in-flight calls; the journal already holds where each one was.

        A local transcription that should end within the stop grace (estimated by its
        engine: from its progress, or its length and the engine's speed) is let finish
        first: stopping it would throw its work away and run it again from the beginning.
        """
        finishing = self.dispatch.finishing()
        if finishing:
            log.info("finishing_before_stop", files=len(finishing),
                     grace_seconds=self.dispatch.finish_grace)
            await asyncio.wait(finishing, timeout=self.dispatch.finish_grace)
        tasks = [*self.dispatch.running.values(), *self.settling.hashing.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self.dispatch.running.clear()

    def hand_over(self) -> dict[int, InFlight]:
        """Give up the running attempts, for the worker of the next generation (a reload) to
        :meth:`adopt`: stopping this worker then leaves them running."""
        return self.dispatch.hand_over()

    def adopt(self, attempts: Mapping[int, InFlight]) -> None:
        """Take over attempts another worker handed over: they count against their engine's
        concurrency, are not started twice, and a stop treats them as this worker's own."""
        self.dispatch.adopt(attempts)

    # -- for ``transcribe`` --------------------------------------------------------------

    def outputs_for(self, source: Source) -> OutputSettings:
        """What this source's watch asks of its outputs (formats, folder, names...)."""
        return self.folders.outputs_for(source)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the caller runs on ``loop`` itself (where waiting for it would never end)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def unfinished(journal: Journal, paths: Iterable[str]) -> list[str]:
    """The paths among ``paths`` whose source is not yet done, failed or gone."""
    left = []
    for path in paths:
        source = journal.by_path(path)
        if source is None or source.state not in ("done", "failed", "gone"):
            left.append(path)
    return left
