"""Requests per job: GET /v2/pre-recorded/{id} calls per job with callbacks off and on.

Usage: python bench/bench_requests.py [--files 6] [--job-seconds 4] [--concurrency 6]
The worker, the Gladia pipeline and (with callbacks) the embedded listener run in this process
against the simulator over real HTTP, with watcherd's production poll timing (1 s growing to
30 s without callbacks; the listener's safety net, 30 s growing to 5 min, with them). The
simulator delivers each job's callback to the listener, as Gladia would. Printed per mode:
GETs per job (the simulator's own ledger), and how long after a job ended at Gladia its
transcript was written. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.sim import GladiaSimulator, make_wav  # noqa: E402
from watcherd.config import (  # noqa: E402
    CallbackConfig,
    Config,
    GladiaConfig,
    Secret,
    WatchConfig,
)
from watcherd.engines import EngineContext  # noqa: E402
from watcherd.engines.gladia import GladiaEngine  # noqa: E402
from watcherd.folders import Folders  # noqa: E402
from watcherd.health import ApiHealth  # noqa: E402
from watcherd.journal import Journal  # noqa: E402
from watcherd.retry import RetryPolicy  # noqa: E402
from watcherd.worker import EngineRoutes, Worker  # noqa: E402

API_KEY = "bench-requests-key"
TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class Figures:
    """What one mode measured."""

    mode: str
    jobs: int
    gets: int
    callbacks_accepted: int
    delays: list[float]
    seconds: float


async def one_mode(folder: Path, *, callbacks: bool, files: int, job_seconds: float,
                   concurrency: int) -> Figures:
    """Transcribe ``files`` recordings in one mode and count what it cost."""
    inbox = folder / "inbox"
    inbox.mkdir(parents=True)
    paths = [inbox / f"rec{i:02d}.wav" for i in range(files)]
    for i, path in enumerate(paths):
        make_wav(path, seconds=1.0, salt=f"bench-requests-{callbacks}-{i}")
    with GladiaSimulator(api_key=API_KEY, job_seconds=job_seconds,
                         concurrency=concurrency) as sim:
        config = Config(
            source=None,
            gladia=GladiaConfig(api_key=Secret(API_KEY), api_url=sim.base_url,
                                max_concurrent_jobs=concurrency),
            engine="auto", local_model="base", journal_path=folder / "journal.db",
            log_format="json", log_level="warning",
            watches=(WatchConfig(path=inbox, settle_seconds=0.1),),
            callback=CallbackConfig(address=("127.0.0.1", 0)) if callbacks else None,
        )
        journal = Journal.open(config.journal_path, exclusive=True)
        assert config.gladia.api_key is not None
        folders = Folders(config.watches)
        engine = await GladiaEngine.open(EngineContext(
            config=config, journal=journal, health=ApiHealth(journal), retry=RetryPolicy(),
            outputs_for=folders.outputs_for))
        pipeline, listener = engine.gladia_pipeline, engine.listener
        worker = Worker(config, journal,
                        EngineRoutes.single(pipeline, config.gladia.max_concurrent_jobs),
                        folders=folders)
        stop = asyncio.Event()
        started = time.monotonic()
        runner = asyncio.ensure_future(worker.run(stop))
        for path in paths:
            worker.hint(path)
        try:
            while not (len(journal.all()) == files
                       and all(s.state == "done" for s in journal.all())):
                if time.monotonic() - started > TIMEOUT_SECONDS:
                    raise SystemExit(f"timed out: {[s.state for s in journal.all()]}")
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - started
            done_at = {s.job_id: s.done_at for s in journal.all()}
        finally:
            stop.set()
            await runner
            accepted = listener.stats["accepted"] if listener is not None else 0
            await engine.close()
            journal.close()
        jobs = sim.jobs()
        gets = sum(1 for r in sim.requests() if r.endpoint == "get")
        delays = []
        for job in jobs:
            ended = datetime.fromisoformat(job["completed_at"].replace("Z", "+00:00"))
            written = done_at.get(job["id"])
            if written is not None:
                delays.append(written - ended.timestamp())
    return Figures("callbacks on" if callbacks else "callbacks off", len(jobs), gets, accepted,
                   delays, elapsed)


def main() -> None:
    """Run both modes and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=6, help="recordings per mode (default 6)")
    parser.add_argument("--job-seconds", type=float, default=4.0,
                        help="how long the simulator takes per job (default 4)")
    parser.add_argument("--concurrency", type=int, default=6,
                        help="the simulator's concurrency and max_concurrent_jobs (default 6)")
    args = parser.parse_args()
    # Only the figures on stdout: watcherd's info lines would drown them.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    print(f"requests per job: {args.files} files per mode, {args.job_seconds:g} s per job, "
          f"concurrency {args.concurrency}, production poll timing")
    results = []
    for callbacks in (False, True):
        with tempfile.TemporaryDirectory(prefix="wd-bench-requests-") as tmp:
            results.append(asyncio.run(one_mode(
                Path(tmp), callbacks=callbacks, files=args.files,
                job_seconds=args.job_seconds, concurrency=args.concurrency)))
    print(f"{'mode':<14} {'jobs':>4} {'GETs':>5} {'GETs/job':>8} {'callbacks':>9} "
          f"{'delay mean':>10} {'delay max':>9} {'wall':>6}")
    for r in results:
        print(f"{r.mode:<14} {r.jobs:>4} {r.gets:>5} {r.gets / max(1, r.jobs):>8.2f} "
              f"{r.callbacks_accepted:>9} {statistics.fmean(r.delays):>9.2f}s "
              f"{max(r.delays):>8.2f}s {r.seconds:>5.1f}s")
    print("delay: from the job's completed_at at Gladia to the transcript being written")


if __name__ == "__main__":
    main()
