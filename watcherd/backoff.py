"""Retry and poll schedules: exponential, with full jitter, honouring Retry-After."""

from __future__ import annotations

import random


def retry_delay(
    attempts: int,
    *,
    retry_after: float | None = None,
    base: float = 2.0,
    cap: float = 600.0,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before attempt number ``attempts + 1`` of a failed step.

    Full jitter (uniform between 0 and an exponentially growing ceiling) spreads retries of
    many files so they do not hit the API together; a server's Retry-After is a floor, never
    shortened.
    """
    rng = rng or random.Random()
    ceiling = min(cap, base * (2 ** min(max(0, attempts - 1), 60)))
    delay = rng.uniform(0.0, ceiling)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, 3600.0))
    return delay


def poll_delays(
    *, start: float = 1.0, factor: float = 1.5, cap: float = 30.0, rng: random.Random | None = None
) -> PollSchedule:
    """The waits between polls of one job: start near 1 s, grow, cap near 30 s."""
    return PollSchedule(start=start, factor=factor, cap=cap, rng=rng or random.Random())


class PollSchedule:
    """An endless iterator of poll waits with +/-20% jitter."""

    def __init__(self, *, start: float, factor: float, cap: float, rng: random.Random) -> None:
        self._next = start
        self._factor = factor
        self._cap = cap
        self._rng = rng

    def __iter__(self) -> PollSchedule:
        return self

    def __next__(self) -> float:
        value = self._next * self._rng.uniform(0.8, 1.2)
        self._next = min(self._cap, self._next * self._factor)
        return value
