"""The callback listener's robustness by construction, example by example: one deadline for the
whole request (a slow-loris is cut off however slowly it trickles), the inputs the hand-written
parser crashed on, the fault boundary that ends one connection, never the listener, and the
connection slots (per client address; idle clients make room; hang-ups are debug lines).

Real listeners on 127.0.0.1 (started with tests/test_listener.py's helper), real journals.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.unit.engines.gladia.test_listener import (
    DONE,
    JOB,
    TOKEN,
    VECTOR_SECRET,
    callback_body,
    events_count,
    raw,
    run,
    running,
    status_of,
)
from watcherd.config import Secret
from watcherd.connections import MAX_CONNECTIONS, PER_ADDRESS
from watcherd.journal import FileStat, Journal


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A journal with one source awaiting JOB (submitted) and one already done with DONE."""
    j = Journal.open(tmp_path / "journal.db", exclusive=True)
    st = FileStat(10, 1, 1, 1)
    awaited, done = j.observe_many([(str(tmp_path / "a.wav"), str(tmp_path), st, "{}"),
                                    (str(tmp_path / "b.wav"), str(tmp_path), st, "{}")])
    j.transition(awaited, "submitted", actor="test", job_id=JOB, content_key="k1")
    j.transition(done, "done", actor="test", job_id=DONE, content_key="k2")
    yield j
    j.close()


def loop_errors_recorded() -> list[dict[str, Any]]:
    """Route the running loop's unhandled-exception reports into a list and return it."""
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    return errors


async def trickle(host: str, port: int, prefix: bytes, slow: bytes,
                  *, pace: float = 0.01, limit: float = 10.0) -> tuple[bytes, int]:
    """Send ``prefix`` at once, then ``slow`` one byte per ``pace`` until the listener answers
    (or ``limit`` seconds pass); the answer and how many slow bytes went out."""
    reader, writer = await asyncio.open_connection(host, port)
    answer = asyncio.ensure_future(reader.read())
    writer.write(prefix)
    sent = 0
    deadline = time.monotonic() + limit
    try:
        while sent < len(slow) and not answer.done() and time.monotonic() < deadline:
            writer.write(slow[sent:sent + 1])
            await writer.drain()
            sent += 1
            # Pacing the client, not waiting for the outcome: the loop ends on the answer.
            await asyncio.sleep(pace)
    except ConnectionError:
        pass
    async with asyncio.timeout(max(0.0, deadline - time.monotonic()) + 2):
        data = await answer
    writer.close()
    return data, sent


# -- one deadline per request ------------------------------------------------------------------


def test_head_trickled_byte_by_byte_is_cut_off_at_the_request_deadline(journal: Journal) -> None:
    """Each byte arrives well within any per-read timeout, yet the request as a whole passes
    its deadline: the listener answers 408 and closes before the head is complete."""
    head = (f"POST /callback/{TOKEN} HTTP/1.1\r\nHost: x\r\n"
            + "".join(f"X-Pad-{i}: {'a' * 20}\r\n" for i in range(20)) + "\r\n").encode()

    async def body() -> None:
        errors = loop_errors_recorded()
        # The head deadline is long: only the whole-request deadline can cut this one off.
        async with running(journal, header_timeout=60.0, request_timeout=0.5) as (server, rec):
            answer, sent = await trickle(*server.address, b"", head)
            assert status_of(answer) == 408
            assert sent < len(head)
            assert server.stats["timeout"] == 1
            assert rec.calls == []
        assert errors == []
    run(body)


def test_body_trickled_byte_by_byte_is_cut_off_at_the_request_deadline(journal: Journal) -> None:
    """The deadline covers the body too (it used to be per read): a body dribbling in byte by
    byte is answered 408 before it is complete, and nothing is woken."""
    sent_body = json.dumps(callback_body()).encode() + b" " * 500
    head = (f"POST /callback/{TOKEN} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(sent_body)}\r\n\r\n").encode()

    async def body() -> None:
        errors = loop_errors_recorded()
        async with running(journal, request_timeout=0.5) as (server, rec):
            answer, sent = await trickle(*server.address, head, sent_body)
            assert status_of(answer) == 408
            assert sent < len(sent_body)
            assert rec.calls == []
        assert errors == []
    run(body)


# -- what the hand-written parser crashed on ---------------------------------------------------


@pytest.mark.parametrize("value", ["\u00b2", "1\u00b2", "\u0661", "\uff15", "5\n", "9" * 5000])
def test_unicode_digits_in_content_length_are_a_400_not_a_crash(
    journal: Journal, value: str
) -> None:
    """'Content-Length: ²' passed str.isdigit() into int(): now a plain 400, nothing unhandled,
    nothing logged at error level."""
    request = (f"POST /callback/{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\n"
               ).encode()

    async def body() -> None:
        errors = loop_errors_recorded()
        async with running(journal) as (server, rec):
            answer = await raw(server, request)
            assert status_of(answer) in (400, 431)
            assert rec.calls == []
        assert errors == []

    with structlog.testing.capture_logs() as logs:
        run(body)
    assert [e for e in logs if e["log_level"] == "error"] == []


def test_unicode_digits_in_the_webhook_timestamp_are_refused_clearly(journal: Journal) -> None:
    """A webhook-timestamp of '²' is refused with 400 and a reason naming the header."""
    data = json.dumps({"event": "transcription.success", "payload": {"id": JOB}}).encode()

    async def body() -> None:
        errors = loop_errors_recorded()
        async with running(journal, webhook_secret=Secret(VECTOR_SECRET)) as (server, rec):
            request = (b"POST /webhook HTTP/1.1\r\nHost: x\r\nwebhook-id: msg_1\r\n"
                       b"webhook-timestamp: \xc2\xb2\r\nwebhook-signature: v1,AAAA\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(data)) + data
            answer = await raw(server, request)
            assert status_of(answer) == 400
            reason = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
            assert "webhook-timestamp" in reason and "ASCII digits" in reason
            assert rec.calls == []
        assert errors == []
    run(body)


# -- the fault boundary ------------------------------------------------------------------------


def test_an_exception_while_serving_ends_that_connection_only(journal: Journal) -> None:
    """A failure inside the handling (here the pipeline's hook raising, with the token in its
    message) answers 500, is logged once without the token, and the next request is served."""
    calls: list[str] = []

    def flaky(job_id: str) -> None:
        calls.append(job_id)
        if len(calls) == 1:
            raise RuntimeError(f"boom at /callback/{TOKEN}")

    async def body() -> None:
        errors = loop_errors_recorded()
        async with running(journal, on_finished=flaky) as (server, _):
            request = json.dumps(callback_body()).encode()
            head = (f"POST /callback/{TOKEN} HTTP/1.1\r\nHost: x\r\n"
                    f"Content-Length: {len(request)}\r\n\r\n").encode()
            first = await raw(server, head + request)
            assert status_of(first) == 500
            assert TOKEN.encode() not in first
            second = await raw(server, head + request)
            assert status_of(second) == 200
            assert server.stats["internal_error"] == 1
        assert errors == []

    with structlog.testing.capture_logs() as logs:
        run(body)
    failures = [e for e in logs if e["event"] == "callback_connection_failed"]
    assert len(failures) == 1 and failures[0]["error"] == "RuntimeError"
    assert all(TOKEN[:12] not in json.dumps(e, default=str) for e in logs)
    assert calls == [JOB, JOB]


def test_a_journal_failure_is_a_500_and_changes_nothing(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the journal cannot be read (a locked or broken database), the callback gets 500,
    nothing is woken, and the listener stays up."""
    def broken(states: list[str]) -> list[Any]:
        raise OSError(5, "Input/output error")

    async def body() -> None:
        errors = loop_errors_recorded()
        async with running(journal) as (server, rec):
            before = events_count(journal)
            monkeypatch.setattr(journal, "in_states", broken)
            request = json.dumps(callback_body()).encode()
            head = (f"POST /callback/{TOKEN} HTTP/1.1\r\nHost: x\r\n"
                    f"Content-Length: {len(request)}\r\n\r\n").encode()
            assert status_of(await raw(server, head + request)) == 500
            monkeypatch.undo()
            assert status_of(await raw(server, head + request)) == 200
            assert rec.calls == [JOB] and events_count(journal) == before
        assert errors == []
    run(body)


def test_closing_with_connections_in_progress_reports_nothing(journal: Journal) -> None:
    """close() abandons half-sent requests without an error report from asyncio (Python 3.11
    reports a cancelled start_server handler as an unhandled exception)."""
    async def body() -> None:
        errors = loop_errors_recorded()
        async with running(journal) as (server, _):
            host, port = server.address
            writers = []
            for _ in range(3):
                _, writer = await asyncio.open_connection(host, port)
                writer.write(b"POST /callback/x HTTP/1.1\r\nHost:")
                await writer.drain()
                writers.append(writer)
            deadline = time.monotonic() + 5
            while len(server._handlers) < 3:  # the three connections are being served
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
        assert server.stats["abandoned"] == 3
        for writer in writers:
            writer.close()
        assert errors == []
    run(body)


# -- connections: slots per address, idle clients, hang-ups ------------------------------------


async def _open_idle(port: int, source: str, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        writers.append(writer)
    return writers


def test_callbacks_get_through_while_idle_sockets_hold_every_slot(journal: Journal) -> None:
    """More idle connections than the listener has slots, from this and other addresses: a
    callback (from this very address, as behind a tunnel) is still accepted, the oldest idle
    connection making room; no address ever holds more than its share."""
    async def body() -> None:
        errors = loop_errors_recorded()
        async with running(journal) as (server, rec):
            _, port = server.address
            idle = []
            for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"):
                idle += await _open_idle(port, source, PER_ADDRESS + 1)
            request = json.dumps(callback_body()).encode()
            head = (f"POST /callback/{TOKEN} HTTP/1.1\r\nHost: x\r\n"
                    f"Content-Length: {len(request)}\r\n\r\n").encode()
            assert status_of(await raw(server, head + request)) == 200
            assert rec.calls == [JOB]
            assert server.limiter.held() <= MAX_CONNECTIONS
            assert all(server.limiter.held(f"127.0.0.{n}") <= PER_ADDRESS for n in range(1, 6))
            assert server.stats["evicted"] >= 5 * (PER_ADDRESS + 1) - MAX_CONNECTIONS
            for writer in idle:
                writer.close()
        assert errors == []
    run(body)


def test_one_address_holds_at_most_its_share_of_the_listener(journal: Journal) -> None:
    """An address opening one idle connection more than its share: its oldest is closed
    without an answer; another address's idle connection is left alone."""
    async def body() -> None:
        async with running(journal) as (server, _):
            _, port = server.address
            other = await _open_idle(port, "127.0.0.3", 1)
            readers = []
            for _ in range(PER_ADDRESS + 1):
                reader, _writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=("127.0.0.2", 0))
                readers.append((reader, _writer))
            async with asyncio.timeout(10):
                assert await readers[0][0].read() == b""
            async with asyncio.timeout(10):
                while server.limiter.held("127.0.0.2") != PER_ADDRESS:
                    await asyncio.sleep(0.01)
            assert server.limiter.held("127.0.0.3") == 1 and server.stats["evicted"] == 1
            for _, writer in readers:
                writer.close()
            other[0].close()
    run(body)


def test_clients_that_hang_up_on_the_listener_are_debug_lines(journal: Journal) -> None:
    """Idle, reset, and half-head hang-ups (on main the last logged callback_connection_failed
    at level error, from the answer written to a closed socket): debug lines only."""
    async def body() -> None:
        async with running(journal) as (server, _):
            host, port = server.address
            for half_head in (False, True):
                for reset in (False, True):
                    _, writer = await asyncio.open_connection(host, port)
                    if half_head:
                        writer.write(b"POST /callback/x HTTP/1.1\r\nHo")
                        await writer.drain()
                    if reset:
                        writer.get_extra_info("socket").setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.close()
            async with asyncio.timeout(10):
                while server.stats["client_gone"] < 4 or server._handlers:
                    await asyncio.sleep(0.01)

    with structlog.testing.capture_logs() as logs:
        run(body)
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []
    gone = [e for e in logs if e["event"] == "callback_client_gone"]
    assert len(gone) >= 2 and all(e["log_level"] == "debug" for e in gone)


def test_a_callback_with_the_token_is_never_evicted_mid_body(journal: Journal) -> None:
    """A callback whose head carried the token and whose body is still arriving (a big result
    on a slow link) keeps its slot while its address's share fills with idle connections:
    the idle ones make room for each other, the callback completes and is accepted."""
    async def body() -> None:
        async with running(journal) as (server, rec):
            _, port = server.address
            request = json.dumps(callback_body()).encode()
            head = (f"POST /callback/{TOKEN} HTTP/1.1\r\nHost: x\r\n"
                    f"Content-Length: {len(request)}\r\n\r\n").encode()
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.2", 0))
            writer.write(head + request[:10])
            await writer.drain()
            async with asyncio.timeout(10):
                while not any(s.busy for s in server.limiter._slots.values()):
                    await asyncio.sleep(0.01)
            idle = await _open_idle(port, "127.0.0.2", PER_ADDRESS + 2)
            async with asyncio.timeout(10):
                while server.stats["evicted"] < 3:
                    await asyncio.sleep(0.01)
            writer.write(request[10:])
            async with asyncio.timeout(10):
                assert status_of(await reader.read()) == 200
            assert rec.calls == [JOB]
            writer.close()
            for other in idle:
                other.close()
    run(body)
