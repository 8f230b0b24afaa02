"""The worker loop: take hints, settle and hash sources, and drive due work through an engine.

It is the only code that writes the journal (DESIGN invariant 4): watcher threads hand paths
over through :meth:`Worker.hint_threadsafe`, blocking file work runs in threads, and every
result comes back to this loop before it is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from watcherd.config import Config, WatchConfig
from watcherd.errors import AuthError, GladiaError, SourceError
from watcherd.identity import content_key, hash_file, options_json
from watcherd.journal import ACTIVE_STATES, FileStat, Journal, Source
from watcherd.pipeline import GladiaPipeline
from watcherd.recover import job_from_outputs
from watcherd.watcher import watch_for

log = structlog.get_logger("watcherd.worker")

class Pipeline(Protocol):
    """An engine's way of taking one settled source to ``done`` (or to a retry or failure)."""

    outputs_for: Callable[[Source], Sequence[str]]

    async def drive(self, source_id: int) -> None:
        """Take the source as far as it can go now; every outcome lands in the journal."""


@dataclass(frozen=True)
class Seen:
    """What a thread found at a hinted path: a file's stat, nothing, or a reason to ignore it."""

    path: Path
    stat: FileStat | None
    problem: str | None = None


def _look(paths: Iterable[Path]) -> list[Seen]:
    seen = []
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            seen.append(Seen(path, None))
            continue
        except OSError as exc:
            seen.append(Seen(path, None, f"cannot read it: {exc.strerror or exc}"))
            continue
        if not os.path.isfile(path):
            continue
        seen.append(Seen(path, FileStat.of(st)))
    return seen


class Worker:
    """Settles sources and drives them through the engine, with bounded concurrency."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        pipeline: Pipeline | None,
        *,
        no_engine_reason: str | None = None,
        extra_watches: Sequence[WatchConfig] = (),
        tick_seconds: float = 0.25,
        hash_workers: int = 2,
        auth_recheck_seconds: float = 300.0,
    ) -> None:
        self.config = config
        self.journal = journal
        self.pipeline = pipeline
        self.no_engine_reason = no_engine_reason
        self.watches = tuple(config.watches) + tuple(extra_watches)
        self.tick_seconds = tick_seconds
        self.auth_recheck_seconds = auth_recheck_seconds
        self._hints: set[Path] = set()
        self._explicit: dict[Path, WatchConfig] = {}
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._hashing: dict[int, asyncio.Task[None]] = {}
        self._hash_slots = asyncio.Semaphore(hash_workers)
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            # Bound now, so watcher threads started before run() can already hand paths over.
            self._loop = asyncio.get_running_loop()
        self.note_api_down_since: float | None = None
        self._auth_problem: str | None = None
        self._auth_problem_at = 0.0
        if pipeline is not None:
            pipeline.outputs_for = self.outputs_for
        if isinstance(pipeline, GladiaPipeline):
            pipeline.on_api_down = self.note_api_down
            pipeline.on_api_ok = self.note_api_ok
            pipeline.on_auth_error = self.note_auth_error

    # -- hand-over from other threads ---------------------------------------------------

    def hint_threadsafe(self, path: Path) -> None:
        """Called from watcher threads: look at ``path`` soon."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.hint, path)

    def hint(self, path: Path) -> None:
        """Called on the loop: look at ``path`` on the next tick."""
        self._hints.add(path)
        self._wake.set()

    def add_explicit(self, path: Path, watch: WatchConfig) -> None:
        """A file named on the command line: transcribe it with ``watch``'s settings."""
        self._explicit[path] = watch
        self.hint(path)

    # -- state the daemon shows ---------------------------------------------------------

    @property
    def api_down_since(self) -> float | None:
        """When the API last became unreachable, or None while it answers."""
        return self.note_api_down_since

    @property
    def auth_problem(self) -> str | None:
        """The message of a rejected API key while remote work is paused."""
        return self._auth_problem

    def note_api_down(self, exc: GladiaError) -> None:
        """The API could not be reached: probe it one call at a time until it answers."""
        if self.note_api_down_since is None:
            self.note_api_down_since = time.time()
            log.warning("gladia_unreachable", error=exc.describe(),
                        hint="files wait and resume by themselves when the API answers again")

    def note_api_ok(self) -> None:
        """A call succeeded: resume full speed and wake sources that waited for the network."""
        if self.note_api_down_since is not None:
            log.info("gladia_reachable", down_seconds=round(time.time() - self.note_api_down_since))
            self.note_api_down_since = None
            # Sources that waited only for the network go now instead of at their backoff time.
            self.journal.reschedule_waiting(time.time())
            self._wake.set()
        if self._auth_problem is not None:
            log.info("gladia_key_accepted")
            self._auth_problem = None

    def note_auth_error(self, exc: AuthError) -> None:
        """The key was rejected: pause remote work and re-check it now and then."""
        if self._auth_problem is None:
            log.error("gladia_key_rejected", error=exc.describe(),
                      hint="remote work is paused; fix the key and restart or send SIGHUP")
        self._auth_problem = exc.describe()
        self._auth_problem_at = time.time()

    # -- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then leave every source in a resumable state."""
        self._loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                await self.tick()
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    {waiter, stopper}, timeout=self.tick_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                stopper.cancel()
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Abandon waits and in-flight calls; the journal already holds where each one was."""
        tasks = [*self._running.values(), *self._hashing.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self._running.clear()

    async def tick(self) -> None:
        """One pass: record hints, settle what is ready, start what is due."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._hints:
            hints, self._hints = self._hints, set()
            await self._intake(hints)
        await self._settle()
        self._dispatch()

    def idle(self) -> bool:
        """True when nothing is running or waiting to be looked at."""
        return not (self._hints or self._running or self._hashing)

    # -- intake --------------------------------------------------------------------------

    def _watch_of(self, path: Path) -> WatchConfig | None:
        return self._explicit.get(path) or watch_for(path, self.watches)

    async def _intake(self, paths: set[Path]) -> None:
        seen = await asyncio.to_thread(_look, sorted(paths))
        batch = []
        for item in seen:
            if item.stat is None:
                self._vanished(item)
                continue
            watch = self._watch_of(item.path)
            if watch is None:
                continue
            batch.append((str(item.path), str(watch.path), item.stat, options_json(watch.options)))
        if batch:
            self.journal.observe_many(batch)
            self._wake.set()

    def _vanished(self, item: Seen) -> None:
        source = self.journal.by_path(str(item.path))
        if source is None or source.state not in ACTIVE_STATES:
            return
        if item.problem is not None:
            if source.last_error != item.problem:
                self.journal.annotate(source, actor="worker",
                                        reason=item.problem, last_error=item.problem)
            return
        task = self._running.get(source.id)
        if task is not None:
            return  # the running attempt finds out and records it itself
        self.journal.transition(
            source, "gone", actor="watcher", reason="source deleted before it was done",
            last_error="the source disappeared before it was transcribed",
        )
        log.warning("source_gone", source=source.path)

    # -- settling ------------------------------------------------------------------------

    async def _settle(self) -> None:
        now = time.time()
        for source in self.journal.unsettled(limit=500):
            if source.id in self._hashing:
                continue
            watch = self._watch_of(Path(source.path))
            settle = watch.settle_seconds if watch is not None else 0.0
            if source.changed_at is not None and now - source.changed_at < settle:
                continue
            self._hashing[source.id] = asyncio.ensure_future(self._hash(source))

    async def _hash(self, source: Source) -> None:
        try:
            async with self._hash_slots:
                expected = FileStat(source.size or 0, source.mtime_ns or 0, source.dev or 0,
                                    source.inode or 0)
                try:
                    digest, st = await asyncio.to_thread(hash_file, Path(source.path), expected)
                except SourceError as exc:
                    self._settle_failed(source, exc)
                    return
                current = self.journal.get(source.id)
                if current.state != "pending" or current.changed_at != source.changed_at:
                    return  # it changed again meanwhile; the next tick settles the new version
                key = content_key(digest, current.options_json)
                self.journal.transition(
                    current, "pending", actor="worker", reason="settled and hashed",
                    sha256=digest, content_key=key, note="queued",
                    size=st.size, mtime_ns=st.mtime_ns, dev=st.dev, inode=st.inode,
                )
                log.info("source_ready", source=source.path, sha256=digest[:16])
        finally:
            self._hashing.pop(source.id, None)
            self._wake.set()

    def _settle_failed(self, source: Source, exc: SourceError) -> None:
        current = self.journal.get(source.id)
        if current.state != "pending":
            return
        if exc.transient:
            if Path(source.path).exists():
                self.hint(Path(source.path))  # re-stat: observe restarts the settle clock
            else:
                self.journal.transition(
                    current, "gone", actor="worker", reason=f"source {exc.message}",
                    last_error="the source disappeared before it was transcribed",
                )
            return
        self.journal.transition(current, "failed", actor="worker", reason=exc.message,
                                last_error=exc.message)
        log.error("source_failed", source=source.path, reason=exc.message)

    # -- dispatch ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        for source_id, task in list(self._running.items()):
            if task.done():
                del self._running[source_id]
                if not task.cancelled() and task.exception() is not None:
                    log.error("worker_bug", source_id=source_id,
                              error=repr(task.exception()))
        due = self.journal.due(time.time())
        if not due:
            return
        if self.pipeline is None:
            self._note_no_engine(due)
            return
        if self._auth_problem is not None and (
            time.time() - self._auth_problem_at < self.auth_recheck_seconds
        ):
            return  # a rejected key fails every call: wait for the next re-check
        probing = self.note_api_down_since is not None or self._auth_problem is not None
        # Jobs created (or maybe created) earlier count against the plan's concurrency even
        # while no task is looking at them.
        in_flight = self.journal.count_in_flight(exclude=set(self._running))
        limit = self.config.gladia.max_concurrent_jobs
        for source in due:
            if source.id in self._running:
                continue
            if probing and self._running:
                break  # one probe at a time while the API is down or the key is rejected
            if source.job_id is None and len(self._running) + in_flight >= limit:
                continue
            assert source.content_key is not None
            cached = self.journal.result_for(source.content_key) is not None
            if not cached and source.job_id is None and source.audio_url is None and (
                source.submit_started_at is None
            ):
                cached = self._recover_from_outputs(source)
            leader = self.journal.leader_for(source.content_key)
            if not cached and leader is not None and leader.id != source.id:
                if source.note != f"same content as {leader.path}; waiting for its result":
                    self.journal.annotate(
                        source, actor="worker", reason="duplicate content",
                        note=f"same content as {leader.path}; waiting for its result",
                    )
                continue
            self._running[source.id] = asyncio.ensure_future(self._drive(source.id))

    def _recover_from_outputs(self, source: Source) -> bool:
        """Take the result from an existing NAME.json made for this content (journal lost)."""
        found = job_from_outputs(source)
        if found is None:
            return False
        base, job = found
        source = self.journal.annotate(source, actor="worker", output_base=str(base),
            reason="result recovered from the existing outputs; no new job",
        )
        self.journal.store_result(source, job)
        log.info("result_recovered", source=source.path, job_id=job.get("id"))
        return True

    async def _drive(self, source_id: int) -> None:
        assert self.pipeline is not None
        try:
            await self.pipeline.drive(source_id)
        finally:
            self._wake.set()

    def _note_no_engine(self, due: list[Source]) -> None:
        reason = self.no_engine_reason or "no transcription engine is configured"
        for source in due:
            if source.note != reason:
                self.journal.annotate(source, actor="worker", reason="no engine", note=reason)

    # -- for ``transcribe`` --------------------------------------------------------------

    def outputs_for(self, source: Source) -> tuple[str, ...]:
        """The output formats configured for this source's watch."""
        watch = self._watch_of(Path(source.path))
        return tuple(watch.outputs) if watch is not None else ("txt", "json")


def make_no_engine_reason(config: Config) -> str:
    """What to tell a person whose files wait because no engine is available."""
    return (
        "no transcription engine: set a Gladia API key ([gladia] api_key, api_key_file or "
        "GLADIA_API_KEY) and restart watcherd"
        + (" (engine is set to local, which is not installed: pip install 'watcherd[local]')"
           if config.engine == "local" else "")
    )


def unfinished(journal: Journal, paths: Iterable[str]) -> list[str]:
    """The paths among ``paths`` whose source is not yet done, failed or gone."""
    left = []
    for path in paths:
        source = journal.by_path(path)
        if source is None or source.state not in ("done", "failed", "gone"):
            left.append(path)
    return left
