"""The status page in the real daemon (a subprocess): served next to the worker, its Retry
button requeues through the daemon's own journal, and a second daemon on the same port warns
(``http_unavailable``) and keeps transcribing.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_harness import DaemonProcess, free_port, wait_until, watcherd, write_config
from tests.sim import GladiaSimulator, expected_transcript
from tests.sim.media import make_corrupt, make_wav
from watcherd.connections import PER_ADDRESS

KEY = "sk-web-daemon-secret-424242"


@pytest.fixture
def sim() -> Iterator[GladiaSimulator]:
    """A running simulator with fast jobs."""
    with GladiaSimulator(api_key=KEY, job_seconds=0.2) as s:
        yield s


def start_daemon(folder: Path, sim: GladiaSimulator, port: int,
                 daemons: list[DaemonProcess]) -> tuple[DaemonProcess, Path]:
    """A daemon watching folder/inbox with [http] listen on 127.0.0.1:port."""
    inbox = folder / "inbox"
    inbox.mkdir(parents=True)
    config = write_config(folder / "config.toml", api_url=sim.base_url, api_key=KEY,
                          journal=folder / "state" / "journal.db", watches=[inbox],
                          http_listen=f"127.0.0.1:{port}")
    daemon = DaemonProcess(config, folder / "daemon.log")
    daemons.append(daemon)
    return daemon.start(), inbox


def transcribed(path: Path, data: bytes) -> bool:
    """Whether the transcript next to ``path`` is the one the simulator makes."""
    txt = path.with_suffix(".txt")
    return txt.exists() and " ".join(txt.read_text().split()) == expected_transcript(data)


def page_counts(base: str) -> dict[str, int]:
    """The counts the page shows."""
    html = httpx.get(base + "/", timeout=10).text
    return {k: int(v) for k, v in re.findall(r'data-state="(\w+)"><b>(\d+)</b>', html)}


def test_page_served_retry_and_second_daemon_runs_on(
        tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]) -> None:
    """The page, /metrics and /healthz are served; Retry requeues; a port clash is a warning."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first, inbox = start_daemon(tmp_path / "one", sim, port, daemons)
    started = first.wait_for_event("http_started")
    assert started["url"] == base + "/"
    good = inbox / "good.wav"
    data = make_wav(good, salt="web-daemon-good")
    make_corrupt(inbox / "bad.wav", salt="web-daemon-bad")
    wait_until(lambda: transcribed(good, data), timeout=60, message="the transcript")
    wait_until(lambda: page_counts(base).get("failed") == 1, timeout=60,
               message="the bad file shown as failed")
    assert page_counts(base)["done"] == 1
    assert httpx.get(base + "/healthz", timeout=10).text.strip() == "ok"
    families = {f.name: f for f in text_string_to_metric_families(
        httpx.get(base + "/metrics", timeout=10).text)}
    uploads = families["watcherd_upload_bytes"].samples[0].value
    assert uploads >= len(data)
    transitions = {(s.labels["from_state"], s.labels["to_state"])
                   for s in families["watcherd_transitions"].samples}
    assert ("submitted", "done") in transitions or ("transcribing", "done") in transitions

    # The Retry button's POST, as the page sends it: the file is tried again (and fails
    # again, being corrupt), which the journal's history shows.
    html = httpx.get(base + "/", timeout=10).text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    source_id = re.search(r'name="id" value="(\d+)"', html)
    assert csrf and source_id
    response = httpx.post(base + "/retry", data={"id": source_id[1], "csrf": csrf[1]},
                          timeout=10)
    assert response.status_code == 303
    retried = first.wait_for_event("web_retry")
    assert retried["queued"] is True and retried["source"].endswith("bad.wav")

    def failed_again() -> bool:
        result = watcherd("status", "--json", "--config", str(first.config),
                          str(inbox / "bad.wav"))
        (entry,) = json.loads(result.stdout)
        moves = [(e["from_state"], e["to_state"], e["reason"]) for e in entry["events"]]
        return entry["state"] == "failed" and ("failed", "pending", "watcherd retry") in moves \
            and moves[-1][1] == "failed"
    wait_until(failed_again, timeout=60, message="the retried file tried and failed again")

    second, inbox2 = start_daemon(tmp_path / "two", sim, port, daemons)
    warning = second.wait_for_event("http_unavailable")
    assert warning["level"] == "warning" and warning["listen"] == f"127.0.0.1:{port}"
    second.wait_for_event("ready")
    other = inbox2 / "other.wav"
    other_data = make_wav(other, salt="web-daemon-other")
    wait_until(lambda: transcribed(other, other_data), timeout=60,
               message="the second daemon's transcript")
    # The page on the port is still the first daemon's: one done file of its own.
    assert page_counts(base)["done"] == 1
    assert second.terminate() == 0 and first.terminate() == 0
    assert not first.tracebacks() and not second.tracebacks()


def test_healthz_answers_while_idle_sockets_hold_the_daemons_page(
        tmp_path: Path, sim: GladiaSimulator, daemons: list[DaemonProcess]) -> None:
    """The daemon's own page: 40 idle sockets (more than its 32 slots) and one closed half-way
    through its head; /healthz still answers 200 (on main: 503 busy), the page still serves,
    and the hang-ups are debug lines, not web_connection_failed errors."""
    port = free_port()
    daemon, _ = start_daemon(tmp_path / "d", sim, port, daemons)
    daemon.wait_for_event("http_started")
    idle: list[socket.socket] = []
    try:
        for _ in range(40):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        half = socket.create_connection(("127.0.0.1", port), timeout=10)
        half.sendall(b"GET / HTTP/1.1\r\nHo")
        half.close()
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.status_code == 200 and health.text.strip() == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    finally:
        for sock in idle:
            sock.close()
    # The idle sockets still held when closed (PER_ADDRESS - 1: the rest were evicted to make
    # room, the last by the half head), and the half head itself.
    wait_until(lambda: sum(line.get("event") == "web_client_gone"
                           for line in daemon.log_lines()) >= PER_ADDRESS,
               message="the idle sockets' hang-ups logged")
    assert daemon.terminate() == 0
    lines = daemon.log_lines()
    assert [line for line in lines if line.get("event") == "web_connection_failed"] == []
    assert [line for line in lines if line.get("level") == "error"] == []
    assert {line["level"] for line in lines if line.get("event") in (
        "web_client_gone", "web_connection_evicted")} == {"debug"}
