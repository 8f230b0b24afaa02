"""Folder watching: watchdog observers and scans that turn file system activity into hints.

A hint only says "look at this path"; the worker stats it, journals it, settles and hashes it.
Nothing here touches the journal or the asyncio loop: observers run in their own threads and
hand paths to a thread-safe ``hint`` callable. Events can be lost (overflow, a root that was
missing, a dead observer), so the daemon also scans; this module makes those scans cheap.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

from watcherd import roots
from watcherd.config import WatchConfig
from watcherd.filters import SourceFilter

_log = structlog.get_logger("watcherd.watcher")

#: File system types whose changes the kernel may not report (changes made by other hosts, or
#: by a FUSE daemon), so their roots are polled when ``poll = "auto"``.
_NETWORK_FSTYPES: frozenset[str] = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "smb", "9p", "virtiofs", "fuse", "sshfs",
        "davfs", "webdav", "afs", "afpfs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs",
        "ncpfs",
    }
)  # fmt: skip

#: The only event kinds that can matter; leaving out open/close-without-write keeps the worker's
#: own reads (hashing, uploading) from echoing back as events. Attribute events carry mtime
#: changes made without writing (touch, rsync setting the final mtime).
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]

_INOTIFY_LIMIT_ERRNOS = (errno.ENOSPC, errno.EMFILE)


# --- network file systems --------------------------------------------------------------------


def is_network_fstype(fstype: str) -> bool:
    """True for file system types where native change events cannot be trusted."""
    fstype = fstype.lower()
    return fstype in _NETWORK_FSTYPES or fstype.startswith("fuse.")


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field_text: str) -> str:
    """Undo the kernel's octal escapes in mount tables (a space is written as ``\\040``)."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field_text)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, fstype) pairs from the text of ``/proc/self/mountinfo``."""
    mounts: list[tuple[str, str]] = []
    for line in text.splitlines():
        fields = line.split()
        # Optional fields end with a lone "-"; the fstype follows it.
        if len(fields) < 7 or "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        if separator + 1 >= len(fields):
            continue
        mounts.append((_unescape(fields[4]), fields[separator + 1]))
    return mounts


def parse_proc_mounts(text: str) -> list[tuple[str, str]]:
    """(mount point, fstype) pairs from the text of ``/proc/mounts``."""
    mounts: list[tuple[str, str]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            mounts.append((_unescape(fields[1]), fields[2]))
    return mounts


_BSD_MOUNT_LINE = re.compile(r"^.+? on (?P<point>.+) \((?P<fstype>[^,)]+)")


def parse_bsd_mount_output(text: str) -> list[tuple[str, str]]:
    """(mount point, fstype) pairs from the output of ``mount`` on macOS and the BSDs."""
    mounts: list[tuple[str, str]] = []
    for line in text.splitlines():
        match = _BSD_MOUNT_LINE.match(line)
        if match:
            mounts.append((match.group("point"), match.group("fstype").strip()))
    return mounts


def _mount_table() -> list[tuple[str, str]]:
    """The mounts of this system, from the best source the platform offers; [] if none."""
    for source, parse in (
        ("/proc/self/mountinfo", parse_mountinfo),
        ("/proc/mounts", parse_proc_mounts),
    ):
        try:
            with open(source, encoding="utf-8", errors="surrogateescape") as table:
                mounts = parse(table.read())
        except OSError:
            continue
        if mounts:
            return mounts
    if sys.platform != "win32":
        try:
            output = subprocess.run(
                ["mount"], capture_output=True, text=True, timeout=5, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return parse_bsd_mount_output(output)
    return []


def fstype_of(path: str, mounts: Sequence[tuple[str, str]]) -> str | None:
    """The fstype of the mount with the longest mount point containing ``path``, or None."""
    best: tuple[int, str] | None = None
    for point, fstype in mounts:
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        # Later lines win ties: a mount stacked on the same point hides the earlier one.
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)
    return None if best is None else best[1]


def is_network_filesystem(path: Path) -> tuple[bool, str]:
    """Whether ``path`` lives on a network or FUSE file system, and that file system's type.

    The type is "unknown" when the mount table cannot be read; then the answer is False, since
    native events are the better default where they work.
    """
    fstype = fstype_of(os.path.realpath(path), _mount_table())
    if fstype is None:
        return False, "unknown"
    return is_network_fstype(fstype), fstype


# --- scanning --------------------------------------------------------------------------------


class WatchIndex:
    """The filters of a set of watches, built once, answering which watch owns a path."""

    def __init__(self, watches: Sequence[WatchConfig]) -> None:
        # Innermost roots first, so the first root containing a path is its owner.
        self._rules = sorted(
            (SourceFilter(watch) for watch in watches), key=lambda rules: -len(str(rules.root))
        )

    def owner(self, path: Path) -> WatchConfig | None:
        """The watch whose root contains ``path`` (the innermost root wins), filters aside."""
        for rules in self._rules:
            if rules.relative(path) is not None:
                return rules.watch
        return None

    def watch_for(self, path: Path) -> WatchConfig | None:
        """The watch whose root contains ``path`` (the innermost root wins) if it accepts it."""
        for rules in self._rules:
            if rules.relative(path) is not None:
                return rules.watch if rules.accepts(path) else None
        return None


def watch_for(path: Path, watches: Sequence[WatchConfig]) -> WatchConfig | None:
    """The watch whose root contains ``path`` (the innermost root wins) if it accepts it."""
    return WatchIndex(watches).watch_for(path)


@dataclass(frozen=True)
class StorageFacts:
    """What the file system says around a vanished path, read off the event loop."""

    root: Path
    root_problem: str | None
    folder: Path | None
    folder_dev: int | None

    def away(self, dev: int | None) -> str | None:
        """Why the source (last seen on device ``dev``) may still exist, or None if deleted.

        A missing root, or a nearest surviving folder on another device than the source was
        on (an unmounted share leaves its empty mount point behind), means the storage is
        unreachable, and every one of its files would otherwise look deleted.
        """
        if self.root_problem is not None:
            return f"the watch folder {self.root} is unavailable ({self.root_problem})"
        if dev is not None and self.folder_dev is not None and self.folder_dev != dev:
            return f"the file system that held it is not mounted at {self.folder} any more"
        return None


def storage_facts(path: Path, root: Path) -> StorageFacts:
    """Read whether ``root`` is there and the device of ``path``'s nearest surviving folder."""
    if _root_identity(root) is None:
        return StorageFacts(root, _root_absence(root), None, None)
    folder = path.parent
    while True:
        try:
            return StorageFacts(root, None, folder, os.stat(folder).st_dev)
        except OSError:
            if folder.parent == folder:
                return StorageFacts(root, None, None, None)
            folder = folder.parent


def scan(watch: WatchConfig) -> Iterator[Path]:
    """Every file under the watch root that its filter accepts, from a stat-only walk.

    Ignored folders are pruned, symlinked folders are not followed (no loops), and a folder
    that vanishes or cannot be read mid-walk is logged and skipped. A missing root yields
    nothing and logs nothing: the watcher already says so (``watch_root_missing``).
    """
    rules = SourceFilter(watch)
    if _root_identity(rules.root) is None:
        return iter(())
    return _walk(rules, rules.root, "")


def scan_folder(watch: WatchConfig, folder: Path) -> Iterator[Path]:
    """Like :func:`scan`, for one folder inside the root (e.g. one just moved in)."""
    rules = SourceFilter(watch)
    rel = rules.relative(folder)
    if rel is None:
        return iter(())
    if rel:
        parts = rel.split("/")
        for depth in range(len(parts)):
            if rules.prunes(rules.root.joinpath(*parts[: depth + 1])):
                return iter(())
    return _walk(rules, Path(os.path.abspath(folder)), rel)


def _walk(rules: SourceFilter, top: Path, top_rel: str) -> Iterator[Path]:
    """Depth-first walk from ``top`` (already known not to be pruned), files before subfolders."""
    stack: list[tuple[str, str]] = [(str(top), top_rel)]
    while stack:
        folder, rel = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            # A folder deleted or made unreadable while we walk is normal life in an inbox.
            _log.warning(
                "scan_folder_unreadable", folder=folder, error=exc.strerror or str(exc)
            )
            continue
        subfolders: list[tuple[str, str]] = []
        for entry in entries:
            entry_rel = f"{rel}/{entry.name}" if rel else entry.name
            if _folder_link_outside(rules, entry):
                # Never followed; handed on so that status says why it is not transcribed.
                yield Path(entry.path)
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not rules.prunes(Path(entry.path)):
                        subfolders.append((entry.path, entry_rel))
                    continue
                is_file = entry.is_file()
                odd_link = False
            except OSError:
                # A link that leads nowhere usable (a loop) is handed on so the worker can
                # say why it is not transcribed.
                is_file, odd_link = False, entry.is_symlink()
            if (is_file or odd_link) and rules.file_reason(entry_rel, entry.name) is None:
                yield Path(entry.path)
        stack.extend(reversed(subfolders))


def _folder_link_outside(rules: SourceFilter, entry: os.DirEntry[str]) -> bool:
    """Whether ``entry`` is a link to a folder that leads out of the watch root (and the watch
    does not follow links anywhere): one stat and one resolution, for links only."""
    try:
        if not entry.is_symlink() or not entry.is_dir():
            return False
    except OSError:
        return False
    if rules.watch.follow_links == "anywhere" or rules.prunes(Path(entry.path)):
        return False
    return roots.Roots([(rules.root, "inside")]).leads_outside(entry.path)


# --- watching --------------------------------------------------------------------------------


@dataclass(eq=False)
class _Root:
    """What the watcher knows about one watch root; fields change under Watcher._lock."""

    watch: WatchConfig
    rules: SourceFilter
    observer: BaseObserver | None = None
    mode: str | None = None
    problem: str | None = None
    identity: tuple[int, int] | None = None
    inotify_exhausted: bool = False
    # The root folder was missing at the last look: it is looked for again every second.
    absent: bool = False
    first_attempt: threading.Event = field(default_factory=threading.Event)

    @property
    def path(self) -> Path:
        """The root folder."""
        return self.rules.root


class _Handler(FileSystemEventHandler):
    """Routes every event of one root to the watcher, and never lets one kill the observer."""

    def __init__(self, watcher: Watcher, root: _Root) -> None:
        self._watcher = watcher
        self._root = root

    def dispatch(self, event: FileSystemEvent) -> None:
        """Turn one event into hints; a bug here is logged, not fatal to the observer thread."""
        try:
            self._watcher._on_event(self._root, event)
        except Exception:
            _log.exception("watch_event_failed", root=str(self._root.path), event=repr(event))


def _root_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the root folder, None when it is missing or not a folder."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


def _root_absence(path: Path) -> str:
    """Why a root without an identity cannot be watched, in words for root_problems."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "missing: the folder does not exist"
    except OSError as exc:
        return f"cannot read the folder: {exc.strerror or exc}"
    return "not a folder: the path exists but is a file"


def _inotify_limit_advice(code: int | None) -> str:
    """How a person raises the inotify limit that was hit."""
    key = "max_user_instances" if code == errno.EMFILE else "max_user_watches"
    value = 1024 if code == errno.EMFILE else 524288
    return (
        f"raise it with `sudo sysctl fs.inotify.{key}={value}` and keep it across reboots "
        f"with a line `fs.inotify.{key}={value}` in /etc/sysctl.d/90-watcherd.conf"
    )


class Watcher:
    """One watchdog observer per watch root, kept alive, turning events into hints.

    Each root has a keeper thread: it starts the observer, looks for a missing root every
    ``missing_poll_seconds`` (one stat, so a folder made after the start is watched within
    about a second), retries a root that exists but cannot be watched and checks a watched
    one every ``root_retry_seconds``, restarts a dead observer, and hints every file of a root
    that (re)appears, since events for it were certainly missed.

    ``on_complete`` (if given) receives instead of ``hint`` the paths that an event says are
    complete: a file closed after writing (Linux IN_CLOSE_WRITE) or renamed into place.
    """

    def __init__(
        self,
        watches: Sequence[WatchConfig],
        hint: Callable[[Path], None],
        *,
        on_complete: Callable[[Path], None] | None = None,
        poll_interval: float = 2.0,
        root_retry_seconds: float = 30.0,
        missing_poll_seconds: float = 1.0,
    ) -> None:
        self._hint = hint
        self._on_complete = on_complete or hint
        self._poll_interval = poll_interval
        self._retry_seconds = root_retry_seconds
        self._missing_poll_seconds = min(missing_poll_seconds, root_retry_seconds)
        self._roots = [_Root(watch=watch, rules=SourceFilter(watch)) for watch in watches]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._keepers: list[threading.Thread] = []
        # Tests replace this to simulate an exhausted inotify.
        self._make_native_observer: Callable[[], BaseObserver] = Observer

    # -- public ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start one keeper thread per root; observers come up in the background."""
        with self._lock:
            if self._keepers or self._stopping.is_set():
                return
            for index, root in enumerate(self._roots):
                keeper = threading.Thread(
                    target=self._keep, args=(root,), name=f"watcherd-watch-{index}", daemon=True
                )
                self._keepers.append(keeper)
        for keeper in self._keepers:
            keeper.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every observer and keeper thread, waiting at most about ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping.set()
            observers = [root.observer for root in self._roots if root.observer is not None]
            for root in self._roots:
                root.observer, root.mode = None, None
        # Stopping an observer joins its emitters, which can take a while on a slow network
        # share; doing it in helper threads keeps stop() bounded.
        stoppers = [
            threading.Thread(target=_stop_observer, args=(observer,), daemon=True)
            for observer in observers
        ]
        for stopper in stoppers:
            stopper.start()
        for thread in [*stoppers, *self._keepers]:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [thread.name for thread in [*stoppers, *self._keepers] if thread.is_alive()]
        if stuck:
            _log.warning("watch_stop_incomplete", threads=stuck)

    def root_problems(self) -> dict[Path, str]:
        """Roots not watched right now, with a reason a person can act on."""
        with self._lock:
            return {root.path: root.problem for root in self._roots if root.problem is not None}

    def root_modes(self) -> dict[Path, str]:
        """How each watched root is observed ("native", or "polling: <why>")."""
        with self._lock:
            return {root.path: root.mode for root in self._roots if root.mode is not None}

    def wait_ready(self, timeout: float) -> bool:
        """True once every root that exists has a running observer; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        for root in self._roots:
            if not root.first_attempt.wait(max(0.0, deadline - time.monotonic())):
                return False
        with self._lock:
            return all(
                root.observer is not None or _root_identity(root.path) is None
                for root in self._roots
            )

    # -- keeper threads --------------------------------------------------------------------

    def _keep(self, root: _Root) -> None:
        """The life of one root: first start, then periodic checks until stop()."""
        try:
            self._bring_up(root, announce=False)
        finally:
            root.first_attempt.set()
        while not self._stopping.wait(self._next_wait(root)):
            try:
                self._check(root)
            except Exception:
                _log.exception("watch_root_check_failed", root=str(root.path))

    def _next_wait(self, root: _Root) -> float:
        """Seconds until the next check: short while the root folder is absent, else long.

        Only absence is polled quickly, and it costs one stat; a root that exists but cannot
        be watched (inotify limits, permissions) is retried at the slow pace.
        """
        # The flag, not a fresh stat: a folder made just now must still get its quick check.
        if root.absent:
            return self._missing_poll_seconds
        return self._retry_seconds

    def _check(self, root: _Root) -> None:
        """Retry a missing root; restart an observer that died or watches a replaced folder."""
        if self._stopping.is_set():
            return
        observer = root.observer
        if observer is None:
            self._bring_up(root, announce=True)
            return
        identity = _root_identity(root.path)
        # A copy: the observer's own thread may change its set of emitters meanwhile.
        emitters = list(observer.emitters)
        alive = observer.is_alive() and bool(emitters)
        alive = alive and all(emitter.is_alive() for emitter in emitters)
        if identity is None:
            self._take_down(root)
            root.absent = True
            problem = _root_absence(root.path)
            self._set_problem(root, problem)
            _log.warning(
                "watch_root_missing",
                root=str(root.path),
                problem=problem,
                hint="watched again as soon as the folder reappears",
                detail="the root disappeared; its files are not considered deleted",
            )
            return
        if alive and identity == root.identity:
            return
        reason = "observer thread died" if not alive else "the root folder was replaced"
        self._take_down(root)
        _log.warning("observer_restarted", root=str(root.path), reason=reason)
        self._bring_up(root, announce=True)

    def _take_down(self, root: _Root) -> None:
        """Stop the root's observer (if any); the keeper decides what comes next."""
        with self._lock:
            observer, root.observer, root.mode = root.observer, None, None
        if observer is not None:
            _stop_observer(observer)

    def _set_problem(self, root: _Root, problem: str) -> None:
        """Record why the root is not watched."""
        with self._lock:
            root.problem = problem

    def _bring_up(self, root: _Root, *, announce: bool) -> bool:
        """Start watching the root if it is there; hint all its files when ``announce``."""
        identity = _root_identity(root.path)
        root.absent = identity is None
        if identity is None:
            problem = _root_absence(root.path)
            changed = root.problem != problem
            self._set_problem(root, problem)
            if changed:
                _log.warning(
                    "watch_root_missing",
                    root=str(root.path),
                    problem=problem,
                    hint="watched as soon as the folder appears",
                )
            return False
        # Set before the observer runs: its first deletion events are checked against it.
        root.identity = identity
        started = self._start_observer(root)
        if started is None:
            return False
        observer, mode = started
        with self._lock:
            if self._stopping.is_set():
                stale: BaseObserver | None = observer
            else:
                stale = None
                root.observer, root.mode, root.problem = observer, mode, None
        if stale is not None:
            _stop_observer(stale)
            return False
        _log.info("watch_root_started", root=str(root.path), mode=mode)
        if announce:
            # Events for this root were missed while it was not watched: hint everything.
            # The observer is already running, so a file added during the scan is not lost.
            _log.info("watch_root_scan", root=str(root.path))
            for path in scan(root.watch):
                if self._stopping.is_set():
                    break
                self._emit(path)
        return True

    def _start_observer(self, root: _Root) -> tuple[BaseObserver, str] | None:
        """A started observer for the root and its mode, or None (problem recorded)."""
        polling_reason = self._polling_reason(root)
        if polling_reason is None:
            try:
                return self._schedule(root, self._make_native_observer()), "native"
            except OSError as exc:
                if exc.errno not in _INOTIFY_LIMIT_ERRNOS:
                    self._report_unwatchable(root, exc)
                    return None
                root.inotify_exhausted = True
                polling_reason = "inotify limit reached"
                _log.warning(
                    "watch_root_polling",
                    root=str(root.path),
                    reason=polling_reason,
                    error=exc.strerror or str(exc),
                    advice=_inotify_limit_advice(exc.errno),
                )
        else:
            _log.info("watch_root_polling", root=str(root.path), reason=polling_reason)
        try:
            observer = self._schedule(root, self._polling_observer(root))
        except OSError as exc:
            self._report_unwatchable(root, exc)
            return None
        return observer, f"polling: {polling_reason}"

    def _polling_reason(self, root: _Root) -> str | None:
        """Why this root must be polled, or None for native events."""
        if root.watch.poll == "always":
            return 'poll = "always"'
        if root.inotify_exhausted:
            return "inotify limit reached"
        if root.watch.poll == "auto":
            network, fstype = is_network_filesystem(root.path)
            if network:
                return f"network file system ({fstype})"
        return None

    def _report_unwatchable(self, root: _Root, exc: OSError) -> None:
        """Record and log a root that exists but cannot be watched."""
        problem = f"cannot watch: {exc.strerror or exc}"
        if isinstance(exc, PermissionError):
            problem += " (give the watcherd user read and execute access to the folder)"
        first_time = root.problem != problem
        self._set_problem(root, problem)
        if first_time:
            _log.warning("watch_root_unwatchable", root=str(root.path), problem=problem)

    def _schedule(self, root: _Root, observer: BaseObserver) -> BaseObserver:
        """Schedule the root on ``observer`` and start it; OSError if the kernel refuses."""
        observer.schedule(
            _Handler(self, root),
            str(root.path),
            recursive=root.watch.recursive,
            event_filter=_EVENT_FILTER,
        )
        observer.name = f"watcherd-observer:{root.path}"
        observer.start()
        return observer

    def _polling_observer(self, root: _Root) -> BaseObserver:
        """A polling observer whose snapshots skip ignored folders and never follow symlinks."""
        rules = root.rules

        def listdir(folder: str | None) -> Iterator[os.DirEntry[str]]:
            with os.scandir(folder) as listing:
                entries = list(listing)
            return iter([entry for entry in entries if _worth_polling(rules, entry)])

        observer: BaseObserver = PollingObserverVFS(
            os.lstat, listdir, polling_interval=self._poll_interval
        )
        return observer

    # -- events ----------------------------------------------------------------------------

    def _on_event(self, root: _Root, event: FileSystemEvent) -> None:
        """Hint the paths an event may concern."""
        src = Path(os.fsdecode(event.src_path))
        dest = Path(os.fsdecode(event.dest_path)) if event.dest_path else None
        kind = event.event_type
        if event.is_directory:
            if kind == "created":
                self._hint_folder(root, src)
            elif kind == "moved" and dest is not None:
                self._hint_folder(root, dest)
            return
        if kind in ("created", "modified", "attrib"):
            self._hint_accepted(root, src)
        elif kind == "closed":
            self._hint_accepted(root, src, complete=True)
        elif kind == "moved":
            self._hint_accepted(root, src)
            if dest is not None:
                # Renaming into place is how downloaders and rsync publish a finished file.
                self._hint_accepted(root, dest, complete=True)
        elif kind == "deleted" and _root_identity(root.path) == root.identity:
            # A vanished or unmounted root is not "every file was deleted": the check above
            # drops deletions reported while the root itself is gone or replaced.
            self._hint_accepted(root, src)

    def _hint_accepted(self, root: _Root, path: Path, *, complete: bool = False) -> None:
        """Hint ``path`` if the root's filter accepts it."""
        if root.rules.accepts(path):
            self._emit(path, complete=complete)

    def _hint_folder(self, root: _Root, folder: Path) -> None:
        """Hint every accepted file under a folder created or moved into the root."""
        for path in scan_folder(root.watch, folder):
            self._emit(path)

    def _emit(self, path: Path, *, complete: bool = False) -> None:
        """Call the daemon's hint; its failure must not stop the observer."""
        try:
            (self._on_complete if complete else self._hint)(path)
        except Exception:
            _log.exception("hint_failed", path=str(path))


def _worth_polling(rules: SourceFilter, entry: os.DirEntry[str]) -> bool:
    """Whether a polling snapshot should keep this entry (pruned folders and ignored files go)."""
    if entry.name.startswith("."):
        return False
    try:
        if entry.is_dir(follow_symlinks=False):
            return not rules.prunes(Path(entry.path))
    except OSError:
        return False
    return rules.accepts(Path(entry.path))


def _stop_observer(observer: BaseObserver) -> None:
    """Stop an observer and wait for its threads (a never-started one just forgets its watches)."""
    try:
        observer.stop()
        if observer.is_alive():
            observer.join()
    except Exception:
        _log.exception("observer_stop_failed", observer=observer.name)
