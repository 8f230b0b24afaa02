"""Hours used: what one finished job cost, and the billing month it counts in.

Gladia bills ``result.metadata.billing_time`` seconds per job (audio whose channels differ is
billed once per channel; docs/gladia-contract.md). Each stored result is recorded once in the
journal's ``remote_jobs`` table (by job id), so the hours are shared by every node of a shared
journal and survive restarts; ``status --usage``, the page and ``/metrics`` read them back.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["JobUsage", "MonthlyLimit", "Period", "UsageRow", "billed_seconds",
           "billing_period", "hours", "job_usage", "limit_reason"]

#: The model a Gladia job runs when its request names none.
DEFAULT_MODEL = "solaria-1"


@dataclass(frozen=True)
class JobUsage:
    """What one finished job counts for."""

    engine: str
    billing_seconds: float
    audio_seconds: float | None
    model: str | None
    finished_at: float


@dataclass(frozen=True)
class UsageRow:
    """Hours used in one folder with one engine and model (a row of ``status --usage``)."""

    watch_root: str
    engine: str
    model: str | None
    jobs: int
    billing_seconds: float
    audio_seconds: float


@dataclass(frozen=True)
class Period:
    """One billing month: ``start`` (inclusive) to ``end`` (exclusive), UTC epoch seconds."""

    start: float
    end: float

    @property
    def resumes_on(self) -> str:
        """The day the next month starts, as people write it (2027-01-01)."""
        return datetime.fromtimestamp(self.end, tz=UTC).date().isoformat()


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _moment(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def job_usage(job: Mapping[str, Any], *, now: float) -> JobUsage:
    """The usage of a done job object (Gladia's, or the local engine's with billing 0).

    It counts in the month it completed in (a result recovered from NAME.json after a lost
    journal counts where it was billed, not today).
    """
    result = job.get("result")
    metadata = result.get("metadata") if isinstance(result, Mapping) else None
    metadata = metadata if isinstance(metadata, Mapping) else {}
    audio = _number(metadata.get("audio_duration"))
    billing = _number(metadata.get("billing_time"))
    if billing is None:
        # Not reported: Gladia bills each distinct channel for the audio's length.
        channels = _number(metadata.get("number_of_distinct_channels")) or 1.0
        billing = (audio or 0.0) * channels
    engine = job.get("engine")
    params = job.get("request_params")
    model = params.get("model") if isinstance(params, Mapping) else None
    if not isinstance(engine, str):
        engine = "gladia"
    if not isinstance(model, str):
        model = DEFAULT_MODEL if engine == "gladia" else None
    return JobUsage(engine=engine, billing_seconds=billing, audio_seconds=audio, model=model,
                    finished_at=_moment(job.get("completed_at")) or now)


def _month_start(year: int, month: int, day: int) -> datetime:
    last = calendar.monthrange(year, month)[1]
    return datetime(year, month, min(day, last), tzinfo=UTC)


def billing_period(now: float, billing_day: int = 1) -> Period:
    """The billing month holding ``now``, which starts on ``billing_day`` (UTC)."""
    moment = datetime.fromtimestamp(now, tz=UTC)
    year, month = moment.year, moment.month
    start = _month_start(year, month, billing_day)
    if moment < start:
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        start = _month_start(year, month, billing_day)
    nyear, nmonth = (year + 1, 1) if month == 12 else (year, month + 1)
    return Period(start.timestamp(), _month_start(nyear, nmonth, billing_day).timestamp())


def hours(seconds: float) -> str:
    """Hours as ``status`` writes them: 9.8, or more digits when that would show 0.0."""
    value = seconds / 3600
    return f"{value:.1f}" if value == 0 or value >= 0.1 else f"{value:.2g}"


def billed_seconds(rows: Sequence[UsageRow], engine: str = "gladia") -> float:
    """The seconds billed by one engine over these rows."""
    return sum(r.billing_seconds for r in rows if r.engine == engine)


def limit_reason(used_seconds: float, limit_hours: float, period: Period) -> str:
    """What a file waiting for the month to turn says."""
    return (f"monthly limit: {hours(used_seconds)} of {limit_hours:g} h used; resumes on "
            f"{period.resumes_on}")


@dataclass(frozen=True)
class MonthlyLimit:
    """``[gladia] monthly_hours_limit``: remote work stops before the month passes it."""

    hours: float
    billing_day: int = 1
    #: "pause" (files wait for the month to turn) or "local" (they go to the local engine).
    over_limit: str = "pause"

    def refusal(self, billed_seconds: float, next_seconds: float, now: float
                ) -> tuple[str, Period] | None:
        """Why a file of ``next_seconds`` may not be sent now, or None when it may."""
        if billed_seconds + next_seconds <= self.hours * 3600 and (
            billed_seconds < self.hours * 3600
        ):
            return None
        period = billing_period(now, self.billing_day)
        return limit_reason(billed_seconds, self.hours, period), period
