"""The sd_notify protocol, written directly on ``$NOTIFY_SOCKET`` (no libsystemd needed).

An AF_UNIX datagram socket, a path or an abstract ``@name``: READY, STATUS, WATCHDOG,
STOPPING and RELOADING work the same under any systemd that knows ``Type=notify``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping

from watcherd.journal import STATES

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


