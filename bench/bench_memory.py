"""Memory: the daemon's RSS growth while it uploads a 900 MB file, and its RSS with 100k
journal rows.

Usage: python bench/bench_memory.py [--size-mb 900] [--rows 100000] [--no-upload] [--no-journal]
Upload: the daemon is started on an empty folder, its RSS read after READY, then a sparse
48 kHz stereo WAV of --size-mb (78 minutes at 900 MB, under Gladia's limits) is renamed into
the folder; VmRSS is sampled every 20 ms until the transcript is written.
Journal: a journal is filled with --rows finished sources (rows, events and stored results as
the pipeline leaves them), the daemon started on it, and VmRSS read after READY.
RSS is read from /proc/PID/status. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import common


class RssSampler:
    """Samples a process's VmRSS in a thread until stopped; keeps the largest value."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = common.proc_status_kb(self.pid, "VmRSS")
            if rss is None:
                return
            self.peak_kb = max(self.peak_kb, rss)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def settled_rss(daemon: common.Daemon, seconds: float = 2.0) -> int:
    """VmRSS after READY, once the start-up work has had ``seconds`` to finish."""
    time.sleep(seconds)
    daemon.check_alive()
    rss = common.proc_status_kb(daemon.pid, "VmRSS")
    assert rss is not None
    return rss


def upload(root: Path, size_mb: int) -> int:
    """Upload one big file; print the RSS figures; returns the baseline RSS (kB) after READY."""
    inbox = root / "inbox"
    inbox.mkdir()
    staging = root / "staging"
    staging.mkdir()
    big = staging / "long-meeting.wav"
    common.sparse_wav(big, size_mb * 1024 * 1024)
    with common.GladiaSimulator(api_key=common.API_KEY, job_seconds=0.5, concurrency=3) as sim:
        config = common.write_config(root / "config.toml", api_url=sim.base_url,
                                     journal=root / "journal.db", watches=[inbox])
        with common.Daemon(config, root) as daemon:
            ready = daemon.wait_ready()
            baseline = settled_rss(daemon)
            with RssSampler(daemon.pid) as sampler:
                big.rename(inbox / big.name)
                daemon.wait_events("transcript_written", 1, timeout=1800)
            hwm = common.proc_status_kb(daemon.pid, "VmHWM") or 0
            started = common.log_time(daemon.log.events("upload_started")[0])
            uploaded = common.log_time(daemon.log.events("uploaded")[0])
            errors = daemon.problems()
    seconds = uploaded - started
    print(f"upload of {size_mb} MB (ready in {ready:.2f} s)")
    print(f"  RSS after READY         {baseline / 1024:7.1f} MB")
    print(f"  peak RSS while working  {sampler.peak_kb / 1024:7.1f} MB "
          f"({sampler.samples} samples, every 20 ms: settle, hash, upload, write)")
    print(f"  growth                  {(sampler.peak_kb - baseline) / 1024:7.1f} MB")
    print(f"  VmHWM (lifetime peak)   {hwm / 1024:7.1f} MB")
    print(f"  upload took             {seconds:7.1f} s ({size_mb / seconds:.0f} MB/s to the "
          "simulator on loopback)")
    if errors:
        print(f"  daemon errors: {[e.get('event') for e in errors[:3]]}")
    return baseline


def journal_rows(root: Path, rows: int, baseline_kb: int | None) -> None:
    """Start the daemon on a journal of ``rows`` finished sources; print its RSS."""
    inbox = root / "inbox"
    inbox.mkdir()
    journal = root / "journal.db"
    started = time.monotonic()
    common.fill_journal(journal, common.finished_rows(rows, inbox))
    filled = time.monotonic() - started
    size = sum(p.stat().st_size for p in root.glob("journal.db*"))
    with common.GladiaSimulator(api_key=common.API_KEY, job_seconds=0.5, concurrency=3) as sim:
        config = common.write_config(root / "config.toml", api_url=sim.base_url,
                                     journal=journal, watches=[inbox])
        with common.Daemon(config, root) as daemon:
            ready = daemon.wait_ready(timeout=600)
            rss = settled_rss(daemon)
            hwm = common.proc_status_kb(daemon.pid, "VmHWM") or 0
    print(f"journal with {rows:,} finished rows ({size / 1024 / 1024:.0f} MB, filled in "
          f"{filled:.0f} s; READY after {ready:.2f} s)")
    print(f"  RSS after READY         {rss / 1024:7.1f} MB")
    if baseline_kb is not None:
        print(f"  vs empty journal        {(rss - baseline_kb) / 1024:+7.1f} MB")
    print(f"  VmHWM (lifetime peak)   {hwm / 1024:7.1f} MB")


def main() -> None:
    """Run the upload and journal measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=900)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--no-upload", action="store_true")
    parser.add_argument("--no-journal", action="store_true")
    args = parser.parse_args()
    common.stop_on_signals()
    common.print_machine()
    baseline = None
    if not args.no_upload:
        with tempfile.TemporaryDirectory(prefix="wd-bench-") as tmp:
            baseline = upload(Path(tmp), args.size_mb)
    if not args.no_journal:
        with tempfile.TemporaryDirectory(prefix="wd-bench-") as tmp:
            journal_rows(Path(tmp), args.rows, baseline)


if __name__ == "__main__":
    main()
