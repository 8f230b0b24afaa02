"""When a new job is looked at (polling.py): from the queue's replay, planned again as it moves.

Pure planning over a :class:`QueueModel`, no clock: every time is given.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcherd.engines.gladia.jobtime import DENSE_MIN, DENSE_POLLS, Prediction
from watcherd.engines.gladia.polling import NewJobLooks
from watcherd.engines.gladia.queueahead import QueueModel

LEARNT = Prediction(0.5, 0.0, 5)
GUESS = Prediction(3.4, 1.7, 0)


def _looks(queue: QueueModel, job_id: str, run: Prediction, created: float,
           cap: float = 3.0) -> NewJobLooks:
    queue.created(job_id, run, now=created, key=(1.25, ""))
    return NewJobLooks(job_id, queue, run, created=created, poll_start=1.0, cap=cap)


def test_a_queued_short_job_is_looked_at_its_predicted_end() -> None:
    """Two 0.5 s jobs on one slot: the second starts when the first ends (0.5) and is looked
    at when it ends (1.0), not poll_start (1 s) after its start, as main did (1.5)."""
    queue = QueueModel(1)
    first = _looks(queue, "a", LEARNT, 0.0)
    second = _looks(queue, "b", LEARNT, 0.01)
    assert first.next_at == pytest.approx(0.5)
    assert second.next_at == pytest.approx(1.0)
    assert second.planned_end == pytest.approx(1.0)


def test_an_overdue_job_ahead_does_not_push_the_next_later() -> None:
    """The job ahead was due at 0.5 and is not seen yet at 3.0: Gladia most likely started
    the next one at 0.5, so its look stays at 1.0 (now, when planned again late)."""
    queue = QueueModel(1)
    _looks(queue, "a", LEARNT, 0.0)
    second = _looks(queue, "b", LEARNT, 0.01)
    second.replan(3.0)
    assert second.next_at == pytest.approx(1.0)


def test_the_end_seen_ahead_moves_the_look() -> None:
    """The job ahead ended later than predicted (Gladia's completed_at 2.0): the queued one
    started then, and its look moves to 2.5."""
    queue = QueueModel(1)
    _looks(queue, "a", LEARNT, 0.0)
    second = _looks(queue, "b", LEARNT, 0.01)
    queue.ended("a", 2.0)
    second.replan(2.1)
    assert second.next_at == pytest.approx(2.5)


def test_a_cold_job_switches_to_the_replay_once_a_time_is_learnt() -> None:
    """Created before anything was learnt, the queued job follows the schedule from its
    creation; once the jobs ahead taught the model (and one's end started it) it is
    looked at its learnt end instead."""
    queue = QueueModel(1)
    _looks(queue, "a", GUESS, 0.0, cap=30.0)
    second = _looks(queue, "b", GUESS, 0.0, cap=30.0)
    assert second.next_at == pytest.approx(1.0)  # poll_start after its creation
    second.looked(1.0)
    assert second.next_at == pytest.approx(2.5)
    queue.ended("a", 29.0)
    second.replan(2.0)
    assert second.next_at == pytest.approx(2.5)  # nothing learnt: the schedule goes on
    learnt = Prediction(29.0, 0.0, 5)
    assert queue.relearn(lambda key: learnt)
    second.replan(29.5)
    assert second.next_at == pytest.approx(58.0)


def test_a_long_wait_is_cut_by_guard_looks_then_dense_looks_after_the_end() -> None:
    """A 100 s job (cap 3 s) is looked at before its end now and then (in case Gladia got
    faster), then at its end, then densely."""
    queue = QueueModel(1)
    run = Prediction(100.0, 0.0, 5)
    looks = _looks(queue, "a", run, 0.0)
    assert looks.next_at == pytest.approx(25.0)  # a quarter of what is left, at least 4 caps
    looks.looked(25.0)
    assert looks.next_at < 100.0
    while looks.next_at < 100.0:
        looks.looked(looks.next_at)
    assert looks.next_at == pytest.approx(100.0)
    at = looks.next_at
    steps = []
    for _ in range(DENSE_POLLS):
        looks.looked(at)
        steps.append(looks.next_at - at)
        at = looks.next_at
    assert steps == pytest.approx([2.0] * DENSE_POLLS)
    looks.replan(at)  # past its end: the dense looks go on, not planned again
    assert looks.next_at == pytest.approx(at)


@given(st.lists(st.tuples(st.sampled_from(["create", "end", "learn", "look", "replan"]),
                          st.floats(0.0, 5.0)), max_size=40),
       st.integers(1, 4))
def test_looks_are_never_before_creation_nor_in_the_past(
        steps: list[tuple[str, float]], concurrency: int) -> None:
    """Whatever the queue does, a job's next look is after its creation (by DENSE_MIN at
    least) and a look found not done is followed by one later than it."""
    queue = QueueModel(concurrency)
    now = 0.0
    looks: list[NewJobLooks] = []
    for i, (step, dt) in enumerate(steps):
        now += dt
        if step == "create" or not looks:
            looks.append(_looks(queue, f"j{i}", GUESS if i % 3 else LEARNT, now))
        elif step == "end":
            done = looks.pop(0)
            queue.ended(done.job_id, now)
        elif step == "learn":
            queue.relearn(lambda key: LEARNT)
        elif step == "look":
            looks[0].looked(now)
            assert looks[0].next_at > now
        else:
            for each in looks:
                each.replan(now)
        for each in looks:
            assert each.next_at >= each.created + DENSE_MIN - 1e-9
