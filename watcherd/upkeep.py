"""The journal's background work while the daemon runs: small batches, none before READY=1.

Transcripts the search index lacks (a journal from before it) are indexed, results written
before they were stored compressed are packed, events older than ``[journal] history_days``
are folded into per-file summaries, finished jobs' rows older than any billing month the hours
report can show are dropped once nothing is left to delete at Gladia
(:func:`watcherd.usage.earliest_shown`), and the space is given back (SQLite: the WAL
checkpointed and kept bounded, free pages returned). Each batch is short (a few hundred rows,
a few MB of JSON at most), so the worker sharing the journal's connection never waits long.
One loop does all of it, so there is one place that decides what runs after READY=1 and how
often.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from watcherd.journal import Journal, JournalUnavailable
from watcherd.usage import earliest_shown

__all__ = ["INDEX_BATCH", "keep_small", "step"]

# Between two batches while there is work: the worker gets the connection in between.
_BATCH_PAUSE_SECONDS = 0.05
# How often to look again once nothing is left (new events age, the WAL grows again).
_IDLE_SECONDS = 60.0
# How often the WAL is checkpointed and free pages are returned.
_RECLAIM_SECONDS = 60.0
_DAY_SECONDS = 86_400.0
# Transcripts indexed per batch: each is a few ms of FTS work, so a batch stays short.
INDEX_BATCH = 20

_log = structlog.get_logger("watcherd.upkeep")


def step(journal: Journal, history_days: float, *, now: float) -> bool:
    """One batch of each pass; whether any found work (so another batch follows soon)."""
    return _step(journal, history_days, now=now)[1]


def _step(journal: Journal, history_days: float, *, now: float) -> tuple[int, bool]:
    """Transcripts indexed by this batch, and whether any pass found work."""
    indexed = journal.index_backlog(limit=INDEX_BATCH)
    packed = journal.pack_results()
    folded = journal.fold_history(now - history_days * _DAY_SECONDS)
    dropped = journal.drop_remote_jobs(earliest_shown(now))
    return indexed, indexed > 0 or packed > 0 or folded > 0 or dropped > 0


async def keep_small(journal: Journal, history_days: float, *,
                     clock: Callable[[], float] = time.time) -> None:
    """Run the upkeep passes until cancelled (the daemon starts it after READY=1)."""
    last_reclaim = 0.0
    indexed = 0  # since the backlog was last found empty: said once when it is
    while True:
        busy = False
        try:
            count, busy = _step(journal, history_days, now=clock())
            indexed += count
            if indexed and not count:
                _log.info("search_index_filled", transcripts=indexed)
                indexed = 0
            if time.monotonic() - last_reclaim >= _RECLAIM_SECONDS:
                last_reclaim = time.monotonic()
                journal.reclaim()
        except JournalUnavailable:
            pass  # the worker says so and pauses; the next round tries again
        except Exception:
            # Upkeep must never stop the daemon: the journal stays correct, only bigger.
            _log.exception("journal_upkeep_failed")
            busy = False
        await asyncio.sleep(_BATCH_PAUSE_SECONDS if busy else _IDLE_SECONDS)
