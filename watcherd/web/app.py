"""The page's routes: what each request gets, after the Host, token and CSRF checks.

``GET /`` the page, ``GET /api/status`` its live part as JSON, ``GET /metrics`` Prometheus,
``GET /healthz`` health (no token: load balancers cannot log in), ``POST /retry`` requeue a
failed or waiting file, ``POST /login`` trade the token for a session cookie (a few wrong
tokens a minute per client address, then 429: :mod:`watcherd.web.throttle`), and
``GET /transcript/ID/SUFFIX`` one output of a finished file, ``GET /search?q=`` (and
``/api/search?q=``, JSON) the transcripts that say something, ``GET /view/ID`` a finished
file's transcript by time (:mod:`watcherd.web.searchpage`). Reads go through a read-only
snapshot off the loop; the one write (retry) goes through the daemon's own journal on its loop,
exactly as ``watcherd retry`` does it.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from watcherd.display import json_safe, printable
from watcherd.errors import JournalError
from watcherd.http11 import HttpError, Request
from watcherd.journal import Journal, JournalUnavailable, Source
from watcherd.journal.search import Hit, QueryError, hit_json
from watcherd.pause import JournalPause
from watcherd.progress import ProgressBoard
from watcherd.service.metrics import ActivityFigures
from watcherd.web import health, metrics, page, searchpage, transcripts
from watcherd.web.guard import Guard, Refused
from watcherd.web.http import Response, text_response
from watcherd.web.snapshot import Snapshot, SnapshotReader
from watcherd.web.throttle import LoginThrottle

log = structlog.get_logger("watcherd.web")

_TRANSCRIPT_RE = re.compile(r"/transcript/([0-9]{1,18})/([A-Za-z0-9_.-]{1,40})")
_VIEW_RE = re.compile(r"/view/([0-9]{1,18})")
_MAX_QUERY = 500
_ROUTES: dict[str, tuple[str, ...]] = {
    "/": ("GET", "HEAD"),
    "/search": ("GET", "HEAD"),
    "/api/search": ("GET", "HEAD"),
    "/api/status": ("GET", "HEAD"),
    "/metrics": ("GET", "HEAD"),
    "/healthz": ("GET", "HEAD"),
    "/retry": ("POST",),
    "/login": ("POST",),
}
_NO_TOKEN_NEEDED = frozenset({"/healthz", "/login"})


@dataclass
class WebApp:
    """Answers requests for one running daemon (or a test's journal)."""

    guard: Guard
    reader: SnapshotReader
    journal: Journal | None = None  # the writer, for retry; None: read-only page
    progress: ProgressBoard | None = None
    activity: ActivityFigures | None = None
    transitions: metrics.TransitionCounter | None = None
    api: metrics.ApiRequests | None = None
    heartbeat: health.Heartbeat | None = None
    on_retried: Callable[[Path], None] | None = None
    #: Why all work is paused (the journal cannot be written), or None: the daemon's worker.
    paused: Callable[[], JournalPause | None] | None = None
    clock: Callable[[], float] = time.time
    logins: LoginThrottle = field(default_factory=LoginThrottle)
    _outputs: dict[tuple[int, float | None], list[str]] = field(default_factory=dict)

    async def handle(self, request: Request) -> Response:
        """The answer to one request; never raises for anything the client sent."""
        try:
            self.guard.check_host(request.headers.get("host"))
            route = self._route(request.path)
            if route not in _NO_TOKEN_NEEDED and not self.guard.authorized(request.headers,
                                                                           self.clock()):
                return self._unauthorized(request, route)
            allowed = _ROUTES.get(route, ("GET", "HEAD"))
            if request.method not in allowed:
                raise HttpError(405, f"use {' or '.join(allowed)}",
                                headers={"Allow": ", ".join(allowed)})
            return await self._dispatch(route, request)
        except Refused as exc:
            return text_response(exc.status, exc.reason)
        except HttpError as exc:
            return text_response(exc.status, exc.reason, **exc.headers)

    def _route(self, path: str) -> str:
        if path in _ROUTES:
            return path
        if _TRANSCRIPT_RE.fullmatch(path):
            return "/transcript"
        if _VIEW_RE.fullmatch(path):
            return "/view"
        raise HttpError(404, "not found")

    async def _dispatch(self, route: str, request: Request) -> Response:
        if route == "/":
            return await self._page()
        if route == "/api/status":
            return await self._status_json()
        if route == "/metrics":
            return await self._metrics()
        if route == "/healthz":
            pause = self._pause()
            if pause is not None:
                return text_response(503, pause.describe())
            verdict = await health.check(self.reader.path, self.heartbeat)
            return text_response(200 if verdict.ok else 503, verdict.reason)
        if route == "/retry":
            return await self._retry(request)
        if route == "/login":
            return self._login(request)
        if route in ("/search", "/api/search"):
            return await self._search(request, as_json=route == "/api/search")
        if route == "/view":
            return await self._view(request.path)
        return await self._transcript(request.path)

    def _pause(self) -> JournalPause | None:
        return self.paused() if self.paused is not None else None

    # -- token -----------------------------------------------------------------------------

    def _unauthorized(self, request: Request, route: str) -> Response:
        if route == "/" and request.method in ("GET", "HEAD"):
            nonce = secrets.token_urlsafe(16)
            return Response(401, page.login_html(nonce, wrong=False).encode(),
                            "text/html; charset=utf-8", _html_headers(nonce))
        return text_response(401, "the access token is required: send Authorization: Bearer "
                                  "TOKEN (the token is in [http] token_file), or sign in at /",
                             **{"WWW-Authenticate": 'Bearer realm="watcherd"'})

    def _login(self, request: Request) -> Response:
        if not self.guard.needs_token:
            return _see_other("/")
        wait = self.logins.retry_after(request.peer)
        if wait is not None:
            # Not even compared: while the limit holds, a right guess must look like a wrong one.
            # Said once at warning (below), when the limit is reached: a guesser gets no flood.
            log.debug("web_login_throttled", peer=request.peer, retry_after=wait)
            return text_response(429, f"too many wrong tokens from this address; wait {wait} s "
                                      "and sign in again with the token from [http] token_file",
                                 **{"Retry-After": str(wait)})
        given = _form(request).get("token", "")
        if self.guard.token is not None and self.guard.token_matches(given):
            self.logins.succeeded(request.peer)
            return _see_other("/", **{"Set-Cookie": self.guard.session_cookie(self.clock())})
        self.logins.failed(request.peer)
        log.warning("web_login_refused", peer=request.peer)
        wait = self.logins.retry_after(request.peer)
        if wait is not None:
            log.warning("web_login_throttled", peer=request.peer, retry_after=wait,
                        hint="too many wrong tokens from this address; its logins are "
                             "refused with 429 until then")
        nonce = secrets.token_urlsafe(16)
        return Response(401, page.login_html(nonce, wrong=True).encode(),
                        "text/html; charset=utf-8", _html_headers(nonce))

    # -- reading ---------------------------------------------------------------------------

    async def _snapshot(self) -> tuple[Snapshot, dict[int, list[str]]]:
        snapshot = await self.reader.get()
        if self.progress is not None:
            # Reports whose clear was missed (a crash in an engine) go with their file's work.
            # The snapshot may be a few seconds old (cached): a file started since is kept.
            self.progress.retain((s.id for s in snapshot.working),
                                 updated_before=snapshot.taken_at)
        outputs = await asyncio.to_thread(self._outputs_of_recent, snapshot)
        return snapshot, outputs

    def _outputs_of_recent(self, snapshot: Snapshot) -> dict[int, list[str]]:
        """The output suffixes of the recently finished files (cached per finished version)."""
        wanted = {(s.id, s.done_at): s for s in snapshot.recent}
        missing = [key for key in wanted if key not in self._outputs]
        if missing:
            try:
                with Journal.open(self.reader.path, readonly=True) as journal:
                    for key in missing:
                        self._outputs[key] = [
                            o.suffix for o in transcripts.existing_outputs(journal, wanted[key])]
            except Exception as exc:
                log.warning("web_outputs_unread", error=type(exc).__name__)
        self._outputs = {key: v for key, v in self._outputs.items() if key in wanted}
        return {key[0]: value for key, value in self._outputs.items()}

    def _live(self, snapshot: Snapshot, outputs: Mapping[int, list[str]]) -> str:
        board = self.progress.snapshot() if self.progress is not None else {}
        pause = self._pause()
        return page.live_html(snapshot, board, self.guard.csrf_token(), outputs, self.clock(),
                              paused=pause.describe() if pause is not None else None)

    async def _page(self) -> Response:
        snapshot, outputs = await self._snapshot()
        nonce = secrets.token_urlsafe(16)
        html = page.page_html(self._live(snapshot, outputs), nonce)
        return Response(200, html.encode("utf-8"), "text/html; charset=utf-8",
                        _html_headers(nonce))

    async def _status_json(self) -> Response:
        snapshot, outputs = await self._snapshot()
        board = self.progress.snapshot() if self.progress is not None else {}

        def row(source: Any) -> dict[str, Any]:
            item = {"id": source.id, "name": page.name_of(source),
                    "path": printable(source.path), "state": source.state,
                    "engine": source.engine, "attempts": source.attempts,
                    "error": printable(source.last_error) if source.last_error else None,
                    "note": printable(source.note) if source.note else None,
                    "next_attempt_at": source.next_attempt_at, "done_at": source.done_at,
                    "since": snapshot.since.get(source.id)}
            progress = board.get(source.id)
            if progress is not None:
                item["progress"] = {"fraction": progress.fraction, "phase": progress.phase,
                                    "expected_end": progress.expected_end}
            if source.id in outputs:
                item["outputs"] = outputs[source.id]
            return item

        body = {
            "taken_at": snapshot.taken_at, "error": snapshot.error, "counts": snapshot.counts,
            "working": [row(s) for s in snapshot.working],
            "queued": snapshot.queued_total,
            "waiting": [row(s) for s in snapshot.waiting],
            "failed": [row(s) for s in snapshot.failed],
            "recent": [row(s) for s in snapshot.recent],
            "html": self._live(snapshot, outputs),
        }
        text = json_safe(json.dumps(body, ensure_ascii=False))
        return Response(200, text.encode("utf-8"), "application/json")

    async def _metrics(self) -> Response:
        snapshot = await self.reader.get()
        body = await asyncio.to_thread(metrics.render, snapshot, activity=self.activity,
                                       transitions=self.transitions, api=self.api)
        return Response(200, body, CONTENT_TYPE_LATEST)

    async def _transcript(self, path: str) -> Response:
        found = _TRANSCRIPT_RE.fullmatch(path)
        assert found is not None
        source_id, suffix = int(found[1]), found[2]

        def read() -> tuple[transcripts.Output, bytes]:
            with Journal.open(self.reader.path, readonly=True) as journal:
                return transcripts.read_output(journal, source_id, suffix)

        try:
            output, data = await asyncio.to_thread(read)
        except transcripts.NoSuchOutput as exc:
            return text_response(404, str(exc))
        return Response(200, data, output.media_type,
                        {"Content-Security-Policy": "default-src 'none'; sandbox"})

    async def _search(self, request: Request, *, as_json: bool) -> Response:
        fields = parse_qs(request.query, keep_blank_values=True, max_num_fields=10)
        query = " ".join((fields.get("q") or [""])[0].split())[:_MAX_QUERY]

        def run() -> tuple[list[Hit], str | None, int]:
            if not query:
                return [], None, 0
            with self.reader.opener() as journal:
                try:
                    hits = journal.search(query, limit=50)
                except QueryError as exc:
                    return [], str(exc), 0
                return hits, None, journal.search_state().backlog

        try:
            hits, error, backlog = await asyncio.to_thread(run)
        except JournalError as exc:
            hits, error, backlog = [], str(exc), 0
        if as_json:
            body = {"query": query, "error": error, "backlog": backlog,
                    "hits": [hit_json(h) for h in hits]}
            text = json_safe(json.dumps(body, ensure_ascii=False))
            return Response(400 if error else 200, text.encode("utf-8"), "application/json")
        nonce = secrets.token_urlsafe(16)
        html = searchpage.results_html(query, hits, error, nonce, backlog=backlog)
        return Response(200, html.encode("utf-8"), "text/html; charset=utf-8",
                        _html_headers(nonce))

    async def _view(self, path: str) -> Response:
        found = _VIEW_RE.fullmatch(path)
        assert found is not None
        source_id = int(found[1])

        def read() -> tuple[Source, object] | None:
            with self.reader.opener() as journal:
                try:
                    source = journal.get(source_id)
                except KeyError:
                    return None
                job = journal.result_for(source.content_key) if (
                    source.state == "done" and source.content_key) else None
                return None if job is None else (source, job)

        got = await asyncio.to_thread(read)
        if got is None:
            return text_response(404, "no finished transcript for that file")
        nonce = secrets.token_urlsafe(16)
        html = searchpage.transcript_html(got[0], got[1], nonce)
        return Response(200, html.encode("utf-8"), "text/html; charset=utf-8",
                        _html_headers(nonce))

    # -- the action ------------------------------------------------------------------------

    async def _retry(self, request: Request) -> Response:
        fields = _form(request)
        self.guard.check_csrf(fields.get("csrf") or request.headers.get("x-csrf-token"),
                              request.headers)
        if self.journal is None:
            raise HttpError(503, "this page is read-only")
        text = fields.get("id", "")
        if not re.fullmatch(r"[0-9]{1,18}", text):
            raise HttpError(400, "the form names no file")
        try:
            source = self.journal.get(int(text))
            moved = self.journal.retry([source.path])
        except KeyError:
            raise HttpError(404, "no such file in the journal") from None
        except JournalUnavailable as exc:
            raise HttpError(503, f"the journal cannot be written now: {exc.reason}") from None
        self.reader.invalidate()
        log.info("web_retry", source=source.path, queued=bool(moved))
        if moved and self.on_retried is not None:
            self.on_retried(Path(source.path))
        if "application/json" in request.headers.get("accept", ""):
            return Response(200, json.dumps({"queued": bool(moved)}).encode(),
                            "application/json")
        return _see_other("/")


def _form(request: Request) -> dict[str, str]:
    """The fields of a urlencoded form body (the first value of each)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != (
            "application/x-www-form-urlencoded"):
        return {}
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "the form is not UTF-8") from None
    try:
        parsed = parse_qs(text, keep_blank_values=True, max_num_fields=20)
    except ValueError:
        raise HttpError(400, "the form has too many fields") from None
    return {key: values[0] for key, values in parsed.items() if values}


def _see_other(location: str, **headers: str) -> Response:
    return Response(303, b"", headers={"Location": location, **headers})


def _html_headers(nonce: str) -> dict[str, str]:
    # Nothing from elsewhere, ever: the page works offline and no injected markup could run.
    return {"Content-Security-Policy": (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")}
