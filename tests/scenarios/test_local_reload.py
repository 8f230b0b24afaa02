"""SIGHUP while the local engine transcribes: a reload never throws the work away.

A rejected config changes nothing; a valid one keeps the engine's worker processes when its
settings are unchanged, and otherwise lets the file in progress finish on the engine it started
on while a new engine (new settings) takes new files, the old one closing afterwards.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, wait_until
from tests.local_daemon import SHORT_TEXT, alive, events, local_config, row, running_local
from tests.speech import ENGLISH_TEXT, repeat_wav, speak
from watcherd.engines.local.model import local_engine_installed

pytestmark = pytest.mark.skipif(not local_engine_installed(),
                                reason="the local extra is not installed")


def _index(daemon: DaemonProcess, event: str, **fields: Any) -> int:
    """Where the first log line of ``event`` (with ``fields``) is in the log."""
    for i, line in enumerate(daemon.log_lines()):
        if line.get("event") == event and all(line.get(k) == v for k, v in fields.items()):
            return i
    raise AssertionError(f"no {event} {fields} in the log")


def _reload_mid_file(daemon: DaemonProcess, inbox: Path, new_config: str,
                     reload_event: str) -> Path:
    """Start a long recording's transcription, write ``new_config``, SIGHUP, wait for the
    reload's outcome and for the file to be done; the file."""
    recording = repeat_wav(speak(ENGLISH_TEXT, inbox.parent / "one.wav"),
                           inbox.parent / "long.wav", 4)
    dropped = inbox / "long.wav"
    dropped.write_bytes(recording.read_bytes())
    daemon.wait_for_event("transcription_started", timeout=120)
    good = daemon.config.read_text()
    daemon.config.write_text(new_config)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_event(reload_event, timeout=60)
    if reload_event == "reload_rejected":
        daemon.config.write_text(good)  # `watcherd status` reads it too (no SIGHUP: unseen)
    wait_until(lambda: row(daemon, dropped)["state"] == "done", timeout=300,
               message="the file in progress finished")
    # The reload came while the file was being transcribed, not after.
    assert _index(daemon, reload_event) < _index(daemon, "transcribed", source=str(dropped))
    return dropped


def _not_interrupted(daemon: DaemonProcess, path: Path) -> None:
    """The file was transcribed once, never sent back to the queue."""
    history = row(daemon, path)
    assert not any("interrupted" in (e["reason"] or "") for e in history["events"]), history
    started = [e for e in events(daemon, "transcription_started") if e["source"] == str(path)]
    assert len(started) == 1, started


def test_a_rejected_reload_changes_nothing(tmp_path: Path, inbox: Path) -> None:
    """A broken config on SIGHUP: the engine is not restarted and the file goes on."""
    config = local_config(tmp_path, [inbox])
    with running_local(tmp_path, config) as daemon:
        broken = config.read_text() + "\n[local]\nbogus = 1\n"
        dropped = _reload_mid_file(daemon, inbox, broken, "reload_rejected")
        _not_interrupted(daemon, dropped)
        assert len(events(daemon, "local_engine_ready")) == 1
        assert not events(daemon, "reloaded")
        assert daemon.terminate(timeout=60) == 0


def test_a_reload_with_the_same_engine_settings_keeps_its_workers(
        tmp_path: Path, inbox: Path) -> None:
    """A watch added on SIGHUP: the same worker process finishes the file and serves the new
    folder; no model is loaded again."""
    second = tmp_path / "second"
    second.mkdir()
    added = local_config(tmp_path, [inbox, second]).read_text()
    with running_local(tmp_path, local_config(tmp_path, [inbox])) as daemon:
        dropped = _reload_mid_file(daemon, inbox, added, "reloaded")
        _not_interrupted(daemon, dropped)
        [ready] = events(daemon, "local_engine_ready")
        assert alive(ready["pid"])
        later = speak(SHORT_TEXT, second / "later.wav")
        wait_until(lambda: row(daemon, later)["state"] == "done", timeout=180,
                   message="a file in the added folder transcribed")
        assert len(events(daemon, "local_engine_ready")) == 1
        assert daemon.terminate(timeout=60) == 0
        assert not daemon.tracebacks()


def test_a_reload_with_new_engine_settings_finishes_the_file_on_the_old_engine(
        tmp_path: Path, inbox: Path) -> None:
    """beam_size changed on SIGHUP: the file in progress finishes on the engine it started
    on, which then closes; a new engine (its own worker process) takes the next file."""
    changed = local_config(tmp_path, [inbox], beam_size=4).read_text()
    with running_local(tmp_path, local_config(tmp_path, [inbox])) as daemon:
        dropped = _reload_mid_file(daemon, inbox, changed, "reloaded")
        _not_interrupted(daemon, dropped)
        first, second = events(daemon, "local_engine_ready")
        assert first["pid"] != second["pid"]
        daemon.wait_for_event("engine_retired", timeout=60)
        wait_until(lambda: not alive(first["pid"]), timeout=30,
                   message="the old engine's worker process to exit")
        later = speak(SHORT_TEXT, inbox / "later.wav")
        wait_until(lambda: row(daemon, later)["state"] == "done", timeout=180,
                   message="the next file transcribed by the new engine")
        assert alive(second["pid"])
        assert daemon.terminate(timeout=60) == 0
        assert not daemon.tracebacks()
