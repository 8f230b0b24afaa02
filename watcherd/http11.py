"""Strict HTTP/1.1 request reading on top of h11, for watcherd's HTTP server.

The server (:mod:`watcherd.httpserver`, behind the status page and the Gladia engine's
callback listener) accepts requests from outside: h11 parses the syntax, and these checks add
watcherd's stricter rules (one Host, ASCII-only Content-Length, bounded heads, paths only).
:class:`Wire` reads one connection's request with a deadline for its head (a client trickling
its headers, a slow-loris, is answered 408 and closed), and :func:`finish` sends an answer
out without a client that has already gone becoming an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h11

from watcherd.connections import is_hangup

__all__ = ["HEADER_TIMEOUT", "MAX_HEADER_BYTES", "HttpError", "Request", "Wire", "body_length",
           "finish", "parse_head", "unquoted"]

#: A request head (request line and headers) is at most this many bytes, with this many headers.
MAX_HEADER_BYTES = 16 * 1024
_MAX_HEADERS = 64
#: Seconds from a connection's start until its request head must be in: a client has no reason
#: to be slow with it, and one trickling it (a slow-loris) holds a slot until then.
HEADER_TIMEOUT = 10.0
#: Seconds an answer may take to be read by the client.
_WRITE_TIMEOUT = 30.0
# After answering, how much of what the client still sends to swallow before closing (closing
# with unread data resets the connection, and the answer can be lost with it).
_LINGER_BYTES = 1024 * 1024
_LINGER_SECONDS = 1.0
_READ_CHUNK = 64 * 1024
_METHOD_RE = re.compile(rb"[A-Z]{1,16}")
_TARGET_RE = re.compile(rb"/[\x21-\x7e]*")
_LENGTH_RE = re.compile(r"[0-9]{1,15}")
# Where h11 starts quoting bytes in a message: b'..', b"..", bytearray(b'..').
_QUOTED_BYTES = re.compile(r"""bytearray\(|\bb['"]""")
# Headers that may appear once: a repeat is how request smuggling starts.
_SINGLE_HEADERS = frozenset({"content-length", "host", "transfer-encoding"})


class HttpError(Exception):
    """Answer the request with ``status`` and a short JSON reason, then close."""

    def __init__(self, status: int, reason: str, *, headers: Mapping[str, str] | None = None,
                 quiet: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = dict(headers or {})
        # Scanners hitting unknown paths are not worth a warning each.
        self.quiet = quiet


@dataclass(frozen=True)
class Request:
    """One parsed request: method, path (query apart), lower-case headers, body, the
    client's address ("" where it is not known) and the query string (after "?", raw)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""
    peer: str = ""
    query: str = ""


def _check_request(event: h11.Request) -> tuple[str, str, dict[str, str]]:
    """Method, path (query dropped) and lower-case headers of a request h11 has parsed.

    h11 has already checked the syntax (request line, header names and values, no bare
    CR/LF, one Host, consistent Content-Length); this adds watcherd's own, stricter rules.
    """
    if event.http_version not in (b"1.1", b"1.0"):
        raise HttpError(505, "only HTTP/1.1 is spoken here")
    if not _METHOD_RE.fullmatch(event.method):
        raise HttpError(400, "malformed method")
    if not _TARGET_RE.fullmatch(event.target):
        raise HttpError(400, "the request target must be a path")
    if len(event.headers) > _MAX_HEADERS:
        raise HttpError(431, f"more than {_MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    for name, value in event.headers:
        # h11 lower-cases names and allows only token characters in them, so ASCII holds;
        # values may carry obs-text (bytes >= 0x80), which latin-1 maps one to one.
        key = name.decode("ascii")
        text = value.decode("latin-1")
        if key in headers:
            if key in _SINGLE_HEADERS:
                raise HttpError(400, f"repeated {key} header")
            headers[key] = f"{headers[key]}, {text}"
        else:
            headers[key] = text
    path = event.target.decode("ascii").split("?", 1)[0]
    return event.method.decode("ascii"), path, headers


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Method, path and lower-case headers of a complete request head (ending in a blank line).

    The same h11 parsing and checks the listener applies to a connection, on bytes in hand.
    """
    if len(head) > MAX_HEADER_BYTES:
        raise HttpError(431, f"the request head exceeds {MAX_HEADER_BYTES} bytes")
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
    conn.receive_data(head)
    conn.receive_data(b"")
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise _protocol_error(exc) from None
    if not isinstance(event, h11.Request):
        raise HttpError(400, "no request head")
    return _check_request(event)


def body_length(headers: Mapping[str, str], max_body: int) -> int | None:
    """The declared body size checked against ``max_body``; None for a chunked body.

    A chunked body is accepted (a proxy or tunnel in front of the listener may re-frame a
    body that way) and is capped while it is read instead.
    """
    encoding = headers.get("transfer-encoding")
    raw = headers.get("content-length")
    if encoding is not None:
        if raw is not None:
            raise HttpError(400, "send either a Content-Length or a chunked body, not both")
        if encoding.strip().lower() != "chunked":
            raise HttpError(501, "the only transfer coding understood is chunked")
        return None
    if raw is None:
        raise HttpError(411, "a Content-Length header is required")
    # ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses.
    if not _LENGTH_RE.fullmatch(raw):
        raise HttpError(400, "malformed Content-Length")
    length = int(raw)
    if length > max_body:
        raise HttpError(413, f"the body is larger than {max_body} bytes")
    return length


def unquoted(message: str) -> str:
    """An h11 (or httpcore) message cut before the bytes it quotes.

    h11 quotes the offending line or header value in some messages ("Illegal header value
    b'...'", "illegal request line: bytearray(b'...')"); that may be a token or an API key,
    escaped so that redaction by plain replacement misses it. What comes before says enough.
    """
    return _QUOTED_BYTES.split(message, maxsplit=1)[0].rstrip(" :") or "unreadable bytes"


def _protocol_error(exc: h11.RemoteProtocolError) -> HttpError:
    """Our answer to what h11 refused, with a reason that never echoes the request's bytes."""
    message = unquoted(str(exc))
    status = exc.error_status_hint if 400 <= exc.error_status_hint < 600 else 400
    return HttpError(status, f"malformed HTTP request: {message[:120]}")




class Wire:
    """One connection's incoming bytes, parsed by h11 into events; counts what it read."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.received = 0
        self._eof = False
        #: The query string of the last request head read ("" when it had none).
        self.query = ""

    async def read_head(self, deadline: float) -> tuple[str, str, dict[str, str]] | None:
        """Method, path and headers of the request (checked), or None when the client closed
        before sending one; 408 when the head is not all in by ``deadline`` (loop time)."""
        try:
            async with asyncio.timeout_at(deadline):
                event = await self.next_event(head=True)
        except TimeoutError:
            raise HttpError(408, "the request head did not arrive in time") from None
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):  # pragma: no cover - h11's state machine
            raise HttpError(400, "expected a request")
        if self.head_size() > MAX_HEADER_BYTES:
            raise HttpError(431, f"the request head exceeds {MAX_HEADER_BYTES} bytes")
        parsed = _check_request(event)
        # The target is ASCII by then (checked); the search page reads its query.
        self.query = event.target.decode("ascii").partition("?")[2]
        return parsed

    async def next_event(self, *, head: bool = False) -> Any:
        """The next h11 event, reading as needed; HttpError for anything h11 refuses.

        While reading the ``head``, no more than one byte past :data:`MAX_HEADER_BYTES` is
        read, so a head that is too long is always refused as such (431) by h11's limit,
        whatever else is wrong with it.
        """
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _protocol_error(exc) from None
            if event is not h11.NEED_DATA:
                return event
            if self._eof:  # pragma: no cover - h11 answers an EOF with an event or an error
                raise HttpError(400, "the request ended early")
            size = _READ_CHUNK
            if head:
                size = max(1, min(size, MAX_HEADER_BYTES + 1 - self.received))
            data = await self.reader.read(size)
            self._eof = not data
            self.received += len(data)
            self.conn.receive_data(data)

    def head_size(self) -> int:
        """Bytes the request head took: what was read minus what h11 still holds."""
        return self.received - len(self.conn.trailing_data[0])

    def continue_if_asked(self, writer: asyncio.StreamWriter) -> None:
        """Answer ``Expect: 100-continue`` once the head is accepted, so the body comes."""
        if self.conn.they_are_waiting_for_100_continue:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


async def finish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, answer: bytes,
                 *, write_timeout: float = _WRITE_TIMEOUT) -> bool:
    """Send ``answer`` and end our side; False when the client had already gone.

    The client may still be sending: what was refused (a body, a huge head), or bytes after
    the request (a wrong Content-Length, a pipelined request). A little of it is swallowed
    after our side is ended, so that closing with unread data does not reset the connection
    and lose the answer. A client that hung up is no error: the caller logs it at debug.
    """
    try:
        if writer.is_closing():
            return False
        writer.write(answer)
        async with asyncio.timeout(write_timeout):
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except TimeoutError:
        return False
    except OSError as exc:
        if is_hangup(exc):
            return False
        raise
    with contextlib.suppress(TimeoutError, OSError):
        await _discard(reader, _LINGER_BYTES, _LINGER_SECONDS)
    return True


async def _discard(reader: asyncio.StreamReader, limit: int, seconds: float) -> None:
    left = limit
    async with asyncio.timeout(seconds):
        while left > 0:
            chunk = await reader.read(min(_READ_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
