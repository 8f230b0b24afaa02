"""Gladia's queue as watcherd uses it: how many jobs may exist at once, and when each ends.

Gladia accepts jobs beyond the plan's concurrency and starts them in order the moment a slot
frees (docs/gladia-contract.md). Creating a few jobs ahead keeps every slot busy: the gap
between one job ending and the next starting is Gladia's, not a poll plus a create of ours.

:class:`QueueBudget` is how many jobs may be in flight (running or queued) at once: the
plan's concurrency plus the queue ahead, halved when Gladia refuses a create with 429 (its
queue is full, or the account is rate limited) and grown back by one job at a time.

:class:`QueueModel` follows this process's live jobs in create order, so a job created into
the queue is polled when it should end (its predicted start, when the jobs ahead of it free
a slot, plus its own run time), and the run time learnt from it leaves the queue wait out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from watcherd.engines.gladia.jobtime import Prediction

__all__ = ["GROW_SECONDS", "QueueBudget", "QueueModel", "QueuedPrediction"]

#: After a 429 on create, the queue ahead grows back by one job per this many seconds.
GROW_SECONDS = 10.0


class QueueBudget:
    """Jobs that may be in flight at Gladia at once: concurrency + the current queue ahead."""

    def __init__(self, concurrency: int, ahead: int, *, grow_seconds: float = GROW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.concurrency = concurrency
        self.most_ahead = ahead
        self.grow_seconds = grow_seconds
        self._clock = clock
        self._ahead = ahead
        self._changed_at = clock()

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

    def refused(self) -> int:
        """Gladia answered a create with 429: queue half as many ahead; the new queue ahead.

        A full queue and a rate limit look alike; halving copes with both, and growing back
        one job at a time finds the queue's room again without a burst of refusals.
        """
        self._ahead = self.ahead // 2
        self._changed_at = self._clock()
        return self._ahead


@dataclass(frozen=True)
class QueuedPrediction:
    """When a new job should end: the wait for a slot, then its own run time."""

    queue_wait: float
    run: Prediction


class QueueModel:
    """This process's live jobs, in create order, with a predicted end for each.

    Times are this machine's clock for predictions, and Gladia's (the jobs' ``created_at``
    and ``completed_at``) for what is learnt. Jobs this process did not create (resumed after
    a restart, adopted) are counted with an estimated end, but their start stays unknown.
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._ends: dict[str, float] = {}
        # Jobs created into the queue, oldest first, that no ended job was seen to start yet.
        self._waiting: list[str] = []
        # Gladia's time each tracked job started: its creation, or the end that freed a slot.
        self._starts: dict[str, float | None] = {}

    def __len__(self) -> int:
        return len(self._ends)

    def created(self, job_id: str, run: Prediction, *, now: float | None = None
                ) -> QueuedPrediction:
        """A job was just created: when it should start (after the jobs ahead) and end."""
        now = time.time() if now is None else now
        ends = sorted(self._ends.values())
        ahead = len(ends) - self.concurrency + 1
        # It starts once enough of the jobs before it have ended to leave it a slot.
        start = now if ahead <= 0 else max(now, ends[ahead - 1])
        self._ends[job_id] = start + run.seconds
        if ahead <= 0:
            self._starts[job_id] = None  # started at once: its own created_at
        else:
            self._waiting.append(job_id)
        return QueuedPrediction(queue_wait=start - now, run=run)

    def resumed(self, job_id: str, end: float) -> None:
        """A job this process did not create (restart, adoption): count it until it ends."""
        self._ends.setdefault(job_id, end)

    def ended(self, job_id: str, completed_at: float | None) -> tuple[bool, float | None]:
        """A job ended at Gladia's ``completed_at`` (None: unknown); forget it.

        Its end freed a slot: the oldest queued job not yet seen starting started then.
        Returns whether this job's start is known, and that start (None: its own creation).
        """
        self._ends.pop(job_id, None)
        if job_id in self._waiting:
            self._waiting.remove(job_id)  # ended before an end of ours was seen to start it
            known, start = False, None
        elif job_id in self._starts:
            known, start = True, self._starts.pop(job_id)
        else:
            known, start = False, None
        if completed_at is not None and self._waiting:
            self._starts[self._waiting.pop(0)] = completed_at
        return known, start

    def forget(self, job_id: str) -> None:
        """The job is no longer followed here (it failed, or another job replaces it)."""
        self._ends.pop(job_id, None)
        self._starts.pop(job_id, None)
        if job_id in self._waiting:
            self._waiting.remove(job_id)
