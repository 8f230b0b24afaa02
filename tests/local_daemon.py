"""A ``watcherd run`` subprocess on the local engine, for tests of its lifecycle (stop, reload,
deleted sources), with what those tests read from its log and journal."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.daemon_harness import DaemonProcess, watcherd, write_config

#: About five seconds of speech: a file that takes a few seconds to transcribe.
SHORT_TEXT = "The quick brown fox jumps over the lazy dog. Please send the report today."


def offline_env(tmp_path: Path) -> dict[str, str]:
    """A HOME of the test's own, and every model hub download poisoned."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }


def local_config(tmp_path: Path, watches: list[Path], *, workers: int = 1,
                 beam_size: int = 5, extra: str = "") -> Path:
    """A config on the local engine with ``workers`` worker processes (one by default: the
    test machine is shared), settling quickly."""
    return write_config(
        tmp_path / "config.toml", api_url=None, api_key=None, journal=tmp_path / "journal.db",
        watches=watches, settle_seconds=0.1, outputs=("txt", "json"),
        extra=(f'\n[engine]\nname = "local"\n\n[local]\nworkers = {workers}\n'
               f"beam_size = {beam_size}\n{extra}"),
    )


@contextlib.contextmanager
def running_local(tmp_path: Path, config: Path) -> Iterator[DaemonProcess]:
    """The daemon on ``config``, started and waited for until its engine and watches are up;
    killed afterwards if the test left it running."""
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=offline_env(tmp_path))
    daemon.start()
    try:
        daemon.wait_for_event("ready", timeout=180)
        yield daemon
    finally:
        daemon.stop()


def events(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    """Every log line of event ``name`` so far, in order."""
    return [line for line in daemon.log_lines() if line.get("event") == name]


def row(daemon: DaemonProcess, path: Path) -> dict[str, Any]:
    """``watcherd status --json`` for one source (its state, history...)."""
    result = watcherd("status", "--json", "--config", str(daemon.config), str(path),
                      env=daemon.env)
    assert result.returncode == 0, result.stderr
    [found] = json.loads(result.stdout)
    assert isinstance(found, dict)
    return found


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return os.path.exists(f"/proc/{pid}")
