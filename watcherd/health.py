"""Whether the remote API answers and accepts the key: one object the engine and worker share.

The Gladia pipeline reports what its calls find (:meth:`ApiHealth.down`, :meth:`ok`,
:meth:`key_rejected`); the worker reads it to decide how much remote work to start (one probe
at a time while the API is down or the key rejected; nothing during the pause after a
rejected key). Both receive the same object at construction.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from watcherd.errors import AuthError, GladiaError
from watcherd.journal import Journal

log = structlog.get_logger("watcherd.health")

__all__ = ["ApiHealth"]


class ApiHealth:
    """The remote API's state as the last calls saw it; never stored (a restart re-checks)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.down_since: float | None = None
        self.auth_problem: str | None = None
        self.auth_problem_at = 0.0
        self._on_recovered: list[Callable[[], None]] = []
        #: Called with what to do when remote work pauses for a person (a key refused, a
        #: plan's limit reached): notifications hear it here.
        self.on_paused: list[Callable[[str], None]] = []

    def subscribe(self, on_recovered: Callable[[], None]) -> None:
        """Call ``on_recovered`` (on the loop) when the API answers again after an outage."""
        self._on_recovered.append(on_recovered)

    def down(self, exc: GladiaError) -> None:
        """The API could not be reached: probe it one call at a time until it answers."""
        if self.down_since is None:
            self.down_since = time.time()
            log.warning("gladia_unreachable", error=exc.describe(),
                        hint="files wait and resume by themselves when the API answers again")

    def ok(self) -> None:
        """A call succeeded: resume full speed and wake sources that waited for the network."""
        if self.down_since is not None:
            log.info("gladia_reachable", down_seconds=round(time.time() - self.down_since))
            self.down_since = None
            # Sources that waited only for the network go now instead of at their backoff time.
            self.journal.reschedule_waiting(time.time())
            for callback in self._on_recovered:
                callback()
        if self.auth_problem is not None:
            log.info("gladia_key_accepted")
            self.auth_problem = None

    def paused(self, what: str) -> None:
        """Remote work waits for a person: tell whoever listens (never raises)."""
        for listener in self.on_paused:
            try:
                listener(what)
            except Exception:
                log.exception("pause_listener_failed")

    def key_rejected(self, exc: AuthError) -> None:
        """The key was rejected: pause remote work and re-check it now and then."""
        if self.auth_problem is None:
            log.error("gladia_key_rejected", error=exc.describe(),
                      hint="remote work is paused; fix the key and restart or send SIGHUP")
            self.paused(f"the Gladia API key was refused ({exc.describe()}); remote work "
                        "is paused: fix [gladia] api_key and restart or send SIGHUP")
        self.auth_problem = exc.describe()
        self.auth_problem_at = time.time()
