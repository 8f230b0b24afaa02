"""Multi-node chaos: three daemons, one PostgreSQL journal, one tree, SIGKILLs and API faults.

Each round drops files (sometimes a copy of an earlier one), queues random API faults, and
SIGKILLs a random running node, restarting the dead ones at random. At the end every node runs
undisturbed: every file has its outputs, the simulator saw exactly one job per content, and
its peak of jobs processing at once never went past the shared budget, the plan's limit and
the queue ahead (the simulator would run more: its own concurrency is set far above the plan,
so only the nodes' shared count holds them back).

Run more by hand: ``WATCHERD_MULTINODE_ROUNDS=20 WATCHERD_MULTINODE_SEEDS=1,2,3 pytest
tests/test_multinode_chaos.py``.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

import pytest

from tests.daemon_harness import DaemonProcess, wait_until
from tests.scenarios.test_chaos import FAULTS
from tests.scenarios.test_multinode import KEY, node_config, transcribed
from tests.sim import GladiaSimulator, make_wav

pytest_plugins = ("tests.pg",)

__all__ = ["KEY"]  # the sim fixture reads the module's KEY

SEEDS = [int(s) for s in os.environ.get("WATCHERD_MULTINODE_SEEDS", "11,22").split(",")]
ROUNDS = int(os.environ.get("WATCHERD_MULTINODE_ROUNDS", "4"))
NODES = ("n1", "n2", "n3")
PLAN = 2
#: Jobs created beyond the plan, into Gladia's queue ([gladia] queue_ahead): with PLAN, the
#: budget every node shares through the journal.
AHEAD = 1
#: The simulator would process ten jobs at once; the plan (PLAN) is what must hold.
SIM_OPTIONS = {"job_seconds": 0.6, "concurrency": 10, "list_lag_seconds": 0.3}


class Cluster:
    """Three named nodes on one database and one inbox; which run, which were killed."""

    def __init__(self, seed: int, tmp_path: Path, url: str, sim: GladiaSimulator) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.sim = sim
        self.inbox = tmp_path / "inbox"
        self.inbox.mkdir()
        self.configs = {name: node_config(tmp_path, name, url, self.inbox, sim,
                                          max_concurrent_jobs=PLAN, queue_ahead=AHEAD)
                        for name in NODES}
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.running: dict[str, DaemonProcess] = {}
        self.all: list[DaemonProcess] = []
        self.files: dict[Path, bytes] = {}
        self.kills = 0
        self.faults = 0

    def start(self, name: str) -> DaemonProcess:
        """Start node ``name`` (a new process, its own log)."""
        daemon = DaemonProcess(self.configs[name],
                               self.logs / f"{name}-{len(self.all):02d}.log").start()
        self.running[name] = daemon
        self.all.append(daemon)
        return daemon

    def drop_files(self, round_no: int) -> None:
        """Two or three new recordings, sometimes nested, sometimes a copy of an old one."""
        for i in range(self.rng.randint(2, 3)):
            folder = self.inbox / self.rng.choice(["", "sub"])
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"r{round_no}-{i}.wav"
            self.files[path] = make_wav(path, seconds=0.3, salt=f"{self.seed}/{path.name}")
        if self.rng.random() < 0.4:
            original = self.rng.choice(sorted(self.files))
            copy = self.inbox / f"copy-r{round_no}.wav"
            copy.write_bytes(self.files[original])
            self.files[copy] = self.files[original]

    def round(self, round_no: int) -> None:
        """Files arrive, faults are queued, one running node is killed, dead ones restart."""
        self.drop_files(round_no)
        for _ in range(self.rng.randint(1, 3)):
            endpoint, kind, options = self.rng.choice(FAULTS)
            self.sim.faults.add(endpoint, kind, count=1, **options)
            self.faults += 1
        time.sleep(self.rng.uniform(0.5, 2.5))
        if self.running:
            victim = self.rng.choice(sorted(self.running))
            self.running.pop(victim).kill()
            self.kills += 1
        for name in NODES:
            if name not in self.running and self.rng.random() < 0.6:
                self.start(name)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", SEEDS)
def test_three_nodes_killed_at_random_lose_nothing_pay_once(
    seed: int, tmp_path: Path, pg_url: str, sim: GladiaSimulator,
) -> None:
    """SIGKILLs and restarts of three nodes under API faults while files arrive: every file
    gets its outputs, one job per content, and the plan's limit holds over all nodes."""
    cluster = Cluster(seed, tmp_path, pg_url, sim)
    try:
        for name in NODES:
            cluster.start(name)
        for daemon in cluster.running.values():
            daemon.wait_for_event("watch_root_started")
        for round_no in range(ROUNDS):
            cluster.round(round_no)
        sim.faults.clear()
        for name in NODES:
            if name not in cluster.running:
                cluster.start(name)
        wait_until(lambda: all(transcribed(p, d) for p, d in cluster.files.items()),
                   timeout=150, message="every file transcribed")
        some = next(iter(cluster.running.values()))
        rows = wait_until(lambda: [r for r in some.status() if r["state"] == "done"]
                          if all(r["state"] == "done" for r in some.status()) else None,
                          timeout=30, message="every row done")
        for daemon in cluster.running.values():
            assert daemon.terminate() == 0
    finally:
        for daemon in cluster.all:
            daemon.stop()
    contents = {hashlib.sha256(d).hexdigest() for d in cluster.files.values()}
    per_content = sim.creates_per_content()
    report = (f"seed {seed}: {ROUNDS} rounds, {cluster.kills} kills, {cluster.faults} faults, "
              f"{len(cluster.files)} files, {len(contents)} contents, {len(sim.jobs())} jobs, "
              f"peak {sim.peak_processing} (plan {PLAN} + {AHEAD} ahead)")
    print(report)
    assert {r["path"] for r in rows} == {str(p) for p in cluster.files}, report
    assert set(per_content) == contents, report
    assert [n for n in per_content.values() if n != 1] == [], report
    assert sim.peak_processing <= PLAN + AHEAD, report
    assert [line for d in cluster.all for line in d.tracebacks()] == [], report
    assert sim.internal_errors() == [], report
