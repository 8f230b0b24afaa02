"""Idle cost: CPU seconds the daemon spends over a quiet minute with 1,000 files done.

Usage: python bench/bench_idle.py [--seconds 60] [--files 1000] [--profile FILE]
The folder holds --files recordings (spread over 10 subfolders) with their NAME.txt and
NAME.json, and the journal records each as done, as a daemon that transcribed them leaves it.
The daemon is started, left to finish its start-up scan, then utime+stime (/proc/PID/stat)
and context switches (/proc/PID/status) are read --seconds apart. With --profile the daemon
runs under cProfile and the busiest functions are printed. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import pstats
import tempfile
import time
from pathlib import Path

import common


def switches(pid: int) -> dict[str, int]:
    """Context switches so far of every thread (name:tid): how often each woke up.

    /proc/PID/status counts the main thread only; the other threads (observers, executors,
    the listener) are read from /proc/PID/task/TID/status.
    """
    out: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        tid = int(task.name)
        count = ((common.proc_status_kb(pid, "voluntary_ctxt_switches") or 0)
                 + (common.proc_status_kb(pid, "nonvoluntary_ctxt_switches") or 0)) \
            if tid == pid else _task_switches(task)
        out[f"{name}:{tid}"] = count
    return out


def _task_switches(task: Path) -> int:
    """Voluntary plus involuntary context switches of one thread."""
    total = 0
    try:
        for line in (task / "status").read_text().splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                total += int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return total


def thread_count(pid: int) -> int:
    """How many threads the process has."""
    return common.proc_status_kb(pid, "Threads") or 0


def main() -> None:
    """Measure the daemon's CPU use while nothing happens."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--profile", type=Path, default=None,
                        help="run the daemon under cProfile, write the profile here")
    args = parser.parse_args()
    common.stop_on_signals()
    common.print_machine()
    with tempfile.TemporaryDirectory(prefix="wd-bench-") as tmp, common.GladiaSimulator(
        api_key=common.API_KEY, job_seconds=1.0, concurrency=3
    ) as sim:
        root = Path(tmp)
        inbox = root / "inbox"
        files = common.make_recordings(inbox, args.files, seconds=0.2, salt="idle",
                                       subfolders=10)
        journal = root / "journal.db"
        common.fill_journal(journal, common.finished_files(files, inbox))
        config = common.write_config(root / "config.toml", api_url=sim.base_url,
                                     journal=journal, watches=[inbox])
        with common.Daemon(config, root, profile=args.profile) as daemon:
            ready = daemon.wait_ready()
            daemon.wait_events("scan_finished", 1, timeout=120)
            time.sleep(3.0)  # let the start-up scan's hints be looked at before measuring
            requests_before = len(sim.requests())
            cpu0, sw0 = common.cpu_seconds(daemon.pid), switches(daemon.pid)
            t0 = time.monotonic()
            time.sleep(args.seconds)
            cpu1, sw1 = common.cpu_seconds(daemon.pid), switches(daemon.pid)
            elapsed = time.monotonic() - t0
            threads = thread_count(daemon.pid)
            rss = common.proc_status_kb(daemon.pid, "VmRSS") or 0
            daemon.check_alive()
            uploads = len(daemon.log.events("upload_started"))
            idle_requests = len(sim.requests()) - requests_before
            daemon.stop()
    assert cpu0 is not None and cpu1 is not None
    cpu = cpu1 - cpu0
    per_thread = {name: sw1.get(name, 0) - sw0.get(name, 0) for name in sw1}
    total_switches = sum(per_thread.values())
    print(f"idle: {args.files} files done, READY after {ready:.2f} s, measured {elapsed:.0f} s")
    print(f"  CPU                 {cpu:.2f} s ({cpu / elapsed * 100:.2f}% of one core)")
    print(f"  CPU per hour        {cpu / elapsed * 3600:.0f} s")
    print(f"  wake-ups            {total_switches / elapsed:.2f} context switches per second, "
          "all threads")
    for name, count in sorted(per_thread.items(), key=lambda kv: -kv[1]):
        if count:
            print(f"    {name:<24} {count / elapsed:.2f}/s")
    print(f"  threads             {threads}")
    print(f"  RSS                 {rss / 1024:.1f} MB")
    print(f"  API requests        {idle_requests} while idle")
    if uploads:
        print(f"  WARNING: {uploads} uploads: the journal was not taken as done")
    if args.profile is not None:
        print(f"profile of the whole run ({args.profile}), by own time:")
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
