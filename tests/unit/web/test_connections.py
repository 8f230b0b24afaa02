"""The status page's connections: slots per client address, the head deadline, /healthz while
idle or slow clients hold every slot, hang-ups at debug, and the login limit and session expiry.

Real servers on 127.0.0.1 and real sockets; clients from other loopback addresses
(127.0.0.2, ...) stand for other machines. The limiter and the login throttle are also
searched by Hypothesis: any interleaving of opening, idling, working and closing keeps the
limits, and never refuses a connection that an idle one could make room for.
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.daemon_harness import wait_until
from tests.unit.web.test_harness import RunningWeb
from watcherd.config import HttpConfig, Secret
from watcherd.connections import MAX_CONNECTIONS, PER_ADDRESS, ConnectionLimiter, ConnectionLimits
from watcherd.http11 import Request
from watcherd.web.guard import SESSION_SECONDS
from watcherd.web.http import Response, page_server, text_response
from watcherd.web.throttle import MAX_FAILURES, WINDOW_SECONDS, LoginThrottle

StartWeb = Callable[..., RunningWeb]
TOKEN = "tok-" + "Kp7" * 10


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to the page from ``source`` (a loopback address standing for a host)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def answer_of(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer."""
    return int(answer.split(b" ", 2)[1])


def still_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed nor answered this connection (yet)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    finally:
        sock.settimeout(10)
    return False


def healthz(port: int, source: str = "127.0.0.1") -> int:
    """GET /healthz over a fresh connection from ``source``; the status code."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(f"http://127.0.0.1:{port}/healthz").status_code


def held(web: RunningWeb, address: str | None = None) -> int:
    """Slots the page's limiter holds (for ``address``, or in all), read on its loop."""
    async def count() -> int:
        assert web.server is not None
        return web.server.http.limiter.held(address)
    return web.run(count())


@contextmanager
def sockets() -> Iterator[list[socket.socket]]:
    """A list of sockets closed afterwards."""
    made: list[socket.socket] = []
    try:
        yield made
    finally:
        for sock in made:
            sock.close()


# -- /healthz while idle and slow clients hold every slot --------------------------------------


def test_healthz_answers_while_idle_sockets_hold_every_slot(web_page: StartWeb) -> None:
    """More idle sockets than there are slots (from this and four other addresses), and a
    client trickling its head: /healthz still answers 200 from any address, and the limiter
    never holds more than its limits. (On main, 33 idle sockets made it answer 503.)"""
    web = web_page()
    sources = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    with sockets() as idle:
        for index in range(MAX_CONNECTIONS + 8):
            idle.append(connect(web.port, sources[index % len(sources)]))
        slow = connect(web.port, "127.0.0.6")
        idle.append(slow)
        slow.sendall(b"GET / HTTP/1.1\r\nHost: 127.0")
        # The server admits connections in the order it accepts them: every socket above
        # holds or has held a slot before the health check's own connection asks for one.
        for source in ("127.0.0.1", "127.0.0.2", "127.0.0.9"):
            assert healthz(web.port, source) == 200
        # The first health check took the place of the oldest idle socket, then left; the
        # next ones found its slot free.
        wait_until(lambda: held(web) == MAX_CONNECTIONS - 1, message="the idle sockets' slots")
        assert all(held(web, source) <= PER_ADDRESS for source in sources)
        assert still_open(idle[-1])  # the slow one (the newest) was not the one evicted


def test_busy_slots_refuse_with_503_and_other_addresses_go_on() -> None:
    """Connections whose requests are being worked on are never evicted: when one address's
    share is all busy, its next connection is refused (503, Retry-After); another address is
    still served."""
    release = asyncio.Event()

    async def handler(request: Request) -> Response:
        if request.path == "/slow":
            await release.wait()
        return text_response(200, "ok")

    async def body() -> None:
        server = page_server("127.0.0.1", 0, handler, limits=ConnectionLimits(4, 2))
        await server.start()
        port = server.address[1]
        head = f"GET /slow HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        try:
            pending = []
            for _ in range(2):
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=("127.0.0.2", 0))
                writer.write(head)
                pending.append((reader, writer))
            async with asyncio.timeout(10):
                while sum(s.busy for s in server.limiter._slots.values()) < 2:
                    await asyncio.sleep(0.01)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.2", 0))
            refused = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert status_of(refused) == 503 and b"Retry-After: 1" in refused
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=("127.0.0.3", 0))
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert status_of(await asyncio.wait_for(reader.read(), 10)) == 200
            writer.close()
            release.set()
            for reader, writer in pending:
                assert status_of(await asyncio.wait_for(reader.read(), 10)) == 200
                writer.close()
        finally:
            await server.close()
    asyncio.run(body())


# -- per-address slots -------------------------------------------------------------------------


def test_one_address_holds_at_most_its_share(web_page: StartWeb) -> None:
    """One address opening more idle connections than its share: its oldest is closed to make
    room (the limiter holds PER_ADDRESS for it), and another address's idle ones are left."""
    web = web_page()
    with sockets() as made:
        others = [connect(web.port, "127.0.0.3") for _ in range(2)]
        made += others
        wait_until(lambda: held(web, "127.0.0.3") == 2, message="the other address's slots")
        mine = []
        for _ in range(PER_ADDRESS + 1):
            mine.append(connect(web.port, "127.0.0.2"))
            made.append(mine[-1])
        assert answer_of(mine[0]) == b""  # closed without an answer: it never asked anything
        wait_until(lambda: held(web, "127.0.0.2") == PER_ADDRESS, message="its full share")
        assert all(still_open(sock) for sock in mine[1:] + others)
        assert held(web, "127.0.0.3") == 2


# -- the head deadline -------------------------------------------------------------------------


def test_slow_header_sender_is_answered_408_and_closed(web_page: StartWeb) -> None:
    """A client trickling its head a byte at a time (each byte in time for any per-read
    timeout, and the whole request's deadline far off) is answered 408 and closed at the head
    deadline, before its head is complete."""
    web = web_page()
    assert web.server is not None
    web.server.http.header_timeout = 0.5
    web.server.http.request_timeout = 60.0
    head = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{web.port}\r\n"
            + "".join(f"X-Pad-{i}: {'a' * 30}\r\n" for i in range(40)) + "\r\n").encode()
    with sockets() as made:
        sock = connect(web.port)
        made.append(sock)
        sent = 0
        deadline = time.monotonic() + 20
        while sent < len(head) and still_open(sock) and time.monotonic() < deadline:
            try:
                sock.sendall(head[sent:sent + 1])
            except ConnectionError:
                break
            sent += 1
            time.sleep(0.01)  # pacing the client; the loop ends on the server's answer
        answer = answer_of(sock)
    assert status_of(answer) == 408 and b"did not arrive in time" in answer
    assert sent < len(head)


# -- hang-ups ----------------------------------------------------------------------------------


def _hang_up(port: int, mode: str) -> None:
    sock = connect(port)
    if mode in ("half head", "half head, reset"):
        sock.sendall(b"GET / HTTP/1.1\r\nHo")
    if mode.endswith("reset"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_clients_that_hang_up_are_debug_lines_not_errors(web_page: StartWeb) -> None:
    """An idle socket closed, one reset, one closed half-way through its head (on main that
    one logged web_connection_failed at level error): debug lines, nothing at error."""
    web = web_page()
    with structlog.testing.capture_logs() as logs:
        for mode in ("idle", "idle, reset", "half head", "half head, reset"):
            _hang_up(web.port, mode)
        wait_until(lambda: held(web) == 0, message="the hung-up connections ended")
        assert healthz(web.port) == 200
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []
    gone = [e for e in logs if e["event"] == "web_client_gone"]
    assert gone and all(e["log_level"] == "debug" for e in gone)


# -- login: limited per client, sessions expire ------------------------------------------------


def login(port: int, token: str, source: str = "127.0.0.1") -> httpx.Response:
    """POST /login from ``source``."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.post(f"http://127.0.0.1:{port}/login", data={"token": token})


def test_login_is_limited_per_client_address(web_page: StartWeb) -> None:
    """Five wrong tokens in a minute, then 429 with Retry-After, even for the right token (a
    warning once); another address signs in meanwhile; a minute later this one may again."""
    web = web_page(HttpConfig(token=Secret(TOKEN)))
    assert web.server is not None
    now = [1000.0]
    web.server.app.logins.clock = lambda: now[0]
    with structlog.testing.capture_logs() as logs:
        for _ in range(MAX_FAILURES):
            assert login(web.port, "wrong").status_code == 401
        for _ in range(3):
            assert login(web.port, "wrong").status_code == 429
    # Said once at warning, when the limit is reached; the guesses after it do not flood.
    throttled = [e for e in logs if e["event"] == "web_login_throttled"]
    assert [e["log_level"] for e in throttled] == ["warning", "debug", "debug", "debug"]
    limited = login(web.port, TOKEN)
    assert limited.status_code == 429 and "wait" in limited.text
    assert 1 <= int(limited.headers["retry-after"]) <= WINDOW_SECONDS
    assert "set-cookie" not in limited.headers
    assert login(web.port, TOKEN, source="127.0.0.2").status_code == 303
    now[0] += WINDOW_SECONDS + 1
    assert login(web.port, TOKEN).status_code == 303


def test_session_cookie_expires(web_page: StartWeb) -> None:
    """The cookie says Max-Age, and the server itself stops accepting it after
    SESSION_SECONDS; a cookie with its time changed is refused at once."""
    web = web_page(HttpConfig(token=Secret(TOKEN)))
    assert web.server is not None
    app = web.server.app
    signed_in = login(web.port, TOKEN)
    assert signed_in.status_code == 303
    set_cookie = signed_in.headers["set-cookie"]
    assert f"Max-Age={SESSION_SECONDS}" in set_cookie and TOKEN not in set_cookie
    found = re.match(r"watcherd_session=([^;]+)", set_cookie)
    assert found
    value = found[1]

    def page(cookie: str) -> int:
        return httpx.get(web.url + "/", cookies={"watcherd_session": cookie},
                         timeout=10).status_code

    assert page(value) == 200
    issued, mac = value.split(".")
    assert page(f"{int(issued) + 3600}.{mac}") == 401
    started = time.time()
    app.clock = lambda: started + SESSION_SECONDS - 5
    assert page(value) == 200
    app.clock = lambda: started + SESSION_SECONDS + 5
    assert page(value) == 401


@given(events=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]),
                                 st.floats(0, 30, allow_nan=False), st.booleans()),
                       max_size=60))
def test_throttle_never_lets_more_than_the_limit_through(
        events: list[tuple[str, float, bool]]) -> None:
    """Whatever the timing: within any window, no address gets more than MAX_FAILURES wrong
    guesses compared, and one that is refused is told a wait within the window."""
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    compared: dict[str, list[float]] = {}
    for address, step, right in events:
        now[0] += step
        wait = throttle.retry_after(address)
        if wait is not None:
            assert 1 <= wait <= WINDOW_SECONDS
            continue
        if right:
            throttle.succeeded(address)
            compared[address] = []
            continue
        throttle.failed(address)
        times = [t for t in compared.get(address, []) if t > now[0] - WINDOW_SECONDS]
        compared[address] = [*times, now[0]]
        assert len(compared[address]) <= MAX_FAILURES


# -- the limiter under any interleaving --------------------------------------------------------


class LimiterMachine(RuleBasedStateMachine):
    """Connections from three addresses open, start and finish work, and close in any order,
    against a small limiter (4 in all, 2 per address)."""

    LIMITS = ConnectionLimits(total=4, per_address=2)

    def __init__(self) -> None:
        super().__init__()
        self.limiter = ConnectionLimiter(self.LIMITS)
        self.open: list[Any] = []  # (slot, busy context or None)
        self.closed: set[int] = set()

    @rule(address=st.sampled_from(["a", "b", "c"]))
    def connect(self, address: str) -> None:
        before = [s for s, _ in self.open]
        same_idle = [s for s in before if s.address == address and not s.busy]
        any_idle = [s for s in before if not s.busy]
        share_full = sum(s.address == address for s in before) >= self.LIMITS.per_address
        server_full = len(before) >= self.LIMITS.total
        slot = self.limiter.admit(address, lambda: None)
        if slot is None:
            # Refused only when nothing idle could make room.
            assert (share_full and not same_idle) or (
                not share_full and server_full and not any_idle)
            return
        evicted = [s for s in before if s.evicted]
        if share_full:
            assert evicted == same_idle[:1]
        elif server_full:
            assert evicted == any_idle[:1]
        else:
            assert evicted == []
        self.open = [(s, ctx) for s, ctx in self.open if not s.evicted]
        self.open.append((slot, None))

    @precondition(lambda self: any(ctx is None for _, ctx in self.open))
    @rule(data=st.data())
    def start_work(self, data: st.DataObject) -> None:
        idle = [i for i, (_, ctx) in enumerate(self.open) if ctx is None]
        index = data.draw(st.sampled_from(idle))
        slot, _ = self.open[index]
        ctx = self.limiter.working(slot)
        ctx.__enter__()
        self.open[index] = (slot, ctx)

    @precondition(lambda self: any(ctx is not None for _, ctx in self.open))
    @rule(data=st.data())
    def finish_work(self, data: st.DataObject) -> None:
        busy = [i for i, (_, ctx) in enumerate(self.open) if ctx is not None]
        index = data.draw(st.sampled_from(busy))
        slot, ctx = self.open[index]
        ctx.__exit__(None, None, None)
        self.open[index] = (slot, None)

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.open) - 1))
        slot, ctx = self.open.pop(index)
        if ctx is not None:
            ctx.__exit__(None, None, None)
        self.limiter.release(slot)
        self.limiter.release(slot)  # twice: harmless

    @invariant()
    def within_limits(self) -> None:
        assert self.limiter.held() == len(self.open) <= self.LIMITS.total
        for address in "abc":
            assert self.limiter.held(address) <= self.LIMITS.per_address


TestLimiterInterleavings = LimiterMachine.TestCase
TestLimiterInterleavings.settings = settings(max_examples=100, stateful_step_count=40)


_OPS = st.lists(st.tuples(st.sampled_from(["open", "half head", "close", "reset"]),
                          st.sampled_from(["127.0.0.2", "127.0.0.3", "127.0.0.4"])),
                min_size=1, max_size=20)


@settings(max_examples=15)
@given(ops=_OPS, asker=st.sampled_from(["127.0.0.1", "127.0.0.2", "127.0.0.4"]))
def test_healthz_answers_after_any_interleaving_of_idle_clients(
        ops: list[tuple[str, str]], asker: str) -> None:
    """Against a real server with small limits (6 in all, 3 per address): after any sequence
    of idle connections opened, half-sent heads, closes and resets, the limits hold and a
    health check from any address is answered 200."""
    async def handler(request: Request) -> Response:
        return text_response(200, "ok")

    async def body() -> None:
        server = page_server("127.0.0.1", 0, handler, limits=ConnectionLimits(6, 3))
        await server.start()
        port = server.address[1]
        clients: list[asyncio.StreamWriter] = []
        try:
            for op, source in ops:
                if op in ("open", "half head") or not clients:
                    _, writer = await asyncio.open_connection(
                        "127.0.0.1", port, local_addr=(source, 0))
                    if op == "half head":
                        writer.write(b"GET / HTTP/1.1\r\nHost: x")
                    clients.append(writer)
                else:
                    writer = clients.pop(0)
                    if op == "reset":
                        sock = writer.get_extra_info("socket")
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                    writer.close()
                await asyncio.sleep(0)
                assert server.limiter.held() <= 6
                assert all(server.limiter.held(s) <= 3 for s in ("127.0.0.2", "127.0.0.3"))
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(asker, 0))
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert status_of(answer) == 200
        finally:
            for writer in clients:
                writer.close()
            await server.close()

    run_bounded(body)


def run_bounded(body: Callable[[], Awaitable[None]]) -> None:
    """Run one async test body, bounded in time."""
    async def bounded() -> None:
        async with asyncio.timeout(30):
            await body()
    asyncio.run(bounded())


@pytest.mark.parametrize("limits", [(0, 0), (4, 0), (2, 3)])
def test_limits_must_make_sense(limits: tuple[int, int]) -> None:
    """A total below the per-address share (or none at all) is refused at once."""
    with pytest.raises(ValueError, match="per_address"):
        ConnectionLimits(*limits)

