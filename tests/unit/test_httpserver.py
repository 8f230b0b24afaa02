"""watcherd's one HTTP server (watcherd.httpserver): the status page and the callback listener
are the same server with different rules, so a request broken at the HTTP level is refused the
same way by both; every answer carries its status's standard phrase (http.HTTPStatus) and
parses as HTTP/1.1; a handler's rules judge the head before any body is read.

Real servers on 127.0.0.1, real sockets, a real journal for the listener.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import h11
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.engines.gladia.test_listener import TOKEN, run, running, status_of
from watcherd.http11 import HttpError, Request
from watcherd.httpserver import BodyRule, HttpServer, Response, ServerRules, reason_phrase
from watcherd.journal import Journal
from watcherd.web.http import PAGE_HEADERS, page_server, text_response

HEADER_NAMES = st.from_regex(r"x-[a-z0-9-]{1,20}", fullmatch=True)
HEADER_VALUES = st.from_regex(r"[ -~]{0,40}", fullmatch=True).map(str.strip)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """An empty journal, for a listener that is only asked broken requests."""
    j = Journal.open(tmp_path / "journal.db", exclusive=True)
    yield j
    j.close()


def parse_answer(wire: bytes, method: str = "GET") -> tuple[h11.Response, bytes]:
    """The response and body h11, as a client that sent ``method``, reads from ``wire``."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(wire)
    client.receive_data(b"")
    head = client.next_event()
    assert isinstance(head, h11.Response)
    body = b""
    while not isinstance(event := client.next_event(), h11.EndOfMessage):
        assert isinstance(event, h11.Data)
        body += event.data
    return head, body


@given(status=st.integers(200, 599).filter(lambda s: s != 304), body=st.binary(max_size=300),
       headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4))
def test_every_answer_parses_with_its_standard_phrase(status: int, body: bytes,
                                                      headers: dict[str, str]) -> None:
    """Any status, body and extra headers: h11 reads back the same status, body and headers,
    with the standard reason phrase; the answer closes the connection."""
    wire = Response(status, body if status != 204 else b"", headers=headers).encode(
        common=PAGE_HEADERS)
    head, got = parse_answer(wire)
    assert head.status_code == status
    assert head.reason.decode() == reason_phrase(status)
    assert got == (body if status != 204 else b"")
    sent = {k.decode().lower(): v.decode() for k, v in head.headers}
    assert sent["connection"] == "close"
    assert sent["x-frame-options"] == "DENY"
    for name, value in headers.items():
        assert sent[name] == value


def test_reason_phrases_are_the_standard_ones() -> None:
    """Every status gets http.HTTPStatus's phrase, also those no server table listed (the
    page had no 418 or 422, and answered them "Error"); a code outside the standard is
    "Error"."""
    for status in (200, 303, 404, 413, 418, 421, 422, 429, 431, 503, 505):
        assert reason_phrase(status) == HTTPStatus(status).phrase
        assert Response(status).encode().startswith(
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode())
    assert reason_phrase(599) == "Error"


def test_a_head_answer_has_no_body_but_its_length() -> None:
    """HEAD: the head of the GET answer (its Content-Length), without the body."""
    wire = Response(200, b"hello").encode(head_only=True)
    assert wire.endswith(b"\r\n\r\n") and b"Content-Length: 5\r\n" in wire
    head, body = parse_answer(wire, method="HEAD")
    assert head.status_code == 200 and body == b""


async def _ask(address: tuple[str, int], data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    await writer.drain()
    writer.write_eof()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    return answer


async def _ok(request: Request) -> Response:
    return text_response(200, "ok")


BROKEN_REQUESTS = [
    pytest.param(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505, id="unknown-version"),
    pytest.param(b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="absolute-target"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, id="two-hosts"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431,
                 id="huge-head"),
    pytest.param(b"\x00\x01\x02 nonsense\r\n\r\n", 400, id="not-http"),
    pytest.param(b"G\xc3\xa9T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="non-ascii-method"),
]


@pytest.mark.parametrize(("data", "status"), BROKEN_REQUESTS)
def test_the_page_and_the_listener_refuse_broken_http_alike(
        journal: Journal, data: bytes, status: int) -> None:
    """A request broken at the HTTP level gets the same status from both servers, each in its
    own form (plain text from the page, JSON from the listener), with the standard phrase."""
    async def body() -> None:
        page = page_server("127.0.0.1", 0, _ok)
        await page.start()
        try:
            async with running(journal) as (listener, _):
                from_page = await _ask(page.address, data)
                from_listener = await _ask(listener.address, data)
        finally:
            await page.close()
        for answer in (from_page, from_listener):
            assert answer.startswith(f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                                     .encode())
        assert b"Content-Type: text/plain" in from_page
        assert "error" in json.loads(from_listener.split(b"\r\n\r\n", 1)[1])
        assert TOKEN.encode() not in from_listener
    run(body)


def test_rules_judge_the_head_before_any_body_is_read() -> None:
    """A body rule that refuses a head is answered at once, though the declared body never
    comes; ``on_refused`` hears of it with the client's address; a body within the rule
    reaches the handler."""
    refused: list[tuple[str, str | None, int]] = []
    seen: list[bytes] = []

    def rule(head: Request) -> BodyRule:
        if head.path != "/in":
            raise HttpError(404, "not found")
        return BodyRule(max_body=10)

    async def handler(request: Request) -> Response:
        seen.append(request.body)
        return text_response(200, "ok")

    rules = ServerRules(
        name="test", logger="tests.httpserver", max_body=10, request_timeout=10.0,
        body_rule=rule,
        on_refused=lambda peer, head, exc: refused.append(
            (peer, head.path if head else None, exc.status)))

    async def body() -> None:
        server = HttpServer("127.0.0.1", 0, handler, rules)
        await server.start()
        try:
            reader, writer = await asyncio.open_connection(*server.address)
            writer.write(b"POST /elsewhere HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(10):  # answered without the body being sent
                assert status_of(await reader.read()) == 404
            writer.close()
            too_big = b"POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
            assert status_of(await _ask(server.address, too_big)) == 413
            good = b"POST /in HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            assert status_of(await _ask(server.address, good)) == 200
        finally:
            await server.close()
    run(body)
    assert refused == [("127.0.0.1", "/elsewhere", 404), ("127.0.0.1", "/in", 413)]
    assert seen == [b"hello"]


def test_a_failing_handler_is_one_500_and_one_log_line() -> None:
    """A handler that raises: 500 in the rules' form, the failure logged once under the
    server's name, the next request served."""
    calls: list[str] = []

    async def handler(request: Request) -> Response:
        calls.append(request.path)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return text_response(200, "ok")

    async def body() -> None:
        server = page_server("127.0.0.1", 0, handler)
        await server.start()
        try:
            get = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
            first = await _ask(server.address, get)
            assert status_of(first) == 500 and b"see the watcherd log" in first
            assert status_of(await _ask(server.address, get)) == 200
        finally:
            await server.close()

    with structlog.testing.capture_logs() as logs:
        run(body)
    failures = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in failures] == ["web_request_failed"]
    assert failures[0]["error"] == "RuntimeError"
