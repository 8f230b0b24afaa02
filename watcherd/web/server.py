"""The status page's lifecycle in the daemon: start it next to the worker, close it after.

A port already in use (several daemons on one host) or an address that is not this
machine's is a warning, ``http_unavailable``, not a failure: the daemon runs on without the
page, and says so in its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

import structlog

from watcherd.config import HttpConfig
from watcherd.httpserver import HttpServer
from watcherd.journal import Journal
from watcherd.pause import JournalPause
from watcherd.progress import ProgressBoard
from watcherd.service.metrics import ActivityFigures
from watcherd.usage import Plan
from watcherd.web import health, metrics
from watcherd.web.app import WebApp
from watcherd.web.guard import Guard
from watcherd.web.http import page_server
from watcherd.web.snapshot import SnapshotReader

log = structlog.get_logger("watcherd.web")


class WebServer:
    """The page, /metrics and /healthz for one daemon generation."""

    def __init__(self, app: WebApp, http: HttpServer) -> None:
        self.app = app
        self.http = http
        self._heartbeat_task: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        return self.http.address

    @property
    def url(self) -> str:
        """The page's URL."""
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    async def start(self) -> None:
        """Bind and serve (OSError when the address cannot be bound)."""
        await self.http.start()
        # Port 0 (tests) binds a free port: the Host check must expect the real one.
        self.app.guard = dataclasses.replace(self.app.guard, port=self.http.address[1])
        if self.app.heartbeat is not None:
            self._heartbeat_task = asyncio.ensure_future(self.app.heartbeat.run())
        if self.app.transitions is not None and self.app.journal is not None:
            self.app.transitions.attach(self.app.journal)

    async def close(self) -> None:
        """Stop serving; detach from the journal."""
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        if self.app.transitions is not None and self.app.journal is not None:
            self.app.transitions.detach(self.app.journal)
        await self.http.close()


def build(
    http_config: HttpConfig,
    journal_path: Path | str,
    *,
    journal: Journal | None = None,
    progress: ProgressBoard | None = None,
    activity: ActivityFigures | None = None,
    api: metrics.ApiRequests | None = None,
    on_retried: Callable[[Path], None] | None = None,
    port: int | None = None,
    open_journal: Callable[[], Journal] | None = None,
    paused: Callable[[], JournalPause | None] | None = None,
    plan: Plan | None = None,
) -> WebServer:
    """A web server for this config, not started (``port`` overrides, e.g. 0 in tests)."""
    assert http_config.address is not None
    host, configured_port = http_config.address
    bound_port = configured_port if port is None else port
    app = WebApp(
        guard=Guard.create(host, bound_port, http_config.token),
        reader=SnapshotReader(journal_path, opener=open_journal, plan=plan), journal=journal,
        progress=progress,
        activity=activity, transitions=metrics.TransitionCounter(), api=api,
        heartbeat=health.Heartbeat(), on_retried=on_retried, paused=paused,
    )
    return WebServer(app, page_server(host, bound_port, app.handle))


async def start_web(
    http_config: HttpConfig,
    journal: Journal,
    *,
    progress: ProgressBoard | None = None,
    activity: ActivityFigures | None = None,
    api: metrics.ApiRequests | None = None,
    on_retried: Callable[[Path], None] | None = None,
    open_journal: Callable[[], Journal] | None = None,
    paused: Callable[[], JournalPause | None] | None = None,
    plan: Plan | None = None,
) -> WebServer | None:
    """Start the page ``[http]`` asks for; None when it is off or its address is taken.

    ``open_journal`` opens a read-only journal for the page's snapshots (default: the
    journal's own location).
    """
    if http_config.address is None:
        return None
    server = build(http_config, journal.location, journal=journal, progress=progress,
                   activity=activity, api=api, on_retried=on_retried,
                   open_journal=open_journal, paused=paused, plan=plan)
    try:
        await server.start()
    except OSError as exc:
        log.warning("http_unavailable", listen=http_config.listen,
                    error=exc.strerror or str(exc),
                    hint="the status page and /metrics are off for this daemon (another one "
                         "may use the port); set [http] listen to a free address, or \"\" to "
                         "turn it off; transcription goes on")
        return None
    log.info("http_started", url=server.url, metrics=server.url + "metrics")
    return server
