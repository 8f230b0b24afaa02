"""Notifications through Apprise: a file done or failed, or work paused until a person acts.

One library speaks ntfy, Gotify, e-mail, Slack, Matrix, Discord, Telegram, webhooks...: the
``[notify] urls`` are Apprise URLs (secrets: they hold tokens). Events are batched: at most
one message per route every ``batch_seconds``, with counts and the first few names. A message
that cannot be sent is logged and retried a few times, then dropped; nothing here touches the
journal or a file's state. Apprise is the optional extra ``watcherd[notify]``; the config
refuses ``[notify] urls`` without it (watcherd.config).

"paused" is every state that needs a person: the API key refused, the journal's disk full,
no engine to transcribe with, and whatever :meth:`Notifications.paused` is called with (the
monthly limit, from the worker that sees it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import structlog

from watcherd.config import NotifyConfig, NotifyRoute
from watcherd.display import printable
from watcherd.journal import Source
from watcherd.log import redact_also

log = structlog.get_logger("watcherd.notify")

#: Names listed per kind in one message; the rest are counted.
_FIRST_NAMES = 5
#: Attempts per message, and the wait before the second (doubled each time).
_ATTEMPTS = 3
_FIRST_RETRY_SECONDS = 2.0
#: A batch's first event waits this long for company (capped by ``batch_seconds``).
_GATHER_SECONDS = 2.0

#: What sends one message: (urls, title, body) -> delivered. Apprise's, unless a test's.
Send = Callable[[Sequence[str], str, str], bool]


def _apprise_send(urls: Sequence[str], title: str, body: str) -> bool:
    """Send one message to every URL through Apprise; True when all took it."""
    import apprise

    sender = apprise.Apprise()
    for url in urls:
        sender.add(url)
    return bool(sender.notify(title=title, body=body))


@dataclass
class _Batch:
    """Events waiting for one route's next message."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)
    first_at: float | None = None

    def empty(self) -> bool:
        return not (self.done or self.failed or self.paused)


class Notifications:
    """Turns journal transitions and pauses into batched messages on their routes."""

    def __init__(self, config: NotifyConfig, *, send: Send | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 retry_seconds: float = _FIRST_RETRY_SECONDS) -> None:
        self.config = config
        self.send = send or _apprise_send
        self.clock = clock
        self.retry_seconds = retry_seconds
        self._default = NotifyRoute(config.urls, config.on)
        self._routes = sorted(config.watches, key=lambda r: len(str(r[0])), reverse=True)
        self._batches: dict[NotifyRoute, _Batch] = {}
        self._last_sent: dict[NotifyRoute, float] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Apprise names its targets in its own log lines: only its errors, and redacted,
        # the parts of each URL too (a token is often its path or its password).
        logging.getLogger("apprise").setLevel(logging.ERROR)
        redact_also(_url_parts(config))

    # -- events in ---------------------------------------------------------------------------

    def route_of(self, path: str) -> NotifyRoute:
        """The route of a file: its watch's own, else ``[notify]``'s."""
        for root, route in self._routes:
            if path == str(root) or path.startswith(str(root).rstrip("/") + "/"):
                return route
        return self._default

    def transition(self, source: Source, previous: str) -> None:
        """A journal listener: a file that became done or failed."""
        if source.state == previous or source.state not in ("done", "failed"):
            return
        name = printable(os.path.basename(source.path))
        if source.state == "failed" and source.last_error:
            name += f" ({printable(source.last_error)[:120]})"
        self._add(self.route_of(source.path), source.state, name)

    def paused(self, what: str) -> None:
        """Work stopped until a person acts: ``what`` says what and what to do (every route)."""
        routes = {self._default, *(route for _, route in self._routes)}
        for route in routes:
            self._add(route, "paused", printable(what))

    def _add(self, route: NotifyRoute, kind: str, text: str) -> None:
        if not route.urls or kind not in route.on:
            return
        batch = self._batches.setdefault(route, _Batch())
        getattr(batch, kind).append(text)
        if batch.first_at is None:
            batch.first_at = self.clock()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    # -- messages out ------------------------------------------------------------------------

    def due_at(self, route: NotifyRoute, batch: _Batch) -> float:
        """When this batch goes: after its gathering time, one batch_seconds after the last."""
        assert batch.first_at is not None
        gather = min(_GATHER_SECONDS, self.config.batch_seconds)
        last = self._last_sent.get(route)
        return max(batch.first_at + gather,
                   (last + self.config.batch_seconds) if last is not None else 0.0)

    async def run(self) -> None:
        """Send batches as they fall due, until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            now = self.clock()
            waits = []
            for route, batch in list(self._batches.items()):
                if batch.empty():
                    continue
                due = self.due_at(route, batch)
                if due <= now:
                    self._batches[route] = _Batch()
                    self._last_sent[route] = now
                    await self._deliver(route, batch)
                else:
                    waits.append(due - now)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(waits, default=3600.0))

    async def _deliver(self, route: NotifyRoute, batch: _Batch) -> None:
        title, body = message(batch)
        urls = [u.reveal() for u in route.urls]
        wait = self.retry_seconds
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                sent = await asyncio.to_thread(self.send, urls, title, body)
            except Exception as exc:  # a broken URL or plugin must not stop the daemon
                sent = False
                log.warning("notify_error", error=type(exc).__name__, attempt=attempt)
            if sent:
                log.info("notify_sent", title=title, targets=len(urls))
                return
            if attempt < _ATTEMPTS:
                await asyncio.sleep(wait)
                wait *= 2
        log.warning("notify_failed", title=title, attempts=_ATTEMPTS, targets=len(urls),
                    hint="check [notify] urls (watcherd doctor --notify sends a test); the "
                         "files themselves are not affected")


def _url_parts(config: NotifyConfig) -> list[str]:
    """Every URL of ``config`` and the parts of each that may be a secret."""
    parts: list[str] = []
    routes = [config.urls, *(route.urls for _, route in config.watches)]
    for url in (u.reveal() for urls in routes for u in urls):
        parts.append(url)
        with contextlib.suppress(ValueError):
            split = urlsplit(url)
            parts += [p for p in (split.password, split.username, split.path.strip("/"),
                                  split.query, *split.path.split("/")) if p and len(p) >= 4]
    return parts


def message(batch: _Batch) -> tuple[str, str]:
    """The title (counts) and body (first few names per kind) of one batch."""
    counts = [f"{len(items)} {kind}" for kind, items in
              (("done", batch.done), ("failed", batch.failed), ("paused", batch.paused))
              if items]
    lines: list[str] = []
    for label, items in (("Needs you", batch.paused), ("Failed", batch.failed),
                         ("Done", batch.done)):
        if not items:
            continue
        lines.append(f"{label}:")
        lines += [f"- {item}" for item in dict.fromkeys(items[:_FIRST_NAMES])]
        if len(items) > _FIRST_NAMES:
            lines.append(f"- and {len(items) - _FIRST_NAMES} more")
    return "watcherd: " + ", ".join(counts), "\n".join(lines)


def send_test(config: NotifyConfig, *, send: Send | None = None) -> list[tuple[str, bool]]:
    """``doctor --notify``: one test message to each route; (route label, delivered)."""
    sender = send or _apprise_send
    routes: list[tuple[str, NotifyRoute]] = []
    if config.urls:
        routes.append(("[notify]", NotifyRoute(config.urls, config.on)))
    routes += [(f"[[watch]] {printable(str(root))}", route) for root, route in config.watches
               if route.urls and route.urls != config.urls]
    results = []
    for label, route in routes:
        try:
            ok = sender([u.reveal() for u in route.urls], "watcherd: test notification",
                        "watcherd doctor --notify: this route works.")
        except Exception:
            ok = False
        results.append((label, ok))
    return results


__all__ = ["Notifications", "message", "send_test"]
