"""What the worker's units (intake, settling, dispatch) share: the loop's context and helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from watcherd.folders import Folders
from watcherd.journal import UNKNOWN_ID, FileStat, Journal, JournalUnavailable, Source
from watcherd.retry import RetryPolicy

__all__ = ["WorkContext", "journaled_stat", "one_line"]

#: One logger for every unit: the log's ``logger`` field stays what it always was.
log = structlog.get_logger("watcherd.worker")


@dataclass(frozen=True)
class WorkContext:
    """What every unit of the worker works with; all of them run on the worker's loop."""

    journal: Journal
    folders: Folders
    retry: RetryPolicy
    #: How long one batch of file-system calls may take before its storage is taken as hung.
    file_timeout: float
    #: A shared journal (several nodes): leave alone what other nodes hold or watch.
    shared: bool
    #: Set to make the loop tick now.
    wake: asyncio.Event
    #: Called when a journal write fails for its storage: all work pauses (JournalGuard).
    journal_failed: Callable[[JournalUnavailable], None]
    #: Tasks the loop started and waits for before it is idle (stat batches, outputs reads).
    background: set[asyncio.Future[None]]

    def in_background(self, task: asyncio.Future[None]) -> asyncio.Future[None]:
        """Count ``task`` as the loop's work until it ends."""
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def covers(self, source: Source) -> bool:
        """Whether a watch of this worker covers ``source``; if not, say why in its note.

        A journal outlives configs: files another config watched stay as they are, neither
        hashed nor dispatched, until a daemon watching their folder runs.
        """
        if self.folders.watch_of_source(source) is not None:
            return True
        note = None if self.shared else self.folders.unwatched_note(source)
        if note is not None and source.note != note:
            self.journal.annotate(source, actor="worker", reason="folder not watched",
                                  note=note)
        return False


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one bounded line: its type, its message, where it was raised."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:
        where = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"


def journaled_stat(source: Source) -> FileStat:
    """The stat the journal holds for a source."""
    return FileStat(source.size or 0, source.mtime_ns or 0,
                    UNKNOWN_ID if source.dev is None else source.dev,
                    UNKNOWN_ID if source.inode is None else source.inode)
