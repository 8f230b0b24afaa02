"""The one retry policy: how long each kind of failure waits, and how many times it may recur.

What a failure *is* is decided where it happens and carried by the exception (see
:mod:`watcherd.errors`: ``transient``, ``maybe_sent``, ``retry_after``, ``malformed``,
``idempotent``; and :mod:`watcherd.fserrors` for the file system). What happens *next* —
the schedule and the budgets — is decided here, in :class:`RetryPolicy`, which is built once
(from ``[retry]`` in the config) and passed to the worker and every engine at construction.
Tests build it with short times.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["RETRY_KEYS", "PollSchedule", "RetryPolicy", "poll_delays", "retry_delay"]


@dataclass(frozen=True)
class RetryPolicy:
    """Every wait and budget of watcherd's retries, in one place.

    ``retry_base``/``retry_cap``: a failed step waits uniformly in [0, base * 2^(n-1)], at most
    cap seconds (full jitter), never less than the server's Retry-After.
    ``poll_start``/``poll_cap``: polls of a job before its duration is learnt start at
    poll_start and grow by half up to poll_cap (a recording's length caps it lower).
    ``list_lag_grace``: how long a job that may have been created is looked for in Gladia's
    list before concluding it was not (the list may lag a create).
    ``auth_pause``: how long remote work pauses after the key was rejected before re-checking.
    ``storage_retry``: how long a file whose storage is away (or hung) waits before a new look.
    ``read_attempts``/``read_retry_delay``/``read_retry_max_wait``: an idempotent request (GET)
    is tried this many times within its step, waiting Retry-After or about read_retry_delay,
    unless that is longer than read_retry_max_wait; ``read_step_max_wait`` caps the step's own
    wait after such a failure.
    The budgets: how many failures in a row of one kind fail a file (a Gladia job error 5xx,
    an unusable answer, a transient file system error, an unreadable file while hashing, an
    exception nobody foresaw).
    """

    retry_base: float = 2.0
    retry_cap: float = 600.0
    poll_start: float = 1.0
    poll_cap: float = 30.0
    list_lag_grace: float = 15.0
    auth_pause: float = 300.0
    storage_retry: float = 30.0
    read_attempts: int = 3
    read_retry_delay: float = 0.5
    read_retry_max_wait: float = 10.0
    read_step_max_wait: float = 10.0
    job_error_budget: int = 3
    malformed_budget: int = 6
    file_error_budget: int = 8
    read_error_budget: int = 8
    unexpected_budget: int = 5

    def delay(self, attempts: int, *, retry_after: float | None = None,
              rng: random.Random | None = None) -> float:
        """Seconds before attempt ``attempts + 1`` of a failed step (see :func:`retry_delay`)."""
        return retry_delay(attempts, retry_after=retry_after, base=self.retry_base,
                           cap=self.retry_cap, rng=rng)

    def read_delay(self, attempt: int, retry_after: float | None) -> float | None:
        """The wait before retrying a failed read within its step, or None to give up now."""
        if attempt >= self.read_attempts:
            return None
        delay = retry_after if retry_after is not None else (
            self.read_retry_delay * attempt * random.uniform(0.5, 1.5))
        return None if delay > self.read_retry_max_wait else delay

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> RetryPolicy:
        """The policy with the ``[retry]`` keys given (validated by the config loader)."""
        return cls(**{RETRY_KEYS[key]: value for key, value in table.items()})


#: ``[retry]`` keys in the config -> RetryPolicy fields (seconds unless a count).
RETRY_KEYS: dict[str, str] = {
    "base_seconds": "retry_base",
    "max_seconds": "retry_cap",
    "poll_first_seconds": "poll_start",
    "poll_max_seconds": "poll_cap",
    "list_lag_seconds": "list_lag_grace",
    "auth_pause_seconds": "auth_pause",
    "storage_retry_seconds": "storage_retry",
}


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
