"""Queue ahead (issue 22): jobs created beyond the plan's concurrency wait in Gladia's queue.

The real daemon against the simulator, which queues jobs beyond its concurrency, starts them
in order when a slot frees and (with ``max_queued_jobs``) refuses creates with 429 once its
queue is full, as Gladia's paid plans do past 300.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.daemon_harness import DaemonProcess, wait_until, write_config
from tests.sim import GladiaSimulator, expected_transcript, make_wav
from watcherd.config import parse_config
from watcherd.engines.gladia import attempts_at_once
from watcherd.engines.gladia.jobtime import Prediction, poll_schedule, queued_schedule
from watcherd.engines.gladia.queueahead import QueueBudget, QueueModel
from watcherd.errors import ConfigError

KEY = "sk-test-queue-ahead-0123456789"


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemons a test starts; any left running are killed afterwards."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.stop()


def _daemon(tmp_path: Path, sim: GladiaSimulator, inbox: Path, started: list[DaemonProcess],
            **config: Any) -> DaemonProcess:
    path = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                        journal=tmp_path / "state" / "journal.db", watches=[inbox], **config)
    daemon = DaemonProcess(path, tmp_path / "daemon.log")
    started.append(daemon)
    return daemon.start()


def _drop(inbox: Path, count: int, salt: str) -> list[tuple[Path, bytes]]:
    dropped = []
    for i in range(count):
        path = inbox / f"rec{i:02d}.wav"
        dropped.append((path, make_wav(path, seconds=0.5, salt=f"{salt}{i}")))
    return dropped


def _all_written(dropped: list[tuple[Path, bytes]]) -> bool:
    for path, data in dropped:
        txt, js = path.with_suffix(".txt"), path.with_suffix(".json")
        if not (txt.exists() and js.exists()):
            return False
        if " ".join(txt.read_text(encoding="utf-8").split()) != expected_transcript(data):
            return False
        if json.loads(js.read_text(encoding="utf-8"))["status"] != "done":
            return False
    return True


def _no_duplicates(sim: GladiaSimulator, count: int) -> None:
    assert set(sim.creates_per_content().values()) == {1}
    assert len(sim.jobs()) == count


def test_slots_stay_busy_with_jobs_queued_ahead(tmp_path: Path, inbox: Path,
                                                daemons: list[DaemonProcess]) -> None:
    """With queue_ahead = 2 jobs are created beyond the plan's 2 slots and wait in Gladia's
    queue (the simulator saw jobs waiting for a slot), never more than the budget at once,
    never one twice; every file is transcribed."""
    with GladiaSimulator(api_key=KEY, job_seconds=0.6, concurrency=2) as sim:
        daemon = _daemon(tmp_path, sim, inbox, daemons, max_concurrent_jobs=2, queue_ahead=2)
        daemon.wait_for_event("starting")
        dropped = _drop(inbox, 8, "busy")
        wait_until(lambda: _all_written(dropped), timeout=120, message="8 transcripts")
        assert sim.waited_jobs >= 2, "no job was created beyond the plan's concurrency"
        assert 1 <= sim.peak_queued <= 2
        assert sim.peak_processing == 2
        assert sim.started_jobs == 8
        _no_duplicates(sim, 8)
        assert daemon.terminate() == 0


def test_queue_ahead_zero_creates_only_into_free_slots(tmp_path: Path, inbox: Path,
                                                       daemons: list[DaemonProcess]) -> None:
    """queue_ahead = 0 keeps the old behaviour: a job is created only when a slot is free."""
    with GladiaSimulator(api_key=KEY, job_seconds=0.3, concurrency=2) as sim:
        daemon = _daemon(tmp_path, sim, inbox, daemons, max_concurrent_jobs=2, queue_ahead=0)
        daemon.wait_for_event("starting")
        dropped = _drop(inbox, 5, "zero")
        wait_until(lambda: _all_written(dropped), timeout=120, message="5 transcripts")
        assert sim.waited_jobs == 0
        _no_duplicates(sim, 5)


def test_full_queue_429_shrinks_queue_ahead_and_work_completes(
        tmp_path: Path, inbox: Path, daemons: list[DaemonProcess]) -> None:
    """Gladia's queue holds 1 job, watcherd would queue 4: creates past it get 429, the
    queue ahead shrinks (logged), and every file is still transcribed, each by one job."""
    with GladiaSimulator(api_key=KEY, job_seconds=0.4, concurrency=1,
                         max_queued_jobs=1) as sim:
        daemon = _daemon(tmp_path, sim, inbox, daemons, max_concurrent_jobs=1, queue_ahead=4)
        daemon.wait_for_event("starting")
        dropped = _drop(inbox, 6, "full")
        wait_until(lambda: _all_written(dropped), timeout=120, message="6 transcripts")
        refused = [r for r in sim.requests() if r.endpoint == "create" and r.status == 429]
        assert refused, "the simulator's queue never filled"
        shrunk = [line for line in daemon.log_lines() if line.get("event") == "queue_ahead_shrunk"]
        assert shrunk and shrunk[0]["queue_ahead"] < 4
        assert sim.peak_queued <= 1
        _no_duplicates(sim, 6)


def test_sigterm_leaves_queued_jobs_to_the_next_start(tmp_path: Path, inbox: Path,
                                                      daemons: list[DaemonProcess]) -> None:
    """Jobs queued at Gladia when the daemon is stopped are in its journal: the next start
    polls them and makes no new job for them."""
    with GladiaSimulator(api_key=KEY, job_seconds=1.5, concurrency=1) as sim:
        first = _daemon(tmp_path, sim, inbox, daemons, max_concurrent_jobs=1, queue_ahead=3)
        first.wait_for_event("starting")
        dropped = _drop(inbox, 4, "stop")
        wait_until(lambda: len(sim.jobs()) == 4, timeout=60, message="4 jobs created")
        assert sim.queued_now >= 1, "no job was waiting in the queue when stopped"
        assert first.terminate() == 0
        created = len(sim.jobs())
        second = _daemon(tmp_path, sim, inbox, daemons, max_concurrent_jobs=1, queue_ahead=3)
        wait_until(lambda: _all_written(dropped), timeout=120, message="4 transcripts")
        assert len(sim.jobs()) == created == 4, "the restart created jobs again"
        _no_duplicates(sim, 4)
        assert second.terminate() == 0


@pytest.mark.parametrize("fault", ["reset", "lose_response"])
def test_lost_create_grace_ends_on_evidence(tmp_path: Path, inbox: Path,
                                            daemons: list[DaemonProcess], fault: str) -> None:
    """A create whose outcome is unknown (the connection reset before Gladia read it, or
    its answer lost after the job was made) is settled by the list, not a clock: with a
    10-minute list-lag grace, every file is still done within the deadline, because a job of
    ours created after it shows in the list; and no content ever gets two jobs."""
    with GladiaSimulator(api_key=KEY, job_seconds=0.3, concurrency=2,
                         list_lag_seconds=0.3) as sim:
        sim.faults.add("create", fault)  # type: ignore[arg-type]
        daemon = _daemon(tmp_path, sim, inbox, daemons, max_concurrent_jobs=2, queue_ahead=2,
                         retry={"list_lag_seconds": 600.0})
        daemon.wait_for_event("starting")
        dropped = _drop(inbox, 6, f"lost-{fault}")
        wait_until(lambda: _all_written(dropped), timeout=90, message="6 transcripts")
        assert sim.faults.pending() == 0
        _no_duplicates(sim, 6)
        events = {line.get("event") for line in daemon.log_lines()}
        assert ("lost_create_settled" in events) == (fault == "reset")
        assert ("job_adopted" in events) == (fault == "lose_response")


# -- the units: budget, queue model, schedule, config ---------------------------------------


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
    assert budget.refused(1.0) == 2  # with one, but the second refusal in a row
    budget.accepted()
    assert budget.refused(1.0) is None and budget.limit == 5  # a rate limit, once
    clock.now = 9.9
    assert budget.ahead == 2
    clock.now = 30.0
    assert budget.ahead == 5  # three periods since the last refusal
    clock.now = 1000.0
    assert budget.ahead == 8 and budget.limit == 11  # never beyond the configured queue


@given(st.integers(0, 400), st.lists(st.sampled_from(["refuse", "wait"]), max_size=40))
def test_budget_stays_between_the_plan_and_the_configured_queue(ahead: int,
                                                                steps: list[str]) -> None:
    clock = _Clock()
    budget = QueueBudget(25, ahead, grow_seconds=10.0, clock=clock)
    for step in steps:
        if step == "refuse":
            budget.refused(None)
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


def test_queued_schedule_waits_for_the_slot_then_polls_at_the_run_end() -> None:
    run = Prediction(5.0, 0.2, 10)
    plain = list(itertools.islice(poll_schedule(run, since_created=0.0, start=1.0, cap=3.0), 3))
    queued = list(itertools.islice(
        queued_schedule(run, queue_wait=7.0, since_created=0.5, start=1.0, cap=3.0), 3))
    assert queued[0] == pytest.approx(6.5 + plain[0])
    assert queued[1:] == plain[1:]
    assert list(itertools.islice(
        queued_schedule(run, queue_wait=0.0, since_created=0.0, start=1.0, cap=3.0), 3)) == plain


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
