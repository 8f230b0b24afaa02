"""Running as a service: the sd_notify protocol, systemd units and launchd plists.

Also the two things a service manager's neighbours consume: Prometheus metrics for
node_exporter's textfile collector, and user hooks run after a source finishes.

The notify protocol is written directly on ``$NOTIFY_SOCKET`` (an AF_UNIX datagram socket, a
path or an abstract ``@name``), so watcherd needs no libsystemd and works the same under any
systemd version that knows ``Type=notify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import plistlib
import re
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from watcherd.display import printable
from watcherd.journal import STATES, Journal
from watcherd.outputs import atomic_write

# -- sd_notify -------------------------------------------------------------------------------

# A datagram to systemd is tiny; if it cannot go out in this long, the manager is stuck and
# waiting longer would only stall the daemon's loop.
_NOTIFY_SEND_TIMEOUT = 2.0


def _notify_address(value: str) -> str | None:
    """The socket address named by ``$NOTIFY_SOCKET``, or None when it is unset or unusable."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        # Abstract namespace: the kernel name starts with a NUL byte instead of "@".
        return "\0" + value[1:]
    # Unset, relative, or a transport we do not speak (vsock:...): notifying is off.
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, or None when the watchdog is not for us."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid_text = env.get("WATCHDOG_PID", "")
    if pid_text:
        try:
            pid = int(pid_text)
        except ValueError:
            return None
        # The variable was meant for another process (we were started by the service's
        # main process, e.g. as a hook): pinging would be a lie about the real main process.
        if pid != os.getpid():
            return None
    # Pinging at half the timeout is what sd_watchdog_enabled(3) recommends.
    return usec / 2 / 1_000_000


def _one_line(text: str) -> str:
    # The protocol is newline-separated KEY=VALUE; a newline inside a value would forge a key.
    return " ".join(text.splitlines())


class Notifier:
    """Tells systemd how the daemon is doing (Type=notify); does nothing outside systemd."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = _notify_address(env.get("NOTIFY_SOCKET", ""))
        self.enabled: bool = self._address is not None
        self.watchdog_interval: float | None = (
            _watchdog_interval(env) if self.enabled else None
        )

    def __repr__(self) -> str:
        return f"Notifier(enabled={self.enabled}, watchdog_interval={self.watchdog_interval})"

    def send(self, **fields: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; never raises, False if it could not."""
        if self._address is None or not fields:
            return False
        message = "\n".join(f"{key}={_one_line(value)}" for key, value in fields.items())
        try:
            # Python sockets are not inherited by children (PEP 446): no SOCK_CLOEXEC needed.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(_NOTIFY_SEND_TIMEOUT)
                sock.sendto(message.encode("utf-8"), self._address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        """READY=1: the journal is open and the watches are up (and, optionally, a status)."""
        if status is None:
            self.send(READY="1")
        else:
            self.send(READY="1", STATUS=status)

    def status(self, text: str) -> None:
        """STATUS=: the one line ``systemctl status`` shows."""
        self.send(STATUS=text)

    def stopping(self) -> None:
        """STOPPING=1: a graceful shutdown has begun."""
        self.send(STOPPING="1")

    def reloading(self) -> None:
        """RELOADING=1 with MONOTONIC_USEC (newer systemd wants both); send ready() after."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(RELOADING="1", MONOTONIC_USEC=str(now_usec))

    def watchdog(self) -> None:
        """WATCHDOG=1, when systemd asked this process for watchdog pings."""
        if self.watchdog_interval is not None:
            self.send(WATCHDOG="1")

    def extend_timeout(self, seconds: float) -> None:
        """EXTEND_TIMEOUT_USEC=: ask for more time to start or stop (a long drain)."""
        self.send(EXTEND_TIMEOUT_USEC=str(max(0, round(seconds * 1_000_000))))

    async def run_watchdog(self) -> None:
        """Ping the watchdog forever from the event loop (so a stuck loop stops the pings).

        Returns at once when there is no watchdog; cancel the task to stop it.
        """
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)


def status_text(counts: Mapping[str, int]) -> str:
    """A STATUS= line from counts by state: the non-zero states in pipeline order."""
    parts = [f"{state} {counts[state]}" for state in STATES if counts.get(state)]
    return ", ".join(parts) if parts else "no files yet"


# -- systemd units ---------------------------------------------------------------------------

UNIT_NAME = "watcherd.service"
CREDENTIAL_NAME = "gladia"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_KEY_FILE = Path("/etc/watcherd/gladia.key")
# Where systemd puts LoadCredential= files for the system unit (what %d expands to).
CREDENTIALS_DIR = Path("/run/credentials") / UNIT_NAME
# ProtectHome= hides these; anything the service needs from them must stay readable.
_HOME_TREES = (Path("/home"), Path("/root"), Path("/run/user"))
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def _unit_word(word: str, *, in_command: bool) -> str:
    """One word of a unit setting, escaped so systemd reads back exactly ``word``."""
    # "%" starts a specifier everywhere; "$" starts a variable only in command lines.
    text = word.replace("%", "%%")
    if in_command:
        text = text.replace("$", "$$")
    if _SAFE_WORD.match(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _command_line(command: Sequence[str]) -> str:
    return " ".join(_unit_word(word, in_command=True) for word in command)


def _under(path: Path, tree: Path) -> bool:
    return path == tree or tree in path.parents


def _protect_home(paths: Sequence[Path]) -> str:
    """``read-only`` when the service needs something under a home tree, else ``yes``."""
    if any(_under(path, tree) for path in paths for tree in _HOME_TREES):
        return "read-only"
    return "yes"


_UNIT_HEADER = """\
# watcherd {scope} service. `watcherd service install --{scope}` writes this file for an
# installation{rw_hint}.
[Unit]
Description=watcherd: transcribe recordings dropped into watched folders
"""

_COMMON_SERVICE = """\
[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5s
# Exit code 2 is a bad config or bad usage: restarting cannot fix it.
RestartPreventExitStatus=2
# The daemon drains on SIGTERM; the journal is consistent at every commit, so a kill after
# this long loses nothing. Hooks get the same grace (KillMode=mixed).
TimeoutStopSec=90s
KillMode=mixed
# watcherd pings at half this interval from its event loop.
WatchdogSec=2min
Environment=PYTHONUNBUFFERED=1
# The journal goes to StateDirectory= and the local model cache to CacheDirectory=.
Environment=XDG_STATE_HOME=%S
Environment=XDG_CACHE_HOME=%C
StateDirectory=watcherd
CacheDirectory=watcherd
"""

_CREDENTIAL_ON = """\
# The API key, passed without touching the config file: set
#   api_key_file = "{credentials_dir}/{name}"
LoadCredential={name}:{source}
"""

_CREDENTIAL_OFF = """\
# To keep the API key out of the config file: put it alone in {source} (chmod 600),
# uncomment the next line and set api_key_file = "{credentials_dir}/{name}".
#LoadCredential={name}:{source}
"""

_SYSTEM_HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome={protect_home}
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
CapabilityBoundingSet=
UMask=0022
"""

# User managers can only sandbox mounts through user namespaces, which many systems disable;
# these settings need none of that.
_USER_HARDENING = """\
NoNewPrivileges=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
"""


def render_systemd_unit(
    command: Sequence[str],
    *,
    user: bool,
    writable_paths: Sequence[Path] = (),
    run_as: str | None = None,
    credential: Path | None = None,
) -> str:
    """The text of ``watcherd.service`` for a user manager or the system manager.

    ``command`` is the absolute ExecStart argv. For a system unit, ``writable_paths`` (the
    watch roots, and the journal's folder when it is not in StateDirectory=) become
    ReadWritePaths=, ``run_as`` becomes User=/Group=, and ``credential`` is the file systemd
    passes to the service as the credential ``gladia``.
    """
    if not command or not os.path.isabs(command[0]):
        raise ValueError("the service command must start with an absolute path")
    for path in writable_paths:
        if not path.is_absolute():
            raise ValueError(f"writable path {path} is not absolute")
    exec_start = _command_line(command)
    if user:
        return "".join([
            _UNIT_HEADER.format(scope="user", rw_hint=""),
            "StartLimitIntervalSec=10min\nStartLimitBurst=5\n\n",
            _COMMON_SERVICE.format(exec_start=exec_start),
            _USER_HARDENING,
            "\n[Install]\nWantedBy=default.target\n",
        ])
    unit = [_UNIT_HEADER.format(
        scope="system",
        rw_hint="; run it again after changing the watched folders:\n"
        "# ReadWritePaths= must list each one",
    )]
    unit.append("Wants=network-online.target\nAfter=network-online.target\n")
    for path in writable_paths:
        unit.append(f"RequiresMountsFor={_unit_word(str(path), in_command=False)}\n")
    unit.append("StartLimitIntervalSec=10min\nStartLimitBurst=5\n\n")
    unit.append(_COMMON_SERVICE.format(exec_start=exec_start))
    if run_as:
        unit.append(f"User={_unit_word(run_as, in_command=False)}\n")
        unit.append(f"Group={_unit_word(run_as, in_command=False)}\n")
    template = _CREDENTIAL_OFF if credential is None else _CREDENTIAL_ON
    unit.append(template.format(
        name=CREDENTIAL_NAME,
        source=_unit_word(str(credential or DEFAULT_KEY_FILE), in_command=False),
        credentials_dir=CREDENTIALS_DIR,
    ))
    readable = [*writable_paths, *(Path(w) for w in command if os.path.isabs(w))]
    unit.append(_SYSTEM_HARDENING.format(protect_home=_protect_home(readable)))
    if writable_paths:
        # "-": a root that is missing (unmounted) must not keep the whole service from
        # starting; the watcher reports it and retries.
        unit.extend(
            f"ReadWritePaths={_unit_word(f'-{path}', in_command=False)}\n"
            for path in writable_paths
        )
    else:
        unit.append("# Each watched folder must be writable; add one line per [[watch]] path\n"
                    "# (and ProtectHome=read-only for folders under /home):\n"
                    "#ReadWritePaths=-/srv/inbox\n")
    unit.append("\n[Install]\nWantedBy=multi-user.target\n")
    return "".join(unit)


# The units shipped in the source tree's systemd/ folder, for packagers: the console script,
# the system config file, and the key file as a credential.
PACKAGED_COMMAND = "/usr/bin/watcherd"


def packaged_units() -> dict[str, str]:
    """The files of the source tree's ``systemd/`` folder, by name, as this module renders them."""
    return {
        UNIT_NAME: render_systemd_unit(
            [PACKAGED_COMMAND, "run", "--config", "/etc/watcherd/config.toml"],
            user=False, run_as="watcherd", credential=DEFAULT_KEY_FILE,
        ),
        "watcherd-user.service": render_systemd_unit([PACKAGED_COMMAND, "run"], user=True),
    }


def user_unit_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where a user's systemd units live: ``$XDG_CONFIG_HOME/systemd/user``."""
    env = os.environ if env is None else env
    config_home = env.get("XDG_CONFIG_HOME", "")
    base = Path(config_home) if os.path.isabs(config_home) else Path.home() / ".config"
    return base / "systemd" / "user"


# -- launchd ---------------------------------------------------------------------------------

LAUNCHD_LABEL = "io.watcherd.agent"
# launchd relaunches a crashed agent at most this often.
LAUNCHD_THROTTLE_SECONDS = 10
# Seconds between SIGTERM and SIGKILL, the same drain budget as the systemd unit.
LAUNCHD_EXIT_TIMEOUT = 90


def launch_agent_path(label: str = LAUNCHD_LABEL) -> Path:
    """Where the per-user LaunchAgent plist goes: ``~/Library/LaunchAgents/LABEL.plist``."""
    return Path.home() / "Library" / "LaunchAgents" / f"{label}.plist"


def launchd_log_dir() -> Path:
    """Where the agent's stdout/stderr go: ``~/Library/Logs/watcherd``."""
    return Path.home() / "Library" / "Logs" / "watcherd"


def render_launchd_plist(
    command: Sequence[str], *, log_dir: Path, label: str = LAUNCHD_LABEL
) -> bytes:
    """The LaunchAgent plist (XML) that runs ``command`` at login and again after a crash."""
    if not command or not os.path.isabs(command[0]):
        raise ValueError("the agent command must start with an absolute path")
    if not log_dir.is_absolute():
        raise ValueError(f"log folder {log_dir} is not absolute (launchd needs absolute paths)")
    agent = {
        "Label": label,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        # Relaunch only after a crash or a failing exit; a clean stop stays stopped.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": LAUNCHD_THROTTLE_SECONDS,
        "ExitTimeOut": LAUNCHD_EXIT_TIMEOUT,
        "ProcessType": "Background",
        "StandardOutPath": str(log_dir / "watcherd.log"),
        "StandardErrorPath": str(log_dir / "watcherd.err.log"),
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
    }
    return plistlib.dumps(agent, fmt=plistlib.FMT_XML, sort_keys=False)


# -- metrics (Prometheus text format) --------------------------------------------------------


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _family(
    name: str, kind: str, help_text: str, samples: Sequence[tuple[Mapping[str, str], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        label_text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
        braces = f"{{{label_text}}}" if label_text else ""
        lines.append(f"{name}{braces} {_sample_value(value)}")
    return lines


def render_metrics(
    journal: Journal,
    *,
    in_flight: int,
    upload_bytes: int,
    audio_seconds: float,
    errors_by_class: Mapping[str, int],
    last_success: float | None,
) -> str:
    """The daemon's metrics in the Prometheus text exposition format (version 0.0.4)."""
    counts = journal.counts()
    lines: list[str] = []
    lines += _family(
        "watcherd_sources", "gauge", "Sources in the journal, by state.",
        [({"state": state}, counts.get(state, 0)) for state in STATES],
    )
    lines += _family(
        "watcherd_jobs_in_flight", "gauge", "Remote jobs created and not yet finished.",
        [({}, in_flight)],
    )
    lines += _family(
        "watcherd_upload_bytes_total", "counter", "Bytes uploaded to Gladia since start.",
        [({}, upload_bytes)],
    )
    lines += _family(
        "watcherd_audio_seconds_total", "counter", "Seconds of audio transcribed since start.",
        [({}, audio_seconds)],
    )
    lines += _family(
        "watcherd_errors_total", "counter", "Errors since start, by class.",
        [({"class": name}, errors_by_class[name]) for name in sorted(errors_by_class)],
    )
    if last_success is not None:
        lines += _family(
            "watcherd_last_success_timestamp_seconds", "gauge",
            "Unix time of the last source transcribed.", [({}, last_success)],
        )
    return "\n".join(lines) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Replace ``path`` atomically, so node_exporter's textfile collector never reads half."""
    # The temp name starts with "." and does not end in ".prom": the collector skips it.
    atomic_write(path, text.encode("utf-8"))


# -- hooks -----------------------------------------------------------------------------------

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
