"""The status page's HTTP server: small, strict HTTP/1.1 on the event loop, parsed by h11.

The same rules as the callback listener (:mod:`watcherd.listener`, whose request checks it
reuses): one request per connection, a bounded head and body, a deadline for the head and one
for the whole request, connection slots per client address (:mod:`watcherd.connections`: an
idle or slow client is evicted to make room, so ``/healthz`` is answered while they hold every
slot), and a fault boundary per connection, so a bad request ends that connection only and
never the daemon. What to answer is the application's business (:mod:`watcherd.web.app`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import h11
import structlog

from watcherd.connections import ConnectionLimiter, ConnectionLimits, Slot, is_hangup, peer_address
from watcherd.http11 import (
    HEADER_TIMEOUT,
    MAX_HEADER_BYTES,
    HttpError,
    Request,
    Wire,
    body_length,
    finish,
)

log = structlog.get_logger("watcherd.web")

# Forms on the page carry an id and a token: a few KB is plenty.
MAX_BODY = 16 * 1024
# The whole request (head and body) from the connection's start.
REQUEST_TIMEOUT = 15.0
_REASONS = {
    200: "OK", 303: "See Other", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    411: "Length Required", 413: "Content Too Large", 421: "Misdirected Request",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}
# Every answer: nothing cached, nothing sniffed, never framed by another site.
_COMMON_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Response:
    """One answer: status, body, its media type, and any extra headers."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    def encode(self, *, head_only: bool = False) -> bytes:
        """The answer's bytes on the wire (HTTP/1.1, Connection: close)."""
        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Error')}",
                 f"Content-Type: {self.content_type}", f"Content-Length: {len(self.body)}",
                 "Connection: close",
                 *(f"{k}: {v}" for k, v in {**_COMMON_HEADERS, **self.headers}.items())]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def text_response(status: int, text: str, **headers: str) -> Response:
    """A plain-text answer (errors, health)."""
    return Response(status, (text + "\n").encode("utf-8"), headers=headers)


Handler = Callable[[Request], Awaitable[Response]]


class HttpServer:
    """Binds one address and hands each parsed request to ``handler``."""

    def __init__(self, host: str, port: int, handler: Handler, *,
                 request_timeout: float = REQUEST_TIMEOUT,
                 header_timeout: float = HEADER_TIMEOUT,
                 limits: ConnectionLimits | None = None) -> None:
        self.host = host
        self.port = port
        self.handler = handler
        self.request_timeout = request_timeout
        self.header_timeout = header_timeout
        self.limiter = ConnectionLimiter(limits or ConnectionLimits())
        self._server: asyncio.Server | None = None
        self._bound: tuple[str, int] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind (OSError when the address is taken or not this machine's) and serve."""
        self._server = await asyncio.start_server(
            self._connection, host=self.host, port=self.port, limit=MAX_HEADER_BYTES,
            reuse_address=True,
        )
        self._bound = (self.host, int(self._server.sockets[0].getsockname()[1]))

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when 0 was asked."""
        if self._bound is None:
            raise RuntimeError("the web server is not started")
        return self._bound

    async def close(self) -> None:
        """Stop listening and abandon the requests in progress."""
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = peer_address(writer.get_extra_info("peername"))
        slot = self.limiter.admit(peer, task.cancel)
        try:
            if slot is None:
                # Every slot is working on a request: say so at once, read nothing.
                log.debug("web_busy", peer=peer, held=self.limiter.held())
                await finish(reader, writer, text_response(
                    503, "busy, retry later", **{"Retry-After": "1"}).encode())
            else:
                await self._serve(reader, writer, slot)
        except asyncio.CancelledError:
            # close() abandons requests in progress, and a connection only waiting on its
            # client is evicted to make room; ending normally keeps start_server quiet.
            if slot is not None and slot.evicted:
                log.debug("web_connection_evicted", peer=peer,
                          reason="its client was slow or idle and the slots were full")
        except Exception as exc:
            if is_hangup(exc):
                log.debug("web_client_gone", peer=peer, error=type(exc).__name__)
            else:
                # The fault boundary of one connection: logged once, the daemon goes on.
                log.error("web_connection_failed", peer=peer, error=type(exc).__name__,
                          detail=str(exc)[:200])
        finally:
            if slot is not None:
                self.limiter.release(slot)
            with contextlib.suppress(Exception):
                writer.close()
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     slot: Slot) -> None:
        head_only = False
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout_at(started + self.request_timeout):
                request = await _read_request(
                    Wire(reader), writer, slot.address,
                    head_deadline=started + min(self.header_timeout, self.request_timeout))
            if request is None:
                log.debug("web_client_gone", peer=slot.address, error="closed before a request")
                return
            head_only = request.method == "HEAD"
            with self.limiter.working(slot):
                response = await self.handler(request)
        except TimeoutError:
            response = text_response(408, "the request did not arrive in time")
        except HttpError as exc:
            response = text_response(exc.status, exc.reason, **exc.headers)
        except Exception as exc:
            if is_hangup(exc):
                raise
            log.error("web_request_failed", error=type(exc).__name__, detail=str(exc)[:200])
            response = text_response(500, "internal error; see the watcherd log")
        if not await finish(reader, writer, response.encode(head_only=head_only)):
            log.debug("web_client_gone", peer=slot.address, error="left before the answer")


async def _read_request(wire: Wire, writer: asyncio.StreamWriter, peer: str, *,
                        head_deadline: float) -> Request | None:
    """The connection's one request; None when it closed before sending one."""
    head = await wire.read_head(head_deadline)
    if head is None:
        return None
    method, path, headers = head
    if method in ("GET", "HEAD", "OPTIONS", "DELETE") and not (
            "content-length" in headers or "transfer-encoding" in headers):
        return Request(method, path, headers, peer=peer)
    length = body_length(headers, MAX_BODY)  # 411/413/501 before any body is read
    wire.continue_if_asked(writer)
    body = bytearray()
    while True:
        chunk = await wire.next_event()
        if isinstance(chunk, h11.EndOfMessage):
            break
        if not isinstance(chunk, h11.Data):
            raise HttpError(400, "the request body ended early")
        body += chunk.data
        if len(body) > MAX_BODY:
            raise HttpError(413, f"the body is larger than {MAX_BODY} bytes")
    if length is not None and len(body) != length:  # pragma: no cover - h11 enforces it
        raise HttpError(400, "the body does not match its Content-Length")
    return Request(method, path, headers, bytes(body), peer=peer)
