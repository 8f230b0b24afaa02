"""The daemon's lifecycle as a real process: systemd notify, SIGHUP reload, journal loss."""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, wait_until, watcherd, write_config
from tests.sim import GladiaSimulator, expected_transcript, make_wav

KEY = "sk-daemon-test-secret-987654"


#: How this module's simulator runs (the shared ``sim`` fixture in conftest.py reads it).
SIM_OPTIONS = {"job_seconds": 0.2}


def _transcribed(path: Path, data: bytes) -> bool:
    txt = path.with_suffix(".txt")
    return txt.exists() and " ".join(txt.read_text().split()) == expected_transcript(data)


def _setup(tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess], *,
           env: dict[str, str] | None = None) -> tuple[DaemonProcess, Path, Path]:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=tmp_path / "state" / "journal.db", watches=[inbox])
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=env)
    daemons.append(daemon)
    return daemon, inbox, config


class TestSystemdNotify:
    """The sd_notify protocol on a real unix datagram socket."""

    def test_ready_status_watchdog_stopping(self, tmp_path: Path, sim: GladiaSimulator,
                                            daemons: list[DaemonProcess]) -> None:
        """READY=1 after start, STATUS with counts, WATCHDOG=1 pings, STOPPING=1 on SIGTERM."""
        sock_path = tmp_path / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
        sock.settimeout(0.2)
        messages: list[str] = []

        def receive() -> list[str]:
            try:
                while True:
                    messages.append(sock.recv(4096).decode())
            except TimeoutError:
                return messages

        daemon, _, _ = _setup(tmp_path, sim, daemons, env={
            "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"})
        daemon.start()
        wait_until(lambda: any("READY=1" in m for m in receive()), timeout=30,
                   message="READY=1")
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=" in ready
        wait_until(lambda: sum("WATCHDOG=1" in m for m in receive()) >= 2,
                   timeout=10, message="two watchdog pings")
        assert daemon.terminate() == 0
        receive()
        assert any("STOPPING=1" in m for m in messages)
        sock.close()


class TestReload:
    """SIGHUP re-reads the config and applies it only when it is valid."""

    def test_sighup_adds_a_watch(self, tmp_path: Path, sim: GladiaSimulator,
                                 daemons: list[DaemonProcess]) -> None:
        """A watch added to the config file works after SIGHUP, without a restart."""
        daemon, _, config = _setup(tmp_path, sim, daemons)
        daemon.start()
        daemon.wait_for_event("ready")
        second = tmp_path / "second"
        second.mkdir()
        config.write_text(config.read_text() + f'\n[[watch]]\npath = "{second}"\n')
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for_event("reloaded")
        f = second / "late.wav"
        data = make_wav(f, seconds=0.3, salt="reload")
        wait_until(lambda: _transcribed(f, data), timeout=30, message="transcript in new watch")
        assert daemon.terminate() == 0

    def test_sighup_with_broken_config_keeps_running(
        self, tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]
    ) -> None:
        """A broken config on SIGHUP is refused with a message; the old one keeps working."""
        daemon, inbox, config = _setup(tmp_path, sim, daemons)
        daemon.start()
        daemon.wait_for_event("ready")
        good = config.read_text()
        config.write_text(good + "\n[gladia]\nbogus = 1\n")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        line = daemon.wait_for_event("reload_rejected")
        assert "config" in line["error"]
        f = inbox / "still.wav"
        data = make_wav(f, seconds=0.3, salt="still")
        wait_until(lambda: _transcribed(f, data), timeout=30, message="transcript")
        assert daemon.terminate() == 0


    def _uploading(self, tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess],
                   salt: str) -> tuple[DaemonProcess, Path, bytes, Path]:
        """A daemon whose first file is uploading (the simulator holds the upload 2 s)."""
        sim.faults.add("upload", "delay", delay=2.0)
        daemon, inbox, config = _setup(tmp_path, sim, daemons)
        daemon.start()
        daemon.wait_for_event("ready")
        f = inbox / "big.wav"
        data = make_wav(f, seconds=0.3, salt=salt)
        daemon.wait_for_event("upload_started")
        return daemon, f, data, config

    def test_sighup_mid_upload_keeps_the_upload(
        self, tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]
    ) -> None:
        """A valid reload while a file uploads: the upload goes on in the next generation
        (the Gladia engine is kept, its settings unchanged) instead of starting over."""
        daemon, f, data, config = self._uploading(tmp_path, sim, daemons, "mid-upload")
        second = tmp_path / "second"
        second.mkdir()
        config.write_text(config.read_text() + f'\n[[watch]]\npath = "{second}"\n')
        assert daemon.proc is not None
        signalled = time.time()
        daemon.proc.send_signal(signal.SIGHUP)
        line = daemon.wait_for_event("reloaded")
        wait_until(lambda: _transcribed(f, data), timeout=30, message="transcript")
        # Requests are recorded when they end, with when they began: none began anew.
        assert [r for r in sim.requests() if r.endpoint == "upload" and r.time > signalled] == []
        assert line["kept"] == ["gladia"] and line["in_flight"] == 1
        assert daemon.terminate() == 0

    def test_sighup_with_new_gladia_settings_mid_upload(
        self, tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]
    ) -> None:
        """New [gladia] settings on SIGHUP while a file uploads: the Gladia engine is opened
        again, the file resumes from the journal on it and gets exactly one job."""
        daemon, f, data, config = self._uploading(tmp_path, sim, daemons, "new settings")
        config.write_text(config.read_text().replace("max_concurrent_jobs = 3",
                                                     "max_concurrent_jobs = 2"))
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        line = daemon.wait_for_event("reloaded")
        assert line["kept"] == []
        wait_until(lambda: _transcribed(f, data), timeout=30, message="transcript")
        assert list(sim.creates_per_content().values()) == [1]
        assert daemon.terminate() == 0
        assert not daemon.tracebacks()

    def test_two_quick_sighups_apply_the_last_config(
        self, tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]
    ) -> None:
        """A second SIGHUP while the first reload is under way is not lost: the config it
        read is the one that runs."""
        daemon, _, config = _setup(tmp_path, sim, daemons)
        daemon.start()
        daemon.wait_for_event("ready")
        base = config.read_text()
        first, second = tmp_path / "first", tmp_path / "second"
        first.mkdir()
        second.mkdir()
        assert daemon.proc is not None
        config.write_text(base + f'\n[[watch]]\npath = "{first}"\n')
        daemon.proc.send_signal(signal.SIGHUP)
        config.write_text(base + f'\n[[watch]]\npath = "{first}"\n'
                          f'\n[[watch]]\npath = "{second}"\n')
        daemon.proc.send_signal(signal.SIGHUP)
        f = second / "late.wav"
        wait_until(lambda: any(str(second) in line.get("watches", [])
                               for line in daemon.log_lines()
                               if line.get("event") == "reloaded"),
                   timeout=30, message="the second reload")
        data = make_wav(f, seconds=0.3, salt="second reload")
        wait_until(lambda: _transcribed(f, data), timeout=30, message="transcript")
        assert daemon.terminate() == 0


class TestJournalLoss:
    """Losing the journal never means transcribing (and paying) again."""

    def _first_run(self, tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]
                   ) -> tuple[Path, list[tuple[Path, bytes]]]:
        daemon, inbox, config = _setup(tmp_path, sim, daemons)
        files = []
        for i in range(3):
            f = inbox / f"rec {i}.wav"
            files.append((f, make_wav(f, seconds=0.3, salt=f"loss{i}")))
        daemon.start()
        wait_until(lambda: all(_transcribed(f, d) for f, d in files), timeout=30,
                   message="first transcripts")
        assert daemon.terminate() == 0
        return config, files

    def test_deleted_journal_rebuilt_from_outputs(
        self, tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]
    ) -> None:
        """With the journal deleted, restart marks the files done from NAME.json: no new job."""
        config, _ = self._first_run(tmp_path, sim, daemons)
        for leftover in (tmp_path / "state").glob("journal.db*"):
            leftover.unlink()
        again = DaemonProcess(config, tmp_path / "daemon2.log")
        daemons.append(again)
        again.start()
        def all_done() -> list[dict[str, Any]] | None:
            rows = again.status()
            return rows if len(rows) == 3 and all(r["state"] == "done" for r in rows) else None

        rows = wait_until(all_done, timeout=30, message="3 done rows")
        assert len(sim.jobs()) == 3
        assert {r["job_id"] for r in rows} == {j["id"] for j in sim.jobs()}
        assert any(line.get("event") == "result_recovered" for line in again.log_lines())
        assert again.terminate() == 0

    def test_corrupt_journal_moved_aside(
        self, tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]
    ) -> None:
        """A corrupt journal is kept beside as *.corrupt-*, with a message; no new jobs."""
        config, _ = self._first_run(tmp_path, sim, daemons)
        journal = tmp_path / "state" / "journal.db"
        for leftover in (tmp_path / "state").glob("journal.db-*"):
            leftover.unlink()
        journal.write_bytes(b"\x00garbage" * 4096)
        again = DaemonProcess(config, tmp_path / "daemon2.log")
        daemons.append(again)
        again.start()
        line = again.wait_for_event("journal_corrupt_moved_aside")
        assert Path(line["moved_to"]).read_bytes().startswith(b"\x00garbage")
        wait_until(lambda: (r := again.status()) and len(r) == 3 and
                   all(x["state"] == "done" for x in r), timeout=30, message="3 done rows")
        assert len(sim.jobs()) == 3
        assert again.terminate() == 0


# What editors make of a key file, and what `watcherd run` must say about it.
_BAD_KEY_FILES = [
    pytest.param(KEY.encode("utf-16"), "saved as UTF-16", id="utf16-bom"),
    pytest.param(KEY.encode("utf-16-le"), "saved as UTF-16", id="utf16-no-bom"),
    pytest.param(KEY.encode("utf-8-sig") + b"\n", "byte-order mark", id="utf8-bom"),
    pytest.param(KEY.encode() + b"\x00", "NUL bytes", id="nul"),
    pytest.param(KEY.encode() + b"\x08\n", "control character", id="control"),
    pytest.param(KEY.replace("-", " ", 1).encode(), "more than one word", id="space"),
]


def _with_key_file(tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess],
                   content: bytes) -> DaemonProcess:
    """A daemon (not started) whose [gladia] api_key_file holds ``content``."""
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    key_file = tmp_path / "gladia.key"
    key_file.write_bytes(content)
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=None,
                          journal=tmp_path / "state" / "journal.db", watches=[inbox])
    config.write_text(config.read_text().replace(
        "[gladia]\n", f"[gladia]\napi_key_file = {json.dumps(str(key_file))}\n", 1))
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    daemons.append(daemon)
    return daemon


def _exit_code(daemon: DaemonProcess, timeout: float = 30.0) -> int:
    """The daemon's exit code once it has exited; fails if it is still running at ``timeout``."""
    assert daemon.proc is not None
    proc = daemon.proc
    wait_until(lambda: proc.poll() is not None, timeout=timeout, message="watcherd to exit")
    return proc.returncode


def _assert_no_form_of_key(text: str, content: bytes) -> None:
    """Neither the key nor the key file's bytes show in ``text``, plainly or escaped."""
    pieces = {KEY, KEY[:10], KEY[-10:], repr(content)[2:22], repr(content)[-22:-1],
              json.dumps(content.decode("latin-1"))[1:21]}
    for piece in pieces:
        assert piece not in text, piece


class TestStatusSecrets:
    """The API key never shows up where a person or a log collector can see it."""

    def test_key_absent_from_logs_journal_status_outputs(
        self, tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]
    ) -> None:
        """After a full run with a failure, no file or output holds the key."""
        daemon, inbox, config = _setup(tmp_path, sim, daemons)
        make_wav(inbox / "ok.wav", seconds=0.3, salt="secret-ok")
        (inbox / "bad.wav").write_bytes(b"not audio" * 100)
        daemon.start()
        wait_until(lambda: {r["state"] for r in daemon.status()} == {"done", "failed"},
                   timeout=30, message="done and failed")
        assert daemon.terminate() == 0
        status = watcherd("status", "--config", str(config))
        status_json = watcherd("status", "--json", "--config", str(config))
        for line in daemon.log_lines():
            assert KEY not in json.dumps(line)
        assert KEY not in status.stdout + status_json.stdout
        for path in tmp_path.rglob("*"):
            if path.is_file() and path.name != "config.toml":
                assert KEY.encode() not in path.read_bytes(), path


    @pytest.mark.parametrize(("content", "says"), _BAD_KEY_FILES)
    def test_run_refuses_an_unusable_key_file_naming_it(
        self, tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess],
        content: bytes, says: str,
    ) -> None:
        """`watcherd run` with a key file it cannot send exits 2, says why, quotes no key."""
        daemon = _with_key_file(tmp_path, sim, daemons, content)
        daemon.start()
        code = _exit_code(daemon)
        output = daemon.log_path.read_text(errors="replace")
        assert code == 2, output
        assert "gladia.api_key_file" in output and says in output
        _assert_no_form_of_key(output, content)

    def test_a_header_breaking_key_never_shows_in_log_or_status(
        self, tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]
    ) -> None:
        """A key file saved as UTF-16 (NUL bytes that break the header) never reaches the
        log or `status`, plainly or escaped: the daemon refuses it before sending anything."""
        content = KEY.encode("utf-16-le")
        daemon = _with_key_file(tmp_path, sim, daemons, content)
        make_wav(tmp_path / "inbox" / "talk.wav", seconds=0.3, salt="utf16-key")
        daemon.start()

        def refused_or_reported() -> bool:
            assert daemon.proc is not None
            if daemon.proc.poll() is not None:
                return True
            status = watcherd("status", "--json", "--config", str(daemon.config))
            return any(row.get("reason") or row.get("error") for row in
                       (json.loads(status.stdout) if status.returncode == 0 else []))

        wait_until(refused_or_reported, timeout=30, message="refusal or a reported failure")
        status = watcherd("status", "--config", str(daemon.config))
        status_json = watcherd("status", "--json", "--config", str(daemon.config))
        daemon.stop()
        for text in (daemon.log_path.read_text(errors="replace"), status.stdout + status.stderr,
                     status_json.stdout + status_json.stderr):
            _assert_no_form_of_key(text, content)
        assert daemon.proc is not None and daemon.proc.returncode == 2
        assert sim.uploads() == []

    def test_a_key_brought_by_sighup_is_redacted_too(
        self, tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]
    ) -> None:
        """After a reload with a rotated key, neither the new key nor the old one is logged."""
        daemon, inbox, config = _setup(tmp_path, sim, daemons)
        daemon.start()
        daemon.wait_for_event("ready")
        new_key = "sk-rotated-after-sighup-13579"
        config.write_text(config.read_text().replace(KEY, new_key))
        sim.rotate_key(new_key)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for_event("reloaded")
        # File names are logged as they are: named after the keys, they put both in the log.
        files = {inbox / f"{name}.wav": name for name in (new_key, KEY)}
        datas = {f: make_wav(f, seconds=0.3, salt=name) for f, name in files.items()}
        wait_until(lambda: all(_transcribed(f, data) for f, data in datas.items()),
                   timeout=30, message="transcripts of both files")
        assert daemon.terminate() == 0
        log_text = daemon.log_path.read_text()
        assert new_key not in log_text and KEY not in log_text
        assert "***.wav" in log_text


class TestOperations:
    """Hooks, the metrics textfile and the callback listener in a real daemon run."""

    def test_hook_metrics_and_callback(self, tmp_path: Path, sim: GladiaSimulator,
                                       daemons: list[DaemonProcess]) -> None:
        """A done file runs on_done with its paths, the textfile counts it, the callback
        listener receives Gladia's callback, and the token never reaches the log."""
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        record = tmp_path / "hook.txt"
        prom = tmp_path / "watcherd.prom"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        extra = (
            "\n[hooks]\non_done = [" + json.dumps(sys.executable) + ', "-c", '
            + json.dumps("import os,sys; open(sys.argv[1],'a').write("
                         "os.environ['WATCHERD_SOURCE']+'\\n')")
            + ", " + json.dumps(str(record)) + "]\n"
            f'\n[metrics]\ntextfile = "{prom}"\n'
            f'\n[callback]\nlisten = "127.0.0.1:{port}"\n'
        )
        config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                              journal=tmp_path / "state" / "journal.db", watches=[inbox],
                              extra=extra)
        daemon = DaemonProcess(config, tmp_path / "daemon.log")
        daemons.append(daemon)
        daemon.start()
        daemon.wait_for_event("ready")
        f = inbox / "hooked.wav"
        data = make_wav(f, seconds=0.3, salt="hooked")
        wait_until(lambda: _transcribed(f, data), timeout=30, message="transcript")
        wait_until(lambda: record.exists() and str(f.resolve()) in record.read_text(),
                   timeout=30, message="on_done hook")
        wait_until(lambda: prom.exists() and 'watcherd_sources{state="done"} 1' in
                   prom.read_text(), timeout=30, message="metrics textfile")
        wait_until(lambda: len(sim.callbacks()) == 1, timeout=30, message="a callback")
        assert daemon.terminate() == 0
        token = (tmp_path / "state" / "journal.db.callback-token").read_text().strip()
        assert token and token not in daemon.log_path.read_text()
