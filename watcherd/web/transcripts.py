"""Serve a finished file's outputs read-only: only the paths the journal records as its own.

A link names a source id and an output suffix (``txt``, ``srt``, ``fr.txt``...); the path is
never taken from the request. It is the source's recorded output base plus a suffix that the
outputs module would write for its stored result, opened without following a symlink, as a
regular file, up to a size cap; it is opened through the watch roots' resolver, like every
source and output.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from watcherd import outputs, roots
from watcherd.errors import SourceError
from watcherd.journal import Journal, Source

MAX_BYTES = 32 * 1024 * 1024
_MEDIA = {
    "txt": "text/plain; charset=utf-8",
    "md": "text/plain; charset=utf-8",
    "srt": "text/plain; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
}


@dataclass(frozen=True)
class Output:
    """One output file of a source: the suffix in its link, where it is, its media type."""

    suffix: str
    path: Path
    media_type: str


class NoSuchOutput(Exception):
    """The link does not name an output of a finished source; the message says which part."""


def _outputs_of(journal: Journal, source: Source) -> list[Output]:
    """The outputs the journal records for a done source (whether or not still on disk)."""
    if source.state != "done" or not source.output_base or not source.content_key:
        return []
    job = journal.result_for(source.content_key)
    if job is None:
        return []
    base = Path(source.output_base)
    try:
        paths = outputs.output_paths(base, outputs.FORMATS, job)
    except ValueError:
        return []
    found = []
    for path in paths:
        name = os.fsdecode(path.name)
        prefix = os.fsdecode(base.name) + "."
        if path.parent != base.parent or not name.startswith(prefix):
            continue
        suffix = name[len(prefix):]
        found.append(Output(suffix, path, _MEDIA.get(suffix.rsplit(".", 1)[-1],
                                                      "text/plain; charset=utf-8")))
    return found


def existing_outputs(journal: Journal, source: Source) -> list[Output]:
    """The recorded outputs that are regular files on disk now."""
    existing = []
    for output in _outputs_of(journal, source):
        try:
            if stat.S_ISREG(roots.current().locate_entry(output.path).stat().st_mode):
                existing.append(output)
        except (OSError, SourceError):
            continue
    return existing


def read_output(journal: Journal, source_id: int, suffix: str) -> tuple[Output, bytes]:
    """The bytes of one recorded output; NoSuchOutput when the link names none."""
    try:
        source = journal.get(source_id)
    except KeyError:
        raise NoSuchOutput("no such file in the journal") from None
    for output in _outputs_of(journal, source):
        if output.suffix == suffix:
            return output, _read(output.path)
    raise NoSuchOutput("that file has no such output")


def _read(path: Path) -> bytes:
    try:
        # Beneath its watch root with no link in any component (watcherd.roots): a folder
        # swapped for a link since the transcript was written gives 404, not another file.
        fd = roots.current().locate_entry(path).open(os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except SourceError as exc:
        raise NoSuchOutput(exc.message) from None
    except OSError as exc:
        raise NoSuchOutput(f"the output cannot be opened ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise NoSuchOutput("the output is not a regular file")
        if st.st_size > MAX_BYTES:
            raise NoSuchOutput(f"the output is larger than {MAX_BYTES // (1024 * 1024)} MiB; "
                               "open it from the folder instead")
        return f.read(MAX_BYTES + 1)[:MAX_BYTES]
