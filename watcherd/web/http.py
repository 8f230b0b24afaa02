"""The status page's HTTP server: small, strict HTTP/1.1 on the event loop, parsed by h11.

The same rules as the callback listener (:mod:`watcherd.listener`, whose request checks it
reuses): one request per connection, a bounded head and body, one deadline for the whole
request, and a fault boundary per connection, so a bad request ends that connection only and
never the daemon. What to answer is the application's business (:mod:`watcherd.web.app`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import h11
import structlog

from watcherd.http11 import HttpError, Request, body_length, check_request

log = structlog.get_logger("watcherd.web")

MAX_HEADER_BYTES = 16 * 1024
# Forms on the page carry an id and a token: a few KB is plenty.
MAX_BODY = 16 * 1024
MAX_CONNECTIONS = 32
REQUEST_TIMEOUT = 15.0
WRITE_TIMEOUT = 30.0
_READ_CHUNK = 16 * 1024
_REASONS = {
    200: "OK", 303: "See Other", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    411: "Length Required", 413: "Content Too Large", 421: "Misdirected Request",
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
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.handler = handler
        self.request_timeout = request_timeout
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
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # close() abandons requests in progress; ending normally keeps start_server quiet.
            pass
        except Exception as exc:
            # The fault boundary of one connection: logged once, the daemon goes on.
            log.error("web_connection_failed", error=type(exc).__name__, detail=str(exc)[:200])
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_only = False
        try:
            if len(self._tasks) > MAX_CONNECTIONS:
                raise HttpError(503, "busy, retry later")
            async with asyncio.timeout(self.request_timeout):
                request = await _read_request(reader, writer)
            if request is None:
                return
            head_only = request.method == "HEAD"
            response = await self.handler(request)
        except TimeoutError:
            response = text_response(408, "the request did not arrive in time")
        except HttpError as exc:
            response = text_response(exc.status, exc.reason, **exc.headers)
        except ConnectionError:
            return
        except Exception as exc:
            log.error("web_request_failed", error=type(exc).__name__, detail=str(exc)[:200])
            response = text_response(500, "internal error; see the watcherd log")
        writer.write(response.encode(head_only=head_only))
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(WRITE_TIMEOUT):
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()


async def _read_request(reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> Request | None:
    """The connection's one request; None when it closed before sending one."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    received = 0

    async def next_event(*, head: bool) -> object:
        nonlocal received
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint if 400 <= exc.error_status_hint < 600 else 400
                # h11's messages may quote the request's bytes: say only what kind it was.
                raise HttpError(status, "malformed HTTP request") from None
            if event is not h11.NEED_DATA:
                return event
            size = _READ_CHUNK
            if head:
                # Never more than one byte past the limit: h11 then refuses it as too long.
                size = max(1, min(size, MAX_HEADER_BYTES + 1 - received))
            data = await reader.read(size)
            received += len(data)
            conn.receive_data(data)

    event = await next_event(head=True)
    if isinstance(event, h11.ConnectionClosed):
        return None
    if not isinstance(event, h11.Request):
        raise HttpError(400, "expected a request")
    method, path, headers = check_request(event)
    if method in ("GET", "HEAD", "OPTIONS", "DELETE") and not (
            "content-length" in headers or "transfer-encoding" in headers):
        return Request(method, path, headers)
    length = body_length(headers, MAX_BODY)  # 411/413/501 before any body is read
    if conn.they_are_waiting_for_100_continue:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = bytearray()
    while True:
        chunk = await next_event(head=False)
        if isinstance(chunk, h11.EndOfMessage):
            break
        if not isinstance(chunk, h11.Data):
            raise HttpError(400, "the request body ended early")
        body += chunk.data
        if len(body) > MAX_BODY:
            raise HttpError(413, f"the body is larger than {MAX_BODY} bytes")
    if length is not None and len(body) != length:  # pragma: no cover - h11 enforces it
        raise HttpError(400, "the body does not match its Content-Length")
    return Request(method, path, headers, bytes(body))
