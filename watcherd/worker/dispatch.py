"""Dispatch: due sources through their engine, with each engine's concurrency, each attempt
inside its source's fault boundary, and leases on a shared journal.

Which engine, and how it is driven, comes from the routes' capabilities (remote jobs count
against a plan and probe one at a time while the API is down), never from an engine's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcherd import outcomes
from watcherd.engines import Pipeline
from watcherd.fileops import run_on
from watcherd.health import ApiHealth
from watcherd.identity import source_keys, stored_result
from watcherd.journal import ACTIVE_STATES, JournalUnavailable, LeaseLost, Source
from watcherd.recover import job_from_outputs
from watcherd.worker.common import WorkContext, log, one_line
from watcherd.worker.routes import EngineRoutes, EngineSlot

__all__ = ["FINISH_GRACE_SECONDS", "Dispatch", "InFlight"]

#: How many due sources one dispatch pass reads beyond eight per engine slot.
_DUE_BATCH = 64
#: On a stop, a local transcription estimated to end within this many seconds is let finish.
FINISH_GRACE_SECONDS = 10.0
#: What a source's note says once its folder's fallback engine takes it.
_FALLBACK_NOTE = "Gladia unreachable too long: transcribed by the local engine (fallback)"
#: What a source's note says once the monthly limit sends it to another engine.
_DIVERTED_NOTE = "monthly limit reached: transcribed by the {engine} engine (over_limit)"


@dataclass(frozen=True)
class InFlight:
    """An attempt handed from one generation's worker to the next's (see Worker.hand_over)."""

    engine: str
    pipeline: Pipeline
    task: asyncio.Task[None]


@dataclass(frozen=True)
class _Conditions:
    """What one dispatch pass knows of the remote API and the plan."""

    now: float
    #: A rejected key fails every call: remote work waits for the next re-check.
    remote_paused: bool
    #: The API is down or the key rejected: one remote attempt at a time probes it.
    probing: bool
    #: Remote jobs this node's tasks are not driving, counted against the plan.
    in_flight: int


class Dispatch:
    """Starts due sources on their engine and keeps the attempts that run."""

    def __init__(self, ctx: WorkContext, routes: EngineRoutes, health: ApiHealth, *,
                 recheck: Callable[[], None], node: str, lease_seconds: float,
                 fallback_after: float, finish_grace: float) -> None:
        self.ctx = ctx
        self.journal = ctx.journal
        self.routes = routes
        self.health = health
        #: Make settling look at the journal again (an attempt may have sent a source back).
        self.recheck = recheck
        self.node = node
        self.lease_seconds = lease_seconds
        #: How long a remote API must be unreachable before a folder's fallback is used.
        self.fallback_after = fallback_after
        self.finish_grace = finish_grace
        #: Source id -> its running attempt, with the engine and pipeline it runs on (after a
        #: reload that changed an engine's settings, adopted attempts finish on their own).
        self.running: dict[int, asyncio.Task[None]] = {}
        self._engine_running: dict[int, str] = {}
        self._pipeline_of: dict[int, Pipeline] = {}
        # Sources whose failure could not even be recorded: not dispatched before this time.
        self._quarantine: dict[int, float] = {}
        # The source that probed the API last while it was down or the key rejected.
        self._last_probe: int | None = None
        # Sources whose NAME.json was (being) read for a result left by an earlier journal.
        self._outputs_checked: set[int] = set()
        self._checking_outputs: set[int] = set()

    def running_task(self, source_id: int) -> asyncio.Task[None] | None:
        """The attempt driving ``source_id`` now, if any."""
        return self.running.get(source_id)

    def next_due_at(self) -> float | None:
        """The earliest time something kept out of dispatch here may start, or None."""
        times = list(self._quarantine.values())
        if self.health.auth_problem is not None:
            times.append(self.health.auth_problem_at + self.ctx.retry.auth_pause)
        return min(times) if times else None

    # -- one pass ------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Start every due source whose engine has room, in the journal's order."""
        self._reap()
        usable = self.routes.usable()
        # Enough rows to fill every engine several times over; the rest wait for a later pass.
        capacity = sum(slot.max_concurrent for slot in usable.values())
        now = time.time()
        probing = self.health.down_since is not None or self.health.auth_problem is not None
        # Jobs created (or maybe created) earlier count against the plan's concurrency even
        # while no task is looking at them.
        pass_ = _Conditions(
            now=now, probing=probing,
            remote_paused=self.health.auth_problem is not None and (
                now - self.health.auth_problem_at < self.ctx.retry.auth_pause),
            in_flight=self.journal.count_in_flight(exclude=set(self.running)),
        )
        # With every engine full, a source not started yet cannot start this pass: the queue
        # proper is not read at all (with 100,000 files queued and the plan busy, that was a
        # hundred rows read and dropped on every pass). With no engine at all it is, to say so.
        room = not usable or any(self._has_room(name, slot, pass_, counted=False)
                                 for name, slot in usable.items())
        due = self.journal.due(now, limit=_DUE_BATCH + 8 * capacity, queued=room)
        if not due:
            return
        if self._quarantine:
            self._quarantine = {k: t for k, t in self._quarantine.items() if t > now}
            due = [s for s in due if s.id not in self._quarantine]
        if probing and self._last_probe is not None:
            # Rotate the probe: the file that probed last goes to the back, so one file whose
            # own request keeps failing cannot hold every other file back.
            due = [s for s in due if s.id != self._last_probe] + [
                s for s in due if s.id == self._last_probe
            ]
        no_engine: list[Source] = []
        for source in due:
            if source.id in self.running:
                continue
            if not self.ctx.covers(source):
                continue  # a folder this node does not watch: another node's or config's
            name, slot = self._route(source, now)
            if name is None or slot is None or slot.pipeline is None:
                if not self.ctx.shared:
                    no_engine.append(source)
                # Shared: left for a node that has this folder's engine.
                continue
            # A source holding a (maybe) job is already counted in in_flight: it must still be
            # driven, or maybe-jobs filling the plan would block each other forever.
            counted = source.job_id is not None or source.submit_started_at is not None
            if self._has_room(name, slot, pass_, counted=counted):
                self._start(name, slot, slot.pipeline, source, pass_)
        if no_engine:
            self._note_no_engine(no_engine)

    def _reap(self) -> None:
        """Forget attempts that ended; one that raised past its fault boundary is a bug."""
        for source_id, task in list(self.running.items()):
            if task.done():
                del self.running[source_id]
                self._engine_running.pop(source_id, None)
                self._pipeline_of.pop(source_id, None)
                if not task.cancelled() and task.exception() is not None:
                    log.error("worker_bug", source_id=source_id,
                              error=repr(task.exception()))

    def _has_room(self, name: str, slot: EngineSlot, pass_: _Conditions, *, counted: bool
                  ) -> bool:
        """Whether the engine may start one more attempt now, for a source whose job is
        ``counted`` in ``pass_.in_flight`` already or not."""
        busy = sum(1 for n in self._engine_running.values() if n == name)
        if not slot.remote_jobs:
            return busy < slot.max_concurrent
        if pass_.remote_paused:
            return False
        if pass_.probing and busy:
            return False  # one probe at a time while the API is down or the key rejected
        return counted or busy + pass_.in_flight < slot.max_concurrent

    def _start(self, name: str, slot: EngineSlot, pipeline: Pipeline, source: Source,
               pass_: _Conditions) -> None:
        """Start an attempt, once no copy of the content leads and this node holds the lease."""
        try:
            if not self._may_start(source):
                return
        except LeaseLost:
            return  # another node is working on it right now
        if self.ctx.shared and not self.journal.claim([source.id], self.node,
                                                      self.lease_seconds):
            return  # another node claimed it first
        if pass_.probing and slot.remote_jobs:
            self._last_probe = source.id
        self._engine_running[source.id] = name
        self._pipeline_of[source.id] = pipeline
        self.running[source.id] = asyncio.ensure_future(self._drive(pipeline, source.id))

    def _route(self, source: Source, now: float) -> tuple[str | None, EngineSlot | None]:
        """The engine for this source: its folder's, or the folder's fallback when that
        engine's remote API has been unreachable too long and no job was made yet."""
        watch = self.ctx.folders.watch_of_source(source)
        name, slot = self.routes.slot_of(watch)
        fallback = None if watch is None or watch.fallback == "none" else watch.fallback
        spare = self.routes.slots.get(fallback) if fallback is not None else None
        if (
            slot is not None and slot.remote_jobs and fallback != name
            and spare is not None and spare.pipeline is not None
            and self.health.down_since is not None
            and now - self.health.down_since >= self.fallback_after
            and source.job_id is None and source.submit_started_at is None
        ):
            if source.note != _FALLBACK_NOTE:
                self.journal.annotate(source, actor="worker", reason="fallback",
                                      note=_FALLBACK_NOTE)
                log.warning("fallback_to_local", source=source.path)
            return fallback, spare
        diverted = self._diverted(source, slot)
        if diverted is not None:
            return diverted
        return name, slot

    def _diverted(self, source: Source, slot: EngineSlot | None
                  ) -> tuple[str, EngineSlot] | None:
        """The engine a pipeline sends this source to instead (its monthly limit), if any."""
        ask = getattr(slot.pipeline, "diverted_to", None) if slot is not None else None
        other = ask(source) if callable(ask) else None
        spare = self.routes.slots.get(other) if isinstance(other, str) else None
        if other is None or spare is None or spare.pipeline is None:
            return None
        note = _DIVERTED_NOTE.format(engine=other)
        if source.note != note:
            self.journal.annotate(source, actor="worker", reason="monthly limit", note=note)
            log.warning("over_limit_to_local", source=source.path, engine=other)
        return other, spare

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
                self.ctx.in_background(asyncio.ensure_future(self._recover_from_outputs(source)))
            return False
        leader = None
        for key in source_keys(source):
            leader = self.journal.leader_for(key)
            if (leader is not None and not self.ctx.shared
                    and self.ctx.folders.watch_of_source(leader) is None):
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
                                 self.ctx.folders.outputs_for(source),
                                 timeout=self.ctx.file_timeout)
        except Exception as exc:
            # Unreadable outputs are no result: the source goes on to the engine.
            log.warning("outputs_not_checked", source=source.path, error=one_line(exc))
            found = None
        finally:
            self._checking_outputs.discard(source.id)
            self._outputs_checked.add(source.id)
            self.ctx.wake.set()
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
            self.ctx.journal_failed(exc)

    def _adopt_outputs(self, source: Source, base: Path, job: dict[str, Any]) -> None:
        """Record a result found in existing outputs (its NAME.json) for this source."""
        source = self.journal.annotate(
            source, actor="worker", output_base=str(base),
            reason="result recovered from the existing outputs; no new job",
        )
        self.journal.store_result(source, job)
        log.info("result_recovered", source=source.path, job_id=job.get("id"))

    def _note_no_engine(self, due: list[Source]) -> None:
        reason = self.routes.no_engine_reason or "no transcription engine is configured"
        for source in due:
            if source.note != reason:
                self.journal.annotate(source, actor="worker", reason="no engine", note=reason)

    # -- one attempt, inside its fault boundary ----------------------------------------------

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
            self.ctx.journal_failed(exc)
        except LeaseLost as exc:
            # Another node took the source over (this one paused past its lease): that node
            # goes on from the journal; this attempt ends without writing anything.
            log.warning("lease_lost", source_id=source_id, holder=exc.holder)
        except Exception as exc:
            self._record_unforeseen(source_id, exc)
        else:
            self._check_progress(source_id, before)
        finally:
            if self.ctx.shared:
                self._release(source_id)
            # The attempt may have sent the source back to settling: look at once.
            self.recheck()
            self.ctx.wake.set()

    def _release(self, source_id: int) -> None:
        """Give up this node's lease once an attempt ends: any node may take the next one."""
        try:
            self.journal.release([source_id], self.node)
        except JournalUnavailable:
            pass  # the lease runs out by itself; the pause is said already
        except Exception as exc:
            # The lease then simply runs out.
            log.warning("lease_release_failed", source_id=source_id, error=one_line(exc))

    def _record_unforeseen(self, source_id: int, exc: BaseException) -> None:
        """An attempt ended in an exception nobody foresaw: record it, back off, or fail."""
        try:
            self._retry_or_fail(source_id, exc)
        except LeaseLost as lost:
            log.warning("lease_lost", source_id=source_id, holder=lost.holder)

    def _retry_or_fail(self, source_id: int, exc: BaseException) -> None:
        error = one_line(exc)
        log.error("source_attempt_failed", source_id=source_id, error=error,
                  hint="the file is retried later; other files are not affected")
        retry = self.ctx.retry
        try:
            source = self.journal.get(source_id)
            attempts = source.attempts + 1
            if attempts >= retry.unexpected_budget:
                outcomes.fail(
                    self.journal, source_id,
                    f"watcherd could not process this file ({error}; {attempts} attempts "
                    "failed): an answer it does not understand or a bug; run `watcherd retry` "
                    "to try again, and please report it", attempts=attempts,
                )
                return
            delay = retry.delay(attempts)
            outcomes.wait(self.journal, source_id,
                          f"unexpected error: {error}; retrying later", delay, attempts=attempts)
        except JournalUnavailable as again:
            self.ctx.journal_failed(again)  # the journal's storage, not this file: pause all
        except Exception as again:
            # Even the record failed (a bug): keep the source out of dispatch for a while, in
            # memory, so it cannot spin; the journal still says where it was.
            self._quarantine[source_id] = time.time() + retry.retry_cap
            log.error("source_quarantined", source_id=source_id, error=one_line(again),
                      retry_in=retry.retry_cap)

    def _check_progress(self, source_id: int, before: float) -> None:
        """An attempt that changed nothing would be dispatched again at once: make it wait."""
        try:
            source = self.journal.get(source_id)
        except KeyError:
            return
        except JournalUnavailable as exc:
            self.ctx.journal_failed(exc)
            return
        if source.updated_at != before or source.state not in ACTIVE_STATES:
            return
        if source.state == "waiting" and (source.next_attempt_at or 0.0) > time.time():
            return
        self._record_unforeseen(source_id,
                                RuntimeError("the attempt ended without recording an outcome"))

    # -- leases, reloads and stopping --------------------------------------------------------

    def drop_unleased(self, held: set[int]) -> None:
        """Stop the attempts whose lease this node no longer holds: another node took them."""
        for source_id, task in list(self.running.items()):
            if source_id not in held and not task.done():
                log.warning("lease_lost", node=self.node, source_id=source_id,
                            hint="another node took this file over; it finishes it")
                task.cancel()

    def finishing(self) -> set[asyncio.Task[None]]:
        """The attempts whose engine says they end within the stop grace."""
        found = set()
        for source_id, task in self.running.items():
            pipeline = self._pipeline_of.get(source_id)
            check = getattr(pipeline, "finishing_within", None)
            if callable(check) and check(source_id, self.finish_grace):
                found.add(task)
        return found

    def hand_over(self) -> dict[int, InFlight]:
        """Give up the running attempts (see Worker.hand_over)."""
        handed = {
            source_id: InFlight(self._engine_running[source_id], self._pipeline_of[source_id],
                                task)
            for source_id, task in self.running.items()
            if not task.done() and source_id in self._pipeline_of
        }
        for source_id in handed:
            del self.running[source_id]
            self._engine_running.pop(source_id, None)
            self._pipeline_of.pop(source_id, None)
        return handed

    def adopt(self, attempts: Mapping[int, InFlight]) -> None:
        """Take over attempts another worker handed over (see Worker.adopt)."""
        for source_id, attempt in attempts.items():
            if attempt.task.done():
                continue
            self.running[source_id] = attempt.task
            self._engine_running[source_id] = attempt.engine
            self._pipeline_of[source_id] = attempt.pipeline
            attempt.task.add_done_callback(self._adopted_ended)

    def _adopted_ended(self, _: asyncio.Future[None]) -> None:
        # The attempt wakes the worker that started it; this one must look too.
        self.recheck()
        self.ctx.wake.set()
