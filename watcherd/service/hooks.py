"""User hooks run after a source is done or failed: argv lists, bounded, never a shell."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from watcherd.display import printable

# Kept from a hook's combined stdout/stderr, for the log line that reports it.
HOOK_OUTPUT_LIMIT = 4096
# After SIGTERM, a timed-out hook gets this long before SIGKILL.
HOOK_KILL_GRACE = 2.0
# After the hook exits, how long to keep reading output a background child still writes.
_HOOK_DRAIN_SECONDS = 1.0
# Never handed to hooks: the service manager's channels and the API key.
_HOOK_ENV_DROPPED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "GLADIA_API_KEY")
# The variables hook_env may set. An inherited copy (the daemon itself started by a hook) is
# dropped, so a hook never reads, say, a stale WATCHERD_OUTPUTS that this run left out.
_HOOK_VARS = re.compile(
    r"WATCHERD_(SOURCE|STATE|OUTPUTS|OUTPUTS_JSON|OUTPUT_COUNT|OUTPUT_[0-9]+|JOB_ID|ERROR)"
)
# Linux refuses to start a program when one environment string passes 128 KiB (E2BIG); an
# error text is cut well below that (paths cannot get near it: 4096 bytes at most).
_HOOK_TEXT_LIMIT = 4000


@dataclass(frozen=True)
class HookResult:
    """What happened when a hook ran: exit status, timeout, output tail, or why it did not run."""

    command: tuple[str, ...]
    returncode: int | None
    timed_out: bool
    output: str
    duration: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the hook ran to completion and exited 0."""
        return self.error is None and not self.timed_out and self.returncode == 0

    def describe(self) -> str:
        """One line for the log: how the hook ended."""
        name = printable(self.command[0]) if self.command else "(empty command)"
        if self.error is not None:
            return f"hook {name} did not run: {self.error}"
        if self.timed_out:
            return f"hook {name} timed out after {self.duration:.1f}s and was killed"
        if self.returncode is not None and self.returncode < 0:
            try:
                how = signal.Signals(-self.returncode).name
            except ValueError:
                how = f"signal {-self.returncode}"
            return f"hook {name} was killed by {how}"
        return f"hook {name} exited with status {self.returncode}"


def hook_env(
    source: Path,
    state: str,
    outputs: Sequence[Path] = (),
    job_id: str | None = None,
    error: str | None = None,
) -> dict[str, str]:
    """The WATCHERD_* variables a hook gets for one finished (or failed) source.

    Paths are exact: the hook receives the raw bytes of the name (a name that is not UTF-8
    travels as Python's surrogate escapes, which become those bytes again in the child's
    environment). The list of outputs is unambiguous for any name:

    - ``WATCHERD_OUTPUT_COUNT`` and ``WATCHERD_OUTPUT_1`` .. ``WATCHERD_OUTPUT_<COUNT>``: one
      exact path each;
    - ``WATCHERD_OUTPUTS_JSON``: a JSON array of the paths (ASCII; a byte that is not UTF-8
      appears as its surrogate escape ``\\udcXX``, which Python's json and ``os.fsencode``
      turn back into the byte);
    - ``WATCHERD_OUTPUTS``: the paths joined with ``os.pathsep`` (":"), kept for existing
      hooks, and set only when no path contains ":" (otherwise splitting it would be wrong).

    ``WATCHERD_JOB_ID`` and ``WATCHERD_ERROR`` are texts for people: one line, control
    characters escaped (see :func:`watcherd.display.printable`), the error cut at 4000 chars.
    """
    paths = [str(p) for p in outputs]
    error_text = printable(error or "")
    if len(error_text) > _HOOK_TEXT_LIMIT:
        error_text = error_text[: _HOOK_TEXT_LIMIT - 1] + "\u2026"
    env = {
        "WATCHERD_SOURCE": str(source),
        "WATCHERD_STATE": printable(state),
        "WATCHERD_OUTPUT_COUNT": str(len(paths)),
        "WATCHERD_OUTPUTS_JSON": json.dumps(paths, ensure_ascii=True),
        "WATCHERD_JOB_ID": printable(job_id or "")[:_HOOK_TEXT_LIMIT],
        "WATCHERD_ERROR": error_text,
    }
    env.update({f"WATCHERD_OUTPUT_{n}": path for n, path in enumerate(paths, start=1)})
    if not any(os.pathsep in path for path in paths):
        env["WATCHERD_OUTPUTS"] = os.pathsep.join(paths)
    return env


def _child_env(env: Mapping[str, str]) -> dict[str, str]:
    child = {
        k: v for k, v in os.environ.items()
        if k not in _HOOK_ENV_DROPPED and not _HOOK_VARS.fullmatch(k)
    }
    child.update(env)
    return child


class _Tail(asyncio.Protocol):
    """Keeps the last ``limit`` bytes a hook writes; ``closed`` is set at end of output."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _signal_group(pid: int, signum: int) -> None:
    # The hook leads its own process group, so its children go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


async def run_hook(command: Sequence[str], env: Mapping[str, str], timeout: float) -> HookResult:
    """Run a hook (argv, no shell) with ``env`` added; kill it after ``timeout`` seconds.

    Never raises for a failing, missing or hanging hook: the result says what happened.
    """
    argv = tuple(command)
    started = time.monotonic()
    if not argv:
        return HookResult(argv, None, False, "", 0.0, error="the hook command is empty")
    # Our own pipe (not PIPE): a child the hook leaves running may hold its end open, and we
    # must be able to stop reading and close ours without waiting for that child.
    read_fd, write_fd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            env=_child_env(env),
            start_new_session=True,
        )
    except OSError as exc:
        os.close(read_fd)
        return HookResult(argv, None, False, "", time.monotonic() - started,
                          error=f"{exc.strerror or exc}: {printable(argv[0])}")
    except ValueError as exc:
        # An argument or variable that cannot be passed to a program at all: a NUL byte, or
        # text no bytes decode to. Reported like a hook that could not start.
        os.close(read_fd)
        return HookResult(argv, None, False, "", time.monotonic() - started,
                          error=f"cannot pass {printable(str(exc))}: {printable(argv[0])}")
    finally:
        os.close(write_fd)
    tail = _Tail(HOOK_OUTPUT_LIMIT)
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: tail, os.fdopen(read_fd, "rb", buffering=0)
    )
    timed_out = False
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            timed_out = True
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), HOOK_KILL_GRACE)
            except TimeoutError:
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
            # Children that ignored SIGTERM would live on, holding the pipe.
            _signal_group(proc.pid, signal.SIGKILL)
        # Output still in the pipe arrives quickly; a lingering child does not hold us up.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(tail.closed), _HOOK_DRAIN_SECONDS)
    except asyncio.CancelledError:
        _signal_group(proc.pid, signal.SIGKILL)
        raise
    finally:
        transport.close()
    return HookResult(
        command=argv,
        returncode=proc.returncode,
        timed_out=timed_out,
        output=tail.data.decode("utf-8", errors="replace"),
        duration=time.monotonic() - started,
    )
