"""How `status` and `doctor` learn whether the daemon serves its page (a file by the journal)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from watcherd.config import Config, GladiaConfig, HttpConfig
from watcherd.doctor import check_page
from watcherd.web.state import clear_state, read_state, state_path, write_state


def _config(tmp_path: Path, address: tuple[str, int] | None) -> Config:
    return Config(source=None, gladia=GladiaConfig(), engine="auto", local_model="base",
                  journal_path=tmp_path / "journal.db", log_format="json", log_level="info",
                  watches=(), http=HttpConfig(address=address))


def test_state_round_trip_and_clear(tmp_path: Path) -> None:
    """What this (running) process writes is read back; a cleared state reads as none."""
    journal = tmp_path / "journal.db"
    write_state(journal, "127.0.0.1:8765", True)
    state = read_state(journal)
    assert state is not None and state.serving and state.url == "http://127.0.0.1:8765/"
    clear_state(journal)
    assert read_state(journal) is None


def test_state_of_a_dead_daemon_is_ignored(tmp_path: Path) -> None:
    """A file left by a killed daemon (its pid gone) is not believed."""
    journal = tmp_path / "journal.db"
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    state_path(journal).write_text(
        f'{{"listen": "127.0.0.1:1", "serving": true, "pid": {int(child.stdout)}}}')
    assert read_state(journal) is None


def test_doctor_says_page_taken(tmp_path: Path) -> None:
    """With the running daemon saying its address was taken, doctor warns with the fix."""
    write_state(tmp_path / "journal.db", "127.0.0.1:8765", False)
    finding = check_page(_config(tmp_path, ("127.0.0.1", 8765)))
    assert finding.level == "WARN" and "taken" in finding.detail
    assert finding.fix is not None and "[http] listen" in finding.fix


def test_doctor_sees_a_busy_port_before_start(tmp_path: Path) -> None:
    """No daemon running, but something listens on the address: doctor warns."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        finding = check_page(_config(tmp_path, ("127.0.0.1", port)))
    assert finding.level == "WARN" and "not free" in finding.detail


def test_doctor_page_off_and_free(tmp_path: Path) -> None:
    """Off is fine; a free address is fine."""
    assert check_page(_config(tmp_path, None)).level == "OK"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert check_page(_config(tmp_path, ("127.0.0.1", port))).level == "OK"
    assert os.path.exists(tmp_path)
