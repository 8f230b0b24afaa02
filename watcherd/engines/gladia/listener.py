"""The embedded callback listener: Gladia tells us a job ended, we poll that job at once.

A small, strict HTTP/1.1 server on the event loop (``asyncio.start_server``), its requests
parsed by h11: one request per connection, a request line and headers within
:data:`MAX_HEADER_BYTES` and :data:`MAX_HEADERS`, a body by ``Content-Length`` (beyond the
route's cap refused with 413 before it is read) or chunked (refused with 413 as soon as it
passes the cap), a deadline for the head and one for the whole request (head and body), answered
408, and connection slots per client address (:mod:`watcherd.connections`: an idle or slow
client is evicted to make room; a client that hangs up is a debug line). Whatever goes wrong
while serving one connection ends that connection only. It binds only to the configured
address.

Two routes, under the path of ``[callback] public_url`` (none without it):
``/callback/TOKEN`` receives the per-job callbacks that every job carries (``POST`` or ``PUT``),
and ``/webhook`` receives Gladia's dashboard webhooks, checked by the ``webhooks`` module.
The token is random, made once per install and kept beside the journal, readable only by its
owner; it is never logged. Neither route trusts what the body says: the only thing taken from
it is a job id, and only a job the journal is waiting for (``submitted``/``waiting``) is acted
on, by :meth:`GladiaPipeline.job_finished`, which makes the pipeline GET the job right away.
Anything else is answered without a side effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import ipaddress
import json
import os
import re
import secrets
import stat
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import h11
import structlog

from watcherd.config import Config, Secret
from watcherd.connections import ConnectionLimiter, ConnectionLimits, Slot, is_hangup, peer_address
from watcherd.engines.gladia.pipeline import JobHints
from watcherd.engines.gladia.webhooks import (
    SeenMessages,
    WebhookRejected,
    WebhookVerifier,
    parse_event,
)
from watcherd.errors import ConfigError
from watcherd.http11 import (
    HEADER_TIMEOUT,
    MAX_HEADER_BYTES,
    HttpError,
    Request,
    Wire,
    body_length,
    finish,
)
from watcherd.journal import Journal, Source
from watcherd.retry import RetryPolicy

log = structlog.get_logger("watcherd.engines.gladia.listener")

# A success callback carries the whole result (long recordings, many add-ons): room for it,
# but bounded. Webhook bodies hold only an id.
MAX_CALLBACK_BODY = 64 * 1024 * 1024
MAX_WEBHOOK_BODY = 1024 * 1024
# Bodies above this size are parsed off the loop, and only a few are held at once.
BIG_BODY = 1024 * 1024
BIG_BODY_SLOTS = 2
# Deadlines from the moment a connection is accepted, not per read, so a client trickling a
# byte at a time (a slow-loris) is cut off all the same. The body's allowance is generous for
# a 64 MiB callback on a slow link; the head has no reason to be slow (HEADER_TIMEOUT).
REQUEST_TIMEOUT = 120.0
# A hint can arrive between the pipeline's GET and its next wait, and would be lost: repeat it
# a few times while the job is still awaited (each repeat costs a GET only if it is waiting).
NUDGE_DELAYS = (0.25, 0.5, 1.0, 2.0, 4.0)
# With callbacks on, polling becomes a slow safety net: this much slower than without.
SAFETY_NET_START_FACTOR = 30.0
SAFETY_NET_CAP_FACTOR = 10.0
TOKEN_SUFFIX = ".callback-token"
# Explicit ASCII classes with fullmatch: \d and str.isdigit() accept other scripts' digits,
# and $ accepts a trailing newline.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,128}")
_JOB_ID_RE = re.compile(r"[0-9A-Za-z-]{1,64}")
# Headers that must appear once: a second one is an attempt to confuse, not a list.
_REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 411: "Length Required", 413: "Content Too Large",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "HTTP Version Not Supported",
}
AWAITED_STATES = ("submitted", "waiting")


@dataclass(frozen=True)
class _Route:
    name: str
    methods: tuple[str, ...]
    max_body: int
    handler: Callable[[Request], Awaitable[tuple[int, dict[str, Any]]]]


# -- the token ---------------------------------------------------------------------------------


def token_path(journal_path: Path) -> Path:
    """Where the callback token of the install using this journal is kept."""
    return journal_path.with_name(journal_path.name + TOKEN_SUFFIX)


def load_or_create_token(path: Path) -> Secret:
    """The install's callback token: read from ``path``, or made and stored there (0600).

    A file others may read is tightened to 0600; a file that does not hold a token (say,
    truncated) is replaced by a new token: jobs made with the old one are then found by polling.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _store_token(path, secrets.token_urlsafe(32), replace=False)
        text = _read_token(path)
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot keep the callback token there ({exc.strerror or exc}); "
            "check that the journal's folder is writable"
        ) from None
    if not _TOKEN_RE.fullmatch(text):
        log.warning("callback_token_replaced", path=str(path),
                    reason="the file did not hold a token; jobs already created are polled")
        _store_token(path, secrets.token_urlsafe(32), replace=True)
        text = _read_token(path)
    return Secret(text)


def _store_token(path: Path, token: str, *, replace: bool) -> None:
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(temp, path)
        else:
            # link() fails if the name exists, so a token already there is never overwritten.
            with contextlib.suppress(FileExistsError):
                os.link(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def _read_token(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            os.fchmod(f.fileno(), 0o600)
            log.warning("callback_token_permissions_fixed", path=str(path), mode="0600")
        raw = f.read(4096)
    return raw.decode("ascii", errors="replace").strip()


# -- the listener ------------------------------------------------------------------------------


class Listener:
    """The callback and webhook endpoint; :meth:`start` binds it, :meth:`close` ends it."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        token: Secret,
        journal: Journal,
        on_finished: Callable[[str], None],
        public_url: str | None = None,
        webhook_secret: Secret | None = None,
        max_callback_body: int = MAX_CALLBACK_BODY,
        clock: Callable[[], float] = time.time,
        nudge_delays: tuple[float, ...] = NUDGE_DELAYS,
        header_timeout: float | None = None,
        request_timeout: float | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.journal = journal
        self.on_finished = on_finished
        self.max_callback_body = max_callback_body
        self.nudge_delays = nudge_delays
        # Both are deadlines counted from the connection's start, not per read: the head
        # must be in by the first, everything (head and body) by the second.
        self.header_timeout = HEADER_TIMEOUT if header_timeout is None else header_timeout
        self.request_timeout = REQUEST_TIMEOUT if request_timeout is None else request_timeout
        self._token = token
        self._verifier = (WebhookVerifier(webhook_secret, clock=clock)
                          if webhook_secret is not None else None)
        self._seen = SeenMessages()
        self._prefix = urlsplit(self.public_url).path.rstrip("/") if self.public_url else ""
        self._server: asyncio.Server | None = None
        self._bound: tuple[str, int] | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        # Behind a proxy or tunnel every callback comes from its one address: the per-address
        # share is then the listener's concurrency for callbacks (Gladia's retries and the
        # polling safety net cover one refused with 503).
        self.limiter = ConnectionLimiter(limits or ConnectionLimits())
        self._nudges: dict[str, asyncio.Task[None]] = {}
        self._big_bodies = asyncio.Semaphore(BIG_BODY_SLOTS)
        # What happened to requests, by outcome ("accepted", "bad_token", ...), for tests
        # and metrics.
        self.stats: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"Listener(host={self.host!r}, port={self.port}, public_url={self.public_url!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the configured address (only it) and start answering."""
        try:
            self._server = await asyncio.start_server(
                self._serve, host=self.host, port=self.port, limit=MAX_HEADER_BYTES,
                reuse_address=True,
            )
        except OSError as exc:
            raise ConfigError(
                f"[callback] listen = \"{_host_port(self.host, self.port)}\": cannot listen "
                f"there ({exc.strerror or exc}); pick a free port and an address of this machine"
            ) from None
        sockname = self._server.sockets[0].getsockname()
        self._bound = (self.host, int(sockname[1]))

    async def close(self) -> None:
        """Stop listening, abandon requests in progress and pending nudges."""
        if self._server is not None:
            self._server.close()
        for task in [*self._handlers, *self._nudges.values()]:
            task.cancel()
        pending = [*self._handlers, *self._nudges.values()]
        if pending:
            await asyncio.wait(pending, timeout=5)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when 0 was asked."""
        if self._bound is None:
            raise RuntimeError("the listener is not started")
        return self._bound

    @property
    def base_url(self) -> str:
        """Where Gladia reaches the listener: public_url, or http://HOST:PORT."""
        if self.public_url:
            return self.public_url
        host, port = self.address
        return f"http://{_host_port(host, port)}"

    @property
    def callback_url(self) -> str:
        """The per-job callback URL. It holds the token: never log it."""
        return f"{self.base_url}/callback/{self._token.reveal()}"

    @property
    def webhook_url(self) -> str | None:
        """The URL to give Gladia's dashboard, or None without a webhook secret."""
        return f"{self.base_url}/webhook" if self._verifier is not None else None

    def create_extras(self, source: Source) -> dict[str, Any]:
        """The create-body fields that ask Gladia to call this listener when the job ends."""
        return {"callback": True, "callback_config": {"url": self.callback_url, "method": "POST"}}

    # -- one connection ----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peer = peer_address(writer.get_extra_info("peername"))
        slot = self.limiter.admit(peer, task.cancel)
        try:
            try:
                if slot is None:
                    # Every slot is working on a request: say so at once, read nothing.
                    self.stats["busy"] += 1
                    log.debug("callback_busy", peer=peer, held=self.limiter.held())
                    await finish(reader, writer, _reply_bytes(
                        503, {"error": "busy, retry later"}, {"Retry-After": "1"}))
                else:
                    await self._serve_one(reader, writer, slot)
            finally:
                if slot is not None:
                    self.limiter.release(slot)
                with contextlib.suppress(Exception):
                    writer.close()
                    async with asyncio.timeout(1):
                        await writer.wait_closed()
        except asyncio.CancelledError:
            # close() abandons the connections in progress, and one only waiting on its
            # client is evicted to make room. Ending normally, not cancelled: Python 3.11's
            # start_server reports a cancelled handler as an error.
            if slot is not None and slot.evicted:
                self.stats["evicted"] += 1
                log.debug("callback_connection_evicted", peer=peer,
                          reason="its client was slow or idle and the slots were full")
            else:
                self.stats["abandoned"] += 1
        finally:
            self._handlers.discard(task)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         slot: Slot) -> None:
        replied = False
        try:
            answer = await self._answer(reader, writer, slot)
            if answer is None:
                self._client_gone(slot.address, "closed before a request")
                return
            status, payload, extra = answer
            replied = True
            if not await finish(reader, writer, _reply_bytes(status, payload, extra)):
                self._client_gone(slot.address, "left before the answer")
        except Exception as exc:
            if is_hangup(exc):
                self._client_gone(slot.address, type(exc).__name__)
                return
            # The fault boundary of one connection: whatever went wrong ends this connection
            # only, logged once (type and a redacted message, never a traceback with locals).
            self.stats["internal_error"] += 1
            log.error("callback_connection_failed", peer=slot.address, error=type(exc).__name__,
                      detail=self._redact(str(exc))[:200])
            if not replied:
                with contextlib.suppress(Exception):
                    await finish(reader, writer, _reply_bytes(
                        500, {"error": "internal error; see the watcherd log"}, {}))

    def _client_gone(self, peer: str, how: str) -> None:
        # A client that hangs up is its own business, not the listener's trouble.
        self.stats["client_gone"] += 1
        log.debug("callback_client_gone", peer=peer, error=how)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      slot: Slot) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """The answer to this connection's one request; None when it closed without one."""
        started = asyncio.get_running_loop().time()
        wire = Wire(reader)
        route_name = "?"
        try:
            head = await wire.read_head(started + min(self.header_timeout, self.request_timeout))
            if head is None:
                return None
            method, path, headers = head
            route = self._route(path)
            route_name = route.name
            if method not in route.methods:
                raise HttpError(405, f"use {' or '.join(route.methods)}",
                                headers={"Allow": ", ".join(route.methods)})
            length = body_length(headers, route.max_body)
            wire.continue_if_asked(writer)
            async with contextlib.AsyncExitStack() as big:
                if route.name == "callback":
                    # Its path carried the token: Gladia's own, however long its body takes
                    # (a big result on a slow link), never evicted for a newcomer.
                    big.enter_context(self.limiter.working(slot))
                if length is not None and length > BIG_BODY:
                    await big.enter_async_context(self._big_bodies)
                try:
                    async with asyncio.timeout_at(started + self.request_timeout):
                        body = await self._read_body(wire, route.max_body, big,
                                                     holding=length is not None
                                                     and length > BIG_BODY)
                except TimeoutError:
                    raise HttpError(408, "the request did not arrive in time") from None
                if not slot.busy:
                    big.enter_context(self.limiter.working(slot))
                status, payload = await route.handler(
                    Request(method, path, headers, body, peer=slot.address))
            return status, payload, {}
        except HttpError as exc:
            self.stats[_stat_name(exc)] += 1
            (log.debug if exc.quiet else log.warning)(
                "callback_rejected", route=route_name, status=exc.status,
                reason=self._redact(exc.reason), peer=slot.address,
            )
            return exc.status, {"error": self._redact(exc.reason)}, exc.headers

    async def _read_body(self, wire: Wire, max_body: int, big: contextlib.AsyncExitStack,
                         *, holding: bool) -> bytes:
        """The body, by whichever framing h11 found; 413 as soon as it passes ``max_body``."""
        body = bytearray()
        while True:
            event = await wire.next_event()
            if isinstance(event, h11.EndOfMessage):
                return bytes(body)
            if not isinstance(event, h11.Data):  # pragma: no cover - h11's state machine
                raise HttpError(400, "the request body ended early")
            body += event.data
            if len(body) > max_body:
                raise HttpError(413, f"the body is larger than {max_body} bytes")
            if not holding and len(body) > BIG_BODY:
                # A chunked body grew big: from now on it counts against the big-body slots.
                await big.enter_async_context(self._big_bodies)
                holding = True

    def _redact(self, text: str) -> str:
        """``text`` with the token replaced, for anything that may reach a log or a client."""
        return text.replace(self._token.reveal(), "<token>")

    def _route(self, path: str) -> _Route:
        prefix = self._prefix
        if prefix and not path.startswith(prefix + "/"):
            raise HttpError(404, "not found", quiet=True)
        rest = path[len(prefix):]
        if rest.startswith("/callback/"):
            given = rest[len("/callback/"):]
            if not hmac.compare_digest(given.encode(), self._token.reveal().encode()):
                # Same answer as an unknown path: a wrong token tells nothing.
                raise HttpError(404, "not found (bad token)")
            return _Route("callback", ("POST", "PUT"), self.max_callback_body, self._callback)
        if rest == "/webhook" and self._verifier is not None:
            return _Route("webhook", ("POST",), MAX_WEBHOOK_BODY, self._webhook)
        raise HttpError(404, "not found", quiet=True)

    # -- the two handlers --------------------------------------------------------------------

    async def _callback(self, request: Request) -> tuple[int, dict[str, Any]]:
        data = await _json_body(request.body)
        job_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(job_id, str) or not _JOB_ID_RE.fullmatch(job_id):
            raise HttpError(400, "the body has no job id")
        source = self._awaited(job_id)
        if source is None:
            raise HttpError(404, "not a job watcherd is waiting for")
        event = data.get("event") if isinstance(data.get("event"), str) else None
        self._hint(job_id, source, kind="callback", event=event)
        return 200, {"status": "accepted"}

    async def _webhook(self, request: Request) -> tuple[int, dict[str, Any]]:
        assert self._verifier is not None
        try:
            message_id = self._verifier.verify(request.headers, request.body)
            if message_id in self._seen:
                self.stats["webhook_duplicate"] += 1
                log.info("webhook_duplicate", message_id=message_id)
                return 200, {"status": "duplicate"}
            event = parse_event(request.body)
        except WebhookRejected as exc:
            raise HttpError(exc.status, exc.reason) from None
        self._seen.add(message_id)
        # Other apps on the same Gladia account get webhooks too: acknowledge them, or Svix
        # retries and finally disables the endpoint; they simply have no effect here.
        source = self._awaited(event.job_id) if event.finished and event.job_id else None
        if source is None or event.job_id is None:
            self.stats["webhook_ignored"] += 1
            log.debug("webhook_ignored", event_name=event.event, job_id=event.job_id)
            return 200, {"status": "ignored"}
        self._hint(event.job_id, source, kind="webhook", event=event.event)
        return 200, {"status": "accepted"}

    # -- acting on a hint --------------------------------------------------------------------

    def _awaited(self, job_id: str) -> Source | None:
        for source in self.journal.in_states(list(AWAITED_STATES)):
            if source.job_id == job_id:
                return source
        return None

    def _hint(self, job_id: str, source: Source, *, kind: str, event: str | None) -> None:
        self.stats["accepted"] += 1
        log.info("job_end_signalled", via=kind, job_id=job_id, source=source.path,
                 event_name=event)
        self.on_finished(job_id)
        if job_id not in self._nudges:
            self._nudges[job_id] = asyncio.ensure_future(self._nudge(job_id))

    async def _nudge(self, job_id: str) -> None:
        try:
            for delay in self.nudge_delays:
                await asyncio.sleep(delay)
                source = self._awaited(job_id)
                if source is None or source.state != "submitted":
                    return
                self.on_finished(job_id)
        except Exception as exc:
            # A repeat is only a hint (polling goes on): log it, never leave a task error.
            log.error("callback_nudge_failed", job_id=job_id, error=type(exc).__name__,
                      detail=self._redact(str(exc))[:200])
        finally:
            self._nudges.pop(job_id, None)


async def _json_body(body: bytes) -> Any:
    # A success callback can be tens of MB: parse it off the loop so nothing else stalls.
    try:
        if len(body) > BIG_BODY:
            return await asyncio.to_thread(json.loads, body)
        return json.loads(body)
    except ValueError:
        # Not UTF-8, not JSON, or a number beyond int()'s digit limit: all ValueError.
        raise HttpError(400, "the body is not JSON") from None
    except RecursionError:
        raise HttpError(400, "the body's JSON is nested too deeply") from None


def _stat_name(exc: HttpError) -> str:
    if "bad token" in exc.reason:
        return "bad_token"
    return {400: "bad_request", 401: "bad_signature", 404: "not_found",
            405: "bad_method", 408: "timeout", 411: "no_length", 413: "too_large",
            431: "head_too_large", 501: "not_implemented",
            505: "bad_version"}.get(exc.status, f"status_{exc.status}")


def _host_port(host: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"[{host}]:{port}" if is_v6 else f"{host}:{port}"


def _reply_bytes(status: int, payload: Mapping[str, Any], extra: Mapping[str, str]) -> bytes:
    # Our own answers are a fixed shape (JSON body, a known header or two): written directly,
    # since h11 cannot answer a request it never saw (a timeout before the request line).
    body = json.dumps(payload).encode() + b"\n"
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
             "Content-Type: application/json", f"Content-Length: {len(body)}",
             "Connection: close", "Cache-Control: no-store",
             *(f"{k}: {v}" for k, v in extra.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# -- wiring ------------------------------------------------------------------------------------


def safety_net(policy: RetryPolicy) -> RetryPolicy:
    """Polling once callbacks are on: the same schedule, 30x slower start, 10x later cap.

    With the defaults (1 s, 30 s) that is 30 s then growing to 5 min: a lost callback delays a
    result by minutes at most, and a normal job costs one GET after its callback.
    """
    return dataclasses.replace(
        policy,
        poll_start=policy.poll_start * SAFETY_NET_START_FACTOR,
        poll_cap=policy.poll_cap * SAFETY_NET_CAP_FACTOR,
    )


async def start_listener(config: Config, journal: Journal, hints: JobHints
                         ) -> Listener | None:
    """Start the listener ``[callback]`` asks for, or return None when there is none.

    Every callback or webhook that names an awaited job becomes ``hints.finished(job_id)``.
    The caller builds the pipeline with :meth:`Listener.create_extras` and the
    :func:`safety_net` policy. Raises ConfigError when the address cannot be bound.
    """
    if config.callback is None:
        return None
    listener = Listener(
        host=config.callback.host,
        port=config.callback.port,
        public_url=config.callback.public_url,
        token=load_or_create_token(token_path(config.journal_path)),
        journal=journal,
        on_finished=hints.finished,
        webhook_secret=config.webhook.secret if config.webhook is not None else None,
    )
    await listener.start()
    host, port = listener.address
    log.info("callback_listener_started", listen=_host_port(host, port),
             callback_base=f"{listener.base_url}/callback/...", webhook_url=listener.webhook_url)
    api_host = urlsplit(config.gladia.api_url).hostname or ""
    if listener.public_url is None and not _is_local(api_host):
        log.warning("callbacks_may_not_arrive", listen=_host_port(host, port),
                    hint="Gladia cannot reach this address; set [callback] public_url to the "
                         "https URL of a proxy or tunnel that forwards to it (polling goes on)")
    return listener


def _is_local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
