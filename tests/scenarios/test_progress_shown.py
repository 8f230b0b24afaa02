"""Progress is shown where the README says (issue 25, item 2): the status page's in-flight row
of a local transcription has its engine and progress; `watcherd transcribe` on a terminal
draws a bar (with or without a daemon), and log lines never run into it; console lines are
cut after a word."""

from __future__ import annotations

import fcntl
import os
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.daemon_harness import DaemonProcess, _env, wait_until, write_config
from tests.speech import ENGLISH_TEXT, repeat_wav, speak
from watcherd.engines.local import local_engine_installed
from watcherd.log import fit
from watcherd.progress import ProgressBoard
from watcherd.web.remote import PageProgress, progress_of

pytestmark = pytest.mark.skipif(not local_engine_installed(), reason="needs the local engine")

BAR = re.compile(r"\[[#-]{24}\]\s+\d+%")
# Anything written after the bar (which ends in "erase to the end of the line") on its line.
BAR_THEN_LOG = re.compile(BAR.pattern + r".*?\x1b\[K.")
COLUMNS = 100
LOCAL = '[engine]\nname = "local"\n'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """About 11 s of spoken English, and a 45 s file of it (longer than one Whisper window)."""
    folder = tmp_path_factory.mktemp("speech")
    one = speak(ENGLISH_TEXT, folder / "one.wav")
    repeat_wav(one, folder / "long.wav", 4)
    yield folder


def _console(config: Path) -> Path:
    """The test config with the log as a person on a terminal reads it (auto: the console)."""
    text = config.read_text(encoding="utf-8").replace('format = "json"', 'format = "auto"')
    config.write_text(text, encoding="utf-8")
    return config


def _on_a_terminal(args: list[str], timeout: float = 120.0) -> tuple[int, str]:
    """Run ``watcherd ARGS`` with stdout and stderr on a pseudo-terminal; (exit code, output)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, COLUMNS, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "watcherd", *args], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env=_env({"COLUMNS": str(COLUMNS)}))
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, b"".join(chunks).decode("utf-8", "replace")


def _assert_bar_shown_and_never_run_into(output: str) -> None:
    assert BAR.search(output), f"no progress bar in:\n{output!r}"
    # The terminal turns each "\n" into "\r\n": only the other carriage returns matter.
    for line in output.replace("\r\n", "\n").split("\n"):
        # What stays visible of a terminal line is what follows its last carriage return.
        shown = line.rsplit("\r", 1)[-1]
        assert not BAR_THEN_LOG.search(shown), f"a log line ran into the bar: {shown!r}"


def test_transcribe_on_a_terminal_draws_a_bar(tmp_path: Path, speech: Path) -> None:
    """No daemon: the command's own engine reports, the bar is drawn from the start."""
    audio = tmp_path / "memo.wav"
    audio.write_bytes((speech / "one.wav").read_bytes())
    config = _console(write_config(tmp_path / "config.toml", api_url=None, api_key=None,
                                   journal=tmp_path / "journal.db", watches=[], extra=LOCAL))
    code, output = _on_a_terminal(["transcribe", str(audio), "--config", str(config)])
    assert code == 0, output
    _assert_bar_shown_and_never_run_into(output)
    assert "memo.wav" in output and (tmp_path / "memo.txt").exists()


def test_page_and_bar_show_a_local_transcription_at_a_daemon(tmp_path: Path,
                                                             speech: Path) -> None:
    """A daemon: /api/status has engine "local" and a fraction for the file in flight, and
    `transcribe` handing a file over draws the bar from the daemon's progress."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = _free_port()
    config = _console(write_config(tmp_path / "config.toml", api_url=None, api_key=None,
                                   journal=tmp_path / "journal.db", watches=[inbox],
                                   extra=LOCAL, http_listen=f"127.0.0.1:{port}"))
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    try:
        daemon.wait_for_event("ready", timeout=60)
        (inbox / "long.wav").write_bytes((speech / "long.wav").read_bytes())

        def in_flight() -> dict[str, object] | None:
            body = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=5).json()
            return next((row for row in body["working"] if row["state"] == "transcribing"),
                        None)

        row = wait_until(in_flight, timeout=60, message="the file in flight on the page")
        assert row["engine"] == "local", row
        progress = row.get("progress")
        assert isinstance(progress, dict) and progress["fraction"] is not None, row
        assert progress["phase"] == "transcribing"

        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        named = elsewhere / "memo.wav"
        named.write_bytes((speech / "one.wav").read_bytes())
        code, output = _on_a_terminal(["transcribe", str(named), "--config", str(config)])
        assert code == 0, output
        assert "handed_to_daemon" in output
        _assert_bar_shown_and_never_run_into(output)
        assert (elsewhere / "memo.txt").exists()
        assert daemon.terminate() == 0
    finally:
        daemon.stop()


def test_page_progress_reports_the_daemons_fraction_over_the_journal_state() -> None:
    """The handed files' board: the page's fraction and phase when known, else the state."""
    board = ProgressBoard()
    page = {7: (0.4, "transcribing")}
    feed = PageProgress(board, Path("/nowhere/journal.db"), None,
                        read=lambda path, token: page)
    feed({7: "transcribing", 8: "pending"})
    shown = board.snapshot()
    assert shown[7].fraction == 0.4 and shown[7].phase == "transcribing"
    assert shown[8].fraction is None and shown[8].phase == "pending"
    feed({8: "pending"})
    assert set(board.snapshot()) == {8}


HINT = ("12:00:00 [info] handed_to_daemon files=1 hint=the running watcherd transcribes them; "
        "this command waits for each of them to end")


def test_console_line_is_cut_after_a_word() -> None:
    """A hint cut to the width ends with a whole word and the ellipsis."""
    cut = fit(HINT, 70)
    assert cut.endswith("…") and len(cut) <= 70
    kept = cut[:-1].rstrip()
    assert HINT.startswith(kept) and HINT[len(kept)] == " ", cut


@given(words=st.lists(st.text(st.sampled_from("abcdefghij;=./"), min_size=1, max_size=15),
                      min_size=1, max_size=30),
       width=st.integers(min_value=10, max_value=150))
def test_fit_cuts_at_a_word_unless_the_word_is_too_long(words: list[str], width: int) -> None:
    """The kept text ends at a word boundary, unless no space lies in its second half."""
    line = " ".join(words)
    cut = fit(line, width)
    if len(line) <= width:
        assert cut == line
        return
    kept = cut[:-1].rstrip()
    assert cut.endswith("…") and len(cut) <= width and line.startswith(kept)
    at_word = line[len(kept)] == " "
    assert at_word or " " not in line[width // 2: width - 1], cut


def test_a_report_newer_than_the_list_survives_retain() -> None:
    """A cached list of files in flight read before a file started does not wipe its report."""
    now = [100.0]
    board = ProgressBoard(clock=lambda: now[0])
    board.report(1, fraction=0.5)  # at 100: its clear was missed
    now[0] = 105.0
    board.report(2, fraction=0.0, phase="transcribing")  # started at 105
    board.retain([], updated_before=104.0)  # a list read at 104 knows neither
    assert set(board.snapshot()) == {2}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["working", "id", "progress", "fraction", "phase", "x"]), inner,
        max_size=4),
    max_leaves=20)


@given(body=_JSON)
def test_progress_of_any_page_body_never_raises(body: object) -> None:
    """Whatever a page (or something else on its port) answers, the bar gets sane values."""
    for source_id, (fraction, phase) in progress_of(body).items():
        assert isinstance(source_id, int) and not isinstance(source_id, bool)
        assert fraction is None or (isinstance(fraction, float) and fraction == fraction)
        assert phase is None or isinstance(phase, str)


def test_progress_of_reads_the_working_rows() -> None:
    """The page's own shape gives each row's fraction and phase."""
    body = {"working": [{"id": 3, "progress": {"fraction": 0.25, "phase": "transcribing"}},
                        {"id": 4}, {"id": True, "progress": {"fraction": 1}}]}
    assert progress_of(body) == {3: (0.25, "transcribing")}


def test_progress_of_ignores_numbers_that_are_no_fraction() -> None:
    """A huge integer or a string is not a fraction (and never raises)."""
    body = {"working": [{"id": 1, "progress": {"fraction": 10 ** 400}},
                        {"id": 2, "progress": {"fraction": "half", "phase": 3}}]}
    assert progress_of(body) == {1: (None, None), 2: (None, None)}
