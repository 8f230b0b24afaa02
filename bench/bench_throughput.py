"""Throughput: N recordings through the real daemon against the simulator; makespan, efficiency.

Usage: python bench/bench_throughput.py [--files 12] [--concurrency 3] [--job-seconds 5]
       [--settle 2.0] [--audio-seconds 5] [--repeat 1] [--poll-cap S] [--callback]
       [--profile FILE] [--queue-ahead Q] [--faults [--seed S]]
The simulator runs C jobs at once, each for exactly T seconds, so no client can finish N files
in less than N*T/C: efficiency = (N*T/C) / makespan, where 1.0 is that ceiling. The daemon runs
with max_concurrent_jobs = C and watcherd's production timings (settle, poll schedule).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common


def main() -> None:
    """Run the batch through the daemon (--repeat times) and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=12, help="N recordings (default 12)")
    parser.add_argument("--concurrency", type=int, default=3,
                        help="C: the simulator's concurrency and max_concurrent_jobs")
    parser.add_argument("--job-seconds", type=float, default=5.0,
                        help="T: how long the simulator takes per job")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="settle_seconds (watcherd's default is 2.0)")
    parser.add_argument("--audio-seconds", type=float, default=None,
                        help="length of each recording (default 2.5 x T: Gladia's samples "
                             "take 40-50%% of the audio's length)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the batch this many times (fresh daemon, same simulator)")
    parser.add_argument("--poll-cap", type=float, default=None,
                        help="what-if: cap watcherd's wait between polls at this many seconds "
                             "([retry] poll_max_seconds; production caps at 30)")
    parser.add_argument("--callback", action="store_true",
                        help="turn on watcherd's [callback] listener: the simulator calls it "
                             "when a job ends, so the result is fetched at once")
    parser.add_argument("--queue-ahead", type=int, default=None,
                        help="[gladia] queue_ahead (default: watcherd's, = C; 0 creates a job "
                             "only into a free slot, the behaviour before issue 22)")
    parser.add_argument("--faults", action="store_true",
                        help="run under issue 12's fault mix (15%% 503, 10%% 429 with "
                             "Retry-After: 1, 5%% resets, 10%% lost create responses)")
    parser.add_argument("--seed", type=int, default=12, help="the fault draws' seed")
    parser.add_argument("--profile", type=Path, default=None,
                        help="run the daemon under cProfile and write the profile here")
    args = parser.parse_args()
    if args.audio_seconds is None:
        args.audio_seconds = 2.5 * args.job_seconds
    common.stop_on_signals()
    common.print_machine()
    n, c, t = args.files, args.concurrency, args.job_seconds
    print(f"throughput: N={n} files of {args.audio_seconds:g} s, C={c}, T={t:g} s per job, "
          f"settle {args.settle:g} s")
    extra = ""
    if args.poll_cap is not None:
        extra += common.retry_config(poll_max_seconds=args.poll_cap)
        print(f"what-if: polls at most {args.poll_cap:g} s apart (production: 30 s)")
    if args.callback:
        extra += common.callback_config()
        print("callbacks on: [callback] listen on 127.0.0.1; polling goes on as a safety net")
    ideal = n * t / c
    print(f"ideal makespan    {ideal:.1f} s (N*T/C)")
    runs = []
    with tempfile.TemporaryDirectory(prefix="wd-bench-") as tmp, common.GladiaSimulator(
        api_key=common.API_KEY, job_seconds=t, concurrency=c
    ) as sim:
        for i in range(args.repeat):
            # Fresh content each time: watcherd would rightly adopt the earlier run's jobs.
            recordings = common.make_recordings(Path(tmp) / f"recordings{i}", n,
                                                seconds=args.audio_seconds,
                                                salt=f"throughput{i}")
            sim.wait_idle(timeout=600)
            since = time.monotonic()
            if args.faults:
                sim.faults = common.RandomFaults(seed=args.seed + i)
            try:
                run = common.run_watcherd_batch(sim, recordings, Path(tmp) / f"watcherd{i}",
                                                concurrency=c, settle_seconds=args.settle,
                                                profile=args.profile,
                                                queue_ahead=args.queue_ahead,
                                                extra_config=extra)
            finally:
                sim.faults = common.FaultPlan()
            runs.append(run)
            busy, queued = common.slot_use(sim, since, c)
            print(f"watcherd makespan {run.makespan:.1f} s, efficiency "
                  f"{run.efficiency(n, t, c):.2f} (1.0 is the plan's ceiling); from the first "
                  f"upload {n * t / c / run.settled:.2f}; slots busy {busy:.2f} of the "
                  f"simulator's span, mean queue wait {queued:.2f} s; duplicate jobs "
                  f"{run.duplicates}", flush=True)
            common.print_poll_figures(common.poll_figures(sim, run.started, c))
        peak = sim.peak_processing
    if len(runs) > 1:
        spans = [r.makespan for r in runs]
        median = common.percentile(spans, 50)
        print(f"over {len(runs)} runs: makespan median {median:.1f} s (min {min(spans):.1f}, "
              f"max {max(spans):.1f}), efficiency median {ideal / median:.2f}")
    per_file = [v for r in runs for v in r.per_file]
    print(f"per file          p50 {common.percentile(per_file, 50):.1f} s, "
          f"p95 {common.percentile(per_file, 95):.1f} s from drop to transcript")
    gets = sum(r.gets for r in runs) / (n * len(runs))
    print(f"requests          {sum(r.requests for r in runs) / len(runs):.0f} per run, "
          f"{gets:.1f} GETs per job; peak jobs processing {peak} of {c}")
    print(f"daemon CPU        {sum(r.cpu for r in runs) / len(runs):.2f} s per run "
          "(utime+stime, start-up included)")
    phases = {k: sum(r.phases[k] for r in runs) / len(runs) for k in runs[0].phases}
    common.print_phases(phases, t)
    for run in runs:
        if run.errors:
            print(f"daemon errors     {run.errors}: {run.notes}")
    if args.profile is not None:
        print(f"profile           {args.profile} (python -m pstats {args.profile})")


if __name__ == "__main__":
    main()
