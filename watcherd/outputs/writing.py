"""Writing outputs atomically: a reader sees the old file or the new one, never half.

Temp files carry :data:`~watcherd.outputs.naming.TEMP_MARKER`, so the watcher never mistakes
them for recordings and a crash's leftovers are swept (:func:`sweep_temp_files`). Outputs take
the source's read/write permission bits (``mode=``, :func:`file_mode`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from watcherd.display import printable
from watcherd.outputs.formats import checked_formats
from watcherd.outputs.job import read_job
from watcherd.outputs.naming import (
    NAME_MAX,
    TEMP_MARKER,
    TEMP_RANDOM_HEX,
    cut,
    is_our_temp,
    with_suffix,
)
from watcherd.outputs.plan import plan
from watcherd.outputs.settings import Facts, OutputSettings

log = structlog.get_logger("watcherd.outputs")


def temp_name(name: str) -> str:
    """A hidden, marked, random temp name for ``name``, within the 255-byte name limit.

    Outputs of a base from :func:`~watcherd.outputs.naming.output_base` always fit whole
    (``.NAME.watcherd-tmp-HEX``, which the stale-temp cleanup looks for); any other long name
    is cut between characters (by bytes, so a long non-ASCII or non-UTF-8 name still fits).
    """
    tail = f"{TEMP_MARKER}-{secrets.token_hex(TEMP_RANDOM_HEX // 2)}"
    return f".{cut(name, NAME_MAX - len(tail) - 1)}{tail}"


def file_mode(source_mode: int | None) -> int:
    """The permission bits a new output gets (before the umask) for a source's ``st_mode``.

    The source's read/write bits for user, group and other, never execute, set-id or sticky
    bits; the owner can always read (the daemon reads NAME.json back to recover a result).
    Without a source mode: 0o666, the usual default. The umask applies on top, so an output
    is never more open than a file the daemon creates normally.
    """
    if source_mode is None:
        return 0o666
    return (stat.S_IMODE(source_mode) & 0o666) | stat.S_IRUSR


def _fsync_folder(folder: int) -> None:
    if os.name == "nt":  # pragma: no cover - Windows cannot open a folder for fsync
        return
    try:
        os.fsync(folder)
    except OSError as exc:
        # Some filesystems cannot fsync a folder; the rename itself already happened.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise


def atomic_write(path: Path, data: bytes, *, mode: int | None = None,
                 folder: int | None = None) -> None:
    """Replace ``path`` with ``data`` so that readers see the old file or the new, never half.

    ``mode`` is the source's ``st_mode``: the file gets its read/write bits (see
    :func:`file_mode`), so a private recording never gets a world-readable transcript.
    ``folder`` is a descriptor of ``path``'s folder, opened beneath the watch root without
    following links (:mod:`watcherd.roots`): the temp file is created, and renamed, inside that
    folder, never through a link that replaced it meanwhile. Without one, ``path.parent`` is
    opened (as it is, links and all: for callers that write where a person pointed them).
    On any error the temp file is removed and the error re-raised (ENOSPC included), leaving
    the previous content of ``path`` untouched.
    """
    if folder is None:
        own = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
                      | getattr(os, "O_CLOEXEC", 0))
        try:
            atomic_write(path, data, mode=mode, folder=own)
        finally:
            os.close(own)
        return
    name = path.name
    temp = temp_name(name)
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_NOFOLLOW", 0))
    # Created with these bits (minus the umask) from the start: a reader never finds the
    # transcript more open than it ends up, not even for the moment between open and chmod.
    fd = os.open(temp, flags, file_mode(mode), dir_fd=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=folder)
        raise
    _fsync_folder(folder)


def _shown(value: object) -> str:
    """A job field for an error message: its repr, on one line and at most 80 characters."""
    text = printable(repr(value))
    return text if len(text) <= 80 else f"{text[:77]}..."


def write_outputs(
    base: Path, formats: Sequence[str] | OutputSettings, job: Mapping[str, Any], *,
    mode: int | None = None, folder: int | None = None, facts: Facts | None = None,
) -> list[Path]:
    """Render every output of a done job, then write each atomically; returns the paths.

    ``formats``: the formats, or a watch's whole :class:`OutputSettings` (subtitle names,
    note template, speakers). ``facts``: what NAME.md's front matter says of the source.
    ``mode`` is the source's ``st_mode``: outputs get its read/write bits (:func:`file_mode`).
    ``folder``: a descriptor of ``base``'s folder to write in (see :func:`atomic_write`).
    Any JSON-shaped job either renders (text that cannot be encoded is replaced) or raises
    ValueError before anything is written; nothing here raises UnicodeEncodeError.
    """
    read = read_job(job)
    if not read.done:
        raise ValueError(f"job {_shown(read.raw.get('id'))} is {_shown(read.raw.get('status'))}, "
                         "not 'done': nothing to write")
    if not read.has_result:
        raise ValueError(
            f"job {_shown(read.raw.get('id'))} is done but has no result: nothing to write")
    settings = OutputSettings.of(formats)
    wanted = checked_formats(settings.formats)
    # Render everything before touching the disk, so a rendering bug writes nothing at all.
    rendered = [(with_suffix(base, p.suffix), p.render())
                for p in plan(read, wanted, base.name, settings, facts)]
    for failure in read.failures:
        log.warning("addon_failed", job_id=read.raw.get("id"), addon=failure.addon,
                    error=failure.message, outputs=str(base),
                    note="the transcript is written without this add-on's result")
    for path, text in rendered:
        atomic_write(path, text.encode("utf-8"), mode=mode, folder=folder)
    return [path for path, _ in rendered]


def sweep_temp_files(
    folder: Path, *, older_than_seconds: float = 3600, recursive: bool = False,
    prefix: str = "",
) -> int:
    """Remove our own temp files left by a crash mid-write; returns how many were removed.

    ``prefix``: only temp files whose name starts with it (one kind of temp file).
    """
    cutoff = time.time() - older_than_seconds
    if recursive:
        folders: Iterator[Path] = (Path(d) for d, _, _ in os.walk(folder))
    else:
        folders = iter([folder])
    removed = 0
    for current in folders:
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue  # gone or unreadable: nothing of ours to clean there
        for entry in entries:
            if not is_our_temp(entry.name) or not entry.name.startswith(prefix):
                continue
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(
                    follow_symlinks=False
                ).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue  # removed meanwhile, or not ours to remove
    return removed
