"""A one-line progress bar on a terminal for `watcherd transcribe` (local transcriptions)."""

from __future__ import annotations

import shutil
from typing import TextIO

from watcherd.display import printable
from watcherd.progress import ProgressBoard

__all__ = ["TerminalBar", "bar_line"]

BAR_CELLS = 24


def bar_line(fraction: float, label: str, width: int) -> str:
    """``[#########---------------]  37%  label``, cut to ``width`` characters."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * BAR_CELLS)
    line = f"[{'#' * filled}{'-' * (BAR_CELLS - filled)}] {fraction * 100:3.0f}%  {label}"
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


class TerminalBar:
    """Redraws one line on ``stream`` from the engines' progress board; silent elsewhere."""

    def __init__(self, board: ProgressBoard, stream: TextIO, label: str = "transcribing"
                 ) -> None:
        self.board = board
        self.stream = stream
        self.label = label
        self.enabled = stream.isatty()
        self._drawn = False

    def draw(self) -> None:
        """Show the furthest file in progress (called a few times a second).

        A file with only a phase so far (queued at the daemon, uploading) shows at 0% with
        that phase, so the bar is there from the start.
        """
        if not self.enabled:
            return
        snapshot = self.board.snapshot()
        if not snapshot:
            return
        fraction, phase = max((p.fraction or 0.0, p.phase or "") for p in snapshot.values())
        label = printable(self.label)
        if phase:
            label += f" · {printable(phase)}"
        if len(snapshot) > 1:
            label += f" (+{len(snapshot) - 1} more)"
        width = shutil.get_terminal_size((80, 24)).columns
        self.stream.write("\r" + bar_line(fraction, label, width - 1) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def clear(self) -> None:
        """Erase the bar so the results (or a log line) print on a clean line; the next
        :meth:`draw` puts it back."""
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
