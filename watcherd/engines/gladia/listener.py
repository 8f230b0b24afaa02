"""The embedded callback listener: Gladia tells us a job ended, we poll that job at once.

It is watcherd's one HTTP server (:mod:`watcherd.httpserver`: one request per connection,
bounded heads and bodies, deadlines for the head and the whole request, connection slots per
client address, hang-ups as debug lines, a fault boundary per connection) with the listener's
rules: a body cap per route (64 MiB for a callback, which carries the whole result), two
minutes per request, bodies over 1 MiB read two at a time, JSON answers, and a callback whose
path carried the token never evicted while its body arrives. It binds only to the configured
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

import structlog

from watcherd.config import Config, Secret
from watcherd.connections import ConnectionLimiter, ConnectionLimits, is_loopback
from watcherd.engines.gladia.polling import JobHints
from watcherd.engines.gladia.webhooks import (
    SeenMessages,
    WebhookRejected,
    WebhookVerifier,
    parse_event,
)
from watcherd.errors import ConfigError
from watcherd.http11 import HEADER_TIMEOUT, HttpError, Request
from watcherd.httpserver import BodyRule, HttpServer, Response, ServerRules
from watcherd.journal import Journal, Source
from watcherd.retry import RetryPolicy

log = structlog.get_logger("watcherd.engines.gladia.listener")

# A success callback carries the whole result (long recordings, many add-ons): room for it,
# but bounded. Webhook bodies hold only an id.
_MAX_CALLBACK_BODY = 64 * 1024 * 1024
_MAX_WEBHOOK_BODY = 1024 * 1024
# Bodies above this size are parsed off the loop, and only a few are held at once.
_BIG_BODY = 1024 * 1024
_BIG_BODY_SLOTS = 2
# Deadlines from the moment a connection is accepted, not per read, so a client trickling a
# byte at a time (a slow-loris) is cut off all the same. The body's allowance is generous for
# a 64 MiB callback on a slow link; the head has no reason to be slow (HEADER_TIMEOUT).
REQUEST_TIMEOUT = 120.0
# A hint can arrive between the pipeline's GET and its next wait, and would be lost: repeat it
# a few times while the job is still awaited (each repeat costs a GET only if it is waiting).
_NUDGE_DELAYS = (0.25, 0.5, 1.0, 2.0, 4.0)
# With callbacks on, polling becomes a slow safety net: this much slower than without.
_SAFETY_NET_START_FACTOR = 30.0
_SAFETY_NET_CAP_FACTOR = 10.0
_TOKEN_SUFFIX = ".callback-token"
# Explicit ASCII classes with fullmatch: \d and str.isdigit() accept other scripts' digits,
# and $ accepts a trailing newline.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,128}")
_JOB_ID_RE = re.compile(r"[0-9A-Za-z-]{1,64}")
_AWAITED_STATES = ("submitted", "waiting")


@dataclass(frozen=True)
class _Route:
    name: str
    methods: tuple[str, ...]
    max_body: int
    handler: Callable[[Request], Awaitable[tuple[int, dict[str, Any]]]]


# -- the token ---------------------------------------------------------------------------------


def token_path(journal_path: Path) -> Path:
    """Where the callback token of the install using this journal is kept."""
    return journal_path.with_name(journal_path.name + _TOKEN_SUFFIX)


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
        max_callback_body: int = _MAX_CALLBACK_BODY,
        clock: Callable[[], float] = time.time,
        nudge_delays: tuple[float, ...] = _NUDGE_DELAYS,
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
        self._token = token
        self._verifier = (WebhookVerifier(webhook_secret, clock=clock)
                          if webhook_secret is not None else None)
        self._seen = SeenMessages()
        self._prefix = urlsplit(self.public_url).path.rstrip("/") if self.public_url else ""
        # Behind a proxy or tunnel every callback comes from its one address: the per-address
        # share is then the listener's concurrency for callbacks (Gladia's retries and the
        # polling safety net cover one refused with 503).
        self._http = HttpServer(host, port, self._respond, ServerRules(
            name="callback", logger="watcherd.engines.gladia.listener",
            max_body=max_callback_body,
            request_timeout=REQUEST_TIMEOUT if request_timeout is None else request_timeout,
            header_timeout=HEADER_TIMEOUT if header_timeout is None else header_timeout,
            limits=limits or ConnectionLimits(), headers={"Cache-Control": "no-store"},
            big_body=_BIG_BODY, big_body_slots=_BIG_BODY_SLOTS, body_rule=self._body_rule,
            refusal=self._refusal, on_refused=self._refused, redact=self._redact,
            failed_event="callback_connection_failed"))
        self._nudges: dict[str, asyncio.Task[None]] = {}

    @property
    def stats(self) -> Counter[str]:
        """What happened to requests, by outcome ("accepted", "bad_token", ...), for tests
        and metrics."""
        return self._http.stats

    @property
    def limiter(self) -> ConnectionLimiter:
        """The listener's connection slots."""
        return self._http.limiter

    @property
    def _handlers(self) -> set[asyncio.Task[None]]:
        # The connections being served (tests wait on them).
        return self._http.tasks

    def __repr__(self) -> str:
        return f"Listener(host={self.host!r}, port={self.port}, public_url={self.public_url!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the configured address (only it) and start answering."""
        try:
            await self._http.start()
        except OSError as exc:
            raise ConfigError(
                f"[callback] listen = \"{_host_port(self.host, self.port)}\": cannot listen "
                f"there ({exc.strerror or exc}); pick a free port and an address of this machine"
            ) from None

    async def close(self) -> None:
        """Stop listening, abandon requests in progress and pending nudges."""
        await self._http.close()
        pending = list(self._nudges.values())
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when 0 was asked."""
        return self._http.address

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

    # -- the listener's rules for the server ------------------------------------------------

    def _body_rule(self, head: Request) -> BodyRule:
        # Route and method are checked on the head, before any body is read.
        route = self._route(head.path)
        if head.method not in route.methods:
            raise HttpError(405, f"use {' or '.join(route.methods)}",
                            headers={"Allow": ", ".join(route.methods)})
        # A callback's path carried the token: Gladia's own, however long its body takes
        # (a big result on a slow link), never evicted for a newcomer.
        return BodyRule(route.max_body, busy=route.name == "callback")

    async def _respond(self, request: Request) -> Response:
        status, payload = await self._route(request.path).handler(request)
        return _json_response(status, payload)

    def _refusal(self, status: int, reason: str, headers: Mapping[str, str]) -> Response:
        return _json_response(status, {"error": self._redact(reason)}, headers)

    def _refused(self, peer: str, head: Request | None, exc: HttpError) -> None:
        self.stats[_stat_name(exc)] += 1
        route_name = "?"
        if head is not None:
            with contextlib.suppress(HttpError):
                route_name = self._route(head.path).name
        (log.debug if exc.quiet else log.warning)(
            "callback_rejected", route=route_name, status=exc.status,
            reason=self._redact(exc.reason), peer=peer,
        )

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
            return _Route("webhook", ("POST",), _MAX_WEBHOOK_BODY, self._webhook)
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
        for source in self.journal.in_states(list(_AWAITED_STATES)):
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
        if len(body) > _BIG_BODY:
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


def _json_response(status: int, payload: Mapping[str, Any],
                   headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode() + b"\n", "application/json",
                    dict(headers or {}))


# -- wiring ------------------------------------------------------------------------------------


def safety_net(policy: RetryPolicy) -> RetryPolicy:
    """Polling once callbacks are on: the same schedule, 30x slower start, 10x later cap.

    With the defaults (1 s, 30 s) that is 30 s then growing to 5 min: a lost callback delays a
    result by minutes at most, and a normal job costs one GET after its callback.
    """
    return dataclasses.replace(
        policy,
        poll_start=policy.poll_start * _SAFETY_NET_START_FACTOR,
        poll_cap=policy.poll_cap * _SAFETY_NET_CAP_FACTOR,
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
    if listener.public_url is None and not is_loopback(api_host):
        log.warning("callbacks_may_not_arrive", listen=_host_port(host, port),
                    hint="Gladia cannot reach this address; set [callback] public_url to the "
                         "https URL of a proxy or tunnel that forwards to it (polling goes on)")
    return listener


