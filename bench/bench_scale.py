"""Scale: the daemon's start-up time to READY=1 with a big journal and with many files on disk.

Usage: python bench/bench_scale.py [--rows 100000] [--files 10000] [--profile DIR]
       [--only empty,rows,files-done,files-new] [--build journal|sql] [--results N]
       [--repeat R] [--unclean]
Cases, each a fresh daemon (spawn -> READY=1 on a notify socket, as systemd would see it):
  empty       no journal, empty folder: the fixed cost (interpreter, imports, API key check);
  rows        a journal of --rows finished sources whose files are gone (years of history);
  files-done  --files recordings on disk (100 per subfolder), all done in the journal
              (a restart);
  files-new   the same number of recordings, never seen (a first start on a full folder).
READY comes once the journal is open and the file system observers are up; the start-up scan
of the folders runs after it (so a huge tree cannot outlast systemd's start timeout): "scanned"
is spawn -> the daemon's scan_finished log line. bench_watch.py measures how long the journal
then takes to record and hash every new file. With --profile the daemon runs
under cProfile and each case's busiest functions are printed. --build sql makes the rows
journal inside SQLite (common.sql_journal: needed for a million rows), --results keeps the
stored job object of only the newest N sources, --repeat starts the daemon R times on each
case (median printed), --unclean adds a start after an unclean stop of the rows journal (the
integrity check then runs before READY). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import pstats
import sqlite3
import tempfile
import time
from pathlib import Path

import common


def start(root: Path, sim: common.GladiaSimulator, inbox: Path, journal: Path,
          profile: Path | None) -> tuple[float, float, float]:
    """Start the daemon; returns seconds to READY and to the scan's end, RSS MB after it."""
    config = common.write_config(root / "config.toml", api_url=sim.base_url, journal=journal,
                                 watches=[inbox])
    with common.Daemon(config, root, profile=profile) as daemon:
        ready = daemon.wait_ready(timeout=900)
        scan = daemon.wait_events("scan_finished", 1, timeout=600)[0]
        rss = (common.proc_status_kb(daemon.pid, "VmRSS") or 0) / 1024
    return ready, common.log_time(scan) - daemon.spawned_wall, rss


def quick_check_seconds(journal: Path) -> float:
    """How long the integrity check the daemon runs at every start takes on this journal."""
    conn = sqlite3.connect(str(journal))
    try:
        started = time.monotonic()
        conn.execute("PRAGMA quick_check").fetchone()
        return time.monotonic() - started
    finally:
        conn.close()


def main() -> None:
    """Build each case, start the daemon on it, print the start-up figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--only", default="empty,rows,files-done,files-new",
                        help="comma-separated cases to run")
    parser.add_argument("--build", choices=("journal", "sql"), default="journal",
                        help="how the rows journal is made (sql: in SQLite, for 1M rows)")
    parser.add_argument("--results", type=int, default=None,
                        help="rows case: only the newest N sources keep a stored result")
    parser.add_argument("--repeat", type=int, default=1, help="starts per case (median)")
    parser.add_argument("--unclean", action="store_true",
                        help="rows case: one more start after an unclean stop")
    parser.add_argument("--profile", type=Path, default=None,
                        help="run each daemon under cProfile, writing DIR/CASE.prof")
    args = parser.parse_args()
    cases = [c.strip() for c in args.only.split(",") if c.strip()]
    common.stop_on_signals()
    common.print_machine()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(f"{'case':<12} {'size':>14} {'build':>7} {'READY':>8} {'scanned':>8} {'RSS':>8}"
          "  (RSS read once the scan has finished)")
    # Jobs never finish during the measurement: only start-up is timed.
    with common.GladiaSimulator(api_key=common.API_KEY, job_seconds=3600, concurrency=3) as sim:
        for case in cases:
            with tempfile.TemporaryDirectory(prefix="wd-bench-") as tmp:
                root = Path(tmp)
                inbox = root / "inbox"
                inbox.mkdir()
                journal = root / "journal.db"
                built = time.monotonic()
                size = "-"
                extra = ""
                if case == "rows":
                    if args.build == "sql":
                        common.sql_journal(journal, args.rows, inbox, results=args.results)
                    else:
                        common.fill_journal(journal, common.finished_rows(args.rows, inbox))
                    size = f"{args.rows:,} rows"
                    mb = sum(f.stat().st_size for f in root.glob("journal.db*")) / 1e6
                    extra = f"({mb:,.0f} MB) "
                    extra += f"(PRAGMA quick_check alone: {quick_check_seconds(journal):.2f} s)"
                elif case in ("files-done", "files-new"):
                    files = common.make_recordings(inbox, args.files, seconds=0.2,
                                                   salt="scale", subfolders=args.files // 100)
                    if case == "files-done":
                        common.fill_journal(journal, common.finished_files(files, inbox))
                    size = f"{args.files:,} files"
                elif case != "empty":
                    parser.error(f"unknown case {case!r}")
                built = time.monotonic() - built
                profile = args.profile / f"{case}.prof" if args.profile is not None else None
                starts = [start(root, sim, inbox, journal, profile)
                          for _ in range(args.repeat)]
                ready, scan, rss = sorted(starts)[(len(starts) - 1) // 2]
                every = ", ".join(f"{r:.2f}" for r, _, _ in starts)
                print(f"{case:<12} {size:>14} {built:>6.1f}s {ready:>7.2f}s {scan:>7.2f}s "
                      f"{rss:>6.1f}MB {extra} READY each start: {every}", flush=True)
                if case == "rows" and args.unclean:
                    with sqlite3.connect(str(journal)) as conn:
                        conn.execute("UPDATE meta SET value = '0' WHERE key = 'clean_stop'")
                    ready, scan, rss = start(root, sim, inbox, journal, None)
                    print(f"{'rows unclean':<12} {size:>14} {'':>7} {ready:>7.2f}s "
                          f"{scan:>7.2f}s {rss:>6.1f}MB (after an unclean stop)", flush=True)
                if profile is not None:
                    pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(
                        r"watcherd/", 10
                    )


if __name__ == "__main__":
    main()
