"""Intake: hinted paths, stat'ed through the watch roots' resolver, journaled as observed.

Each storage is looked at in its own threads with a timeout, so a hung mount delays only its
own files; what a path turned out to be (a file, nothing, a link out of its folder, a FIFO)
is recorded, or noted as the reason it is not transcribed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watcherd import roots
from watcherd.config import WatchConfig
from watcherd.fileops import StorageTimeout, run_on
from watcherd.fserrors import classify
from watcherd.identity import options_json, stored_result
from watcherd.journal import ACTIVE_STATES, FileStat, JournalUnavailable, Source
from watcherd.watcher import StorageFacts, WatchIndex, storage_facts
from watcherd.worker.common import WorkContext, log, one_line
from watcherd.worker.settling import Settling

__all__ = ["INTAKE_BACKLOG", "Intake", "Seen"]

#: Hinted files are journaled this many per transaction, letting the loop run in between.
_INTAKE_CHUNK = 5000
#: How long a tick waits for the stat of hinted paths; slower storages finish in the background.
_INTAKE_WAIT_SECONDS = 1.0
#: How many hinted paths (waiting, or being stat'ed and journaled) make a scan wait before it
#: hands over more: a walk of 100,000 files outruns the journal, and each path waiting costs
#: memory (its Path, later its stat and row) until it is journaled (issue 22 item 3).
INTAKE_BACKLOG = 2 * _INTAKE_CHUNK


@dataclass(frozen=True)
class Seen:
    """What a thread found at a hinted path: a file's stat, nothing, or a reason to ignore it."""

    path: Path
    stat: FileStat | None
    problem: str | None = None
    watch: WatchConfig | None = None
    #: The problem may go away by itself (EIO, ESTALE...): never a reason to fail the file.
    transient: bool = False
    #: For a path that is not there: whether its storage is (read in the same thread).
    facts: StorageFacts | None = None


#: What a path that is neither a regular file nor a folder is, for the reason ``status`` shows.
_SPECIAL_KINDS: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)

_LINK_LOOP = ("cannot read it: too many levels of symbolic links (the link points back at "
              "itself); fix or remove the link")


def _special_kind(mode: int) -> str | None:
    """What a non-regular, non-folder file is ("a named pipe (FIFO)"), or None."""
    for test, what in _SPECIAL_KINDS:
        if test(mode):
            return what
    return None


def _unreadable(path: Path, exc: OSError, index: WatchIndex | None,
                root: Path | None) -> Seen:
    """What a path whose stat failed is: missing (with its storage's facts) or unreadable."""
    problem = classify(exc)
    if problem.kind == "missing":
        facts = storage_facts(path, root) if root is not None else None
        return Seen(path, None, facts=facts)
    reason = f"cannot read it: {problem.message}"
    if exc.errno == errno.ELOOP:
        reason += " (the link points back at itself); fix or remove the link"
    else:
        reason += f"; {problem.hint}"
    watch = index.watch_for(path) if index is not None else None
    return Seen(path, None, reason, watch=watch, transient=problem.retryable)


def _stat_one(path: Path, index: WatchIndex | None, root: Path | None) -> Seen | None:
    """Stat one hinted path (in a thread); None for what is never a source (a folder)."""
    try:
        # Through the watch roots' resolver: a link that leads out of its watch folder is
        # never stat'ed as a source (nor read, hashed or uploaded later).
        st = roots.current().locate(path).stat()
    except roots.LinkOutside as exc:
        # Recorded under its folder's watch even when its name is no recording's (a link to
        # a folder): status says why it is not transcribed.
        watch = index.owner(path) if index is not None else None
        return Seen(path, None, exc.message, watch=watch)
    except OSError as exc:
        return _unreadable(path, exc, index, root)
    except ValueError:
        # An embedded NUL cannot come from the file system, only from a bad hint: ignore it.
        return None
    if stat.S_ISDIR(st.st_mode):
        return None
    watch = index.watch_for(path) if index is not None else None
    if stat.S_ISLNK(st.st_mode):
        # Only a link that resolution could not get past (a loop) is still a link here.
        return Seen(path, None, _LINK_LOOP, watch=watch)
    if not stat.S_ISREG(st.st_mode):
        # Never opened: reading a FIFO or a device blocks or never ends.
        what = _special_kind(st.st_mode) or "not a regular file"
        return Seen(path, None, f"ignored: it is {what}, not a recording file; nothing is read "
                    "from it", watch=watch)
    return Seen(path, FileStat.of(st), watch=watch)


def _stat_paths(paths: Iterable[Path], index: WatchIndex | None = None,
               root: Path | None = None) -> list[Seen]:
    """Stat each path (in a thread), and find which watch accepts it when ``index`` is given.

    One path's trouble never costs the others their turn: whatever a path raises becomes a
    problem of that path alone.
    """
    seen = []
    # Hinted paths come a folder at a time: each folder is resolved once (see roots).
    with roots.folders_resolved_once():
        for path in paths:
            try:
                item = _stat_one(path, index, root)
            except Exception as exc:  # a bug or an odd file system: that path alone
                item = Seen(path, None, f"cannot look at it: {one_line(exc)}", transient=True)
            if item is not None:
                seen.append(item)
    return seen


class Intake:
    """Takes hinted paths to the journal: stat'ed off the loop, then observed in batches."""

    def __init__(self, ctx: WorkContext, settling: Settling,
                 running: Callable[[int], asyncio.Task[None] | None]) -> None:
        self.ctx = ctx
        self.journal = ctx.journal
        self.folders = ctx.folders
        self.settling = settling
        #: The attempt driving a source now, if any (a deleted source's work is stopped).
        self.running = running
        #: Paths to look at on the next tick.
        self.hints: set[Path] = set()
        #: Hinted paths an event reported finished (closed after writing, renamed into place).
        self.complete: set[Path] = set()
        #: Hinted paths only a scan handed over (no event since): finding one unchanged says
        #: nothing new, so its quiet time is not restarted (nor a clock made for it).
        self.scanned: set[Path] = set()
        # Each watch's options as the journal stores them, computed once per watch object.
        self._options: dict[int, tuple[WatchConfig, str]] = {}
        # Paths the journal refused to record (a bug): logged once, not retried every scan.
        self._unrecordable: set[str] = set()
        # The backlog: paths handed over by scans and not yet hinted (their hand-over still
        # queued on the loop), and hinted paths taken by a tick and not journaled yet.
        self._lock = threading.Lock()
        self._posted = 0
        self._in_flight = 0
        #: Set while fewer than INTAKE_BACKLOG paths wait: scans wait on it (other threads).
        self.room = threading.Event()
        self.room.set()

    def hint(self, path: Path, *, complete: bool = False) -> None:
        """Look at ``path`` on the next tick; ``complete``: an event said it is finished."""
        self.hints.add(path)
        if complete:
            self.complete.add(path)
        else:
            self.complete.discard(path)
        self.scanned.discard(path)
        self._update_room()
        self.ctx.wake.set()

    def posting(self, count: int) -> None:
        """A scan (in its thread) is handing ``count`` paths over to the loop."""
        self._update_room(posted=count)

    def hint_posted(self, paths: Sequence[Path]) -> None:
        """On the loop: paths a scan handed over (see :meth:`posting`), hinted plainly."""
        for path in paths:
            if path not in self.hints:
                self.scanned.add(path)  # an event's hint already waiting keeps its meaning
            self.hints.add(path)
        self.complete.difference_update(paths)
        self._update_room(posted=-len(paths))
        self.ctx.wake.set()

    def _update_room(self, *, posted: int = 0, taken: int = 0) -> None:
        """Let scans hand over more paths only while the backlog is below INTAKE_BACKLOG."""
        with self._lock:
            self._posted += posted
            self._in_flight += taken
            if len(self.hints) + self._posted + self._in_flight >= INTAKE_BACKLOG:
                self.room.clear()
            else:
                self.room.set()

    def _options_text(self, watch: WatchConfig) -> str:
        cached = self._options.get(id(watch))
        if cached is None or cached[0] is not watch:
            cached = (watch, options_json(watch.options))
            self._options[id(watch)] = cached
        return cached[1]

    async def take_hints(self) -> None:
        """Stat hinted paths off the loop, one task per storage, and journal what was seen.

        Each watch root is looked at in its own thread pool with a timeout, and the tick waits
        at most INTAKE_WAIT_SECONDS for them: a hung mount delays only its own files.
        """
        if not self.hints:
            return
        paths, self.hints = self.hints, set()
        self._update_room(taken=len(paths))
        complete = paths & self.complete
        self.complete -= complete
        scanned, self.scanned = self.scanned, set()
        groups: dict[Path, list[Path]] = {}
        for path in paths:
            groups.setdefault(self._root_of(path), []).append(path)
        tasks = [self.ctx.in_background(asyncio.ensure_future(
                     self._stat_group(root, group, complete, scanned)))
                 for root, group in groups.items()]
        await asyncio.wait(tasks, timeout=_INTAKE_WAIT_SECONDS)

    def _root_of(self, path: Path) -> Path:
        """The watch root holding ``path`` (the innermost), or its folder for a named file."""
        if self.folders.explicit(path) is not None:
            return path.parent
        # As text (a Path's str is kept): Path.is_relative_to per watch per file was most of
        # this at a first start with 100,000 files. The longest root holding it is the innermost.
        text = str(path)
        best: Path | None = None
        for watch in self.folders.watches:
            root = str(watch.path)
            if (text == root or text.startswith(root if root.endswith(os.sep) else root + os.sep)
                    ) and (best is None or len(root) > len(str(best))):
                best = watch.path
        return best if best is not None else path.parent

    async def _stat_group(self, root: Path, paths: list[Path], complete: set[Path],
                          scanned: set[Path]) -> None:
        try:
            await self._take_group(root, paths, complete, scanned)
        finally:
            self._update_room(taken=-len(paths))

    async def _take_group(self, root: Path, paths: list[Path], complete: set[Path],
                          scanned: set[Path]) -> None:
        try:
            # By text: a folder's files together, without Path comparisons (a first start sorts
            # 100,000 of them).
            seen = await run_on(root, _stat_paths, sorted(paths, key=str), self.folders.index, root,
                                timeout=self.ctx.file_timeout)
        except StorageTimeout as exc:
            retry_in = self.ctx.retry.storage_retry
            log.warning("storage_not_answering", root=str(root), error=exc.strerror,
                        files=len(paths), retry_in=retry_in)
            loop = asyncio.get_running_loop()
            for path in paths:
                loop.call_later(retry_in, self.hint, path)
            return
        try:
            self._record_seen(seen, complete, scanned)
        except JournalUnavailable as exc:
            # Looked at again after the pause: recording a path twice is harmless.
            self.hints.update(paths)
            self.complete.update(complete & set(paths))
            self.scanned.update(scanned & set(paths))
            self.ctx.journal_failed(exc)

    def _record_seen(self, seen: list[Seen], complete: set[Path],
                     scanned: frozenset[Path] | set[Path] = frozenset()) -> None:
        """Journal seen files in transactions of INTAKE_CHUNK; note vanished ones."""
        batch = []
        settle: dict[str, float] = {}
        for item in seen:
            if item.stat is None:
                self._not_a_file(item)
                continue
            watch = self.folders.explicit(item.path) or item.watch
            if watch is None:
                continue
            batch.append((str(item.path), str(watch.path), item.stat, self._options_text(watch)))
            settle[str(item.path)] = watch.settle_seconds
        if not batch:
            return
        for start in range(0, len(batch), _INTAKE_CHUNK):
            now = time.time()
            for source in self._observe(batch[start:start + _INTAKE_CHUNK]):
                path = Path(source.path)
                self.settling.restart_clock(source, now, complete=path in complete,
                                            scanned=path in scanned,
                                            settle_seconds=settle.get(source.path))
        self.settling.recheck()
        self.ctx.wake.set()

    def _observe(self, batch: Sequence[tuple[str, str, FileStat, str]]) -> list[Source]:
        """Journal a batch of seen files; one that cannot be recorded never sinks the rest."""
        try:
            return self.journal.observe_many(batch)
        except JournalUnavailable:
            raise  # no file's fault: the worker pauses, and the batch is seen again after
        except Exception as exc:
            if len(batch) == 1:
                path = batch[0][0]
                if path not in self._unrecordable:
                    self._unrecordable.add(path)
                    log.error("source_not_recorded", source=path, error=one_line(exc),
                              hint="this file is skipped until watcherd restarts; please "
                              "report it")
                return []
        # Split in halves until the file at fault is alone: the others are recorded.
        middle = len(batch) // 2
        return self._observe(batch[:middle]) + self._observe(batch[middle:])

    def _not_a_file(self, item: Seen) -> None:
        """Record what a path with no file to read means: unreadable for now, never a
        recording, its storage away, or its source deleted."""
        source = self.journal.by_path(str(item.path))
        watch = self.folders.explicit(item.path) or item.watch
        if item.problem is not None and item.transient:
            # EIO, ESTALE, a share reconnecting: it may read fine in a moment. A done file
            # stays done, anything else waits; the next scan or event looks again.
            if source is not None and source.state in ACTIVE_STATES and (
                source.last_error != item.problem
            ):
                self.journal.annotate(source, actor="worker", reason=item.problem,
                                      last_error=item.problem)
            if source is None or source.state not in ACTIVE_STATES:
                log.warning("source_unreadable", source=str(item.path), reason=item.problem)
            return
        if item.problem is not None and watch is not None and (
            source is None or source.state in ("done", "gone")
        ):
            # Unreadable where a source should be (a link loop, no permission on the entry):
            # say so in status instead of skipping it silently.
            self.journal.record_unreadable(str(item.path), str(watch.path),
                                           self._options_text(watch), item.problem)
            log.error("source_failed", source=str(item.path), reason=item.problem)
            return
        if source is None or source.state not in ACTIVE_STATES:
            self.settling.forget(str(item.path))
            return
        if item.problem is not None:
            if source.last_error != item.problem:
                self.journal.annotate(source, actor="worker",
                                      reason=item.problem, last_error=item.problem)
            return
        self._missing(source, item.facts)

    def _missing(self, source: Source, facts: StorageFacts | None) -> None:
        """An unfinished source whose file is not there: its storage is away, or it is gone."""
        task = self.running(source.id)
        if self.settling.storage_away(source, facts):
            return
        if task is not None:
            self._stop_deleted(source, task)
            return
        self.journal.transition(
            source, "gone", actor="watcher", reason="source deleted before it was done",
            last_error="the source disappeared before it was transcribed",
        )
        self.settling.forget(source.path)
        log.warning("source_gone", source=source.path)

    def _stop_deleted(self, source: Source, task: asyncio.Task[None]) -> None:
        """A source deleted while an attempt works on it: record ``gone``, then stop the attempt
        (the local engine's transcriber process drops the file, an upload is abandoned).

        Only while nothing exists elsewhere yet (no remote job made, or maybe made) and no
        result is kept: stopping then loses nothing, and the work would be for nobody. Past
        that point the attempt goes on and finds out itself.
        """
        if (source.job_id is not None or source.submit_started_at is not None
                or stored_result(self.journal, source) is not None):
            return
        reason = f"source disappeared while {source.state}; its work was stopped"
        # Recorded before the attempt is stopped: its own cleanup sees the source is gone.
        self.journal.transition(
            source, "gone", actor="watcher", reason=reason,
            last_error="the source disappeared before it was transcribed",
        )
        self.settling.forget(source.path)
        task.cancel()
        log.warning("source_gone", source=source.path, reason=reason)
