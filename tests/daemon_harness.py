"""Run the real ``watcherd`` as a subprocess against the simulator, and wait on conditions."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# Short waits so tests move quickly; production keeps the documented defaults.
#: The retry policy daemons under test run with: short waits, the production budgets.
FAST_RETRY = {
    "poll_first_seconds": 0.1,
    "poll_max_seconds": 0.5,
    "base_seconds": 0.2,
    "max_seconds": 2,
    "list_lag_seconds": 1.0,
}


def wait_until(
    condition: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.1,
    message: str = "condition",
) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def free_port() -> int:
    """A port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def toml_value(value: Any) -> str:
    """Render a Python value as TOML (enough for test configs)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def write_config(
    path: Path,
    *,
    api_url: str | None,
    api_key: str | None,
    journal: Path,
    watches: Iterable[Path],
    settle_seconds: float = 0.3,
    outputs: Iterable[str] = ("txt", "json"),
    max_concurrent_jobs: int = 3,
    queue_ahead: int | None = None,
    retry: Mapping[str, float] | None = None,
    options: Mapping[str, Any] | None = None,
    extra: str = "",
    http_listen: str = "",
    journal_url: str | None = None,
    node: str | None = None,
    lease_seconds: float | None = None,
    watch_ids: Iterable[str] | None = None,
    gladia: Mapping[str, Any] | None = None,
) -> Path:
    """Write a watcherd config file for a test and return its path.

    The status page is off unless ``http_listen`` names an address: test daemons run side by
    side and must not compete for the default port. ``retry`` overrides FAST_RETRY's keys.
    """
    lines = ["[gladia]"]
    if api_key is not None:
        lines.append(f"api_key = {toml_value(api_key)}")
    if api_url is not None:
        lines.append(f"api_url = {toml_value(api_url)}")
    lines.append(f"max_concurrent_jobs = {max_concurrent_jobs}")
    lines += [f"{k} = {toml_value(v)}" for k, v in (gladia or {}).items()]
    if queue_ahead is not None:
        lines.append(f"queue_ahead = {queue_ahead}")
    # A shared PostgreSQL journal (several nodes) replaces the SQLite file: the same keys as
    # the README's "Several machines" example.
    lines += ["", "[journal]"]
    if journal_url is not None:
        lines.append(f"url = {toml_value(journal_url)}")
        if lease_seconds is not None:
            lines.append(f"lease_seconds = {lease_seconds}")
    else:
        lines.append(f"path = {toml_value(journal)}")
    if node is not None:
        lines += ["", "[node]", f"name = {toml_value(node)}"]
    lines += ["", "[log]",
              'format = "json"', 'level = "debug"', "", "[http]",
              f"listen = {toml_value(http_listen)}", "", "[retry]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in {**FAST_RETRY, **(retry or {})}.items()]
    lines += ["", "[defaults]",
              f"settle_seconds = {settle_seconds}", f"outputs = {toml_value(list(outputs))}"]
    if options:
        lines += ["", "[defaults.options]"]
        lines += [f"{k} = {toml_value(v)}" for k, v in options.items()]
    ids = list(watch_ids) if watch_ids is not None else None
    for index, watch in enumerate(watches):
        lines += ["", "[[watch]]", f"path = {toml_value(watch)}"]
        if ids is not None:
            lines.append(f"id = {toml_value(ids[index])}")
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def watcherd(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120.0
             ) -> subprocess.CompletedProcess[str]:
    """Run one ``watcherd`` command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "watcherd", *args], capture_output=True, text=True,
        timeout=timeout, env=_env(env),
    )


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHERD_", "GLADIA_"))}
    env.update(extra or {})
    return env


class DaemonProcess:
    """``watcherd run`` as a real subprocess, with its log captured to a file."""

    def __init__(self, config: Path, log_path: Path, *, env: Mapping[str, str] | None = None,
                 args: Sequence[str] = ()) -> None:
        self.config = config
        self.log_path = log_path
        self.env = env
        # More `watcherd run` arguments (--watch DIR ...).
        self.args = tuple(args)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        """Start the daemon; its output is appended to the log file."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "watcherd", "run", "--config", str(self.config), *self.args],
            stdout=log, stderr=subprocess.STDOUT, env=_env(self.env),
        )
        log.close()
        return self

    def log_lines(self) -> list[dict[str, Any]]:
        """Every JSON log line so far (non-JSON lines are returned as {"raw": line})."""
        if not self.log_path.exists():
            return []
        lines = []
        for raw in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                lines.append({"raw": raw})
        return lines

    def wait_for_event(self, event: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until the daemon logs ``event``; return that log line."""
        def found() -> dict[str, Any] | None:
            self._check_alive()
            return next((line for line in self.log_lines() if line.get("event") == event), None)
        return wait_until(found, timeout=timeout, message=f"log event {event!r}")

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"watcherd exited with {self.proc.returncode}:\n{self.log_path.read_text()}"
            )

    def kill(self) -> None:
        """SIGKILL: the hardest crash there is."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, *, timeout: float = 15.0) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Make sure the process is gone (fixture cleanup)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def status(self) -> list[dict[str, Any]]:
        """``watcherd status --json`` for this daemon's config."""
        result = watcherd("status", "--json", "--config", str(self.config), env=self.env)
        assert result.returncode == 0, result.stderr
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows

    def tracebacks(self) -> list[str]:
        """Log lines that carry a Python traceback (there should be none)."""
        return [str(line) for line in self.log_lines()
                if "Traceback" in json.dumps(line) or line.get("event") == "worker_bug"]
