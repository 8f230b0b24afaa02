"""The worker's pause while the journal cannot be written, and the probe that ends it."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from watcherd.journal import Journal, JournalUnavailable
from watcherd.pause import JournalPause
from watcherd.worker.common import log, one_line

__all__ = ["JOURNAL_RETRY_FIRST", "JOURNAL_RETRY_MAX", "JournalGuard"]

#: While the journal cannot be written, a probe write is tried after this long, the wait
#: doubling up to JOURNAL_RETRY_MAX: a freed disk is noticed within half a minute.
JOURNAL_RETRY_FIRST = 1.0
JOURNAL_RETRY_MAX = 30.0
#: A pause that starts this soon after the last one ended is the same trouble coming back
#: (a disk with just enough room for the probe): no new warning, and the backoff goes on.
_JOURNAL_RELAPSE_SECONDS = 60.0


class JournalGuard:
    """Pauses all work when a journal write fails for its storage; resumes when a probe works."""

    def __init__(self, journal: Journal, wake: asyncio.Event) -> None:
        self.journal = journal
        self.wake = wake
        #: While set, the journal cannot be written: all work is paused until a probe works.
        self.pause: JournalPause | None = None
        #: The wait before the next probe (doubles while probes fail).
        self.delay = JOURNAL_RETRY_FIRST
        self.retry_at = 0.0
        self.ended_at = -math.inf
        self.listeners: list[Callable[[JournalPause | None], None]] = []

    def failed(self, exc: JournalUnavailable) -> None:
        """A journal write failed for its storage: pause all work until a probe works.

        Nothing is recorded about the file whose write hit it (it cannot be), and nothing is
        needed: the journal still holds the last committed step of every file, which is where
        each one goes on from once the journal takes writes again.
        """
        now = time.time()
        if self.pause is not None:
            if exc.reason != self.pause.reason:
                log.debug("journal_unavailable_reason", reason=exc.reason)
                self._set(JournalPause(exc.reason, self.pause.since))
            return
        relapse = now - self.ended_at < _JOURNAL_RELAPSE_SECONDS
        if not relapse:
            self.delay = JOURNAL_RETRY_FIRST
        self.retry_at = now + self.delay
        if relapse:
            log.info("journal_unavailable_again", reason=exc.reason, detail=exc.detail,
                     retry_in=round(self.delay, 1))
        else:
            log.warning("journal_unavailable", reason=exc.reason, detail=exc.detail,
                        hint="all work is paused, no file is failed or skipped; watcherd "
                        f"tries the journal again every {JOURNAL_RETRY_FIRST:g} to "
                        f"{JOURNAL_RETRY_MAX:g} s and resumes by itself")
        self._set(JournalPause(exc.reason, now))
        self.wake.set()

    def probe_due(self) -> bool:
        """Paused, and the backoff before the next probe has run out."""
        return self.pause is not None and time.time() >= self.retry_at

    def try_resume(self) -> None:
        """While paused: one probe write; resume on success, else wait longer (backoff)."""
        pause = self.pause
        assert pause is not None
        try:
            self.journal.probe_write()
        except Exception as exc:
            self.delay = min(self.delay * 2, JOURNAL_RETRY_MAX)
            self.retry_at = time.time() + self.delay
            if isinstance(exc, JournalUnavailable):
                if exc.reason != pause.reason:
                    self._set(JournalPause(exc.reason, pause.since))
            else:
                # Not a storage failure (a bug, a node name taken meanwhile): say it, and
                # stay paused, since it is not known whether writes work.
                log.error("journal_probe_failed", error=one_line(exc),
                          retry_in=round(self.delay, 1))
            return
        now = time.time()
        log.info("journal_writable_again", paused_seconds=round(now - pause.since, 1),
                 hint="work resumes where the journal says each file was")
        self.ended_at = now
        self._set(None)
        self.wake.set()

    def _set(self, pause: JournalPause | None) -> None:
        self.pause = pause
        for listener in self.listeners:
            try:
                listener(pause)
            except Exception as exc:  # a display of the pause must never stop the worker
                log.warning("pause_listener_failed", error=one_line(exc))
