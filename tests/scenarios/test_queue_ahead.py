"""Queue ahead (issue 22): jobs created beyond the plan's concurrency wait in Gladia's queue.

The real daemon against the simulator, which queues jobs beyond its concurrency, starts them
in order when a slot frees and (with ``max_queued_jobs``) refuses creates with 429 once its
queue is full, as Gladia's paid plans do past 300.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, wait_until, write_config
from tests.sim import GladiaSimulator, expected_transcript, make_wav

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
