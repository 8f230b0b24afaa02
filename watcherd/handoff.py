"""``watcherd transcribe`` while a daemon runs: hand the files to it through the journal.

A SQLite journal has one driving process (its lock file). When a daemon holds it, the command
records the named files in the journal as new sources (``observe_many``, actor
``transcribe``), with their folder as root and the options of ``[defaults]``; the daemon's
worker, which looks at the journal's unsettled sources at least every few seconds, settles,
hashes and transcribes them like its own, and writes the outputs next to them. The command
waits until each file is done, failed or gone, reading the journal read-only, so its output
and exit code are the same as without a daemon. If the daemon stops meanwhile, the caller
finishes the rest itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from watcherd.config import WatchConfig
from watcherd.identity import options_json
from watcherd.journal import FileStat, Journal, JournalNotReady, Source

log = structlog.get_logger("watcherd.handoff")

#: States after which a named file needs nothing more.
_FINAL_STATES = frozenset({"done", "failed", "gone", "ignored"})
#: How often the journal is read while waiting (a local SQLite read, cheap).
_POLL_SECONDS = 0.25
#: The actor of the journal events this command writes: how the daemon tells a file handed
#: over (outside its watches on purpose) from one another config left in the journal.
_HANDOFF_ACTOR = "transcribe"
#: Answers about sources not handed over kept at most (each costs one read to renew).
_NOT_HANDED_CACHE = 10_000


def daemon_holds(journal_path: Path) -> bool:
    """True while another process holds the SQLite journal's lock (a running daemon)."""
    lock_path = journal_path.with_name(journal_path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        # Closing drops a lock this probe may have taken; the daemon's own is untouched.
        os.close(fd)
    return False


class HandedOver:
    """Whether `watcherd transcribe` handed a source to the daemon: one of its events says so.

    Asked only of sources outside every watch. A yes is for good; a no holds until the source
    changes (``updated_at``), so a file handed over later is seen at once.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._handed: set[int] = set()
        self._not_handed: dict[int, float] = {}

    def __call__(self, source: Source) -> bool:
        if source.id in self._handed:
            return True
        if self._not_handed.get(source.id) == source.updated_at:
            return False
        if any(e.get("actor") == _HANDOFF_ACTOR for e in self.journal.events(source.id)):
            self._handed.add(source.id)
            self._not_handed.pop(source.id, None)
            return True
        if len(self._not_handed) >= _NOT_HANDED_CACHE:
            self._not_handed.clear()
        self._not_handed[source.id] = source.updated_at
        return False


@dataclass(frozen=True)
class Handoff:
    """What became of the handed files: path -> final state, and those left unfinished."""

    states: dict[str, str]
    unfinished: tuple[Path, ...]


def hand_to_daemon(
    journal_path: Path, files: Sequence[Path], watch: WatchConfig, *,
    still_running: Callable[[], bool] | None = None, poll: float = _POLL_SECONDS,
    on_wait: Callable[[Mapping[int, str]], None] | None = None,
) -> Handoff:
    """Record ``files`` for the running daemon and wait for each to end.

    Files that are not regular files are reported ``ignored`` without being recorded (the
    daemon never opens a FIFO or a device). When ``still_running`` turns false before every
    file ended, the rest are returned as ``unfinished`` for the caller to do itself.
    ``on_wait`` gets, at each look, the journal id and state of every file not ended yet
    (the command's progress bar).
    """
    running = still_running or (lambda: daemon_holds(journal_path))
    states: dict[str, str] = {}
    seen = []
    options = options_json(watch.options)
    for path in files:
        try:
            st = os.stat(path)
        except OSError:
            states[str(path)] = "gone"
            continue
        if not stat.S_ISREG(st.st_mode):
            states[str(path)] = "ignored"
            continue
        seen.append((str(path), str(path.parent), FileStat.of(st), options))
    if seen:
        with Journal.open(journal_path) as journal:
            known = {item[0]: journal.by_path(item[0]) for item in seen}
            journal.observe_many(seen, actor=_HANDOFF_ACTOR)
            for named, before in known.items():
                source = journal.by_path(named)
                if before is not None and source is not None and (
                        source.state not in _FINAL_STATES):
                    # Known before (another config's folder?): the event tells the daemon that
                    # this file is wanted now.
                    journal.annotate(source, actor=_HANDOFF_ACTOR, reason="handed over by "
                                     "`watcherd transcribe`", note=None)
        log.info("handed_to_daemon", files=len(seen), journal=str(journal_path),
                 hint="the running watcherd transcribes them; this command waits")
    waiting = [item[0] for item in seen]
    while waiting:
        working: dict[int, str] = {}
        with contextlib.suppress(JournalNotReady), \
                Journal.open(journal_path, readonly=True) as journal:
            for named in list(waiting):
                source = journal.by_path(named)
                if source is not None and source.state in _FINAL_STATES:
                    states[named] = source.state
                    waiting.remove(named)
                elif source is not None:
                    working[source.id] = source.state
        if not waiting:
            break
        if on_wait is not None:
            on_wait(working)
        if not running():
            log.warning("daemon_stopped", files=len(waiting),
                        hint="the rest are transcribed by this command")
            return Handoff(states, tuple(Path(p) for p in waiting))
        time.sleep(poll)
    return Handoff(states, ())
