"""When to look at a job this process just created, planned again as Gladia's queue moves.

A job created into Gladia's queue starts when a job ahead of it ends, so when it should end
is only known as well as the jobs ahead are: each end seen, and each job time learnt, moves
it. :class:`NewJobLooks` keeps the next look's time and plans it again whenever the
:class:`~watcherd.engines.gladia.queueahead.QueueModel` changed (the pipeline wakes it).

- Before anything is learnt, the job is looked at on the schedule for an unknown job time
  (:func:`~watcherd.engines.gladia.jobtime.poll_schedule`), from its creation: the queue's
  replay is then built from guesses too.
- Once its run time is learnt, its first look is at its predicted start (the queue's replay)
  plus its predicted run, early by the model's typical error; a long wait is cut by guard
  looks, in case Gladia got faster than what was learnt.
- After a look at or past that point found it not done: dense looks, then growing waits
  (:func:`~watcherd.engines.gladia.jobtime.after_end`).

Times are the wall clock (Gladia's timestamps are compared with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from watcherd.engines.gladia.jobtime import (
    DENSE_MIN,
    Prediction,
    after_end,
    first_look,
    guard_wait,
    poll_schedule,
)
from watcherd.engines.gladia.queueahead import QueueModel
from watcherd.retry import RetryPolicy
from watcherd.usage import job_time

__all__ = ["JobHints", "NewJobLooks", "job_age", "job_time", "poll_cap_for"]


class NewJobLooks:
    """The looks at one new job: :attr:`next_at`, :meth:`replan` when the queue moved,
    :meth:`looked` after a look found it not done."""

    def __init__(self, job_id: str, queue: QueueModel, prediction: Prediction, *,
                 created: float, poll_start: float, cap: float) -> None:
        self.job_id = job_id
        self.queue = queue
        self.prediction = prediction
        self.created = created
        self.cap = cap
        self._poll_start = poll_start
        self._tail: Iterator[float] | None = None
        self._target = created
        self._cold: Iterator[float] | None = None
        self.next_at = created
        if prediction.learnt_from:
            self._plan(created)
        else:
            self._cold = poll_schedule(prediction, since_created=0.0, start=poll_start, cap=cap)
            self.next_at = created + next(self._cold)

    @property
    def planned_end(self) -> float:
        """When the job should end as known now (for the status page)."""
        start = self.queue.start_of(self.job_id)
        run = self.queue.run_of(self.job_id) or self.prediction
        return (start if start is not None else self.created) + run.seconds

    def _plan(self, now: float) -> None:
        """The next look from the queue's replay (the job's run time is learnt)."""
        start = self.queue.start_of(self.job_id)
        run = self.queue.run_of(self.job_id) or self.prediction
        self.prediction = run
        # Never at its very creation: a job is not done instantly.
        self._target = max(self.created + DENSE_MIN,
                           (start if start is not None else self.created) + first_look(run))
        left = self._target - now
        self.next_at = now + guard_wait(left, self.cap) if left > guard_wait(left, self.cap) \
            else self._target

    def replan(self, now: float) -> None:
        """The queue moved (a job ended, a run time was learnt): plan the next look again,
        unless the job's predicted end was looked at already (then the dense looks go on)."""
        if self._tail is not None:
            return
        if self._cold is not None:
            run = self.queue.run_of(self.job_id)
            if run is None or not run.learnt_from:
                return  # still nothing learnt for it: the schedule from its creation goes on
            self._cold = None
        self._plan(now)

    def looked(self, now: float) -> None:
        """A look at ``now`` found the job not done: when the next one is."""
        if self._cold is not None:
            self.next_at = now + next(self._cold)
            return
        if self._tail is None and now + 0.01 < self._target:
            self._plan(now)  # a guard look: the predicted end is still ahead
            return
        if self._tail is None:
            self._tail = after_end(self.prediction, self.cap)
        self.next_at = now + next(self._tail)


class JobHints:
    """Hints that a job ended (a callback, a webhook): a waiting poll wakes at once."""

    def __init__(self) -> None:
        self._finished: dict[str, asyncio.Event] = {}

    def finished(self, job_id: str) -> None:
        """A job ended: the poll waiting on it (if any) happens now instead of at its time."""
        event = self._finished.get(job_id)
        if event is not None:
            event.set()

    async def pause(self, job_id: str, seconds: float, *, also: asyncio.Event | None = None
                    ) -> bool:
        """Wait up to ``seconds`` before polling ``job_id`` again, or until a hint comes (or
        ``also`` is set); whether a hint came."""
        event = self._finished.setdefault(job_id, asyncio.Event())
        try:
            if also is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=seconds)
            else:
                waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(also.wait())]
                try:
                    await asyncio.wait(waits, timeout=seconds,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()
            return event.is_set()
        finally:
            self._finished.pop(job_id, None)


def poll_cap_for(audio_seconds: float | None, policy: RetryPolicy) -> float:
    """The longest wait between polls for a recording of this length.

    A job takes a fraction of its audio's length, so polling a short memo every 30 s would
    make it wait up to 30 s for nothing: the cap is a tenth of the audio's length, at least
    three times the first wait, at most ``policy.poll_cap``.
    """
    if audio_seconds is None:
        return policy.poll_cap
    return min(policy.poll_cap, max(policy.poll_start * 3, audio_seconds / 10))


def job_age(job: Mapping[str, Any]) -> float:
    """Seconds since the job was created by its own timestamp (0 when it does not say)."""
    created = job_time(job.get("created_at"))
    return 0.0 if created is None else max(0.0, time.time() - created)
