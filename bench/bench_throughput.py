"""Throughput: N recordings through the real daemon against the simulator; makespan, efficiency.

Usage: python bench/bench_throughput.py [--files 12] [--concurrency 3] [--job-seconds 5]
       [--settle 2.0] [--audio-seconds 5] [--profile FILE]
The simulator runs C jobs at once, each for exactly T seconds, so no client can finish N files
in less than N*T/C: efficiency = (N*T/C) / makespan, where 1.0 is that ceiling. The daemon runs
with max_concurrent_jobs = C and watcherd's production timings (settle, poll schedule).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import common


def main() -> None:
    """Run one batch through the daemon and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=12, help="N recordings (default 12)")
    parser.add_argument("--concurrency", type=int, default=3,
                        help="C: the simulator's concurrency and max_concurrent_jobs")
    parser.add_argument("--job-seconds", type=float, default=5.0,
                        help="T: how long the simulator takes per job")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="settle_seconds (watcherd's default is 2.0)")
    parser.add_argument("--audio-seconds", type=float, default=5.0,
                        help="length of each test recording")
    parser.add_argument("--profile", type=Path, default=None,
                        help="run the daemon under cProfile and write the profile here")
    args = parser.parse_args()
    common.stop_on_signals()
    common.print_machine()
    n, c, t = args.files, args.concurrency, args.job_seconds
    print(f"throughput: N={n} files, C={c}, T={t:g} s per job, settle {args.settle:g} s")
    with tempfile.TemporaryDirectory(prefix="wd-bench-") as tmp, common.GladiaSimulator(
        api_key=common.API_KEY, job_seconds=t, concurrency=c
    ) as sim:
        recordings = common.make_recordings(Path(tmp) / "recordings", n,
                                            seconds=args.audio_seconds, salt="throughput")
        run = common.run_watcherd_batch(sim, recordings, Path(tmp) / "watcherd", concurrency=c,
                                        settle_seconds=args.settle, profile=args.profile)
        peak = sim.peak_processing
    ideal = n * t / c
    print(f"ideal makespan    {ideal:.1f} s (N*T/C)")
    print(f"watcherd makespan {run.makespan:.1f} s")
    print(f"efficiency        {run.efficiency(n, t, c):.2f} (1.0 is the plan's ceiling)")
    print(f"per file          p50 {common.percentile(run.per_file, 50):.1f} s, "
          f"p95 {common.percentile(run.per_file, 95):.1f} s from drop to transcript")
    print(f"requests          {run.requests} in all, {run.gets / n:.1f} GETs per job; "
          f"peak jobs processing {peak} of {c}")
    common.print_phases(run.phases, t)
    if run.errors:
        print(f"daemon errors     {run.errors}: {run.notes}")
    if args.profile is not None:
        print(f"profile           {args.profile} (python -m pstats {args.profile})")


if __name__ == "__main__":
    main()
