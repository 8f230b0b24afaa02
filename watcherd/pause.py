"""The daemon's pause while its journal cannot be written, and how other processes learn of it.

The worker pauses all work when a journal write fails for its storage (a full or read-only
disk, an I/O error, a database server away; see :mod:`watcherd.journal.unavailable`) and
resumes when a probe write works again. The page and ``/healthz`` read the pause from the
worker; ``watcherd status``, another process, reads it from a small file beside the journal
(written when the disk lets it) and also looks at the journal's file system itself, since a
full or read-only disk cannot take that file either.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from watcherd import statefile

__all__ = ["JournalPause", "clear_pause", "pause_path", "read_pause", "write_pause"]


@dataclass(frozen=True)
class JournalPause:
    """All work is paused since ``since`` because the journal cannot be written."""

    reason: str
    since: float

    def describe(self) -> str:
        """One line for ``status``, the page and ``/healthz``."""
        since = time.strftime("%H:%M:%S", time.localtime(self.since))
        return (f"all work is paused since {since}: the journal cannot be written: "
                f"{self.reason}")


def pause_path(journal_path: Path) -> Path:
    """Where the daemon of this journal says that it pauses."""
    return journal_path.with_name(journal_path.name + ".paused.json")


def write_pause(journal_path: Path, pause: JournalPause) -> None:
    """Record the pause (best effort: the disk that stopped the journal may refuse it too)."""
    statefile.write(pause_path(journal_path), {"reason": pause.reason, "since": pause.since})


def clear_pause(journal_path: Path) -> None:
    """Forget the pause once the journal takes writes again (or the daemon stops)."""
    statefile.clear(pause_path(journal_path))


def read_pause(journal_path: Path) -> JournalPause | None:
    """The pause of a daemon that is still running, or None."""
    raw = statefile.read_live(pause_path(journal_path))
    if raw is None:
        return None
    try:
        return JournalPause(str(raw["reason"]), float(raw["since"]))
    except (ValueError, KeyError, TypeError):
        return None
