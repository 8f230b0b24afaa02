"""Small JSON files beside the journal through which the daemon tells other processes things.

``watcherd status`` and ``watcherd doctor`` are other processes: the daemon writes what they
should know (is the page up, is work paused) into a file that names its process id, and a
reader ignores a file whose daemon is no longer running. Writing is best effort: a folder
that refuses the file only loses the hint.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from watcherd.outputs import atomic_write

__all__ = ["clear", "read_live", "write"]


def write(path: Path, fields: dict[str, Any]) -> None:
    """Write ``fields`` and this process's id to ``path`` (atomically; never raises OSError)."""
    data = json.dumps({**fields, "pid": os.getpid()}).encode()
    with contextlib.suppress(OSError):
        atomic_write(path, data + b"\n")


def clear(path: Path) -> None:
    """Remove the file (best effort)."""
    with contextlib.suppress(OSError):
        path.unlink()


def read_live(path: Path) -> dict[str, Any] | None:
    """The fields of a file whose writer still runs, or None (no file, unreadable, stale)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        pid = int(raw["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(raw, dict):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # left by a daemon that was killed
    except PermissionError:
        pass  # alive, another user's
    except OverflowError:
        return None
    return raw
