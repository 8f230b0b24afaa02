"""Deleting finished jobs at Gladia (``delete_after = "done"``), resumable from the journal.

The intent is committed with the stored result (``remote_jobs.delete_wanted_at``); a job is
deleted once a source of its content is done (its outputs written). Gladia answers 202, or
403 while a job is not deletable yet (retried with backoff), or 404 when it is gone already
(counted as deleted). A crash between the intent and the DELETE is resumed at the next start:
the journal still says the delete is wanted. Never paying twice then rests on the journal's
stored result and the NAME.json beside each source (docs/gladia-contract.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from watcherd.engines.gladia.client import GladiaClient
from watcherd.errors import AuthError, GladiaError, JobNotFound, TransientGladiaError
from watcherd.journal import Journal, JournalUnavailable
from watcherd.retry import RetryPolicy

__all__ = ["RemoteDeletes"]

log = structlog.get_logger("watcherd.engines.gladia.deletes")

#: How often the loop looks anyway (another node's sources may have become done).
_IDLE_LOOK = 30.0


class RemoteDeletes:
    """Runs the deletes the journal wants, now and after every wake-up."""

    def __init__(self, journal: Journal, client: GladiaClient, retry: RetryPolicy) -> None:
        self.journal = journal
        self.client = client
        self.retry = retry
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """A result was written whose job may be deleted: look now."""
        self._wake.set()

    def start(self) -> None:
        """Run the loop in the background (resuming deletes an earlier run left)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_due(self) -> int:
        """Delete every job due now; returns how many Gladia confirmed gone."""
        gone = 0
        now = time.time()
        for job_id, attempts in self.journal.due_deletes(now):
            try:
                await self.client.delete(job_id)
            except JobNotFound:
                pass  # deleted already (by another node, purge-remote, or before a crash)
            except (TransientGladiaError, AuthError) as exc:
                # Gladia away or the key refused: every delete would fail alike; later.
                self.journal.delete_deferred(job_id, now + self.retry.delay(
                    attempts + 1, retry_after=getattr(exc, "retry_after", None)))
                log.info("gladia_delete_deferred", job_id=job_id, error=exc.describe())
                break
            except GladiaError as exc:
                # 403: not deletable yet (queued or processing); anything else: try later too.
                self.journal.delete_deferred(job_id, now + self.retry.delay(attempts + 1))
                log.info("gladia_delete_deferred", job_id=job_id, error=exc.describe())
                continue
            self.journal.delete_done(job_id)
            gone += 1
            log.info("job_deleted_at_gladia", job_id=job_id)
        return gone

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_due()
                wait = _IDLE_LOOK
                due = self.journal.next_delete_at(time.time())
                if due is not None:
                    wait = min(wait, max(0.0, due - time.time()))
            except JournalUnavailable:
                wait = _IDLE_LOOK  # the worker says the pause; the intents are still there
            except Exception as exc:  # never let deletes take the daemon down
                log.warning("gladia_deletes_failed", error=str(exc))
                wait = _IDLE_LOOK
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
