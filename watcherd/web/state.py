"""Whether the daemon serves its status page, said in a small file beside the journal.

`watcherd status` and `watcherd doctor` run as other processes: this file is how they learn
that the page is up (and where) or that its address was taken, without probing ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from watcherd import statefile

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
    statefile.write(state_path(journal_path), {"listen": listen, "serving": serving})


def clear_state(journal_path: Path) -> None:
    """Forget the page state when the daemon stops."""
    statefile.clear(state_path(journal_path))


def read_state(journal_path: Path) -> PageState | None:
    """The page state of a daemon that is still running, or None."""
    raw = statefile.read_live(state_path(journal_path))
    if raw is None:
        return None
    try:
        return PageState(str(raw["listen"]), bool(raw["serving"]), int(raw["pid"]))
    except (ValueError, KeyError, TypeError):
        return None
