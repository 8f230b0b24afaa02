"""Tests for the Gladia engine's listener and webhooks modules: the token, the strict HTTP
parser, the callback and webhook routes, and that every forged or malformed request has no
side effect.

Real sockets on 127.0.0.1 and a real journal; the pipeline is replaced only by a recorder of
``job_finished`` calls (the real wiring is tested in test_addons.py against the simulator).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import structlog

from watcherd.config import CallbackConfig, Config, GladiaConfig, Secret
from watcherd.engines.gladia import listener as listener_module
from watcherd.engines.gladia.listener import (
    Listener,
    load_or_create_token,
    safety_net,
    token_path,
)
from watcherd.engines.gladia.polling import JobHints
from watcherd.engines.gladia.webhooks import (
    SeenMessages,
    WebhookRejected,
    WebhookVerifier,
    decode_secret,
    parse_event,
    sign,
)
from watcherd.errors import ConfigError
from watcherd.http11 import HttpError, body_length, parse_head
from watcherd.journal import FileStat, Journal
from watcherd.retry import RetryPolicy

JOB = "45463597-20b7-4af7-b3b3-f5fb778203ab"
DONE = "8a1f6c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b"
OTHER = "c0ffee00-1234-4abc-8def-0123456789ab"
TOKEN = "tok_" + "A1b2C3d4" * 5
# The Standard Webhooks (Svix) specification's published test vector.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
T = TypeVar("T")


# -- fixtures and helpers ----------------------------------------------------------------------


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


class Recorder:
    """Stands in for GladiaPipeline.job_finished: records each job id it is told about."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, job_id: str) -> None:
        self.calls.append(job_id)


@asynccontextmanager
async def running(journal: Journal, **kwargs: Any) -> AsyncIterator[tuple[Listener, Recorder]]:
    """A started listener on an ephemeral 127.0.0.1 port, closed afterwards."""
    recorder = Recorder()
    options: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "token": Secret(TOKEN),
                               "journal": journal, "on_finished": recorder,
                               "nudge_delays": ()}
    options.update(kwargs)
    server = Listener(**options)
    await server.start()
    try:
        yield server, recorder
    finally:
        await server.close()


def run(coro: Callable[[], Awaitable[T]]) -> T:
    """Run one async test body to completion, bounded in time."""
    async def bounded() -> T:
        async with asyncio.timeout(30):
            return await coro()
    return asyncio.run(bounded())


async def post(server: Listener, path: str, body: Any, *, method: str = "POST",
               headers: dict[str, str] | None = None) -> httpx.Response:
    """One real HTTP request to the listener (body: bytes, or JSON-encoded)."""
    host, port = server.address
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.request(method, f"http://{host}:{port}{path}", content=content,
                                    headers=headers or {})


async def raw(server: Listener, data: bytes, *, close_write: bool = True) -> bytes:
    """Send raw bytes on a fresh connection and return everything the listener answers."""
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    if close_write:
        writer.write_eof()
    answer = await reader.read()
    writer.close()
    return answer


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer."""
    return int(answer.split(b" ", 2)[1])


def callback_body(job_id: str = JOB) -> dict[str, Any]:
    """A documented success callback body (docs/gladia-contract.md), minimal payload."""
    return {"id": job_id, "event": "transcription.success",
            "payload": {"metadata": {}, "transcription": {"full_transcript": "forged!"}},
            "custom_metadata": {"wf_key": "k1"}}


def events_count(journal: Journal) -> int:
    """How many transitions the journal holds, to prove a request changed nothing."""
    return sum(len(journal.events(s.id)) for s in journal.all())


# -- the token -------------------------------------------------------------------------------


def test_token_is_made_once_private_and_reused(tmp_path: Path) -> None:
    """The first call makes a 0600 token beside the journal; later calls return the same one."""
    path = token_path(tmp_path / "state" / "journal.db")
    assert path == tmp_path / "state" / "journal.db.callback-token"
    first = load_or_create_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.reveal()) >= 40
    assert load_or_create_token(path) == first
    assert first.reveal() not in repr(first)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_token_file_readable_by_others_is_tightened(tmp_path: Path) -> None:
    """A token file with group/other bits gets 0600 and keeps its token."""
    path = tmp_path / "j.db.callback-token"
    path.write_text(TOKEN + "\n", encoding="ascii")
    os.chmod(path, 0o644)
    assert load_or_create_token(path).reveal() == TOKEN
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_token_file_without_a_token_is_replaced(tmp_path: Path) -> None:
    """An empty or garbled file is replaced by a fresh 0600 token."""
    path = tmp_path / "j.db.callback-token"
    path.write_text("\n", encoding="ascii")
    token = load_or_create_token(path)
    assert token.reveal() != "" and path.read_text(encoding="ascii").strip() == token.reveal()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_token_that_cannot_be_stored_is_a_config_error(tmp_path: Path) -> None:
    """When no token can be stored, the message names the file, not a traceback."""
    blocker = tmp_path / "state"
    blocker.write_text("a file where the journal folder should be", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot keep the callback token") as caught:
        load_or_create_token(blocker / "j.db.callback-token")
    assert str(blocker / "j.db.callback-token") in str(caught.value)


# -- the strict parser -----------------------------------------------------------------------


def test_parse_head_reads_method_path_and_lowercase_headers() -> None:
    """The request line and headers are split strictly; the query is dropped from the path."""
    method, path, headers = parse_head(
        b"PUT /callback/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    assert (method, path) == ("PUT", "/callback/x")
    assert headers == {"host": "h", "content-length": "3", "x-a": "1, 2"}
    # h11 unfolds an obsolete folded line into one value (RFC 9112 5.2 allows that or a 400;
    # the hand-written parser refused it).
    assert parse_head(b"POST /x HTTP/1.1\r\nHost: h\r\nA: 1\r\n folded\r\n\r\n")[2] == {
        "host": "h", "a": "1 folded"}


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST /x\r\n\r\n", 400),
        (b"POST /x HTTP/2.0\r\n\r\n", 505),
        (b"post /x HTTP/1.1\r\n\r\n", 400),
        (b"POST http://evil/x HTTP/1.1\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nHost: h\r\nBad Header: 1\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
         400),
        (b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: \xc2\xb2\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        # HTTP/1.1 requires exactly one Host (RFC 9112 3.2); h11 enforces it.
        (b"POST /x HTTP/1.1\r\n\r\n", 400),
        (b"POST /x HTTP/1.1\r\nHost: h\r\n"
         + b"".join(b"H%d: v\r\n" % i for i in range(70)) + b"\r\n", 431),
        (b"POST /x HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
    ],
)
def test_parse_head_refuses_malformed_requests(head: bytes, status: int) -> None:
    """Anything outside plain HTTP/1.1 request syntax is refused with the right status."""
    with pytest.raises(HttpError) as caught:
        parse_head(head)
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 411), ({"transfer-encoding": "chunked", "content-length": "5"}, 400),
     ({"transfer-encoding": "gzip"}, 501),
     ({"content-length": "-1"}, 400), ({"content-length": "1e3"}, 400),
     ({"content-length": "\u00b2"}, 400), ({"content-length": "\u0661"}, 400),
     ({"content-length": "1\n"}, 400), ({"content-length": "1" * 16}, 400),
     ({"content-length": "1001"}, 413)],
)
def test_body_length_needs_a_sane_content_length(headers: dict[str, str], status: int) -> None:
    """No framing is 411, a malformed length (unicode digits too) or both framings 400, a
    length over the cap 413; a chunked body is accepted and capped while read (None)."""
    with pytest.raises(HttpError) as caught:
        body_length(headers, 1000)
    assert caught.value.status == status
    assert body_length({"content-length": "1000"}, 1000) == 1000
    assert body_length({"transfer-encoding": "chunked"}, 1000) is None


# -- callbacks -------------------------------------------------------------------------------


def test_callback_for_an_awaited_job_wakes_its_poll(journal: Journal) -> None:
    """A callback naming the awaited job is accepted and passed on as that job id only."""
    async def body() -> None:
        async with running(journal) as (server, recorder):
            before = events_count(journal)
            answer = await post(server, f"/callback/{TOKEN}", callback_body())
            assert (answer.status_code, answer.json()) == (200, {"status": "accepted"})
            assert answer.headers["connection"] == "close"
            put = await post(server, f"/callback/{TOKEN}", callback_body(), method="PUT")
            assert put.status_code == 200
            assert recorder.calls == [JOB, JOB]
            assert events_count(journal) == before
            assert server.stats["accepted"] == 2
    run(body)


def test_create_extras_put_the_tokened_url_on_every_job(journal: Journal) -> None:
    """create_extras asks Gladia to POST to /callback/TOKEN on this listener."""
    async def body() -> None:
        async with running(journal) as (server, _):
            host, port = server.address
            source = journal.all()[0]
            assert server.create_extras(source) == {
                "callback": True,
                "callback_config": {"url": f"http://{host}:{port}/callback/{TOKEN}",
                                    "method": "POST"},
            }
            assert TOKEN not in repr(server)
    run(body)


@pytest.mark.parametrize(
    ("path", "method", "body", "status", "stat_name"),
    [
        (f"/callback/{TOKEN[:-1]}", "POST", callback_body(), 404, "bad_token"),
        (f"/callback/{TOKEN}x", "POST", callback_body(), 404, "bad_token"),
        ("/callback/", "POST", callback_body(), 404, "bad_token"),
        (f"/callback/{TOKEN}", "POST", callback_body(OTHER), 404, "not_found"),
        (f"/callback/{TOKEN}", "POST", callback_body(DONE), 404, "not_found"),
        (f"/callback/{TOKEN}", "GET", b"", 405, "bad_method"),
        (f"/callback/{TOKEN}", "DELETE", b"", 405, "bad_method"),
        (f"/callback/{TOKEN}", "POST", b"{not json", 400, "bad_request"),
        (f"/callback/{TOKEN}", "POST", {"event": "transcription.success"}, 400, "bad_request"),
        (f"/callback/{TOKEN}", "POST", {"id": "../../etc"}, 400, "bad_request"),
        (f"/callback/{TOKEN}", "POST", [JOB], 400, "bad_request"),
        ("/webhook", "POST", {"event": "transcription.success"}, 404, "not_found"),
        ("/", "GET", b"", 404, "not_found"),
    ],
)
def test_forged_or_wrong_callbacks_have_no_side_effect(
    journal: Journal, path: str, method: str, body: Any, status: int, stat_name: str
) -> None:
    """Bad token, unknown or finished job, wrong method, bad body: refused, nothing woken."""
    async def run_it() -> None:
        async with running(journal) as (server, recorder):
            before = events_count(journal)
            answer = await post(server, path, body, method=method)
            assert answer.status_code == status
            if status == 405:
                assert answer.headers["allow"] == "POST, PUT"
            assert recorder.calls == []
            assert events_count(journal) == before
            assert server.stats[stat_name] == 1 and server.stats["accepted"] == 0
    run(run_it)


def test_unframed_and_oversized_bodies_are_refused_unread(journal: Journal) -> None:
    """Length-less bodies get 411; over the cap 413 before any body is sent; a chunked body is
    read within the cap (a proxy may re-frame a callback so) and refused once beyond it."""
    async def body() -> None:
        async with running(journal, max_callback_body=1000) as (server, recorder):
            head = f"POST /callback/{TOKEN} HTTP/1.1\r\nHost: x\r\n"
            chunked = await raw(server, (head + "Transfer-Encoding: chunked\r\n\r\n"
                                         "5\r\nhello\r\n0\r\n\r\n").encode())
            assert status_of(chunked) == 400  # read, and "hello" is not JSON
            sent = json.dumps(callback_body()).encode()
            good = await raw(server, (head + "Transfer-Encoding: chunked\r\n\r\n").encode()
                             + b"%x\r\n" % len(sent) + sent + b"\r\n0\r\n\r\n")
            assert status_of(good) == 200 and recorder.calls == [JOB]
            too_big = await raw(server, (head + "Transfer-Encoding: chunked\r\n\r\n"
                                         "3e9\r\n").encode() + b"x" * 1001, close_write=False)
            assert status_of(too_big) == 413
            assert status_of(await raw(server, (head + "\r\n").encode())) == 411
            # Only the head goes out: the 413 must come back without the body being awaited.
            big = await raw(server, (head + "Content-Length: 1001\r\n\r\n").encode(),
                            close_write=False)
            assert status_of(big) == 413
            assert recorder.calls == [JOB]
    run(body)


def test_default_cap_is_64_mib_and_a_stream_beyond_is_cut(journal: Journal) -> None:
    """A declared 64 MiB + 1 body is refused at once; the client learns it mid-upload."""
    async def body() -> None:
        async with running(journal) as (server, recorder):
            host, port = server.address
            reader, writer = await asyncio.open_connection(host, port)
            size = 64 * 1024 * 1024 + 1
            writer.write(f"POST /callback/{TOKEN} HTTP/1.1\r\nHost: x\r\n"
                         f"Content-Length: {size}\r\n\r\n".encode() + b"x" * 65536)
            await writer.drain()
            answer = await reader.read(4096)
            writer.close()
            assert status_of(answer) == 413
            assert recorder.calls == []
    run(body)


def test_oversized_head_is_431_and_slow_head_is_408(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head beyond 16 KiB is refused; a head that never completes times out."""
    monkeypatch.setattr(listener_module, "HEADER_TIMEOUT", 0.3)

    async def body() -> None:
        async with running(journal) as (server, recorder):
            huge = b"POST /x HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
            assert status_of(await raw(server, huge)) == 431
            slow = await raw(server, b"POST /callback/x HTTP/1.1\r\nHost:", close_write=False)
            assert status_of(slow) == 408
            assert recorder.calls == []
    run(body)


def test_public_url_path_is_the_route_prefix(journal: Journal) -> None:
    """With public_url https://h/watcherd, callbacks arrive under /watcherd/ and only there."""
    async def body() -> None:
        async with running(journal, public_url="https://h.example/watcherd/") as (server, rec):
            assert server.callback_url == f"https://h.example/watcherd/callback/{TOKEN}"
            assert (await post(server, f"/callback/{TOKEN}", callback_body())).status_code == 404
            ok = await post(server, f"/watcherd/callback/{TOKEN}", callback_body())
            assert ok.status_code == 200 and rec.calls == [JOB]
    run(body)


def test_binds_only_the_configured_address(journal: Journal) -> None:
    """Bound to 127.0.0.2, the listener does not answer on 127.0.0.1 at the same port."""
    async def body() -> None:
        async with running(journal, host="127.0.0.2") as (server, recorder):
            host, port = server.address
            assert host == "127.0.0.2"
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", port)
            answer = await post(server, f"/callback/{TOKEN}", callback_body())
            assert answer.status_code == 200 and recorder.calls == [JOB]
    run(body)


def test_a_port_in_use_is_a_config_error(journal: Journal) -> None:
    """Binding a busy port stops start-up with a message naming [callback] listen."""
    async def body() -> None:
        async with running(journal) as (server, _):
            _, port = server.address
            second = Listener(host="127.0.0.1", port=port, token=Secret(TOKEN), journal=journal,
                              on_finished=Recorder())
            with pytest.raises(ConfigError, match=r'\[callback\] listen = "127.0.0.1:\d+"'):
                await second.start()
    run(body)


def test_hint_is_repeated_while_the_job_is_still_awaited(journal: Journal) -> None:
    """A hint that may have fallen between two polls is repeated, and stops once done."""
    async def body() -> None:
        async with running(journal, nudge_delays=(0.05, 0.05, 5.0)) as (server, recorder):
            assert (await post(server, f"/callback/{TOKEN}", callback_body())).status_code == 200
            deadline = time.monotonic() + 5
            while len(recorder.calls) < 3:
                assert time.monotonic() < deadline, recorder.calls
                await asyncio.sleep(0.01)
            source = next(s for s in journal.all() if s.job_id == JOB)
            journal.transition(source, "done", actor="test")
            await asyncio.sleep(0.1)
            assert recorder.calls == [JOB, JOB, JOB]
    run(body)


def test_nothing_logged_carries_the_token(journal: Journal) -> None:
    """Across accepted and refused requests, no log line contains the token or its start."""
    async def body() -> None:
        async with running(journal) as (server, _):
            await post(server, f"/callback/{TOKEN}", callback_body())
            await post(server, f"/callback/{TOKEN[:-2]}", callback_body())
            await post(server, f"/callback/{TOKEN}", callback_body(OTHER))
            await post(server, f"/callback/{TOKEN}", b"", method="GET")

    with structlog.testing.capture_logs() as logs:
        run(body)
    assert len(logs) >= 4
    assert all(TOKEN[:12] not in json.dumps(entry, default=str) for entry in logs)


def test_safety_net_slows_polling() -> None:
    """With callbacks on, polls start 30x later and cap 10x later; other timings unchanged."""
    slow = safety_net(RetryPolicy())
    assert (slow.poll_start, slow.poll_cap) == (30.0, 300.0)
    assert slow.retry_base == RetryPolicy().retry_base


# -- webhooks --------------------------------------------------------------------------------


def signed(body: bytes, *, secret: str = VECTOR_SECRET, message_id: str = "msg_1",
           timestamp: int | None = None, family: str = "webhook",
           extra_signatures: str = "") -> dict[str, str]:
    """Svix-style headers for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    signature = sign(decode_secret(Secret(secret)), message_id, ts, body)
    return {f"{family}-id": message_id, f"{family}-timestamp": str(ts),
            f"{family}-signature": f"{extra_signatures} {signature}".strip(),
            "content-type": "application/json"}


def hook_body(job_id: str = JOB, event: str = "transcription.success") -> bytes:
    """A documented webhook body (docs/gladia-contract.md): only the event and the job id."""
    return json.dumps({"event": event, "payload": {"id": job_id}}).encode()


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    """sign() reproduces the published Svix / Standard Webhooks reference signature."""
    key = decode_secret(Secret(VECTOR_SECRET))
    assert sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
    verifier = WebhookVerifier(Secret(VECTOR_SECRET), clock=lambda: 1614265330 + 299)
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
               "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    assert verifier.verify(headers, b'{"test": 2432232314}') == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    assert VECTOR_SECRET[6:] not in repr(verifier)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-signature": "v1,AAAA"}, "bad signature"),
        ({"webhook-signature": "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
         "bad signature"),
        ({"webhook-timestamp": "1614265331"}, "bad signature"),
        ({"webhook-id": "msg_other"}, "bad signature"),
        ({"webhook-timestamp": "soon"}, "malformed webhook-timestamp"),
        ({"webhook-signature": ""}, "no webhook-signature"),
    ],
)
def test_verifier_refuses_tampered_headers(change: dict[str, str], reason: str) -> None:
    """Any change to the id, timestamp or signature fails verification."""
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
               "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", **change}
    verifier = WebhookVerifier(Secret(VECTOR_SECRET), clock=lambda: 1614265330)
    with pytest.raises(WebhookRejected, match=reason):
        verifier.verify(headers, b'{"test": 2432232314}')


def test_verifier_refuses_a_tampered_body() -> None:
    """The reference headers with one byte of the body changed fail verification."""
    headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
               "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
    verifier = WebhookVerifier(Secret(VECTOR_SECRET), clock=lambda: 1614265330)
    with pytest.raises(WebhookRejected, match="bad signature"):
        verifier.verify(headers, b'{"test": 2432232315}')


def test_timestamp_tolerance_is_five_minutes_each_way() -> None:
    """Signed 300 s ago or ahead is accepted; 301 s either way is refused, however well signed."""
    body = b'{"event": "transcription.success", "payload": {"id": "x"}}'
    verifier = WebhookVerifier(Secret(VECTOR_SECRET), clock=lambda: 1_700_000_000.0)
    for offset, ok in ((-300, True), (300, True), (-301, False), (301, False)):
        headers = signed(body, message_id="m", timestamp=1_700_000_000 + offset)
        if ok:
            assert verifier.verify(headers, body) == "m"
        else:
            with pytest.raises(WebhookRejected, match=r"too old|in the future"):
                verifier.verify(headers, body)


def test_seen_messages_forget_the_oldest_beyond_capacity() -> None:
    """The dedupe memory is bounded and keeps the most recent ids."""
    seen = SeenMessages(capacity=3)
    for name in ("a", "b", "c", "d"):
        seen.add(name)
    assert "a" not in seen and all(n in seen for n in "bcd") and len(seen) == 3


def test_parse_event_reads_event_and_id_only() -> None:
    """A webhook body gives the event name and payload.id; anything else is refused."""
    assert parse_event(hook_body()).job_id == JOB
    assert parse_event(hook_body()).finished
    assert not parse_event(hook_body(event="transcription.created")).finished
    for bad in (b"[]", b"{", b'{"event": 1}', b'{"event": "x", "payload": {"id": "a/b"}}'):
        with pytest.raises(WebhookRejected):
            parse_event(bad)


def test_signed_webhook_for_an_awaited_job_wakes_its_poll(journal: Journal) -> None:
    """A genuine success webhook (either header family) wakes the job once per message."""
    async def body() -> None:
        async with running(journal, webhook_secret=Secret(VECTOR_SECRET)) as (server, recorder):
            assert server.webhook_url is not None and server.webhook_url.endswith("/webhook")
            data = hook_body()
            first = await post(server, "/webhook", data, headers=signed(data))
            assert (first.status_code, first.json()) == (200, {"status": "accepted"})
            svix = await post(server, "/webhook", data,
                              headers=signed(data, message_id="msg_2", family="svix"))
            assert svix.json() == {"status": "accepted"}
            rotated = await post(server, "/webhook", data, headers=signed(
                data, message_id="msg_3", extra_signatures="v1,b2xkIHNlY3JldA== v1a,xyz"))
            assert rotated.json() == {"status": "accepted"}
            error = hook_body(event="transcription.error")
            failed = await post(server, "/webhook", error, headers=signed(error, message_id="m4"))
            assert failed.json() == {"status": "accepted"}
            assert recorder.calls == [JOB] * 4
    run(body)


def test_forged_replayed_and_foreign_webhooks_have_no_side_effect(journal: Journal) -> None:
    """Bad signature, wrong secret, stale or future timestamp: 401; replays and jobs we do not
    await: acknowledged and ignored; none of them wakes anything or touches the journal."""
    async def body() -> None:
        async with running(journal, webhook_secret=Secret(VECTOR_SECRET)) as (server, recorder):
            before = events_count(journal)
            data = hook_body()
            now = int(time.time())
            other_secret = "whsec_" + "c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ="
            refused = [
                (data, {**signed(data), "webhook-signature": "v1,AAAA"}),
                (data, signed(data, secret=other_secret)),
                # Well past the 5 minutes, so the seconds this test takes cannot matter.
                (data, signed(data, timestamp=now - 330)),
                (data, signed(data, timestamp=now + 330)),
                (hook_body(OTHER), signed(data)),
            ]
            for sent, headers in refused:
                assert (await post(server, "/webhook", sent, headers=headers)).status_code == 401
            assert (await post(server, "/webhook", data)).status_code == 400
            assert (await post(server, "/webhook", data, method="PUT",
                               headers=signed(data))).status_code == 405
            assert recorder.calls == []
            first = await post(server, "/webhook", data, headers=signed(data, message_id="m1"))
            assert first.json() == {"status": "accepted"}
            replay = await post(server, "/webhook", data, headers=signed(data, message_id="m1"))
            assert (replay.status_code, replay.json()) == (200, {"status": "duplicate"})
            for job_id, event in ((OTHER, "transcription.success"), (DONE, "transcription.error"),
                                  (JOB, "transcription.created")):
                sent = hook_body(job_id, event)
                answer = await post(server, "/webhook", sent,
                                    headers=signed(sent, message_id=f"x-{job_id}-{event}"))
                assert (answer.status_code, answer.json()) == (200, {"status": "ignored"})
            assert recorder.calls == [JOB]
            assert events_count(journal) == before
            assert server.stats["bad_signature"] == 5
    run(body)


def test_start_listener_only_with_a_callback_section(tmp_path: Path, journal: Journal) -> None:
    """No [callback]: no listener and no port; with one, a listener that hints the given hub."""
    config = Config(source=None, gladia=GladiaConfig(), engine="auto", local_model="base",
                    journal_path=tmp_path / "journal.db", log_format="json", log_level="info",
                    watches=())

    async def body() -> None:
        hints = JobHints()
        assert await listener_module.start_listener(config, journal, hints) is None
        on = dataclasses.replace(config, callback=CallbackConfig(address=("127.0.0.1", 0)))
        listener = await listener_module.start_listener(on, journal, hints)
        assert listener is not None
        await listener.close()
    run(body)
    # The token is made only when a listener starts, and kept owner-only beside the journal.
    assert token_path(tmp_path / "journal.db").stat().st_mode & 0o077 == 0
