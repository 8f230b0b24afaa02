"""Hours used: what one finished job cost, and the billing month it counts in.

Gladia bills ``result.metadata.billing_time`` seconds per job (audio whose channels differ is
billed once per channel; docs/gladia-contract.md). Each stored result is recorded once in the
journal's ``remote_jobs`` table (by job id), so the hours are shared by every node of a shared
journal and survive restarts; ``status --usage``, the page and ``/metrics`` read them back.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = [
    "JobUsage",
    "MonthlyLimit",
    "Period",
    "Plan",
    "UsageReport",
    "UsageRow",
    "billed_seconds",
    "billing_period",
    "earliest_shown",
    "hours",
    "job_time",
    "job_usage",
    "limit_reason",
    "model_of",
    "plan_of",
    "read_report",
]


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


def model_of(options: Mapping[str, Any], engine: str | None) -> str | None:
    """The Gladia model a file is (or was) transcribed with: its folder's option, else
    Gladia's default; None for a file another engine took."""
    model = options.get("model")
    if isinstance(model, str):
        return model
    return _default_model(engine)


def _default_model(engine: str | None) -> str | None:
    # Imported when used: the journal imports this module, and the engines import the journal.
    from watcherd.engines.registry import default_model

    return default_model(engine)


def _recorded_engine(engine: str | None) -> str:
    from watcherd.engines.registry import recorded_engine

    return recorded_engine(engine)


def _number(value: Any) -> float | None:
    """A duration from Gladia's answer: a finite number >= 0, else None (never raises)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def job_time(value: Any) -> float | None:
    """A job's ISO-8601 time (Gladia's clock) as seconds since the epoch, None if unreadable."""
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
        billing = _number((audio or 0.0) * channels) or 0.0
    engine = job.get("engine")
    params = job.get("request_params")
    model = params.get("model") if isinstance(params, Mapping) else None
    engine = _recorded_engine(engine if isinstance(engine, str) else None)
    if not isinstance(model, str):
        model = _default_model(engine)
    return JobUsage(engine=engine, billing_seconds=billing,
                    audio_seconds=audio, model=model,
                    finished_at=job_time(job.get("completed_at")) or now)


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


def earliest_shown(now: float) -> float:
    """The start of the earliest billing month holding ``now`` for any ``billing_day``: a job
    finished before it counts in no month ``status --usage`` or the limit can look at, however
    ``[gladia] billing_day`` is set (or changed)."""
    return min(billing_period(now, day).start for day in range(1, 32))


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


@dataclass(frozen=True)
class Plan:
    """What the month allows, from ``[gladia]``: the plan's hours, the limit, the price."""

    monthly_hours: float = 10.0
    limit_hours: float | None = None
    price_per_hour: float = 0.0
    billing_day: int = 1


@dataclass(frozen=True)
class UsageReport:
    """This billing month's hours by folder and engine, against the plan."""

    period: Period
    plan: Plan
    rows: tuple[UsageRow, ...]
    deletes_pending: int = 0

    @property
    def gladia_seconds(self) -> float:
        return billed_seconds(self.rows, "gladia")

    @property
    def estimate(self) -> float | None:
        """What the month's Gladia hours cost at ``price_per_hour`` (None: no price set)."""
        if self.plan.price_per_hour <= 0:
            return None
        return self.gladia_seconds / 3600 * self.plan.price_per_hour

    def lines(self) -> list[str]:
        """The report as `status --usage` prints it (the page shows the same lines)."""
        start = datetime.fromtimestamp(self.period.start, tz=UTC).date().isoformat()
        used = self.gladia_seconds
        share = (f" ({used / 36 / self.plan.monthly_hours:.0f}%)"
                 if self.plan.monthly_hours > 0 else "")
        head = (f"this month ({start} to {self.period.resumes_on}, UTC): Gladia "
                f"{hours(used)} of {self.plan.monthly_hours:g} h{share}")
        if self.estimate is not None:
            head += f", about {self.estimate:.2f} at {self.plan.price_per_hour:g} an hour"
        out = [head]
        for row in self.rows:
            model = f" {row.model}" if row.model else ""
            out.append(f"  {row.engine}{model}: {hours(row.billing_seconds)} h billed, "
                       f"{hours(row.audio_seconds)} h of audio, {row.jobs} "
                       f"job{'s' if row.jobs != 1 else ''}  {row.watch_root}")
        if self.plan.limit_hours is not None:
            out.append(f"monthly limit: {self.plan.limit_hours:g} h (remote work pauses "
                       "before passing it)")
        if self.deletes_pending:
            out.append(f"deletes at Gladia not yet confirmed: {self.deletes_pending}")
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "period": {"start": self.period.start, "end": self.period.end,
                       "resumes_on": self.period.resumes_on},
            "monthly_hours": self.plan.monthly_hours,
            "monthly_hours_limit": self.plan.limit_hours,
            "price_per_hour": self.plan.price_per_hour,
            "gladia_hours": self.gladia_seconds / 3600,
            "estimate": self.estimate,
            "deletes_pending": self.deletes_pending,
            "rows": [{"watch": r.watch_root, "engine": r.engine, "model": r.model,
                      "jobs": r.jobs, "billed_hours": r.billing_seconds / 3600,
                      "audio_hours": r.audio_seconds / 3600} for r in self.rows],
        }


class PlanSettings(Protocol):
    """The ``[gladia]`` keys a plan is read from."""

    @property
    def monthly_hours(self) -> float: ...
    @property
    def monthly_hours_limit(self) -> float | None: ...
    @property
    def price_per_hour(self) -> float: ...
    @property
    def billing_day(self) -> int: ...


def plan_of(gladia: PlanSettings) -> Plan:
    """The month's allowance from ``[gladia]`` (monthly_hours, the limit, the price)."""
    return Plan(monthly_hours=gladia.monthly_hours, limit_hours=gladia.monthly_hours_limit,
                price_per_hour=gladia.price_per_hour, billing_day=gladia.billing_day)


class UsageJournal(Protocol):
    """The journal's part a report reads."""

    def usage(self, since: float) -> list[UsageRow]: ...

    def deletes_pending(self) -> int: ...


def read_report(journal: UsageJournal, plan: Plan, now: float) -> UsageReport:
    """This month's report, read from the journal (every node's jobs, in a shared one)."""
    period = billing_period(now, plan.billing_day)
    return UsageReport(period=period, plan=plan, rows=tuple(journal.usage(period.start)),
                       deletes_pending=journal.deletes_pending())
