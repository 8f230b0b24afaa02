"""Hours used: one job's billing (any answer), the billing month, the limit's words."""

from __future__ import annotations

import math
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from watcherd.usage import billing_period, earliest_shown, job_usage, limit_reason

# -- usage -----------------------------------------------------------------------------------


def test_billing_period_starts_on_the_billing_day() -> None:
    at = time.mktime((2026, 12, 7, 12, 0, 0, 0, 0, 0)) - time.timezone
    period = billing_period(at, 1)
    assert period.resumes_on == "2027-01-01"
    assert billing_period(at, 15).resumes_on == "2026-12-15"
    # A billing day past a short month's end is that month's last day.
    feb = time.mktime((2027, 2, 10, 0, 0, 0, 0, 0, 0)) - time.timezone
    assert billing_period(feb, 31).resumes_on == "2027-02-28"
    assert limit_reason(9.8 * 3600, 10, period) == (
        "monthly limit: 9.8 of 10 h used; resumes on 2027-01-01")


@settings(max_examples=300)
@given(now=st.floats(min_value=0, max_value=4e9), day=st.integers(min_value=1, max_value=31))
def test_billing_period_holds_now(now: float, day: int) -> None:
    period = billing_period(now, day)
    assert period.start <= now < period.end
    assert 27 * 86400 <= period.end - period.start <= 31 * 86400


@given(now=st.floats(min_value=1e6, max_value=4e9), day=st.integers(min_value=1, max_value=31))
def test_no_billing_month_shown_starts_before_earliest_shown(now: float, day: int) -> None:
    """The upkeep drops finished jobs' rows before earliest_shown: whatever billing_day is
    set to, the month the hours report shows starts at or after it, and it is at most about
    two months back."""
    earliest = earliest_shown(now)
    assert earliest <= billing_period(now, day).start <= now
    assert now - earliest <= 62 * 86400


@given(job=st.recursive(st.none() | st.booleans() | st.floats() | st.integers()
                        | st.just(10**400) | st.text(max_size=5),
                        lambda inner: st.dictionaries(st.sampled_from(
                            ["result", "metadata", "billing_time", "audio_duration",
                             "request_params", "model", "completed_at", "engine",
                             "number_of_distinct_channels"]), inner, max_size=4),
                        max_leaves=12))
def test_job_usage_of_any_answer_is_a_number(job: Any) -> None:
    """Whatever Gladia's job object holds, its usage is non-negative numbers (never raises)."""
    used = job_usage(job if isinstance(job, dict) else {}, now=5.0)
    assert math.isfinite(used.billing_seconds) and used.billing_seconds >= 0
    assert used.audio_seconds is None or math.isfinite(used.audio_seconds)


def test_channels_billed_when_billing_time_is_missing() -> None:
    job = {"result": {"metadata": {"audio_duration": 10, "number_of_distinct_channels": 2}}}
    assert job_usage(job, now=0).billing_seconds == 20


_ANY = (st.none() | st.booleans() | st.floats() | st.integers() | st.just(10**400)
        | st.text(max_size=5) | st.lists(st.integers(), max_size=2))


@given(billing=_ANY, audio=_ANY, channels=_ANY, model=_ANY, completed=_ANY, engine=_ANY)
def test_job_usage_of_any_metadata_values(billing: Any, audio: Any, channels: Any, model: Any,
                                          completed: Any, engine: Any) -> None:
    """Odd values where Gladia's numbers should be: finite, non-negative, never raising."""
    job = {"engine": engine, "completed_at": completed, "request_params": {"model": model},
           "result": {"metadata": {"billing_time": billing, "audio_duration": audio,
                                   "number_of_distinct_channels": channels}}}
    used = job_usage(job, now=5.0)
    assert math.isfinite(used.billing_seconds) and used.billing_seconds >= 0
    assert math.isfinite(used.finished_at)
    assert used.model is None or isinstance(used.model, str)
