"""Queue ahead's parts (issue 22): the budget, the queue model, the queued schedule, config."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcherd.config import parse_config
from watcherd.engines.gladia import attempts_at_once
from watcherd.engines.gladia.jobtime import Prediction
from watcherd.engines.gladia.queueahead import QueueBudget, QueueModel
from watcherd.errors import ConfigError


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_budget_halves_on_refusal_and_grows_back_one_job_at_a_time() -> None:
    clock = _Clock()
    budget = QueueBudget(3, 8, grow_seconds=10.0, clock=clock)
    assert budget.limit == 11
    assert budget.refused(None) == 4 and budget.limit == 7  # no Retry-After: a full queue
    assert budget.refused(1.0) is None and budget.limit == 7  # with one: a rate limit
    assert budget.refused(1.0) is None  # another create's: rate limits fall at random
    assert budget.refused(1.0, again=True) == 2  # the same create, refused once it waited
    budget.accepted()
    assert budget.refused(1.0) is None and budget.limit == 5  # a rate limit, once
    clock.now = 9.9
    assert budget.ahead == 2
    clock.now = 30.0
    assert budget.ahead == 5  # three periods since the last refusal
    clock.now = 1000.0
    assert budget.ahead == 8 and budget.limit == 11  # never beyond the configured queue


def test_budget_grows_back_after_a_plans_worth_of_accepted_creates() -> None:
    """A rate limit's occasional 429 halves the queue ahead; with no time passing, every 3
    creates accepted in a row (the plan's 3 slots) give one job back; a refusal in between
    starts the count again (main grew only by the clock: one job per 10 s)."""
    clock = _Clock()
    budget = QueueBudget(3, 4, grow_seconds=10.0, clock=clock)
    assert budget.refused(None) == 2
    for _ in range(2):
        budget.accepted()
    assert budget.ahead == 2
    budget.accepted()
    assert budget.ahead == 3
    budget.accepted()
    budget.accepted()
    budget.refused(1.0)  # a rate limit: no shrink, but the run of accepts is broken
    assert budget.ahead == 3
    budget.accepted()
    assert budget.ahead == 3
    for _ in range(20):
        budget.accepted()
    assert budget.ahead == 4 and budget.limit == 7  # never beyond the configured queue


@given(st.integers(0, 400),
       st.lists(st.sampled_from(["refuse", "wait", "accept"]), max_size=40))
def test_budget_stays_between_the_plan_and_the_configured_queue(ahead: int,
                                                                steps: list[str]) -> None:
    clock = _Clock()
    budget = QueueBudget(25, ahead, grow_seconds=10.0, clock=clock)
    for step in steps:
        if step == "refuse":
            budget.refused(None)
        elif step == "accept":
            budget.accepted()
        else:
            clock.now += 7.0
        assert 25 <= budget.limit <= 25 + ahead


def test_queue_model_predicts_the_start_after_the_jobs_ahead() -> None:
    model = QueueModel(2)
    run = Prediction(10.0, 1.0, 5)
    assert model.created("a", run, now=0.0).queue_wait == 0.0
    assert model.created("b", run, now=1.0).queue_wait == 0.0
    # Both slots are taken until a ends at 10, then b at 11: c starts at 10, d at 11.
    assert model.created("c", run, now=2.0).queue_wait == 8.0
    assert model.created("d", run, now=3.0).queue_wait == 8.0
    assert model.created("e", run, now=4.0).queue_wait == 16.0  # after c, at 20
    assert len(model) == 5
    # a ends at Gladia's 100.0: that starts c, the oldest queued job.
    assert model.ended("a", 100.0) == (True, None)
    assert model.ended("c", 110.0) == (True, 100.0)  # and its end started d
    assert model.ended("d", 111.0) == (True, 110.0)
    model.created("f", run, now=5.0)
    assert model.ended("f", 112.0) == (False, None)  # ended before a start was seen
    model.forget("b")
    model.forget("e")
    assert len(model) == 0


@pytest.mark.parametrize("value, ahead", [(None, 3), (0, 0), (300, 300)])
def test_queue_ahead_config(value: int | None, ahead: int) -> None:
    table: dict[str, Any] = {"gladia": {"api_key": "k" * 20, "max_concurrent_jobs": 3}}
    if value is not None:
        table["gladia"]["queue_ahead"] = value
    gladia = parse_config(table, source=None, env={}).gladia
    assert gladia.jobs_ahead == ahead
    assert attempts_at_once(gladia) == 3 + ahead + min(3, ahead)


@pytest.mark.parametrize("value", [-1, True, 1.5, "3"])
def test_queue_ahead_config_refuses_what_is_not_a_count(value: object) -> None:
    with pytest.raises(ConfigError, match="queue_ahead"):
        parse_config({"gladia": {"queue_ahead": value}}, source=None, env={})
