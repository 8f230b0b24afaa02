"""Shared helpers for watcherd's benchmarks: the real daemon as a subprocess, the simulator,
test recordings, a pre-filled journal, /proc readings and the machine description.

The benchmarks run from a checkout (`python bench/bench_NAME.py`), so this module puts the
repository root on sys.path: the Gladia simulator lives in tests/ and is not installed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.sim import FaultPlan, GladiaSimulator, build_result  # noqa: E402
from tests.sim.faults import _Fault  # noqa: E402
from tests.sim.media import make_wav, wav_header  # noqa: E402
from watcherd.identity import content_key, options_json  # noqa: E402
from watcherd.journal import FileStat, Journal  # noqa: E402

__all__ = [
    "API_KEY",
    "REPO",
    "BatchRun",
    "Daemon",
    "FaultPlan",
    "FaultWait",
    "Finished",
    "GladiaSimulator",
    "LogTail",
    "NotifySocket",
    "RandomFaults",
    "batch_phases",
    "callback_config",
    "copy_in",
    "cpu_seconds",
    "fault_waits",
    "fill_journal",
    "finished_files",
    "finished_rows",
    "log_time",
    "machine",
    "make_recordings",
    "make_wav",
    "percentile",
    "print_machine",
    "print_phases",
    "proc_status_kb",
    "run_watcherd_batch",
    "seed_job_times",
    "sparse_wav",
    "sql_journal",
    "stop_on_signals",
    "wait_until",
    "write_config",
]

T = TypeVar("T")

# The simulator's key: a throwaway value, not a credential.
API_KEY = "bench-key"

# Variables that would change the daemon's behaviour behind the benchmark's back (test timings,
# a real API key, a service manager's sockets).
_FOREIGN_ENV_PREFIXES = ("WATCHERD_", "GLADIA_")
_FOREIGN_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


# -- the machine ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What the figures were measured on: cores, CPU model, RAM, Python, kernel, date, load."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    load = "?"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "load": load,
        "nproc": str(os.cpu_count() or "?"),
        "cpu": cpu,
        "ram": ram,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def print_machine() -> None:
    """Print the machine line every benchmark starts with."""
    m = machine()
    print(f"machine: {m['nproc']} cores, {m['cpu']}, {m['ram']} RAM, Python {m['python']}, "
          f"Linux {m['kernel']}, {m['date']}, load average {m['load']} at start")


# -- waiting and statistics ----------------------------------------------------------------


def wait_until(
    condition: Callable[[], T | None], *, timeout: float, message: str, interval: float = 0.05
) -> T:
    """Poll ``condition`` until it returns something truthy; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {message}")
        time.sleep(interval)


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) with linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def stop_on_signals() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit, so `finally` blocks stop the daemons we started."""
    def leave(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, leave)


# -- /proc ---------------------------------------------------------------------------------


def proc_status_kb(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM, ...), or None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process from /proc/PID/stat, in seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its closing paren are fixed.
    fields_after = text[text.rindex(")") + 2:].split()
    utime, stime = int(fields_after[11]), int(fields_after[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# -- recordings ----------------------------------------------------------------------------


def make_recordings(folder: Path, count: int, *, seconds: float = 5.0, salt: str = "",
                    subfolders: int = 0) -> list[Path]:
    """Write ``count`` distinct small WAV recordings (optionally spread over subfolders)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        parent = folder / f"d{i % subfolders:03d}" if subfolders else folder
        parent.mkdir(exist_ok=True)
        path = parent / f"rec{i:06d}.wav"
        make_wav(path, seconds=seconds, salt=f"{salt}:{i}")
        paths.append(path)
    return paths


def sparse_wav(path: Path, size: int) -> None:
    """A WAV of ``size`` bytes whose samples are a hole: 48 kHz stereo, so 900 MB lasts 78 min.

    (tests' make_sparse_wav writes 16 kHz mono, where 900 MB would be over Gladia's 135-minute
    limit and be refused before any upload.)
    """
    data_size = max(0, size - 44)
    with path.open("wb") as f:
        f.write(wav_header(data_size, rate=48_000, channels=2))
        f.truncate(44 + data_size)


# -- config ----------------------------------------------------------------------------------


def retry_config(**keys: float) -> str:
    """A ``[retry]`` table (config keys of watcherd.retry.RETRY_KEYS) for a what-if run."""
    if not keys:
        return ""
    return "\n[retry]\n" + "".join(f"{k} = {v!r}\n" for k, v in keys.items())


def write_config(
    path: Path,
    *,
    api_url: str,
    journal: Path,
    watches: Iterable[Path],
    max_concurrent_jobs: int = 3,
    queue_ahead: int | None = None,
    settle_seconds: float = 2.0,
    log_level: str = "info",
    extra: str = "",
) -> Path:
    """A watcherd config for a benchmark: production defaults except what is named here."""
    lines = [
        "[gladia]",
        f"api_key = {json.dumps(API_KEY)}",
        f"api_url = {json.dumps(api_url)}",
        f"max_concurrent_jobs = {max_concurrent_jobs}",
        *([f"queue_ahead = {queue_ahead}"] if queue_ahead is not None else []),
        "",
        "[journal]",
        f"path = {json.dumps(str(journal))}",
        "",
        "[log]",
        'format = "json"',
        f"level = {json.dumps(log_level)}",
        "",
        "[defaults]",
        f"settle_seconds = {settle_seconds!r}",
    ]
    for watch in watches:
        lines += ["", "[[watch]]", f"path = {json.dumps(str(watch))}"]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def callback_config() -> str:
    """A ``[callback]`` table on a free loopback port (the simulator calls it when a job ends)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f'\n[callback]\nlisten = "127.0.0.1:{port}"\n'


# -- sd_notify -------------------------------------------------------------------------------


class NotifySocket:
    """A unix datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self) -> None:
        # sun_path is limited to ~107 bytes: keep the name short and in /tmp.
        self.path = Path(tempfile.gettempdir()) / f"wdb-{uuid.uuid4().hex[:12]}.sock"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self.messages: list[tuple[float, dict[str, str]]] = []

    def wait_for(self, key: str, value: str, *, timeout: float,
                 alive: Callable[[], None] = lambda: None) -> float:
        """Wait for a datagram carrying ``KEY=value``; returns time.monotonic() at receipt."""
        deadline = time.monotonic() + timeout
        for at, fields_ in self.messages:
            if fields_.get(key) == value:
                return at
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {key}={value} from the daemon after {timeout:.0f} s")
            alive()
            self._sock.settimeout(min(left, 0.5))
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            at = time.monotonic()
            fields_ = dict(
                line.split("=", 1) for line in data.decode("utf-8", "replace").splitlines()
                if "=" in line
            )
            self.messages.append((at, fields_))
            if fields_.get(key) == value:
                return at

    def close(self) -> None:
        """Close and remove the socket file."""
        self._sock.close()
        self.path.unlink(missing_ok=True)


# -- the daemon's log --------------------------------------------------------------------------


def log_time(line: dict[str, Any]) -> float:
    """A log line's timestamp as a Unix time (the daemon logs ISO UTC)."""
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


class LogTail:
    """Reads a growing JSON-lines log incrementally (rereading it whole would be quadratic)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[dict[str, Any]] = []
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[dict[str, Any]]:
        """Read what was appended since the last call; returns the new lines."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        new = []
        for raw in complete:
            try:
                value = json.loads(raw)
            except ValueError:
                value = {"raw": raw.decode("utf-8", "replace")}
            if not isinstance(value, dict):
                value = {"raw": raw.decode("utf-8", "replace")}
            new.append(value)
        self.lines.extend(new)
        return new

    def events(self, name: str) -> list[dict[str, Any]]:
        """Every line so far whose event is ``name``."""
        self.poll()
        return [line for line in self.lines if line.get("event") == name]


# -- a degraded API ----------------------------------------------------------------------------


class Firing(NamedTuple):
    """One request the fault plan saw: when, which endpoint and resource, and what it got."""

    time: float
    endpoint: str
    resource: str
    fault: str | None
    retry_after: float | None


class RandomFaults(FaultPlan):
    """The simulator's FaultPlan, but each request draws its fault at random (seeded).

    Every request: ``p503`` a 503, ``p429`` a 429 with ``Retry-After: retry_after``, ``preset``
    a connection reset; a create that drew none of these loses its response with ``plost``
    (the job is made, the client never hears of it). Every request is written to ``ledger``
    with the resource it is about (a job id, or a list query without its after_date), so the
    wait after each failed read can be measured from the server's side.
    """

    IDEMPOTENT = ("get", "list")

    def __init__(self, *, seed: int = 12, p503: float = 0.15, p429: float = 0.10,
                 preset: float = 0.05, plost: float = 0.10, retry_after: float = 1.0) -> None:
        super().__init__()
        self._rng = random.Random(seed)
        self._rates = (p503, p429, preset, plost)
        self._retry_after = retry_after
        self._ledger_lock = threading.Lock()
        self.ledger: list[Firing] = []

    def take(self, endpoint: str) -> _Fault | None:
        """Draw this request's fault (or none) and note it in the ledger."""
        queued = super().take(endpoint)
        if queued is not None:
            return queued
        # The simulator's handler calls take() from its _serve(self, sim, endpoint, job_id,
        # ...): its locals name the resource, which the ledger needs to pair a failed read
        # with its retry. A benchmark-only peek; the simulator is not changed for it.
        caller = sys._getframe(1).f_locals
        resource = ""
        if endpoint == "get":
            resource = str(caller.get("job_id"))
        elif endpoint == "list":
            handler = caller.get("self")
            pairs = parse_qsl(str(getattr(handler, "_query", "")), keep_blank_values=True)
            resource = urlencode(sorted((k, v) for k, v in pairs if k != "after_date"))
        p503, p429, preset, plost = self._rates
        with self._ledger_lock:
            r = self._rng.random()
            lost = self._rng.random()
        fault: _Fault | None = None
        if r < p503:
            fault = _Fault(endpoint, "status", 1, 503, None, 0.0)
        elif r < p503 + p429:
            fault = _Fault(endpoint, "status", 1, 429, self._retry_after, 0.0)
        elif r < p503 + p429 + preset:
            fault = _Fault(endpoint, "reset", 1, 0, None, 0.0)
        elif endpoint == "create" and lost < plost:
            fault = _Fault(endpoint, "lose_response", 1, 0, None, 0.0)
        name = None if fault is None else (
            str(fault.status) if fault.kind == "status" else
            "reset" if fault.kind == "reset" else "lost")
        with self._ledger_lock:
            self.ledger.append(Firing(time.time(), endpoint, resource, name,
                                      fault.retry_after if fault else None))
        return fault

    def counts(self) -> dict[str, int]:
        """How many requests got each fault (and "ok": none)."""
        out: dict[str, int] = {}
        for firing in self.ledger:
            out[firing.fault or "ok"] = out.get(firing.fault or "ok", 0) + 1
        return out


class FaultWait(NamedTuple):
    """A failed read and how long the client waited before asking for the same thing again."""

    endpoint: str
    fault: str
    wait: float
    allowed: float


def fault_waits(ledger: Sequence[Firing], *, since: float = 0.0) -> list[FaultWait]:
    """For every failed GET/list after ``since``: the wait until the same resource was asked.

    ``allowed`` is max(Retry-After, 10 s), issue 12's bound. A failed read never asked again
    (the job was seen done some other way) is left out.
    """
    out = []
    entries = [f for f in ledger if f.time >= since and f.endpoint in RandomFaults.IDEMPOTENT]
    for i, firing in enumerate(entries):
        if firing.fault is None or firing.fault == "lost":
            continue
        later = next((f for f in entries[i + 1:]
                      if f.endpoint == firing.endpoint and f.resource == firing.resource), None)
        if later is not None:
            out.append(FaultWait(firing.endpoint, firing.fault, later.time - firing.time,
                                 max(firing.retry_after or 0.0, 10.0)))
    return out


def seed_job_times(journal_path: Path, seconds: float, audio_seconds: float,
                   count: int = 5) -> None:
    """Give a fresh journal ``count`` learnt job times, as a daemon that ran before has."""
    journal = Journal.open(journal_path)
    journal.close()
    conn = sqlite3.connect(str(journal_path), isolation_level=None)
    try:
        conn.executemany(
            "INSERT INTO job_times (at, options_class, audio_seconds, seconds) "
            "VALUES (?, '', ?, ?)",
            [(time.time() - 60 + i, audio_seconds, seconds) for i in range(count)],
        )
    finally:
        conn.close()


# -- the daemon ---------------------------------------------------------------------------------


@dataclass
class Daemon:
    """``watcherd run`` as a real subprocess with a notify socket; always stopped on exit."""

    config: Path
    workdir: Path
    profile: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    spawned_at: float = 0.0
    spawned_wall: float = 0.0

    def __post_init__(self) -> None:
        self.log_path = self.workdir / f"daemon-{uuid.uuid4().hex[:6]}.log"
        self.log = LogTail(self.log_path)
        self.notify = NotifySocket()

    def start(self) -> Daemon:
        """Spawn the daemon (under cProfile when ``profile`` is set)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(_FOREIGN_ENV_PREFIXES) and k not in _FOREIGN_ENV}
        env.update(self.env)
        env["NOTIFY_SOCKET"] = str(self.notify.path)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        command = [sys.executable]
        if self.profile is not None:
            command += ["-m", "cProfile", "-o", str(self.profile)]
        command += ["-m", "watcherd", "run", "--config", str(self.config)]
        with self.log_path.open("ab") as log:
            self.spawned_at = time.monotonic()
            self.spawned_wall = time.time()
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL)
        return self

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        assert self.proc is not None
        return self.proc.pid

    def check_alive(self) -> None:
        """Raise with the log's tail if the daemon exited."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"watcherd exited with {self.proc.returncode}:\n{tail}")

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Wait for READY=1; returns the seconds from spawn to READY."""
        at = self.notify.wait_for("READY", "1", timeout=timeout, alive=self.check_alive)
        return at - self.spawned_at

    def wait_events(self, name: str, count: int, *, timeout: float) -> list[dict[str, Any]]:
        """Wait until the log holds ``count`` lines of event ``name``; returns them."""
        def enough() -> list[dict[str, Any]] | None:
            self.check_alive()
            found = self.log.events(name)
            return found if len(found) >= count else None
        return wait_until(enough, timeout=timeout, interval=0.1,
                          message=f"{count} {name!r} log events")

    def problems(self) -> list[dict[str, Any]]:
        """Log lines at error level or with a traceback (a benchmark should show none)."""
        self.log.poll()
        return [line for line in self.log.lines
                if line.get("level") in ("error", "critical") or "exception" in line
                or ("raw" in line and "Traceback" in str(line["raw"]))]

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (a profiled daemon writes its profile then); SIGKILL if it hangs."""
        code = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait(timeout=10)
        elif self.proc is not None:
            code = self.proc.returncode
        self.notify.close()
        return code

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- a journal with finished work ------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """One finished source to put in a journal: its path and, if it exists, its stat and hash."""

    path: Path
    watch_root: Path
    stat: FileStat
    sha256: str


def _job_json(sha256: str, job_id: str, duration: float) -> str:
    result = build_result(sha256, duration, {}, 1.0)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps({
        "id": job_id, "request_id": "G-" + job_id[:8], "version": 2, "kind": "pre-recorded",
        "status": "done", "created_at": now, "completed_at": now, "custom_metadata": {},
        "error_code": None, "post_session_metadata": {},
        "file": {"id": str(uuid.uuid4()), "filename": "x.wav", "source": None,
                 "audio_duration": duration, "number_of_channels": 1},
        "request_params": {}, "result": result,
    }, ensure_ascii=False)


def fill_journal(journal_path: Path, finished: Iterable[Finished], *,
                 options: dict[str, Any] | None = None, with_results: bool = True,
                 batch: int = 5000) -> int:
    """Record sources as ``done`` the way the daemon leaves them; returns how many.

    Rows are first recorded with watcherd's own Journal.observe_many (so each row is exactly
    what the watcher writes), then moved to ``done`` with the columns, events and stored
    result the pipeline leaves behind, in bulk SQL: 100k rows through one transaction per
    transition would take minutes and measure nothing.
    """
    text = options_json(options or {"language_config": {"languages": []}})
    journal = Journal.open(journal_path)
    try:
        total = 0
        pending: list[Finished] = []

        def flush() -> None:
            journal.observe_many(
                (str(f.path), str(f.watch_root), f.stat, text) for f in pending
            )
            _finish_rows(journal_path, pending, text, with_results)

        for item in finished:
            pending.append(item)
            if len(pending) >= batch:
                flush()
                total += len(pending)
                pending = []
        if pending:
            flush()
            total += len(pending)
    finally:
        journal.close()
    return total


_STEPS = (("pending", "pending", "settled and hashed"), ("pending", "uploading", "upload started"),
          ("uploading", "uploaded", "uploaded"), ("uploaded", "submitting", "creating job"),
          ("submitting", "submitted", "job created"), ("submitted", "submitted", "outputs named"),
          ("submitted", "done", "transcript written"))


def _finish_rows(journal_path: Path, rows: Sequence[Finished], options_text: str,
                 with_results: bool) -> None:
    conn = sqlite3.connect(str(journal_path), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        now = time.time()
        job_template: str | None = None
        for item in rows:
            key = content_key(item.sha256, options_text)
            job_id = str(uuid.uuid4())
            base = str(item.path.with_suffix(""))
            (source_id,) = conn.execute("SELECT id FROM sources WHERE path = ?",
                                        (str(item.path),)).fetchone()
            conn.execute(
                "UPDATE sources SET state='done', sha256=?, content_key=?, job_id=?, "
                "audio_url=?, output_base=?, engine='gladia', done_at=?, updated_at=? "
                "WHERE id=?",
                (item.sha256, key, job_id, f"https://api.gladia.io/file/{uuid.uuid4()}", base,
                 now, now, source_id),
            )
            conn.executemany(
                "INSERT INTO events (source_id, at, from_state, to_state, actor, reason) "
                "VALUES (?, ?, ?, ?, 'worker', ?)",
                [(source_id, now, a, b, why) for a, b, why in _STEPS],
            )
            if with_results:
                if job_template is None:
                    job_template = _job_json(item.sha256, "JOBID", 60.0)
                conn.execute(
                    "INSERT OR REPLACE INTO results (content_key, job_id, job_json, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (key, job_id, job_template.replace("JOBID", job_id), now),
                )
        conn.execute("COMMIT")
    finally:
        conn.close()


def sql_journal(journal_path: Path, count: int, watch_root: Path, *,
                results: int | None = None) -> None:
    """A journal of ``count`` finished sources whose files are gone, built in SQL alone.

    The same rows as fill_journal(finished_rows(...)) leaves (seen, the 7 transitions to
    done, the stored job object), generated inside SQLite by a recursive CTE: a million rows
    through Python would take many minutes and measure nothing. ``results`` limits how many
    sources keep their stored job object (the newest; None: all). The journal is left as a
    cleanly stopped daemon leaves it.
    """
    Journal.open(journal_path, exclusive=True).close()
    text = options_json({"language_config": {"languages": []}})
    template = _job_json("0" * 64, "JOBID", 60.0)
    root = str(watch_root)
    conn = sqlite3.connect(str(journal_path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN IMMEDIATE")
        now = time.time()
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) "
            "INSERT INTO sources (path, watch_root, state, size, mtime_ns, dev, inode, "
            "changed_at, sha256, options_json, content_key, audio_url, job_id, attempts, "
            "job_errors, output_base, engine, done_at, created_at, updated_at) "
            "SELECT ? || printf('/old%03d/talk%06d.wav', i / 1000, i), ?, 'done', 160044, "
            "1700000000000000000 + i, 2049, 10000000 + i, ?, printf('%064x', i), ?, "
            "'wf2-' || printf('%040x', i), 'https://api.gladia.io/file/' || printf('%032x', i), "
            "printf('%08x-0000-4000-8000-%012x', i, i), 0, 0, "
            "? || printf('/old%03d/talk%06d', i / 1000, i), 'gladia', ?, ?, ? FROM n",
            (count, root, root, now, text, root, now, now, now),
        )
        steps = [("", "pending", "seen"), *_STEPS]
        for from_state, to_state, reason in steps:
            conn.execute(
                "INSERT INTO events (source_id, at, from_state, to_state, actor, reason) "
                "SELECT id, ?, ?, ?, 'worker', ? FROM sources",
                (now, from_state or None, to_state, reason),
            )
        head, tail = template.split("JOBID", 1)
        conn.execute(
            "INSERT OR REPLACE INTO results (content_key, job_id, job_json, created_at) "
            "SELECT content_key, job_id, ? || job_id || ?, ? FROM sources "
            "ORDER BY id DESC LIMIT ?",
            (head, tail.replace("JOBID", "x"), now, -1 if results is None else results),
        )
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clean_stop', '1')")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def finished_files(paths: Iterable[Path], watch_root: Path) -> Iterator[Finished]:
    """Finished entries for real files (real stat and hash), with their outputs written."""
    import hashlib

    for path in paths:
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        path.with_suffix(".txt").write_text("A transcript.\n", encoding="utf-8")
        path.with_suffix(".json").write_text(_job_json(sha, str(uuid.uuid4()), 5.0),
                                             encoding="utf-8")
        yield Finished(path, watch_root, FileStat.of(path.stat()), sha)


def finished_rows(count: int, watch_root: Path) -> Iterator[Finished]:
    """Finished entries for files no longer on disk (a long-running install's history)."""
    import hashlib

    for i in range(count):
        path = watch_root / f"old{i // 1000:03d}" / f"talk{i:06d}.wav"
        sha = hashlib.sha256(str(path).encode()).hexdigest()
        yield Finished(path, watch_root, FileStat(160_044, 1_700_000_000_000_000_000 + i, 2049,
                                                  10_000_000 + i), sha)


def copy_in(sources: Sequence[Path], folder: Path) -> list[tuple[Path, float]]:
    """Copy recordings into a watched folder (open, write, close); returns (path, closed at)."""
    closed = []
    for src in sources:
        target = folder / src.name
        shutil.copyfile(src, target)
        closed.append((target, time.time()))
    return closed


# -- one batch through the daemon ----------------------------------------------------------------


@dataclass
class BatchRun:
    """How one client got through a batch of recordings."""

    name: str
    makespan: float
    per_file: list[float]
    gets: int
    requests: int
    errors: int = 0
    notes: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    cpu: float = float("nan")
    done: int = -1
    started: float = 0.0
    settled: float = float("nan")
    read_waits: list[float] = field(default_factory=list)
    #: Jobs created beyond one per content during the run (lost-response creates included):
    #: a job paid twice. Must be 0.
    duplicates: int = 0

    def efficiency(self, count: int, job_seconds: float, concurrency: int) -> float:
        """(N*T/C)/makespan: 1.0 is what the plan's concurrency allows at best."""
        return count * job_seconds / concurrency / self.makespan


def run_watcherd_batch(
    sim: GladiaSimulator, recordings: Sequence[Path], workdir: Path, *, concurrency: int,
    settle_seconds: float = 2.0, timeout: float = 1800.0, profile: Path | None = None,
    env: dict[str, str] | None = None, extra_config: str = "",
    seed_times: tuple[float, float] | None = None, tolerate_timeout: bool = False,
    queue_ahead: int | None = None,
) -> BatchRun:
    """Start the daemon on an empty folder, drop every recording in at once, time the batch.

    The clock starts when the daemon is ready and the first copy begins, and stops at the
    last transcript_written log line: settling, hashing, uploads, creates, polls and writes
    are all inside it, daemon start-up is not (the SDK side's interpreter start is not either).
    ``seed_times`` = (job seconds, audio seconds) gives the journal 5 learnt job times first
    (a daemon that has run before). With ``tolerate_timeout`` a batch that does not finish in
    ``timeout`` is returned with ``done`` < N and a NaN makespan instead of raising.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if seed_times is not None:
        seed_job_times(workdir / "journal.db", *seed_times)
    inbox = workdir / "inbox"
    inbox.mkdir()
    config = write_config(workdir / "config.toml", api_url=sim.base_url,
                          journal=workdir / "journal.db", watches=[inbox],
                          max_concurrent_jobs=concurrency, settle_seconds=settle_seconds,
                          queue_ahead=queue_ahead, extra=extra_config)
    before = len(sim.requests())
    creates_before = sim.creates_per_content()
    with Daemon(config, workdir, profile=profile, env=dict(env or {})) as daemon:
        daemon.wait_ready()
        started = time.time()
        closed = dict(copy_in(recordings, inbox))
        try:
            written = daemon.wait_events("transcript_written", len(recordings), timeout=timeout)
        except TimeoutError:
            if not tolerate_timeout:
                raise
            written = daemon.log.events("transcript_written")
        problems = daemon.problems()
        phases = batch_phases(daemon.log, closed)
        cpu = cpu_seconds(daemon.pid)
    requests = sim.requests()[before:]
    ends = {line["source"]: log_time(line) for line in written}
    per_file = [ends[str(path)] - at for path, at in closed.items() if str(path) in ends]
    complete = len(ends) >= len(recordings)
    run = BatchRun(
        name="watcherd",
        makespan=max(ends.values()) - started if complete else float("nan"),
        per_file=per_file, done=len(ends), started=started,
        gets=sum(1 for r in requests if r.endpoint == "get"), requests=len(requests),
        errors=len(problems), phases=phases, cpu=cpu if cpu is not None else float("nan"),
    )
    run.notes += [str(p.get("event", p))[:200] for p in problems[:3]]
    run.duplicates = duplicate_jobs(creates_before, sim.creates_per_content())
    # The daemon's own planned waits after a failed read: a retry within the step
    # (gladia_read_retry) or the step's wait once the retries are spent.
    for line in daemon.log.lines:
        error = str(line.get("error", ""))
        if line.get("event") == "gladia_read_retry" or (
                line.get("event") == "gladia_transient_error"
                and any(f"{word} {kind}" in error for word in ("the", "during")
                        for kind in ("get", "list"))):
            run.read_waits.append(float(line.get("retry_in", "nan")))
    uploads = [log_time(line) for line in daemon.log.events("upload_started")]
    if uploads and complete:
        # The same batch timed from the first upload: without the settle every watcher pays
        # once (the SDK is handed finished files), the rest is the pipeline's own.
        run.settled = max(ends.values()) - min(uploads)
    return run


def duplicate_jobs(before: Mapping[str, int], after: Mapping[str, int]) -> int:
    """Jobs created beyond one per content between two readings of the simulator's
    ``creates_per_content()``: each is a job paid twice."""
    return sum(max(0, (count - before.get(key, 0)) - 1) for key, count in after.items())


def slot_use(sim: GladiaSimulator, since: float, concurrency: int) -> tuple[float, float]:
    """The simulator's side of a batch: from its first job's start to its last one's end,
    the share of slot time spent processing, and the mean wait of a job in the queue."""
    jobs = [j for j in sim.schedule() if j[0] >= since]
    if not jobs:
        return float("nan"), float("nan")
    span = max(end for _, _, end in jobs) - min(start for _, start, _ in jobs)
    busy = sum(end - start for _, start, end in jobs)
    return busy / (concurrency * span), sum(start - made for made, start, _ in jobs) / len(jobs)


@dataclass(frozen=True)
class PollFigures:
    """How soon a batch's ended jobs were seen, and what their slots waited for.

    ``late``: per job, its first GET at or after its end minus that end (a job done at
    Gladia but not yet seen still holds one of the client's in-flight places). ``handoff``:
    per slot hand-off (the k-th start after the first C), that start minus the end that
    freed the slot; ``starved``: the share of hand-offs whose next job was not even created
    when the slot freed (the queue ahead had run dry).
    """

    late: list[float]
    handoff: list[float]
    starved: float


def poll_figures(sim: GladiaSimulator, since: float, concurrency: int) -> PollFigures:
    """:class:`PollFigures` of the jobs the simulator created after ``since`` (wall clock)."""
    jobs = [j for j in sim.timeline() if j[1] >= since]
    gets: dict[str, list[float]] = {}
    for r in sim.requests():
        if r.endpoint == "get" and r.time >= since and r.status == 200:
            gets.setdefault(r.path.rsplit("/", 1)[-1], []).append(r.time)
    late = []
    for job_id, _, _, end in jobs:
        after = [t for t in gets.get(job_id, []) if t >= end]
        if after:
            late.append(min(after) - end)
    starts = sorted((start, made) for _, made, start, _ in jobs)
    ends = sorted(end for *_, end in jobs)
    handoff, starved = [], 0
    for k in range(concurrency, len(starts)):
        start, made = starts[k]
        freed = ends[k - concurrency]
        handoff.append(max(0.0, start - freed))
        starved += made > freed
    return PollFigures(late, handoff, starved / len(handoff) if handoff else float("nan"))


def print_poll_figures(figures: PollFigures) -> None:
    """The lines bench_throughput and bench_sdk print for :func:`poll_figures`."""
    if figures.late:
        print(f"  job seen done   {statistics.fmean(figures.late):.2f} s after its end on "
              f"average (p95 {percentile(figures.late, 95):.2f} s) over {len(figures.late)} jobs")
    if figures.handoff:
        print(f"  slot hand-off   {statistics.fmean(figures.handoff):.2f} s from a slot freeing "
              f"to the next start on average (p95 {percentile(figures.handoff, 95):.2f} s); "
              f"{figures.starved:.0%} with the next job not yet created", flush=True)


def batch_phases(log: LogTail, closed: dict[Path, float]) -> dict[str, float]:
    """Where a batch's time went, averaged over sources, from the daemon's own log lines.

    drop_to_upload: file closed -> upload_started (settle, hash, waiting for a job slot);
    upload: upload_started -> uploaded; create: uploaded -> job_created (the duplicate-job
    lookup and the create); job_to_written: job_created -> transcript_written (the job itself
    plus however late the poll that saw it finished came); slot_gap: a transcript_written ->
    the next upload_started (how long a freed slot stays empty).
    """
    at: dict[str, dict[str, float]] = {}
    for name in ("upload_started", "uploaded", "job_created", "transcript_written"):
        for line in log.events(name):
            at.setdefault(name, {})[str(line.get("source"))] = log_time(line)

    def mean_gap(first: dict[str, float], second: dict[str, float]) -> float:
        gaps = [second[k] - first[k] for k in second if k in first]
        return sum(gaps) / len(gaps) if gaps else float("nan")

    drops = {str(path): t for path, t in closed.items()}
    phases = {
        "drop_to_upload": mean_gap(drops, at.get("upload_started", {})),
        "upload": mean_gap(at.get("upload_started", {}), at.get("uploaded", {})),
        "create": mean_gap(at.get("uploaded", {}), at.get("job_created", {})),
        "job_to_written": mean_gap(at.get("job_created", {}), at.get("transcript_written", {})),
    }
    starts = sorted(at.get("upload_started", {}).values())
    ends = sorted(at.get("transcript_written", {}).values())
    gaps = []
    for end in ends:
        later = [s for s in starts if s >= end]
        if later:
            gaps.append(later[0] - end)
    phases["slot_gap"] = sum(gaps) / len(gaps) if gaps else float("nan")
    return phases


def print_phases(phases: dict[str, float], job_seconds: float) -> None:
    """Print a batch's phases. With jobs queued ahead, job created -> transcript holds the
    wait in Gladia's queue as well: the poll lateness is :func:`poll_figures`' "job seen
    done" (this line read it as lateness before queue ahead, and over-stated it)."""
    print("where the time went (means per file, from the daemon's log):")
    print(f"  drop -> upload started     {phases['drop_to_upload']:6.2f} s "
          "(settle + hash + waiting for a free job slot)")
    print(f"  upload                     {phases['upload']:6.2f} s")
    print(f"  uploaded -> job created    {phases['create']:6.2f} s (duplicate lookup + create)")
    print(f"  job created -> transcript  {phases['job_to_written']:6.2f} s "
          f"(T = {job_seconds:g} s; the other {phases['job_to_written'] - job_seconds:.2f} s are "
          "the wait in Gladia's queue, the poll coming late and the writing)")
    gap = phases["slot_gap"]
    if math.isnan(gap):
        print("  freed slot -> next upload     n/a (no freed slot was used again)")
    else:
        print(f"  freed slot -> next upload  {gap:6.2f} s")
