"""Whether the daemon serves its status page, said in a small file beside the journal.

`watcherd status` and `watcherd doctor` run as other processes: this file is how they learn
that the page is up (and where) or that its address was taken, without probing ports.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from watcherd.outputs import atomic_write

__all__ = ["PageState", "clear_state", "read_state", "state_path", "write_state"]


@dataclass(frozen=True)
class PageState:
    """What the running daemon (``pid``) said about its page."""

    listen: str
    serving: bool
    pid: int

    @property
    def url(self) -> str:
        """The page's address for a browser."""
        return f"http://{self.listen}/"

    def describe(self) -> str:
        """One line for `status` and `doctor`."""
        if self.serving:
            return f"status page: {self.url}"
        return (f"status page: not served: {self.listen} was taken (another daemon or program "
                "uses it); set [http] listen to a free address, or \"\" to turn it off")


def state_path(journal_path: Path) -> Path:
    """Where the daemon of this journal writes its page state."""
    return journal_path.with_name(journal_path.name + ".http.json")


def write_state(journal_path: Path, listen: str, serving: bool) -> None:
    """Record the page state (best effort: a read-only folder only loses this hint)."""
    data = json.dumps({"listen": listen, "serving": serving, "pid": os.getpid()}).encode()
    with contextlib.suppress(OSError):
        atomic_write(state_path(journal_path), data + b"\n")


def clear_state(journal_path: Path) -> None:
    """Forget the page state when the daemon stops."""
    with contextlib.suppress(OSError):
        state_path(journal_path).unlink()


def read_state(journal_path: Path) -> PageState | None:
    """The page state of a daemon that is still running, or None."""
    try:
        raw = json.loads(state_path(journal_path).read_text(encoding="utf-8"))
        state = PageState(str(raw["listen"]), bool(raw["serving"]), int(raw["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(state.pid, 0)
    except ProcessLookupError:
        return None  # left by a daemon that was killed
    except PermissionError:
        pass  # alive, another user's
    return state
