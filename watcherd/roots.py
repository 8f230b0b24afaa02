"""The watch root as a wall: the one resolver every open, stat, scan and write goes through.

A string prefix says nothing about where a path leads. A link dropped into the inbox, or a
sub-folder swapped for a link while a job runs, makes ``ROOT/a/x.mp3`` name a file anywhere on
the disk. So a path is never opened as a string here. It is first resolved (every link in it
followed, :func:`os.path.realpath`), the resolved path must lie beneath its watch root (unless
the watch says ``follow_links = "anywhere"``), and it is then opened from the root down, one
component at a time, with ``O_NOFOLLOW | O_DIRECTORY``: the resolved path has no link in it,
so a link found on the way was swapped in after the check, and the open fails instead of
following it. Files are then read, stat'ed, written and renamed relative to their folder's
descriptor, so the folder that was checked is the folder that is used.

``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` would do the walk in one call on Linux 5.6+,
but Python has no binding for it; the per-component walk is portable (Linux, macOS, the BSDs)
and costs one ``openat`` per folder level.

The daemon installs the roots of its config with :func:`install` (at start and on each
reload); every module asks :func:`current` instead of being handed the roots, so no caller can
forget the wall. A path beneath no configured root is one a person named on the command line
(``watcherd transcribe FILE``): it is opened through its resolved path, with the same no-link
walk from ``/``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from watcherd.errors import SourceError

__all__ = ["LinkOnPath", "LinkOutside", "Place", "Roots", "current", "install", "open_folder",
           "open_in"]

FollowLinks = Literal["inside", "anywhere"]

#: What ``status`` says of a link that leads out of its watch folder.
_LINK_OUTSIDE = (
    "ignored: a link to a place outside the watched folders; nothing is read from it (move "
    'or copy the file into the folder, or set follow_links = "anywhere" on this watch)'
)
#: What an attempt says when a folder on the path became a link after it was resolved.
SWAPPED = ("a folder on its path changed while it was being opened (replaced by a link?); "
           "it is looked at again")

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_FOLDER_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
#: errno values an ``O_NOFOLLOW`` open gives for a link (ELOOP on Linux and macOS, EMLINK on
#: FreeBSD) or a component that is no longer a folder.
_LINK_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK, errno.ENOTDIR})


class LinkOutside(SourceError):
    """The path leads out of its watch root through a link; it is never read."""

    def __init__(self) -> None:
        super().__init__(_LINK_OUTSIDE, transient=False)


class LinkOnPath(OSError):
    """A component on the way down was a link (or no longer a folder) when it was opened."""

    def __init__(self, name: str) -> None:
        super().__init__(errno.ELOOP, SWAPPED, name)


@dataclass(frozen=True)
class Place:
    """A path as components beneath a folder that holds no link: what is opened, and how.

    ``top`` is a resolved folder (a watch root, or ``/``); ``parts`` are plain names beneath it
    (never empty, ``.`` or ``..``), the last one the file or folder itself.
    """

    top: str
    parts: tuple[str, ...]

    @property
    def path(self) -> Path:
        """The resolved path, for messages and lookups (never opened as a string)."""
        return Path(self.top, *self.parts)

    @property
    def name(self) -> str:
        """The last component."""
        return self.parts[-1] if self.parts else ""

    @contextlib.contextmanager
    def folder(self, *, create: int | None = None) -> Iterator[int]:
        """A descriptor of the folder that holds the last component, opened without links;
        ``create``: make missing folders with these permission bits (see :func:`open_folder`)."""
        fd = open_folder(self.top, self.parts[:-1], create=create)
        try:
            yield fd
        finally:
            os.close(fd)

    def open(self, flags: int = os.O_RDONLY) -> int:
        """Open the last component itself, never through a link; the caller closes it."""
        with self.folder() as folder:
            return open_in(folder, self.name, flags)

    def stat(self) -> os.stat_result:
        """The stat of the last component itself (a link is not followed)."""
        with self.folder() as folder:
            return os.stat(self.name, dir_fd=folder, follow_symlinks=False)


def open_in(folder: int, name: str, flags: int = os.O_RDONLY) -> int:
    """Open ``name`` in the folder descriptor ``folder``, never through a link."""
    try:
        return os.open(name, flags | _NOFOLLOW | _CLOEXEC, dir_fd=folder)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS and _is_link(folder, name):
            raise LinkOnPath(name) from None
        raise


def _not_a_folder(folder: int, name: str) -> bool:
    """Whether ``name`` in ``folder`` is (now) a link or anything else than a folder."""
    try:
        return not stat.S_ISDIR(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _is_link(folder: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_folder(top: str | Path, parts: Sequence[str], *, create: int | None = None) -> int:
    """Open ``top`` (which a person configured, links and all), then each of ``parts`` beneath
    it without following a link; returns the last folder's descriptor.

    ``create``: the permission bits a missing folder is made with (``mkdirat`` in the folder
    just opened, then opened like the others, so a link raced into its place is refused too);
    None: a missing folder is FileNotFoundError. Raises :class:`LinkOnPath` when a component is
    a link or not a folder, and ``ValueError`` for a component that is not a plain name
    (empty, ``.``, ``..``, or holding a separator).
    """
    for name in parts:
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise ValueError(f"not a plain name: {name!r}")
    fd = os.open(top, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for name in parts:
            if create is not None:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, create, dir_fd=fd)
            try:
                child = os.open(name, _FOLDER_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in _LINK_ERRNOS and _not_a_folder(fd, name):
                    raise LinkOnPath(name) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _parts_beneath(top: str, path: str) -> tuple[str, ...] | None:
    """The components of ``path`` beneath ``top`` (both absolute and normalised), or None."""
    if path == top:
        return ()
    prefix = top if top.endswith(os.sep) else top + os.sep
    if not path.startswith(prefix):
        return None
    return tuple(part for part in path[len(prefix):].split(os.sep) if part)


def _absolute(path: Path | str) -> str:
    """``path`` made absolute against the working folder, ``..`` left as written."""
    text = os.fspath(path)
    return text if os.path.isabs(text) else os.path.join(os.getcwd(), text)


class Watched(Protocol):
    """What the roots need of a watch config (watcherd.config.WatchConfig has it)."""

    @property
    def path(self) -> Path: ...

    @property
    def follow_links(self) -> FollowLinks: ...

    @property
    def output_dir(self) -> Path | None: ...


@dataclass(frozen=True)
class _Root:
    path: str
    real: str
    follow_links: FollowLinks


class Roots:
    """The watch roots of one config and what each allows; resolves every path against them.

    ``roots``: ``(root folder, follow_links)`` pairs. The innermost root containing a path is
    its root, as for the watches' filters. ``outputs``: the output folders (``output_dir``), a
    root of their own kind: only watcherd writes there, so a link in one is never followed
    (``"inside"``), and every write beneath one is walked down from it like a source's.
    """

    def __init__(self, roots: Sequence[tuple[Path | str, FollowLinks]] = (),
                 outputs: Sequence[Path | str] = ()) -> None:
        pairs: list[tuple[Path | str, FollowLinks]] = [*roots, *((o, "inside") for o in outputs)]
        entries = [
            _Root(os.path.abspath(os.fspath(path)), os.path.realpath(os.fspath(path)), follow)
            for path, follow in dict(pairs).items()
        ]
        # Longest first: a root nested in another owns its own files.
        self._roots = sorted(entries, key=lambda root: -len(root.path))

    @classmethod
    def of(cls, watches: Sequence[Watched]) -> Roots:
        """From watch configs (``path``, ``follow_links`` and ``output_dir``)."""
        return cls([(w.path, w.follow_links) for w in watches],
                   [w.output_dir for w in watches if w.output_dir is not None])

    def locate(self, path: Path | str) -> Place:
        """Where ``path`` really is, as a :class:`Place` to open without following links.

        Raises :class:`LinkOutside` when ``path`` lies in a watch root but leads out of it
        through a link and that watch follows links only inside. A path in no root (a file
        named on the command line) is placed beneath ``/``.
        """
        # Not normalised: ROOT/a/../../x is "in the root" as written, and its resolution
        # outside the root is then refused, not taken for a file named outside every root.
        text = _absolute(path)
        real = os.path.realpath(text)
        for root in self._roots:
            if _parts_beneath(root.path, text) is None:
                continue
            parts = _parts_beneath(root.real, real)
            if parts is not None:
                return Place(root.real, parts)
            if root.follow_links == "inside":
                raise LinkOutside()
            break
        return Place(os.sep, _parts_beneath(os.sep, real) or ())

    def locate_entry(self, path: Path | str) -> Place:
        """Like :meth:`locate` for a file of ours (an output, a NAME.json): its folder is
        resolved, its own name never (a link in its place is opened as a link: refused)."""
        text = _absolute(path)
        folder, name = os.path.split(text)
        if name in ("", ".", ".."):
            raise ValueError(f"not a file name: {name!r}")
        place = self.locate(folder)
        return Place(place.top, (*place.parts, name))

    def leads_outside(self, path: Path | str) -> bool:
        """Whether ``path`` is in a watch root but resolves out of it where that is refused."""
        try:
            self.locate(path)
        except LinkOutside:
            return True
        return False


_current = Roots()
_lock = threading.Lock()


def install(roots: Roots) -> None:
    """Make ``roots`` the wall every open in this process goes through (start, reload)."""
    global _current
    with _lock:
        _current = roots


def current() -> Roots:
    """The roots installed for this process (none: every path is a named file)."""
    return _current
