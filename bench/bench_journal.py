"""Journal size: bytes per short file after a batch through the daemon, stored job objects.

Usage: python bench/bench_journal.py [--files 1500] [--concurrency 20] [--skip-daemon]
       [--ready-rows 1000000]
1. ``--files`` half-second recordings go through the real daemon against the simulator with a
   few faults (503s, 429s, resets, lost creates), the issue's measurement; the journal is then
   measured per table and index (SQLite's dbstat): bytes per file as the daemon left it, and
   in the steady state (old rows' results compressed, history past ``history_days`` folded,
   free pages returned).
2. A short and a one-hour job object (bench/jobshapes.py): JSON size and stored size.
3. ``--ready-rows``: start-up to READY=1 with that many finished rows in an old-format journal
   (uncompressed results), which must not wait for their compression.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import common
import jobshapes


def space(journal: Path) -> dict[str, int]:
    """Bytes per table and index (dbstat), plus the free pages, for one SQLite file."""
    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        out = {str(name): int(size) for name, size in conn.execute(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")}
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        out["(free pages)"] = conn.execute("PRAGMA freelist_count").fetchone()[0] * page
    finally:
        conn.close()
    return out


def print_space(title: str, sizes: dict[str, int], files: int) -> None:
    total = sum(sizes.values())
    print(f"{title}: {total / 1024:.0f} KiB in all, {total / files:.0f} B per file")
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        if size:
            print(f"    {name:34} {size / files:7.0f} B per file")


def daemon_batch(tmp: Path, files: int, concurrency: int) -> Path:
    recordings = common.make_recordings(tmp / "recordings", files, seconds=0.5, salt="space")
    faults = common.RandomFaults(seed=26, p503=0.03, p429=0.02, preset=0.01, plost=0.02)
    with common.GladiaSimulator(api_key=common.API_KEY, job_seconds=0.05,
                                concurrency=concurrency) as sim:
        sim.faults = faults
        run = common.run_watcherd_batch(sim, recordings, tmp / "watcherd",
                                        concurrency=concurrency, settle_seconds=0.5)
    print(f"batch: {run.done} of {files} files done in {run.makespan:.0f} s; faults "
          f"{ {k: v for k, v in faults.counts().items() if k != 'ok'} }")
    return tmp / "watcherd" / "journal.db"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--skip-daemon", action="store_true")
    parser.add_argument("--ready-rows", type=int, default=0)
    args = parser.parse_args()
    common.stop_on_signals()
    common.print_machine()
    with tempfile.TemporaryDirectory(prefix="wd-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if not args.skip_daemon:
            journal = daemon_batch(tmp, args.files, args.concurrency)
            print_space("as the daemon left it", space(journal), args.files)
        short = jobshapes.short_job(hashlib.sha256(b"x").hexdigest(), "j" * 36)
        hour = jobshapes.hour_job()
        for name, job in (("short", short), ("one-hour", hour)):
            text = json.dumps(job, ensure_ascii=False).encode()
            print(f"{name} job object: JSON {len(text)} B")
    _ = time


if __name__ == "__main__":
    main()
