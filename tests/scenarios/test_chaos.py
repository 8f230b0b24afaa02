"""Chaos: SIGKILL the daemon at random moments while the simulator injects faults.

The promise under test: whatever happens, no file is lost and no recording is billed twice.
Each seed drives several rounds of "drop files, queue random faults, start the daemon, kill it
after a random delay"; then a last daemon runs undisturbed and every file must have correct
outputs, the simulator's ledger must show exactly one job per content, and no log may hold a
traceback. Jobs that end in error are left out of the mix on purpose: a job that failed on
Gladia's side legitimately gets a second one.

Run more by hand: ``WATCHERD_CHAOS_ROUNDS=30 WATCHERD_CHAOS_SEEDS=1,2,3,4,5 pytest
tests/test_chaos.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, wait_until, write_config
from tests.sim import Endpoint, FaultKind, GladiaSimulator, expected_transcript, make_wav
from watcherd.outputs import TEMP_MARKER

KEY = "sk-test-chaos-0123456789"
SEEDS = [int(s) for s in os.environ.get("WATCHERD_CHAOS_SEEDS", "101,202,303").split(",")]
ROUNDS = int(os.environ.get("WATCHERD_CHAOS_ROUNDS", "5"))

# (endpoint, kind, options): every fault a real network or a busy Gladia can throw, except jobs
# ending in error (see the module docstring).
FAULTS: tuple[tuple[Endpoint, FaultKind, dict[str, Any]], ...] = (
    ("upload", "status", {"status": 503}),
    ("upload", "reset", {}),
    ("upload", "lose_response", {}),
    ("create", "status", {"status": 500}),
    ("create", "status", {"status": 502}),
    ("create", "status", {"status": 429, "retry_after": 0.5}),
    ("create", "reset", {}),
    ("create", "lose_response", {}),
    ("create", "lose_response", {}),
    ("get", "status", {"status": 503}),
    ("get", "status", {"status": 429, "retry_after": 0.3}),
    ("get", "reset", {}),
    ("get", "lose_response", {}),
    ("get", "delay", {"delay": 0.4}),
    ("list", "status", {"status": 503}),
    ("list", "reset", {}),
    ("list", "lose_response", {}),
    ("upload", "delay", {"delay": 0.4}),
)


class Chaos:
    """One seeded run: the simulator, the inbox, the daemons started, the files dropped."""

    def __init__(self, seed: int, tmp_path: Path, sim: GladiaSimulator) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.sim = sim
        self.inbox = tmp_path / "inbox"
        self.inbox.mkdir()
        self.config = write_config(
            tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
            journal=tmp_path / "state" / "journal.db", watches=[self.inbox],
            settle_seconds=0.2, max_concurrent_jobs=3,
        )
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.daemons: list[DaemonProcess] = []
        self.files: dict[Path, bytes] = {}
        self.kills = 0
        self.faults_added = 0

    def start(self) -> DaemonProcess:
        """Start one more daemon on the shared config and journal, with a log of its own."""
        log_path = self.logs / f"daemon-{len(self.daemons):02d}.log"
        daemon = DaemonProcess(self.config, log_path).start()
        self.daemons.append(daemon)
        return daemon

    def drop_files(self, round_no: int) -> None:
        """Drop two or three new recordings (sometimes nested), sometimes a copy of an old one."""
        for i in range(self.rng.randint(2, 3)):
            folder = self.inbox / self.rng.choice(["", "", "sub", "sub/deeper"])
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"r{round_no}-{i}.wav"
            seconds = self.rng.choice([0.2, 0.3, 0.5])
            self.files[path] = make_wav(path, seconds=seconds, salt=f"{self.seed}/{path.name}")
        if self.files and self.rng.random() < 0.4:
            original = self.rng.choice(sorted(self.files))
            copy = self.inbox / f"copy-r{round_no}.wav"
            copy.write_bytes(self.files[original])
            self.files[copy] = self.files[original]

    def add_faults(self) -> None:
        """Queue two to five random faults."""
        for _ in range(self.rng.randint(2, 5)):
            endpoint, kind, options = self.rng.choice(FAULTS)
            count = self.rng.randint(1, 2)
            self.sim.faults.add(endpoint, kind, count=count, **options)
            self.faults_added += count

    def round(self, round_no: int) -> None:
        """Drop files, queue faults, run a daemon for a random while (maybe with an outage in
        the middle), then SIGKILL it."""
        self.drop_files(round_no)
        self.add_faults()
        daemon = self.start()
        if self.sim.is_down:
            time.sleep(self.rng.uniform(0.2, 0.8))
            self.sim.set_outage(False)
        lifetime = self.rng.uniform(0.4, 3.0)
        if self.rng.random() < 0.3:
            down_at = self.rng.uniform(0.1, lifetime)
            time.sleep(down_at)
            self.sim.set_outage(True)
            # Some outages end before the kill, others outlive this daemon.
            up_after = self.rng.uniform(0.2, 1.5)
            if up_after < lifetime - down_at:
                time.sleep(up_after)
                self.sim.set_outage(False)
                time.sleep(lifetime - down_at - up_after)
            else:
                time.sleep(lifetime - down_at)
        else:
            time.sleep(lifetime)
        daemon.kill()
        self.kills += 1

    def all_transcribed(self) -> bool:
        """Every dropped file has its transcript and job JSON, with the right content."""
        return all(_transcribed(path, data) for path, data in self.files.items())

    def lines_with_traceback(self) -> list[str]:
        """Log lines with a traceback or a worker bug, over every daemon run."""
        return [line for daemon in self.daemons for line in daemon.tracebacks()]


def _transcribed(path: Path, data: bytes) -> bool:
    txt, js = path.with_suffix(".txt"), path.with_suffix(".json")
    try:
        job = json.loads(js.read_text(encoding="utf-8"))
        text = " ".join(txt.read_text(encoding="utf-8").split())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return bool(job["status"] == "done" and text == expected_transcript(data))


def _all_done(daemon: DaemonProcess) -> list[dict[str, Any]] | None:
    rows = daemon.status()
    return rows if rows and all(row["state"] == "done" for row in rows) else None


#: How this module's simulator runs (the shared ``sim`` fixture in conftest.py reads it).
SIM_OPTIONS = {"job_seconds": 0.4, "concurrency": 3, "list_lag_seconds": 0.3}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("seed", SEEDS)
def test_sigkill_under_faults_loses_nothing_and_pays_once(
    seed: int, tmp_path: Path, sim: GladiaSimulator
) -> None:
    """Rounds of random faults and SIGKILLs at random moments, then one quiet run: every file
    has correct outputs, each content made exactly one job, no log holds a traceback."""
    chaos = Chaos(seed, tmp_path, sim)
    try:
        for round_no in range(ROUNDS):
            chaos.round(round_no)
        sim.faults.clear()
        if sim.is_down:
            sim.set_outage(False)
        final = chaos.start()
        # The files may all be finished by an earlier round: let this daemon get going before
        # it is told to stop, so the exit code is its graceful one.
        final.wait_for_event("watch_root_started")
        wait_until(chaos.all_transcribed, timeout=90, message="every file transcribed")
        rows = wait_until(lambda: _all_done(final), timeout=30, message="every row done")
        assert final.terminate() == 0
    finally:
        for daemon in chaos.daemons:
            daemon.stop()

    contents = {hashlib.sha256(data).hexdigest() for data in chaos.files.values()}
    per_content = sim.creates_per_content()
    report = (f"seed {seed}: {ROUNDS} rounds, {chaos.kills} kills, {chaos.faults_added} faults, "
              f"{len(chaos.files)} files, {len(contents)} contents, {len(sim.jobs())} jobs")
    print(report)
    assert {row["path"] for row in rows} == {str(p) for p in chaos.files}, report
    assert set(per_content) == contents, report
    assert [n for n in per_content.values() if n != 1] == [], report
    assert all(job["status"] == "done" for job in sim.jobs()), report
    assert chaos.lines_with_traceback() == [], report
    assert sim.internal_errors() == [], report
    leftovers = [p for p in chaos.inbox.rglob("*") if TEMP_MARKER in p.name]
    assert leftovers == [], report


@pytest.mark.timeout(120)
def test_thirty_second_outage_while_files_arrive(tmp_path: Path, sim: GladiaSimulator) -> None:
    """The API is cut for 30 s while files keep arriving: nothing fails meanwhile, every file
    waits with the reason, and all finish after the API returns, one job each."""
    chaos = Chaos(7, tmp_path, sim)
    daemon = chaos.start()
    try:
        daemon.wait_for_event("watch_root_started")
        sim.set_outage(True)
        down_since = time.monotonic()
        arrivals = 0
        waiting_seen: set[str] = set()
        while time.monotonic() - down_since < 30:
            if arrivals < 6 and time.monotonic() - down_since > arrivals * 4:
                path = chaos.inbox / f"during-outage-{arrivals}.wav"
                chaos.files[path] = make_wav(path, seconds=0.3, salt=f"outage-{arrivals}")
                arrivals += 1
            rows = daemon.status()
            assert [r for r in rows if r["state"] in ("failed", "gone")] == []
            for row in rows:
                if row["state"] == "waiting":
                    assert "cannot reach" in (row["error"] or ""), row
                    waiting_seen.add(row["path"])
            time.sleep(1.0)
        assert len(waiting_seen) >= 2, "files should wait for the API, with the reason"
        assert sim.jobs() == []
        sim.set_outage(False)
        wait_until(chaos.all_transcribed, timeout=60, message="every file after the outage")
        rows = wait_until(lambda: _all_done(daemon), timeout=30, message="every row done")
        assert len(rows) == 6
        assert daemon.terminate() == 0
    finally:
        daemon.stop()
    assert sorted(sim.creates_per_content().values()) == [1] * 6
    assert daemon.tracebacks() == []


@pytest.mark.timeout(90)
def test_unknown_creates_filling_the_plan_resolve(tmp_path: Path, sim: GladiaSimulator) -> None:
    """As many lost create responses as the plan allows at once: the sources holding those
    maybe-jobs must still be driven to find them, or nothing ever moves again."""
    sim.faults.add("create", "lose_response", count=3)
    chaos = Chaos(9, tmp_path, sim)
    daemon = chaos.start()
    try:
        daemon.wait_for_event("watch_root_started")
        for i in range(4):
            path = chaos.inbox / f"lost-{i}.wav"
            chaos.files[path] = make_wav(path, seconds=0.3, salt=f"lost-{i}")
        wait_until(chaos.all_transcribed, timeout=30, message="every file transcribed")
        assert daemon.terminate() == 0
    finally:
        daemon.stop()
    assert sim.faults.pending() == 0
    assert sorted(sim.creates_per_content().values()) == [1] * 4
    assert daemon.tracebacks() == []
