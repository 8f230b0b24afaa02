"""Recognise finished work from the outputs next to a source (after the journal was lost)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from watcherd import outputs, roots
from watcherd.errors import SourceError
from watcherd.identity import content_keys
from watcherd.journal import Source

# A NAME.json larger than this is not a job object we wrote.
_MAX_JSON = 256 * 1024 * 1024


def _output_candidates(source: Source, settings: outputs.OutputSettings | None = None
                      ) -> list[Path]:
    """Where this source's NAME.json may be: its recorded base, else both naming rules (in
    the watch's output folder when it has one; a name template needing the job's language or
    date cannot be foreseen, so only {stem}, {ext} and {watch} names are found)."""
    path = Path(source.path)
    if source.output_base is not None:
        return [Path(source.output_base + ".json")]
    naming = None
    if settings is not None:
        naming = outputs.naming_for(path, Path(source.watch_root), settings)
    return [b.with_name(b.name + ".json")
            for b in outputs.output_base_candidates(path, naming)]


def job_from_outputs(source: Source, settings: outputs.OutputSettings | None = None
                     ) -> tuple[Path, dict[str, Any]] | None:
    """The finished job in an existing NAME.json made for exactly this content and options.

    The job's ``custom_metadata.wf_key`` must be a key of this content and options (the
    source's, or the one an older watcherd gave them, see :func:`accepted_keys`), so an
    unrelated JSON file, or a transcript of an older version of the file, is never taken for
    this one. Returns the output base and the job.
    """
    keys = _accepted_keys(source)
    if not keys:
        return None
    for candidate in _output_candidates(source, settings):
        try:
            job = json.loads(_read_beneath(candidate))
        except (OSError, ValueError, SourceError):
            continue
        if not isinstance(job, dict) or job.get("status") != "done":
            continue
        metadata = job.get("custom_metadata")
        key = metadata.get("wf_key") if isinstance(metadata, dict) else None
        if isinstance(key, str) and key in keys:
            return candidate.with_suffix(""), job
    return None


def _read_beneath(path: Path) -> bytes:
    """A NAME.json's bytes, read through the watch roots' resolver: never through a link out
    of the folder, and only from a regular file of a sane size."""
    fd = roots.current().locate_entry(path).open(os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_JSON:
            raise ValueError("not a job object we wrote")
        return f.read(_MAX_JSON + 1)


def _accepted_keys(source: Source) -> frozenset[str]:
    """The content keys that name finished work for this source: its own, and both schemes'
    keys of its content and options (outputs written before the canonical key carry wf1)."""
    keys: set[str] = set()
    if source.content_key is not None:
        keys.add(source.content_key)
        if source.sha256 is not None:
            keys.update(content_keys(source.sha256, source.options_json))
    return frozenset(keys)
