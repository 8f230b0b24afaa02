"""`watcherd transcribe`'s progress bar: drawn only on a terminal, one line, cleared after."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st

from watcherd.cli.progressbar import TerminalBar, bar_line
from watcherd.progress import ProgressBoard


class _Tty(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        """Yes."""
        return True


@given(st.floats(allow_nan=False), st.text(), st.integers(1, 300))
def test_bar_line_fits_and_shows_the_share(fraction: float, label: str, width: int) -> None:
    """Whatever the inputs, the line fits the width and never has a newline of its own."""
    line = bar_line(fraction, label.replace("\n", " "), width)
    assert len(line) <= max(width, 1)
    assert "\n" not in line


def test_bar_draws_on_a_terminal_and_clears() -> None:
    """A reported fraction is drawn as a percentage; clear() erases the line."""
    board, stream = ProgressBoard(), _Tty()
    bar = TerminalBar(board, stream, "memo.wav")
    bar.draw()
    assert stream.getvalue() == ""  # nothing reported yet
    board.report(1, fraction=0.5, phase="transcribing")
    bar.draw()
    assert "50%" in stream.getvalue() and "memo.wav" in stream.getvalue()
    bar.clear()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_bar_is_silent_off_a_terminal() -> None:
    """Piped or logged output gets no bar at all."""
    board, stream = ProgressBoard(), io.StringIO()
    board.report(1, fraction=0.7)
    bar = TerminalBar(board, stream)
    bar.draw()
    bar.clear()
    assert stream.getvalue() == ""
