"""GET /healthz: is the daemon's loop turning and can the journal be written?

The page is served by the daemon's own event loop, so an answer at all means the loop runs;
a heartbeat also tells whether it was held up lately (a step that blocked it stalls every
file). The journal check is cheap and never touches SQLite's write lock: the journal file and
its folder are writable by this process, the file system is not read-only, and it has room.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

# How often the page checks that the loop answers: rarely, so an idle daemon (a laptop, a NAS
# disk) is not woken for it; a loop blocked longer than MAX_LAG_SECONDS is still caught.
_HEARTBEAT_SECONDS = 5.0
# The loop is unhealthy when a heartbeat's sleep came back this much later than asked.
MAX_LAG_SECONDS = 10.0
# Below this much free space, the journal's next write may fail.
_MIN_FREE_BYTES = 1024 * 1024
_CHECK_TIMEOUT = 3.0


@dataclass(frozen=True)
class Health:
    """The verdict: healthy or not, and why not (no paths, no secrets: it is unauthenticated)."""

    ok: bool
    reason: str = "ok"


class Heartbeat:
    """Measures how late the event loop wakes up; :meth:`run` until cancelled."""

    def __init__(self) -> None:
        self.lag = 0.0
        self.last_beat = time.monotonic()

    async def run(self) -> None:
        """Sleep HEARTBEAT_SECONDS at a time and record how late each wake-up was."""
        while True:
            asked = time.monotonic()
            await asyncio.sleep(_HEARTBEAT_SECONDS)
            self.last_beat = time.monotonic()
            self.lag = max(0.0, self.last_beat - asked - _HEARTBEAT_SECONDS)


def journal_problem(path: Path) -> str | None:
    """Why the journal at ``path`` cannot be written now, or None when it can."""
    folder = path.parent
    if not folder.is_dir():
        return "the journal's folder is missing"
    if path.exists() and not os.access(path, os.W_OK):
        return "the journal file is not writable"
    if not os.access(folder, os.W_OK):
        return "the journal's folder is not writable"
    try:
        st = os.statvfs(folder)
    except OSError as exc:
        return f"the journal's file system cannot be checked ({exc.strerror or exc})"
    if st.f_flag & os.ST_RDONLY:
        return "the journal's file system is read-only"
    if st.f_bavail * st.f_frsize < _MIN_FREE_BYTES:
        return "the journal's file system is full"
    return None


async def check(journal_path: Path | str, heartbeat: Heartbeat | None) -> Health:
    """The health of the daemon serving this request.

    A journal in a database (a URL) is checked by the daemon's own queries failing, not here.
    """
    if heartbeat is not None:
        quiet = time.monotonic() - heartbeat.last_beat
        if heartbeat.lag > MAX_LAG_SECONDS or quiet > MAX_LAG_SECONDS + _HEARTBEAT_SECONDS:
            lag = max(heartbeat.lag, quiet - _HEARTBEAT_SECONDS)
            return Health(False, f"the event loop was blocked for {lag:.0f} s")
    problem: str | None = "the journal check did not finish in time (a hung file system?)"
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_CHECK_TIMEOUT):
            problem = (await asyncio.to_thread(journal_problem, journal_path)
                       if isinstance(journal_path, Path) else None)
    return Health(False, problem) if problem else Health(True)
