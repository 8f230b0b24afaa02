"""Journal size: bytes per short file after a batch through the daemon, stored job objects.

Usage: python bench/bench_journal.py [--files 1500] [--concurrency 20] [--skip-daemon]
                                     [--keep JOURNAL]
1. ``--files`` half-second recordings go through the real daemon against the simulator with a
   few faults (503s, 429s, resets, lost creates), the issue's measurement; the journal is then
   measured per table and index (SQLite's dbstat): bytes per file as the daemon left it, and
   in the steady state (old rows' results compressed, history past ``history_days`` folded,
   free pages returned). ``--keep`` copies that steady-state journal to a file, to look into
   (dbstat, EXPLAIN QUERY PLAN) after the bench.
2. A short and a one-hour job object (bench/jobshapes.py): JSON size and stored size, by
   watcherd's pack_job and by zlib, bz2 and zstd (when the zstandard package is installed).
READY=1 with a million old rows is bench_scale.py's (``--rows 1000000 --build sql``: its rows
hold plain JSON results, as a journal written before packing).
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import json
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common
import jobshapes

from watcherd.journal import Journal, SQLiteJournal
from watcherd.journal.sqlite import KEEP_FREE_PAGES
from watcherd.journal.stored import pack_job


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


def steady_state(journal: Path) -> None:
    """The journal once its files are older than history_days: what the daemon's upkeep
    leaves (results packed, history folded, free pages returned)."""
    with Journal.open(journal, exclusive=True) as opened:
        while opened.pack_results():
            pass
        while opened.fold_history(time.time() + 1):
            pass
        # Finished jobs' rows past every billing month shown (a year: 11 months of 12).
        while opened.drop_remote_jobs(time.time() + 1):
            pass
        assert isinstance(opened, SQLiteJournal)
        for _ in range(10_000):
            free = opened._conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free <= KEEP_FREE_PAGES:
                break
            opened.reclaim()
        opened._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def stored_sizes() -> None:
    """JSON and stored size of a short and a one-hour job object, by method."""
    import bz2
    import zlib

    # Optional, only for the comparison (not a dependency: `pip install zstandard` to see it).
    zstandard: Any
    try:
        zstandard = importlib.import_module("zstandard")
    except ImportError:
        zstandard = None
    short = jobshapes.short_job(hashlib.sha256(b"x").hexdigest(), str(uuid.uuid4()))
    hour = jobshapes.hour_job()
    print("job objects: JSON -> stored (share of the JSON), time to pack")
    for name, job in (("short (0.5 s)", short), ("one hour", hour)):
        raw = json.dumps(job, ensure_ascii=False).encode()
        methods: list[tuple[str, Callable[[], bytes]]] = [
            ("watcherd (pack_job)", functools.partial(pack_job, job)),
            ("zlib 9", functools.partial(zlib.compress, raw, 9)),
            ("bz2 9", functools.partial(bz2.compress, raw, 9)),
        ]
        if zstandard is not None:
            for level in (3, 19):
                packer = zstandard.ZstdCompressor(level=level)
                methods.append((f"zstd {level}", functools.partial(packer.compress, raw)))
        words = raw.count(b'"word"')
        print(f"  {name}: JSON {len(raw)} B, {words} words")
        for label, pack in methods:
            started = time.perf_counter()
            size = len(pack())
            took = (time.perf_counter() - started) * 1000
            print(f"    {label:20} {size:8d} B  {size / len(raw) * 100:5.1f}%  {took:7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--skip-daemon", action="store_true")
    parser.add_argument("--keep", type=Path, help="copy the steady-state journal here")
    args = parser.parse_args()
    common.stop_on_signals()
    common.print_machine()
    with tempfile.TemporaryDirectory(prefix="wd-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if not args.skip_daemon:
            journal = daemon_batch(tmp, args.files, args.concurrency)
            print_space("as the daemon left it (history kept)", space(journal), args.files)
            steady_state(journal)
            print_space("steady state (older than history_days: folded)", space(journal),
                        args.files)
            if args.keep is not None:
                shutil.copyfile(journal, args.keep)
        stored_sizes()


if __name__ == "__main__":
    main()
