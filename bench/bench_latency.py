"""Latency at a steady drop rate: file closed -> upload started, and -> transcript written.

Usage: python bench/bench_latency.py [--files 20] [--rate 0.5] [--concurrency 3]
       [--job-seconds 2] [--settle 2.0]
The daemon runs with production timings; one recording is written into its folder every
1/rate seconds (kept below the C/T jobs per second the plan can take, so nothing queues for
long). The close time of each file is taken right after it is written; the daemon's own log
timestamps say when its upload started and when its transcript was written.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import common


def main() -> None:
    """Drop files at a steady rate and print latency percentiles."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.5, help="files per second")
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--job-seconds", type=float, default=2.0)
    parser.add_argument("--settle", type=float, default=2.0,
                        help="settle_seconds (watcherd's default is 2.0)")
    parser.add_argument("--audio-seconds", type=float, default=None,
                        help="length of each recording (default 2.5 x T: Gladia's samples "
                             "take 40-50%% of the audio's length)")
    args = parser.parse_args()
    if args.audio_seconds is None:
        args.audio_seconds = 2.5 * args.job_seconds
    common.stop_on_signals()
    common.print_machine()
    c, t = args.concurrency, args.job_seconds
    print(f"latency: {args.files} files at {args.rate:g}/s, C={c}, T={t:g} s per job, "
          f"settle {args.settle:g} s (capacity about {c / t:.2f} files/s), "
          f"recordings of {args.audio_seconds:g} s")
    with tempfile.TemporaryDirectory(prefix="wd-bench-") as tmp, common.GladiaSimulator(
        api_key=common.API_KEY, job_seconds=t, concurrency=c
    ) as sim:
        root = Path(tmp)
        recordings = common.make_recordings(root / "recordings", args.files,
                                            seconds=args.audio_seconds, salt="latency")
        inbox = root / "inbox"
        inbox.mkdir()
        config = common.write_config(root / "config.toml", api_url=sim.base_url,
                                     journal=root / "journal.db", watches=[inbox],
                                     max_concurrent_jobs=c, settle_seconds=args.settle)
        closed: dict[str, float] = {}
        with common.Daemon(config, root) as daemon:
            daemon.wait_ready()
            interval = 1.0 / args.rate
            first = time.monotonic()
            for i, recording in enumerate(recordings):
                # A steady schedule: lateness of one drop does not shift the next ones.
                time.sleep(max(0.0, first + i * interval - time.monotonic()))
                target = inbox / recording.name
                shutil.copyfile(recording, target)
                closed[str(target)] = time.time()
            written = daemon.wait_events("transcript_written", len(recordings),
                                         timeout=600 + len(recordings) * t)
            started = daemon.log.events("upload_started")
            errors = daemon.problems()
    to_upload = _latencies(closed, started)
    to_written = _latencies(closed, written)
    print(f"{'':<26}{'p50':>8}{'p95':>8}{'max':>8}")
    for label, values in (("closed -> upload started", to_upload),
                          ("closed -> transcript", to_written)):
        print(f"{label:<26}{common.percentile(values, 50):>7.2f}s"
              f"{common.percentile(values, 95):>7.2f}s{max(values):>7.2f}s")
    overhead = [v - t for v in to_written]
    p50, p95 = common.percentile(overhead, 50), common.percentile(overhead, 95)
    print(f"transcript latency beyond the job's own {t:g} s: p50 {p50:.2f} s, p95 {p95:.2f} s"
          " (settling + upload + create + the poll coming late)")
    if errors:
        print(f"daemon errors: {len(errors)}: {[e.get('event') for e in errors[:3]]}")


def _latencies(closed: dict[str, float], lines: list[dict[str, Any]]) -> list[float]:
    first: dict[str, float] = {}
    for line in lines:
        source = str(line.get("source"))
        first.setdefault(source, common.log_time(line))
    return [first[path] - at for path, at in closed.items() if path in first]


if __name__ == "__main__":
    main()
