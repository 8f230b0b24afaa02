"""Settling: each source's quiet-time clock, then hashing in batches, then ``queued``.

The clocks are the loop's memory only (hints and timing, never state): losing them costs time,
not correctness, since the journal says which sources are still unsettled. A source has a clock
only while it knows more than its journal row (a "file complete" event, a hint later than the
row's last change, a storage backoff) or while :meth:`Settling.settle` is timing it in its window
of UNSETTLED_BATCH rows: with 100,000 files found at start-up, the rows are the state, and the
clocks stay as many as that window (issue 22: memory per queued file).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watcherd import media, roots
from watcherd.errors import SourceError
from watcherd.fileops import StorageTimeout, run_on
from watcherd.fserrors import classify
from watcherd.identity import content_key, hash_file
from watcherd.journal import UNKNOWN_ID, FileStat, JournalUnavailable, Source
from watcherd.watcher import StorageFacts, storage_facts
from watcherd.worker.common import WorkContext, journaled_stat, log, one_line

__all__ = ["COMPLETE_SETTLE_SECONDS", "HashFailure", "Settling"]

#: A file closed after writing, or renamed into place, settles after this short quiet time
#: (capped by its watch's settle_seconds) instead of the full one. Not zero: some writers
#: close and reopen the file to append, and the wait lets their next write show.
COMPLETE_SETTLE_SECONDS = 0.5
#: How long a source may keep changing before ``status`` says so in its note.
_STILL_WRITING_AFTER_SECONDS = 10.0
#: How often that note is brought up to date (each update is a journal event).
_STILL_WRITING_REFRESH_SECONDS = 30.0
#: The window over which the note counts changes.
_CHANGE_WINDOW_SECONDS = 600.0
#: A hashing batch ends at this many files or bytes: small files share one trip to a thread
#: and one journal transaction (at a first start with 100,000 files, 256 a batch queued them
#: in a median 19.8 s of 5 runs where 64 took 20.5 s), and one large file does not hold up
#: many small ones.
_HASH_BATCH_FILES = 256
_HASH_BATCH_BYTES = 64 * 1024 * 1024
#: How many unsettled sources are read from the journal at once, and below how many queued for
#: hashing the next ones are read. The window is read again while its first batches are still
#: hashing, so it holds several batches beyond the refill mark (2,000: 100,000 files queued in
#: a median 18.3 s of 3 runs, 1,000: 19.8 s).
UNSETTLED_BATCH = 2000
HASH_REFILL_BELOW = 2 * _HASH_BATCH_FILES
#: The journal is asked for unsettled sources at least this often even when nothing here
#: changed, since the pipeline may send a source back to settling.
_SETTLE_RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class HashFailure:
    """Why a file could not be hashed, with what its path looked like right after."""

    error: SourceError
    #: The file's stat after the failure; None when it could not be read or is not there.
    stat_now: FileStat | None = None
    #: Set when the path is not there: whether its storage is away or the file was deleted.
    facts: StorageFacts | None = None


HashOutcome = tuple[str, FileStat] | HashFailure


def _failure(source: Source, error: SourceError) -> HashFailure:
    """Complete a hashing error with a fresh look at the path (still in the thread)."""
    if not error.transient:
        return HashFailure(error)
    path = Path(source.path)
    try:
        return HashFailure(error, stat_now=FileStat.of(roots.current().locate(path).stat()))
    except OSError as exc:
        if classify(exc).kind != "missing":
            return HashFailure(error)
    return HashFailure(error, facts=storage_facts(path, Path(source.watch_root)))


def _hash_batch(batch: Sequence[Source], unlimited: frozenset[int] = frozenset()
               ) -> list[tuple[Source, HashOutcome]]:
    """Hash each source of a batch (in a thread), checking it still has its journaled stat.

    Each file's outcome is its own: an error of any kind becomes that file's outcome, and the
    other files of the batch are still hashed and recorded.
    """
    outcomes: list[tuple[Source, HashOutcome]] = []
    with roots.folders_resolved_once():
        for source in batch:
            outcomes.append((source, _hash_one(source, unlimited)))
    return outcomes


def _hash_one(source: Source, unlimited: frozenset[int]) -> HashOutcome:
    """One file's hash and stat, or why it could not be hashed (never raises)."""
    try:
        path = Path(source.path)
        return hash_file(path, journaled_stat(source), first=_limits(source, path, unlimited))
    except SourceError as exc:
        error = exc
    except OSError as exc:
        error = media.read_error(exc)  # the same words as every other read of a source
    except Exception as exc:
        error = SourceError(f"cannot be hashed: {one_line(exc)}", transient=True)
    try:
        return _failure(source, error)
    except Exception:
        return HashFailure(error)


def _limits(source: Source, path: Path, unlimited: frozenset[int]
            ) -> Callable[[int], None] | None:
    """The checks run on the open file before it is hashed: limits first, so a 2 GB or
    3-hour file is refused without reading it whole. Folders whose engine computes here have
    no upload limits, only the emptiness check."""
    size = source.size
    if size is None:
        return None
    if source.id in unlimited:
        return lambda fd: media.check_before_hash(path, size, max_seconds=math.inf,
                                                  max_bytes=sys.maxsize, fd=fd)
    return lambda fd: media.check_before_hash(path, size, fd=fd)


@dataclass(slots=True)
class SettleClock:
    """What the loop remembers of one source while it settles; losing it only costs time.

    Slotted, and its list of changes made only at the first change: a window's worth of
    clocks is held at once, each as small as it can be.
    """

    size: int | None
    mtime_ns: int | None
    since: float
    heard_at: float = 0.0
    complete: FileStat | None = None
    #: (when, whether the size changed) of each change seen; None before the first.
    changes: deque[tuple[float, bool]] | None = None
    noted_at: float | None = None
    retry_at: float = 0.0
    settle_seconds: float | None = None


def _hint_knows_more(source: Source, heard_at: float, *, scanned: bool = False) -> bool:
    """Whether a plain hint heard at ``heard_at`` tells more than the row it journaled: an
    event after the row's last change (the quiet time restarts from it; a scan finding the
    file unchanged is no such event, as for rows left pending by an earlier run), or this
    observation changed a row seen before (a file that keeps changing, whose changes are
    counted for its note)."""
    changed_at = source.changed_at
    if changed_at is None:
        return True
    if changed_at < heard_at:
        return not scanned
    return changed_at > source.created_at  # changed by this very observation


def _span(seconds: float) -> str:
    """A duration in words for a note: "40 seconds", "3 minutes"."""
    if seconds < 120:
        count, unit = max(1, round(seconds)), "second"
    else:
        count, unit = round(seconds / 60), "minute"
    return f"{count} {unit}{'' if count == 1 else 's'}"


def _still_writing_note(changes: Sequence[tuple[float, bool]], span: float) -> str:
    """The note of a source that keeps changing: how often its size (or mtime) changed."""
    sized = sum(1 for _, size_changed in changes if size_changed)
    if sized:
        return f"still being written (size changed {sized} times in the last {_span(span)})"
    return f"still being modified (changed {len(changes)} times in the last {_span(span)})"


class Settling:
    """Keeps each unsettled source's clock and hashes the ones quiet for long enough."""

    #: How long a source may keep changing before its note says so (tests shorten it).
    still_writing_after: float = _STILL_WRITING_AFTER_SECONDS

    def __init__(self, ctx: WorkContext, *, hash_workers: int,
                 limits_uploads: Callable[[Source], bool],
                 hint: Callable[[Path], None]) -> None:
        self.ctx = ctx
        self.journal = ctx.journal
        #: Whether a source is held to the upload limits (its engine's capability).
        self.limits_uploads = limits_uploads
        #: Look at a path again (intake), for a file that changed while it was hashed.
        self.hint = hint
        self.clocks: dict[str, SettleClock] = {}
        #: Source id -> the task hashing its batch.
        self.hashing: dict[int, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(hash_workers)
        self._dirty = True
        self._checked_at = 0.0
        self._next_at = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def recheck(self) -> None:
        """Ask the journal for unsettled sources on the next tick (something may have changed)."""
        self._dirty = True

    def next_check_at(self) -> float:
        """When the next settling pass is due (a wall-clock time, inf for none)."""
        if self.clocks:
            return min(self._next_at, self._checked_at + _SETTLE_RECHECK_SECONDS)
        return self._next_at

    def forget(self, path: str) -> None:
        """The source left settling (gone, failed, settled): drop its clock."""
        self.clocks.pop(path, None)

    def restart_clock(self, source: Source, now: float, *, complete: bool,
                      settle_seconds: float | None, scanned: bool = False) -> None:
        """Note a hint for a settling source: restart its quiet time, count a change.

        ``source`` is its row as journaled by this hint, ``now`` a time taken before that.
        ``scanned``: only a scan saw it (no event), which restarts nothing when unchanged.
        """
        entry = self.clocks.get(source.path)
        if entry is None:
            if not complete and not _hint_knows_more(source, now, scanned=scanned):
                # A file first seen (or seen changed) just now: the row's changed_at is this
                # hint's time, so a clock would only repeat the row. settle() makes one when
                # the row comes into its window; 100,000 files found by a scan need none.
                return
            entry = SettleClock(source.size, source.mtime_ns, since=now,
                                settle_seconds=settle_seconds)
            self.clocks[source.path] = entry
        elif (source.size, source.mtime_ns) != (entry.size, entry.mtime_ns):
            if entry.changes is None:
                entry.changes = deque()
            entry.changes.append((now, source.size != entry.size))
            entry.size, entry.mtime_ns = source.size, source.mtime_ns
        entry.heard_at = now
        entry.retry_at = 0.0  # seen again: whatever storage was away is back
        # Any later plain hint takes "complete" back: the stat read for the close may already
        # include a write whose event is only arriving now.
        entry.complete = journaled_stat(source) if complete else None

    def storage_away(self, source: Source, facts: StorageFacts | None) -> bool:
        """True (and noted) when a missing source's root or file system is away, not deleted."""
        if facts is None:
            return False
        away = facts.away(None if source.dev == UNKNOWN_ID else source.dev)
        if away is None:
            return False
        note = f"cannot see the file: {away}; it is looked for again when it comes back"
        if source.note != note:
            self.journal.annotate(source, actor="worker", reason="storage unavailable",
                                  note=note)
            log.warning("source_storage_away", source=source.path, reason=away)
        entry = self.clocks.get(source.path)
        if entry is None:
            entry = SettleClock(source.size, source.mtime_ns, since=time.time())
            self.clocks[source.path] = entry
        entry.retry_at = time.time() + self.ctx.retry.storage_retry
        return True

    async def settle(self) -> None:
        """Start hashing every source quiet for long enough; note the ones that never are."""
        now = time.time()
        if (not self._dirty and now < self._next_at
                and now - self._checked_at < _SETTLE_RECHECK_SECONDS):
            return
        self._dirty, self._checked_at = False, now
        limit = UNSETTLED_BATCH
        unsettled = self.journal.unsettled(limit=limit)
        next_at = math.inf
        ready: list[Source] = []
        for source in unsettled:
            if source.id in self.hashing or not self.ctx.covers(source):
                continue
            entry = self.clocks.get(source.path)
            kept = entry is not None
            if entry is None:
                # First seen by a scan, sent back to settling by someone else, or left pending
                # by an earlier run: the row is all there is to know.
                entry = SettleClock(source.size, source.mtime_ns, since=now)
            ready_at = self._ready_at(source, entry)
            if now >= ready_at:
                ready.append(source)  # hashed now: a clock made for it would be dropped
            else:
                if not kept:
                    self.clocks[source.path] = entry
                next_at = min(next_at, ready_at)
                self._note_still_writing(source, entry, now)
        if len(unsettled) < limit:
            # The whole set was seen: forget sources that left settling some other way.
            keep = {source.path for source in unsettled}
            for path in [p for p in self.clocks if p not in keep]:
                del self.clocks[path]
        self._next_at = next_at
        self._wake_at(next_at)
        self._start_hashing(ready)

    def _ready_at(self, source: Source, entry: SettleClock) -> float:
        """When the source will have been quiet long enough to be hashed."""
        if entry.settle_seconds is None:
            watch = self.ctx.folders.watch_of_source(source)
            entry.settle_seconds = watch.settle_seconds if watch is not None else 0.0
        settle = entry.settle_seconds
        if entry.complete is not None and entry.complete == journaled_stat(source):
            settle = min(settle, COMPLETE_SETTLE_SECONDS)
        quiet_since = max(source.changed_at or 0.0, entry.heard_at)
        # A file whose reading failed waits for its backoff (kept in the journal).
        return max(quiet_since + settle, entry.retry_at, source.next_attempt_at or 0.0)

    def _wake_at(self, when: float) -> None:
        """Make sure the loop ticks at ``when`` (a wall-clock time), not a tick later."""
        if math.isinf(when) or self._timer_at <= when:
            return
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when

        def fire() -> None:
            self._timer, self._timer_at = None, math.inf
            self.ctx.wake.set()

        self._timer = loop.call_at(loop.time() + max(0.0, when - time.time()), fire)

    def _note_still_writing(self, source: Source, entry: SettleClock, now: float) -> None:
        """Say in ``status`` why a source that keeps changing is still pending."""
        if now - entry.since < self.still_writing_after:
            return
        changes = entry.changes
        if changes is None:
            return
        while changes and now - changes[0][0] > _CHANGE_WINDOW_SECONDS:
            changes.popleft()
        if len(changes) < 2:
            return
        if entry.noted_at is not None and now - entry.noted_at < _STILL_WRITING_REFRESH_SECONDS:
            return
        entry.noted_at = now
        note = _still_writing_note(changes, min(now - entry.since, _CHANGE_WINDOW_SECONDS))
        if note != source.note:
            self.journal.annotate(source, actor="worker", reason="not settled yet", note=note)

    def _start_hashing(self, ready: Sequence[Source]) -> None:
        """Hash ready sources in batches, each batch one task in ``hashing`` for its sources."""
        by_root: dict[str, list[Source]] = {}
        for source in ready:
            by_root.setdefault(source.watch_root, []).append(source)
        # A batch never mixes storages: each is hashed in its own storage's threads.
        for group in by_root.values():
            batch: list[Source] = []
            size = 0
            for source in group:
                batch.append(source)
                size += source.size or 0
                if len(batch) >= _HASH_BATCH_FILES or size >= _HASH_BATCH_BYTES:
                    self._spawn_hash(batch)
                    batch, size = [], 0
            if batch:
                self._spawn_hash(batch)

    def _spawn_hash(self, batch: list[Source]) -> None:
        task = asyncio.ensure_future(self._hash(batch))
        for source in batch:
            self.hashing[source.id] = task

    async def _hash(self, batch: list[Source]) -> None:
        """Hash a batch in a thread (at most ``hash_workers`` at once), then record each."""
        try:
            async with self._slots:
                outcomes = await self._hash_in_thread(batch)
            hashed = []
            try:
                for source, outcome in outcomes:
                    if isinstance(outcome, HashFailure):
                        self._hash_failed(source, outcome)
                    else:
                        hashed.append((source, *outcome))
                self._record_hashed(hashed)
            except JournalUnavailable as exc:
                # The sources stay unsettled in the journal: hashed again after the pause.
                self.ctx.journal_failed(exc)
        finally:
            for source in batch:
                self.hashing.pop(source.id, None)
            if len(self.hashing) < HASH_REFILL_BELOW:
                # Ask the journal for more only when the queue runs low: each question sorts
                # every unsettled row, which is costly with 100,000 of them.
                self._dirty = True
            self.ctx.wake.set()

    async def _hash_in_thread(self, batch: list[Source]) -> list[tuple[Source, HashOutcome]]:
        """Each storage hashes in its own threads, bounded in time by the bytes to read
        (at 4 MB/s at worst): a hung mount fails its batch's reads, not the loop."""
        budget = self.ctx.file_timeout + sum(s.size or 0 for s in batch) / (4 * 1024 * 1024)
        try:
            unlimited = frozenset(s.id for s in batch if not self.limits_uploads(s))
            return await run_on(Path(batch[0].watch_root), _hash_batch, batch, unlimited,
                                timeout=budget)
        except StorageTimeout as exc:
            failure = HashFailure(SourceError(f"cannot read it: {exc.strerror}",
                                              transient=True))
            return [(s, failure) for s in batch]

    def _record_hashed(self, hashed: list[tuple[Source, str, FileStat]]) -> None:
        """Record settled sources' content in one transaction: they are now queued."""
        recorded = set(self.journal.settle_many(
            (source, digest, content_key(digest, source.options_json), st)
            for source, digest, st in hashed
        ))
        for source, digest, _ in hashed:
            if source.id in recorded:
                self.clocks.pop(source.path, None)
                log.info("source_ready", source=source.path, sha256=digest[:16])

    def _hash_failed(self, source: Source, failure: HashFailure) -> None:
        """Record why a source could not be hashed: changed, unreadable, gone or failed."""
        current = self.journal.get(source.id)
        if current.state != "pending":
            return
        exc = failure.error
        if not exc.transient:
            self.journal.transition(current, "failed", actor="worker", reason=exc.message,
                                    last_error=exc.message)
            self.clocks.pop(source.path, None)
            log.error("source_failed", source=source.path, reason=exc.message)
        elif failure.stat_now is not None:
            if not failure.stat_now.agrees(journaled_stat(current)):
                self.hint(Path(source.path))  # it changed: observe restarts the clock
            else:
                # Unchanged, yet it could not be read (EIO, ESTALE, EMFILE...): back off,
                # counted in the journal, and fail after a budget instead of re-reading
                # it in a tight loop.
                self._read_failed(current, exc.message)
        elif failure.facts is None:
            self._read_failed(current, exc.message)  # its folder cannot be read either
        elif not self.storage_away(current, failure.facts):
            self.journal.transition(
                current, "gone", actor="worker", reason=f"source {exc.message}",
                last_error="the source disappeared before it was transcribed",
            )
            self.clocks.pop(source.path, None)
            log.warning("source_gone", source=source.path)

    def _read_failed(self, source: Source, reason: str) -> None:
        """A pending file that could not be read: wait with backoff, fail after the budget."""
        attempts = source.attempts + 1
        retry = self.ctx.retry
        if attempts >= retry.read_error_budget:
            message = (f"the file {reason} ({attempts} attempts failed); fix the storage or "
                       "the file and run `watcherd retry`")
            self.journal.transition(source, "failed", actor="worker", reason=message,
                                    last_error=message, attempts=attempts)
            self.clocks.pop(source.path, None)
            log.error("source_failed", source=source.path, reason=message)
            return
        delay = retry.delay(attempts)
        self.journal.annotate(
            source, actor="worker", reason=f"cannot read it: {reason}", attempts=attempts,
            next_attempt_at=time.time() + delay, last_error=f"the file {reason}; retrying",
        )
        self._dirty = True
        log.warning("source_unreadable", source=source.path, reason=reason,
                    retry_in=round(delay, 1))
