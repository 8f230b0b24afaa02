"""watcherd's one HTTP server: small, strict HTTP/1.1 on the event loop, parsed by h11.

The status page (:mod:`watcherd.web.http`) and the Gladia engine's callback listener
(:mod:`watcherd.engines.gladia.listener`) are both an :class:`HttpServer`; what differs
between them is a handler (a parsed :class:`~watcherd.http11.Request` in, a
:class:`Response` out) and their :class:`ServerRules`. For every connection the server:

- takes a slot from a :class:`~watcherd.connections.ConnectionLimiter` (an idle or slow client
  is evicted to make room; 503 at once when every slot is working on a request);
- reads one request (:class:`~watcherd.http11.Wire`): the head by its deadline (408), the
  whole request by ``request_timeout`` from the connection's start (408, so a client trickling
  a byte at a time is cut off all the same), a body only as the handler's :class:`BodyRule`
  allows (413 before it is read when its length is declared, as soon as it passes the cap
  when chunked), bodies above ``big_body`` only a few at a time;
- answers once, with ``Connection: close`` and the status's :class:`http.HTTPStatus` phrase;
- treats a client that hangs up as a debug line, and is the fault boundary: whatever goes
  wrong ends this connection only, logged once, never the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

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

__all__ = ["BodyRule", "Handler", "HttpServer", "Response", "ServerRules", "reason_phrase",
           "text_response"]

#: Methods whose requests may come without any body framing (no Content-Length, not chunked).
_BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
# How long a closed connection may take to be gone; the task ends regardless.
_CLOSE_TIMEOUT = 1.0
# Requests in progress when the server closes get this long to end after being cancelled.
_STOP_TIMEOUT = 5.0


def reason_phrase(status: int) -> str:
    """The standard reason phrase of ``status`` ("Error" for a code the standard lacks)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@dataclass(frozen=True)
class Response:
    """One answer: status, body, its media type, and any extra headers."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    def encode(self, *, head_only: bool = False,
               common: Mapping[str, str] | None = None) -> bytes:
        """The answer's bytes on the wire (HTTP/1.1, Connection: close), with the ``common``
        headers of its server before its own.

        Written directly rather than through h11: the server also answers requests h11 never
        saw whole (a head that timed out or broke the syntax).
        """
        lines = [f"HTTP/1.1 {self.status} {reason_phrase(self.status)}",
                 f"Content-Type: {self.content_type}", f"Content-Length: {len(self.body)}",
                 "Connection: close",
                 *(f"{k}: {v}" for k, v in {**(common or {}), **self.headers}.items())]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def text_response(status: int, text: str, **headers: str) -> Response:
    """A plain-text answer (errors, health)."""
    return Response(status, (text + "\n").encode("utf-8"), headers=headers)


def _text_refusal(status: int, reason: str, headers: Mapping[str, str]) -> Response:
    return text_response(status, reason, **headers)


def _unchanged(text: str) -> str:
    return text


@dataclass(frozen=True)
class BodyRule:
    """What a handler allows a request's body, decided from its head.

    ``max_body`` bytes at most; ``required``: the body's framing must be declared (411
    without a Content-Length or a chunked body), else a request that declares none has no
    body; ``busy``: the request has proved itself by its head (the listener's callback, whose
    path carries the token), so its connection is never evicted while its body arrives.
    """

    max_body: int
    required: bool = True
    busy: bool = False


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class ServerRules:
    """One server's settings and the parts of its behaviour its owner decides.

    ``name`` starts the server's log events (``web_client_gone``, ``callback_busy``, ...).
    ``body_rule`` judges a head (it may refuse it with :class:`~watcherd.http11.HttpError`:
    an unknown path, a wrong method); by default a request of a :data:`BODILESS_METHODS`
    method may come without a body and any body is at most ``max_body``. ``refusal`` renders
    an error answer from status, reason and headers; ``on_refused`` hears of each refused
    request (the client's address, the head or None when there was none yet, the error);
    ``redact`` cleans any text that may reach a log or a client; ``failed_event`` names the
    log event of a handler that raised. ``headers`` go on every answer.
    """

    name: str
    logger: str
    max_body: int
    request_timeout: float
    header_timeout: float = HEADER_TIMEOUT
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Bodies above this many bytes are read only ``big_body_slots`` at a time (None: no cap).
    big_body: int | None = None
    big_body_slots: int = 2
    body_rule: Callable[[Request], BodyRule] | None = None
    refusal: Callable[[int, str, Mapping[str, str]], Response] = _text_refusal
    on_refused: Callable[[str, Request | None, HttpError], None] | None = None
    redact: Callable[[str], str] = _unchanged
    failed_event: str | None = None


class HttpServer:
    """Binds one address and hands each parsed request to ``handler``, by ``rules``."""

    def __init__(self, host: str, port: int, handler: Handler, rules: ServerRules) -> None:
        self.host = host
        self.port = port
        self.handler = handler
        self.rules = rules
        # Both are deadlines counted from the connection's start, not per read: the head must
        # be in by the first, everything (head and body) by the second. Plain attributes, so
        # a test can shorten them on a running server.
        self.header_timeout = rules.header_timeout
        self.request_timeout = rules.request_timeout
        self.limiter = ConnectionLimiter(rules.limits)
        #: What happened to connections, by outcome ("busy", "evicted", "client_gone", ...);
        #: the owner may count its own outcomes here too.
        self.stats: Counter[str] = Counter()
        #: The connections being served.
        self.tasks: set[asyncio.Task[None]] = set()
        self._log = structlog.get_logger(rules.logger)
        self._big_bodies = asyncio.Semaphore(rules.big_body_slots)
        self._server: asyncio.Server | None = None
        self._bound: tuple[str, int] | None = None

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
            raise RuntimeError(f"the {self.rules.name} server is not started")
        return self._bound

    async def close(self) -> None:
        """Stop listening and abandon the requests in progress."""
        if self._server is not None:
            self._server.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=_STOP_TIMEOUT)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STOP_TIMEOUT):
                    await self._server.wait_closed()
            self._server = None

    # -- one connection ----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        peer = peer_address(writer.get_extra_info("peername"))
        slot = self.limiter.admit(peer, task.cancel)
        try:
            try:
                if slot is None:
                    # Every slot is working on a request: say so at once, read nothing.
                    self.stats["busy"] += 1
                    self._log.debug(f"{self.rules.name}_busy", peer=peer,
                                    held=self.limiter.held())
                    await finish(reader, writer, self._encode(self.rules.refusal(
                        503, "busy, retry later", {"Retry-After": "1"})))
                else:
                    await self._serve(reader, writer, slot)
            finally:
                if slot is not None:
                    self.limiter.release(slot)
                with contextlib.suppress(Exception):
                    writer.close()
                    async with asyncio.timeout(_CLOSE_TIMEOUT):
                        await writer.wait_closed()
        except asyncio.CancelledError:
            # close() abandons the connections in progress, and one only waiting on its
            # client is evicted to make room. Ending normally, not cancelled: Python 3.11's
            # start_server reports a cancelled handler as an error.
            if slot is not None and slot.evicted:
                self.stats["evicted"] += 1
                self._log.debug(f"{self.rules.name}_connection_evicted", peer=peer,
                                reason="its client was slow or idle and the slots were full")
            else:
                self.stats["abandoned"] += 1
        except Exception as exc:
            self._fault(peer, exc)
        finally:
            self.tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     slot: Slot) -> None:
        replied = False
        try:
            answer = await self._respond(reader, writer, slot)
            if answer is None:
                self._client_gone(slot.address, "closed before a request")
                return
            response, head_only = answer
            replied = True
            if not await finish(reader, writer, self._encode(response, head_only=head_only)):
                self._client_gone(slot.address, "left before the answer")
        except Exception as exc:
            self._fault(slot.address, exc)
            if not replied and not is_hangup(exc):
                with contextlib.suppress(Exception):
                    await finish(reader, writer, self._encode(self._internal_error()))

    def _fault(self, peer: str, exc: Exception) -> None:
        if is_hangup(exc):
            self._client_gone(peer, type(exc).__name__)
            return
        # The fault boundary of one connection: logged once (type and a redacted message,
        # never a traceback with locals), the daemon goes on.
        self.stats["internal_error"] += 1
        self._log.error(f"{self.rules.name}_connection_failed", peer=peer,
                        error=type(exc).__name__, detail=self.rules.redact(str(exc))[:200])

    def _client_gone(self, peer: str, how: str) -> None:
        # A client that hangs up is its own business, not the server's trouble.
        self.stats["client_gone"] += 1
        self._log.debug(f"{self.rules.name}_client_gone", peer=peer, error=how)

    def _internal_error(self) -> Response:
        return self.rules.refusal(500, "internal error; see the watcherd log", {})

    def _encode(self, response: Response, *, head_only: bool = False) -> bytes:
        return response.encode(head_only=head_only, common=self.rules.headers)

    async def _respond(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       slot: Slot) -> tuple[Response, bool] | None:
        """The answer to this connection's one request, and whether it goes without its body
        (HEAD); None when the client closed without sending a request."""
        started = asyncio.get_running_loop().time()
        wire = Wire(reader)
        head: Request | None = None
        try:
            async with contextlib.AsyncExitStack() as held:
                try:
                    async with asyncio.timeout_at(started + self.request_timeout):
                        parsed = await wire.read_head(
                            started + min(self.header_timeout, self.request_timeout))
                        if parsed is None:
                            return None
                        head = Request(*parsed, peer=slot.address, query=wire.query)
                        request = await self._read_body(wire, writer, slot, head, held)
                except TimeoutError:
                    raise HttpError(408, "the request did not arrive in time") from None
                if not slot.busy:
                    held.enter_context(self.limiter.working(slot))
                return await self._handle(request), request.method == "HEAD"
        except HttpError as exc:
            if self.rules.on_refused is not None:
                self.rules.on_refused(slot.address, head, exc)
            return self.rules.refusal(exc.status, exc.reason, exc.headers), False

    async def _read_body(self, wire: Wire, writer: asyncio.StreamWriter, slot: Slot,
                         head: Request, held: contextlib.AsyncExitStack) -> Request:
        """``head`` with its body, by whichever framing h11 found, within the handler's rule."""
        rule = (self.rules.body_rule(head) if self.rules.body_rule is not None
                else BodyRule(self.rules.max_body,
                              required=head.method not in _BODILESS_METHODS))
        if not rule.required and not ("content-length" in head.headers
                                      or "transfer-encoding" in head.headers):
            return head
        length = body_length(head.headers, rule.max_body)  # 411/413/501 before any body
        wire.continue_if_asked(writer)
        if rule.busy:
            held.enter_context(self.limiter.working(slot))
        big = self.rules.big_body
        holding = False
        if big is not None and length is not None and length > big:
            await held.enter_async_context(self._big_bodies)
            holding = True
        body = bytearray()
        while True:
            event = await wire.next_event()
            if isinstance(event, h11.EndOfMessage):
                return dataclasses.replace(head, body=bytes(body))
            if not isinstance(event, h11.Data):  # pragma: no cover - h11's state machine
                raise HttpError(400, "the request body ended early")
            body += event.data
            if len(body) > rule.max_body:
                raise HttpError(413, f"the body is larger than {rule.max_body} bytes")
            if big is not None and not holding and len(body) > big:
                # A chunked body grew big: from now on it counts against the big-body slots.
                await held.enter_async_context(self._big_bodies)
                holding = True

    async def _handle(self, request: Request) -> Response:
        """The handler's answer; 500 (logged once) when it raised."""
        try:
            return await self.handler(request)
        except HttpError:
            raise
        except Exception as exc:
            if is_hangup(exc):
                raise
            self.stats["internal_error"] += 1
            self._log.error(self.rules.failed_event or f"{self.rules.name}_request_failed",
                            peer=request.peer, error=type(exc).__name__,
                            detail=self.rules.redact(str(exc))[:200])
            return self._internal_error()
