"""Gladia's queue as watcherd uses it: how many jobs may exist at once, and when each ends.

Gladia accepts jobs beyond the plan's concurrency and starts them in order the moment a slot
frees (docs/gladia-contract.md). Creating a few jobs ahead keeps every slot busy: the gap
between one job ending and the next starting is Gladia's, not a poll plus a create of ours.

:class:`QueueBudget` is how many jobs may be in flight (running or queued) at once: the
plan's concurrency plus the queue ahead, halved when Gladia refuses a create with 429
because its queue is full, and grown back by one job at a time: after a while, or after as
many creates accepted in a row as the plan runs at once (a queue with room accepts them; a
full one refuses again soon and halves it again).

:class:`QueueModel` follows this process's live jobs in create order, so a job created into
the queue is polled when it should end (its predicted start, when the jobs ahead of it free
a slot, plus its own run time), and the run time learnt from it leaves the queue wait out.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass

from watcherd.engines.gladia.jobtime import Prediction

__all__ = ["JobKey", "QueueBudget", "QueueModel", "QueuedPrediction"]

#: After a 429 on create, the queue ahead grows back by one job per this many seconds.
_GROW_SECONDS = 10.0


class QueueBudget:
    """Jobs that may be in flight at Gladia at once: concurrency + the current queue ahead."""

    def __init__(self, concurrency: int, ahead: int, *, grow_seconds: float = _GROW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.concurrency = concurrency
        self.most_ahead = ahead
        self.grow_seconds = grow_seconds
        self._clock = clock
        self._ahead = ahead
        self._changed_at = clock()
        self._accepted_in_row = 0

    @property
    def ahead(self) -> int:
        """The queue ahead allowed now (grown back since the last refusal)."""
        if self._ahead < self.most_ahead and self.grow_seconds > 0:
            grown = int((self._clock() - self._changed_at) // self.grow_seconds)
            if grown > 0:
                self._ahead = min(self.most_ahead, self._ahead + grown)
                self._changed_at += grown * self.grow_seconds
        return self._ahead

    @property
    def limit(self) -> int:
        """How many jobs may be in flight now, queued ones included."""
        return self.concurrency + self.ahead

    def refused(self, retry_after: float | None, *, again: bool = False) -> int | None:
        """Gladia answered a create with 429; the queue ahead if it shrank, else None.

        A 429 that says when to come back (Retry-After) reads as a rate limit: the create
        waits that long, and the queue ahead stays, unless that same create is refused
        ``again`` once it waited (a rate limit's 429s fall on creates at random; counting
        them over every source shrank the queue under the fault mix, issue 22). One without
        reads as a full queue. Either way the queue ahead halves, and grows back one job at
        a time, finding the queue's room without a burst of refusals.
        """
        self._accepted_in_row = 0
        if retry_after is not None and not again:
            return None
        self._ahead = self.ahead // 2
        self._changed_at = self._clock()
        return self._ahead

    def accepted(self) -> None:
        """A create succeeded: after a plan's worth of accepted creates in a row the queue
        ahead grows back by one job (a rate limit's occasional 429 would otherwise keep it
        small for a long time: GROW_SECONDS per job is hundreds of short jobs)."""
        self._accepted_in_row += 1
        if self._accepted_in_row >= max(1, self.concurrency) and self.ahead < self.most_ahead:
            self._ahead += 1
            self._changed_at = self._clock()
            self._accepted_in_row = 0


@dataclass(frozen=True)
class QueuedPrediction:
    """When a new job should end: the wait for a slot, then its own run time."""

    queue_wait: float
    run: Prediction


#: What a live job's run time is predicted from (its audio's length and kind of job): the
#: pipeline's job time model is asked again for it once something is learnt.
JobKey = tuple[float | None, str]


@dataclass
class _Live:
    """One live job as the model follows it."""

    created: float
    run: Prediction
    #: Gladia's time it started: its creation (not queued) or the end that freed its slot.
    start: float | None
    queued: bool
    key: JobKey | None = None


class QueueModel:
    """This process's live jobs, in create order, with a predicted start and end for each.

    Every prediction replays the queue as Gladia runs it (first in, first out over the
    plan's slots) with what is known now: when a job started if an end of ours was seen to
    start it, and the run times the job time model gives today (a guess made before anything
    was learnt gives way to the learnt one: :meth:`relearn`). A job predicted to have ended
    but not yet seen to is taken to have ended when predicted: Gladia started the next one
    then (taking it to end "now" instead made every late sighting push the jobs behind it
    later still). Times are this machine's clock for predictions and Gladia's
    (``created_at``, ``completed_at``) for what is learnt. The replay is kept until the jobs
    or what is known of them change (:attr:`version`), so many waiting polls read it cheaply.
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._live: dict[str, _Live] = {}  # in create order (dicts keep insertion order)
        # Queued jobs, oldest first, that no ended job of ours was seen to start yet.
        self._waiting: list[str] = []
        #: Bumped whenever a prediction may have changed; see :meth:`start_of`.
        self.version = 0
        self._starts: tuple[int, dict[str, float]] = (-1, {})

    def __len__(self) -> int:
        return len(self._live)

    def _changed(self) -> None:
        self.version += 1

    def _replay(self) -> tuple[dict[str, float], list[float]]:
        """Each live job's predicted start, and when each slot frees after them all (a heap),
        replayed in create order."""
        slots: list[float] = []
        starts: dict[str, float] = {}
        for job_id, job in self._live.items():
            free = heapq.heappop(slots) if len(slots) >= self.concurrency else float("-inf")
            start = job.start if job.start is not None else max(job.created, free)
            starts[job_id] = start
            heapq.heappush(slots, start + job.run.seconds)
        return starts, slots

    def start_of(self, job_id: str) -> float | None:
        """When a live job started or should start (None: not followed here)."""
        version, starts = self._starts
        if version != self.version:
            starts = self._replay()[0]
            self._starts = (self.version, starts)
        return starts.get(job_id)

    def run_of(self, job_id: str) -> Prediction | None:
        """The run time a live job is predicted to take now (None: not followed here)."""
        job = self._live.get(job_id)
        return None if job is None else job.run

    def created(self, job_id: str, run: Prediction, *, now: float | None = None,
                key: JobKey | None = None) -> QueuedPrediction:
        """A job was just created: when it should start (after the jobs ahead) and end."""
        now = time.time() if now is None else now
        if run.learnt_from:
            for job in self._live.values():
                if not job.run.learnt_from:
                    job.run = run  # the guess made before anything was learnt gives way
        slots = self._replay()[1]
        queued = len(slots) >= self.concurrency
        start = max(now, heapq.heappop(slots)) if queued else now
        self._live[job_id] = _Live(created=now, run=run, start=None if queued else now,
                                   queued=queued, key=key)
        if queued:
            self._waiting.append(job_id)
        self._changed()
        return QueuedPrediction(queue_wait=start - now, run=run)

    def relearn(self, predict: Callable[[JobKey], Prediction]) -> bool:
        """Something was learnt: every live job still predicted by a guess made before is
        predicted again (``predict``, the job time model). Whether any prediction changed."""
        changed = False
        for job in self._live.values():
            if job.key is not None and not job.run.learnt_from:
                run = predict(job.key)
                if run.learnt_from:
                    job.run, changed = run, True
        if changed:
            self._changed()
        return changed

    def resumed(self, job_id: str, run: Prediction, *, now: float | None = None) -> None:
        """A job this process did not create (restart, adoption): count it until it ends."""
        if job_id not in self._live:
            now = time.time() if now is None else now
            self._live[job_id] = _Live(created=now, run=run, start=None, queued=True)
            self._changed()

    def ended(self, job_id: str, completed_at: float | None) -> tuple[bool, float | None]:
        """A job ended at Gladia's ``completed_at`` (None: unknown); forget it.

        Its end freed a slot: the oldest queued job not yet seen starting started then.
        Returns whether this job's start is known, and that start in Gladia's time (None:
        its own ``created_at``).
        """
        job = self._live.pop(job_id, None)
        known, start = False, None
        if job_id in self._waiting:
            self._waiting.remove(job_id)  # ended before an end of ours was seen to start it
        elif job is not None and job.queued:
            known, start = job.start is not None, job.start
        elif job is not None:
            known = True  # created into a free slot: it started at its creation
        if completed_at is not None and self._waiting:
            self._live[self._waiting.pop(0)].start = completed_at
        self._changed()
        return known, start

    def forget(self, job_id: str) -> None:
        """The job is no longer followed here (it failed, or another job replaces it)."""
        self._live.pop(job_id, None)
        if job_id in self._waiting:
            self._waiting.remove(job_id)
        self._changed()
