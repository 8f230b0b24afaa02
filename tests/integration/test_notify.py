"""Notifications through real Apprise to a real HTTP receiver on loopback (its ``json://``
and ``ntfy://`` schemes): batching, a receiver that fails, the secrets kept out of sight, the
extra missing, and a real daemon telling that a file is done."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("apprise", reason="apprise is not installed: pip install -e '.[test]'")

from tests.daemon_harness import DaemonProcess, wait_until, watcherd, write_config
from tests.sim import GladiaSimulator, make_wav
from watcherd.config import NotifyConfig, NotifyRoute
from watcherd.credentials import Secret
from watcherd.journal import FileStat, Journal
from watcherd.notify import Notifications, send_test

KEY = "sk-test-notify-0123456789"
SIM_OPTIONS = {"job_seconds": 0.2}


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps every POST; answers ``fail_first`` with 500."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str, dict[str, Any] | str]] = []
        self.fail_first = 0
        self.calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.calls += 1
                if receiver.calls <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                text = body.decode("utf-8", "replace")
                try:
                    parsed: dict[str, Any] | str = json.loads(text)
                except ValueError:
                    parsed = text
                receiver.received.append((time.monotonic(), self.path, parsed))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"id":"x","event":"message"}')

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _source(journal: Journal, path: str, state: str, **changes: Any) -> None:
    [s] = journal.observe_many([(path, str(Path(path).parent), FileStat(1, 1, 1, 1), "{}")])
    journal.transition(s, state, actor="test", **changes)  # type: ignore[arg-type]


async def _run(notices: Notifications, until: Any, timeout: float = 20.0) -> None:
    task = asyncio.ensure_future(notices.run())
    try:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()


def test_a_burst_is_one_message_with_counts_and_first_names(
        receiver: Receiver, tmp_path: Path) -> None:
    """Seven done and one failed at once: one JSON message; a later file waits its batch."""
    url = f"json://127.0.0.1:{receiver.port}/hook"
    notices = Notifications(NotifyConfig(urls=(Secret(url),), batch_seconds=1.0))

    async def scenario() -> None:
        with Journal.open(tmp_path / "j.db", exclusive=True) as journal:
            journal.listeners.append(notices.transition)
            task = asyncio.ensure_future(notices.run())
            await asyncio.sleep(0)
            for i in range(7):
                _source(journal, f"/in/talk {i}.wav", "done", done_at=1.0)
            _source(journal, "/in/bad.wav", "failed", last_error="not audio")
            await asyncio.to_thread(wait_until, lambda: receiver.received, timeout=20,
                                    message="the first message")
            _source(journal, "/in/later.wav", "done", done_at=2.0)
            await asyncio.to_thread(wait_until, lambda: len(receiver.received) == 2,
                                    timeout=20, message="the second message")
            task.cancel()

    asyncio.run(scenario())
    (first_at, path, first), (second_at, _, second) = receiver.received
    assert path == "/hook" and isinstance(first, dict) and isinstance(second, dict)
    assert first["title"] == "watcherd: 7 done, 1 failed"
    assert "bad.wav (not audio)" in first["message"]
    assert "talk 0.wav" in first["message"] and "and 2 more" in first["message"]
    assert "talk 6.wav" not in first["message"]
    assert second["title"] == "watcherd: 1 done" and "later.wav" in second["message"]
    assert second_at - first_at >= 0.9  # at most one message per batch_seconds


def test_ntfy_per_watch_routes_and_events(receiver: Receiver) -> None:
    """A watch's own route (ntfy) gets only its files and only the events it asked for."""
    ntfy = f"ntfy://127.0.0.1:{receiver.port}/meetings"
    notices = Notifications(NotifyConfig(
        urls=(), batch_seconds=0.1,
        watches=((Path("/in/meetings"), NotifyRoute((Secret(ntfy),), ("failed",))),)))

    class Fake:
        def __init__(self, path: str, state: str) -> None:
            self.path, self.state, self.last_error = path, state, "corrupt"

    notices.transition(Fake("/in/meetings/a.wav", "done"), "transcribing")  # type: ignore[arg-type]
    notices.transition(Fake("/in/other/b.wav", "failed"), "pending")  # type: ignore[arg-type]
    notices.transition(Fake("/in/meetings/c.wav", "failed"), "pending")  # type: ignore[arg-type]
    asyncio.run(_run(notices, lambda: receiver.received))
    [(_, _, body)] = receiver.received
    assert isinstance(body, dict) and body["topic"] == "meetings"  # ntfy's JSON publish
    text = json.dumps(body)
    assert "c.wav" in text and "a.wav" not in text and "b.wav" not in text


def test_a_failing_receiver_is_retried_then_given_up(receiver: Receiver, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    url = f"json://127.0.0.1:{receiver.port}/hook"
    receiver.fail_first = 2
    notices = Notifications(NotifyConfig(urls=(Secret(url),), batch_seconds=0.1),
                            retry_seconds=0.05)
    notices.paused("the Gladia API key was refused")
    asyncio.run(_run(notices, lambda: receiver.received))
    assert receiver.calls == 3 and "paused" in json.dumps(receiver.received[0][2])
    # Always failing: given up after the attempts; the file's state is the journal's alone.
    receiver.fail_first, receiver.calls = 100, 0
    notices = Notifications(NotifyConfig(urls=(Secret(url),), batch_seconds=0.1),
                            retry_seconds=0.05)
    with Journal.open(tmp_path / "j.db", exclusive=True) as journal:
        journal.listeners.append(notices.transition)
        _source(journal, "/in/a.wav", "done", done_at=1.0)
        asyncio.run(_run(notices, lambda: receiver.calls >= 3))
        assert [s.state for s in journal.all()] == ["done"]
    assert receiver.received == [] or len(receiver.received) == 1


def test_doctor_notify_sends_a_test_to_each_route(receiver: Receiver) -> None:
    good = f"json://127.0.0.1:{receiver.port}/ok"
    config = NotifyConfig(urls=(Secret(good),), watches=(
        (Path("/in/x"), NotifyRoute((Secret("json://127.0.0.1:1/closed"),), ("done",))),))
    results = send_test(config)
    assert results == [("[notify]", True), ("[[watch]] /in/x", False)]
    assert "test notification" in json.dumps(receiver.received[0][2])


def test_config_show_hides_the_urls_and_a_missing_extra_is_named(tmp_path: Path) -> None:
    secret_url = "ntfy://user:hunter2@ntfy.example/topic-7f3a"
    config = tmp_path / "config.toml"
    config.write_text(f'[notify]\nurls = ["{secret_url}"]\non = ["failed"]\n'
                      f'[[watch]]\npath = "{tmp_path}"\n[watch.notify]\n'
                      f'urls = ["json://example/{secret_url[-8:]}x"]\n', encoding="utf-8")
    shown = watcherd("config", "show", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "hunter2" not in shown.stdout and "topic-7f3a" not in shown.stdout
    assert 'urls = ["***"]' in shown.stdout and '[watch.notify]' in shown.stdout
    # Without Apprise installed, the config says which extra brings it.
    blocked = ("import sys, importlib.abc\n"
               "class Block(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name.split('.')[0] == 'apprise': raise ModuleNotFoundError(name)\n"
               "sys.meta_path.insert(0, Block())\n"
               "import importlib.util\n"
               "importlib.util.find_spec = lambda n, *a: None if n == 'apprise' else "
               "__import__('importlib').machinery.PathFinder.find_spec(n)\n"
               "from watcherd.cli import main\n"
               f"sys.argv = ['watcherd', 'config', 'show', '--config', {str(config)!r}]\n"
               "main()\n")
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "watcherd[notify]" in result.stderr and "hunter2" not in result.stderr


def test_the_daemon_tells_when_a_file_is_done(tmp_path: Path, sim: GladiaSimulator,
                                              inbox: Path, receiver: Receiver) -> None:
    url = f"json://127.0.0.1:{receiver.port}/daemon"
    config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=tmp_path / "journal.db", watches=[inbox],
                          extra=f'\n[notify]\nurls = ["{url}"]\nbatch_seconds = 0.5\n')
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    try:
        daemon.wait_for_event("ready")
        make_wav(inbox / "standup.wav", seconds=0.5, salt="n")
        wait_until(lambda: receiver.received, timeout=60, message="a notification")
        body = receiver.received[0][2]
        assert isinstance(body, dict) and body["title"] == "watcherd: 1 done"
        assert "standup.wav" in body["message"]
        assert str(receiver.port) not in (tmp_path / "daemon.log").read_text()
    finally:
        assert daemon.terminate() == 0


def test_doctor_notify_reports_each_route(tmp_path: Path, receiver: Receiver) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[notify]\nurls = ["json://127.0.0.1:{receiver.port}/doc"]\n'
                      f'[[watch]]\npath = "{tmp_path}"\n', encoding="utf-8")
    plain = watcherd("doctor", "--config", str(config)).stdout
    assert "doctor --notify` sends a test" in plain and not receiver.received
    sent = watcherd("doctor", "--notify", "--config", str(config)).stdout
    assert "test sent through [notify]" in sent
    assert "test notification" in json.dumps(receiver.received[0][2])
    assert str(receiver.port) not in sent
