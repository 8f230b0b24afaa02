"""The progress of files in flight, read from a running daemon's status page by another process.

``watcherd transcribe`` hands its files to a running daemon and waits; the engines' progress
lives in the daemon's memory (:mod:`watcherd.progress`), and its page serves it as
``/api/status``. Reading that page is a hint for a progress bar: any failure reads as
"nothing known" and the command goes on waiting on the journal.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from watcherd.config import Secret
from watcherd.progress import ProgressBoard, _finite
from watcherd.web.state import read_state

__all__ = ["PageProgress", "progress_of"]

#: The page is read at most this often (each read renders a snapshot in the daemon).
_READ_EVERY_SECONDS = 1.0
_READ_TIMEOUT = 1.0


def _page_progress(journal_path: Path, token: Secret | None = None, *,
                  timeout: float = _READ_TIMEOUT) -> dict[int, tuple[float | None, str | None]]:
    """Source id -> (fraction, phase) of the files in flight at the daemon of this journal.

    Empty when no daemon serves a page for it or the page cannot be read.
    """
    state = read_state(journal_path)
    if state is None or not state.serving:
        return {}
    headers = {"Authorization": f"Bearer {token.reveal()}"} if token is not None else {}
    try:
        response = httpx.get(state.url + "api/status", headers=headers, timeout=timeout)
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return {}
    return progress_of(body)


def progress_of(body: object) -> dict[int, tuple[float | None, str | None]]:
    """The (fraction, phase) of each file in flight in an ``/api/status`` body; whatever the
    body holds, what does not have the expected shape is skipped."""
    working = body.get("working") if isinstance(body, dict) else None
    found: dict[int, tuple[float | None, str | None]] = {}
    for row in working if isinstance(working, list) else []:
        source_id = row.get("id") if isinstance(row, dict) else None
        if isinstance(source_id, bool) or not isinstance(source_id, int):
            continue
        progress = row.get("progress")
        if not isinstance(progress, dict):
            continue
        found[source_id] = (_finite(progress.get("fraction")),
                            progress["phase"] if isinstance(progress.get("phase"), str)
                            else None)
    return found


class PageProgress:
    """Feeds ``board`` for the files a command waits on: their journal state as the phase,
    and the daemon's own progress (fraction, phase) when its page tells it."""

    def __init__(self, board: ProgressBoard, journal_path: Path, token: Secret | None, *,
                 read: Callable[[Path, Secret | None], Mapping[int, tuple[float | None,
                                                                          str | None]]]
                 = _page_progress,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.board = board
        self.journal_path = journal_path
        self.token = token
        self._read = read
        self._clock = clock
        self._read_at = -math.inf
        self._page: Mapping[int, tuple[float | None, str | None]] = {}

    def __call__(self, waiting: Mapping[int, str]) -> None:
        """One look: ``waiting`` maps each unfinished file's id to its journal state."""
        now = self._clock()
        if now - self._read_at >= _READ_EVERY_SECONDS:
            self._read_at = now
            self._page = self._read(self.journal_path, self.token)
        self.board.retain(waiting)
        for source_id, state in waiting.items():
            fraction, phase = self._page.get(source_id, (None, None))
            self.board.report(source_id, fraction=fraction, phase=phase or state)
