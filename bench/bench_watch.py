"""Watching: how soon a finished file starts uploading, and how long a full folder takes to scan.

Usage: python bench/bench_watch.py [--files N]... [--drops 20] [--settle 2.0] [--skip-latency]
       [--profile FILE]

Part 1, latency: --drops recordings are dropped into a watched folder one by one, half written
in place (open, write, close) and half written as NAME.wav.part and renamed into place. The
writer notes the wall-clock time right after its close (or rename); the daemon's JSON log says
when the `upload_started` event of that file came. Printed: p50/p95/max per way of dropping.
Part 2, startup scan: for each --files N (default 10,000 and 100,000), N tiny recordings are
put on disk (1,000 per subfolder), the journal is empty (a first start on a full folder), and
the simulator's jobs are slow, so this measures queuing, not transcription. Printed: the
daemon's own scan_finished figure (files on disk walked, seconds), the time from spawn until
the journal holds a row for every file, and until every file is settled and hashed (queued),
with the daemon's peak RSS (VmHWM) and its RSS then. --profile runs the scan's daemon under
cProfile (the last size's profile is kept). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import common

from tests.sim.media import wav_header

DEFAULT_SIZES = (10_000, 100_000)


def main() -> None:
    """Run both parts and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, action="append",
                        help="files on disk for the startup scan (repeatable; default 10000 "
                             "and 100000)")
    parser.add_argument("--drops", type=int, default=20, help="files dropped for the latency")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="settle_seconds (watcherd's default is 2.0)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--profile", type=Path, default=None,
                        help="run the start-up scan's daemon under cProfile, write it here")
    args = parser.parse_args()
    common.stop_on_signals()
    common.print_machine()
    if not args.skip_latency:
        latency(args.drops, args.settle)
    for count in args.files or DEFAULT_SIZES:
        startup_scan(count, args.profile)


# -- part 1: close -> upload started ----------------------------------------------------------


def latency(drops: int, settle: float) -> None:
    """Drop files one at a time and print close -> upload_started percentiles."""
    print(f"\nlatency: {drops} drops, settle_seconds {settle:g}, one drop every 1.5 s")
    with tempfile.TemporaryDirectory(prefix="wd-bench-watch-") as tmp, common.GladiaSimulator(
        api_key=common.API_KEY, job_seconds=0.5, concurrency=3
    ) as sim:
        root = Path(tmp)
        recordings = common.make_recordings(root / "recordings", drops, seconds=5.0,
                                            salt="bench-watch")
        inbox = root / "inbox"
        inbox.mkdir()
        config = common.write_config(root / "config.toml", api_url=sim.base_url,
                                     journal=root / "journal.db", watches=[inbox],
                                     settle_seconds=settle)
        closed: dict[str, dict[str, float]] = {"written in place": {}, "renamed into place": {}}
        with common.Daemon(config, root) as daemon:
            daemon.wait_ready()
            for i, recording in enumerate(recordings):
                data = recording.read_bytes()
                target = inbox / recording.name
                if i % 2 == 0:
                    with target.open("wb") as out:
                        out.write(data)
                    closed["written in place"][str(target)] = time.time()
                else:
                    part = target.with_name(target.name + ".part")
                    with part.open("wb") as out:
                        out.write(data)
                    part.rename(target)
                    closed["renamed into place"][str(target)] = time.time()
                # Spaced out, so no file waits behind another's upload or job.
                time.sleep(1.5)
            started = daemon.wait_events("upload_started", drops, timeout=120 + 5 * settle)
            errors = daemon.problems()
    first = _first_times(started)
    print(f"{'closed -> upload started':<28}{'p50':>8}{'p95':>8}{'max':>8}")
    for label, times in closed.items():
        values = [first[path] - at for path, at in times.items() if path in first]
        print(f"{label:<28}{common.percentile(values, 50):>7.2f}s"
              f"{common.percentile(values, 95):>7.2f}s{max(values):>7.2f}s")
    print("(a file closed after writing or renamed into place may settle after 0.5 s instead of"
          f" {settle:g} s when the daemon passes the watcher's complete events to the worker)")
    if errors:
        print(f"daemon errors: {len(errors)}: {[e.get('event') for e in errors[:3]]}")


def _first_times(lines: list[dict[str, Any]]) -> dict[str, float]:
    first: dict[str, float] = {}
    for line in lines:
        first.setdefault(str(line.get("source")), common.log_time(line))
    return first


# -- part 2: startup scan ----------------------------------------------------------------------


def startup_scan(count: int, profile: Path | None = None) -> None:
    """N files on disk, empty journal: scan time, time to journal all, time to queue all."""
    print(f"\nstartup scan: {count:,} files on disk (1,000 per subfolder), empty journal")
    with tempfile.TemporaryDirectory(prefix="wd-bench-watch-") as tmp, common.GladiaSimulator(
        api_key=common.API_KEY, job_seconds=3600, concurrency=3
    ) as sim:
        root = Path(tmp)
        inbox = root / "inbox"
        made = time.monotonic()
        for i in range(count):
            folder = inbox / f"d{i // 1000:04d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True)
            (folder / f"rec{i:06d}.wav").write_bytes(wav_header(8) + struct.pack("<Q", i))
        print(f"  writing the files took {time.monotonic() - made:.1f} s")
        journal = root / "journal.db"
        config = common.write_config(root / "config.toml", api_url=sim.base_url,
                                     journal=journal, watches=[inbox])
        with common.Daemon(config, root, profile=profile) as daemon:
            ready = daemon.wait_ready(timeout=900)
            spawn_wall = time.time() - (time.monotonic() - daemon.spawned_at)
            limit = 120 + count / 100
            scan = daemon.wait_events("scan_finished", 1, timeout=limit)[0]
            scanned_at = common.log_time(scan)
            journaled = _wait_rows(journal, count, "", daemon, limit)
            queued = _wait_rows(journal, count, " WHERE content_key IS NOT NULL", daemon, limit)
            peak = (common.proc_status_kb(daemon.pid, "VmHWM") or 0) / 1024
            rss = (common.proc_status_kb(daemon.pid, "VmRSS") or 0) / 1024
            cpu = common.cpu_seconds(daemon.pid) or float("nan")
            errors = daemon.problems()
    print(f"  spawn -> READY=1          {ready:8.2f} s")
    print(f"  scan_finished             {float(scan.get('seconds', 'nan')):8.2f} s for "
          f"{scan.get('files')} files on disk (the walk alone)")
    print(f"  spawn -> scan_finished    {scanned_at - spawn_wall:8.2f} s")
    print(f"  spawn -> all journaled    {journaled - daemon.spawned_at:8.2f} s "
          "(a pending row for every file)")
    print(f"  spawn -> all queued       {queued - daemon.spawned_at:8.2f} s "
          "(every file settled and hashed)")
    print(f"  peak RSS (VmHWM)          {peak:8.1f} MB; RSS once all queued {rss:.1f} MB; "
          f"CPU {cpu:.1f} s")
    if errors:
        print(f"  daemon errors: {len(errors)}: {[e.get('event') for e in errors[:3]]}")


def _wait_rows(journal: Path, count: int, where: str, daemon: common.Daemon,
               timeout: float) -> float:
    """Wait until ``count`` journal rows match ``where``; returns time.monotonic() then."""
    def enough() -> float | None:
        daemon.check_alive()
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
            ) as conn:
                rows = conn.execute(f"SELECT count(*) FROM sources{where}").fetchone()[0]
        except sqlite3.Error:
            return None
        return time.monotonic() if rows >= count else None
    return common.wait_until(enough, timeout=timeout, interval=0.25,
                             message=f"{count} journal rows{where}")


if __name__ == "__main__":
    main()
