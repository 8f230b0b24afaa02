"""Content identity: the file hash and the content key that names a job at Gladia."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from watcherd.errors import SourceError
from watcherd.journal import FileStat

KEY_PREFIX = "wf1-"
_CHUNK = 1024 * 1024


def options_json(options: Mapping[str, Any]) -> str:
    """Canonical JSON of a watch's options: equal options give equal text."""
    return json.dumps(options, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_key(sha256: str, options_text: str) -> str:
    """The key of one (content, options) pair: at most one job is ever created per key."""
    digest = hashlib.sha256(f"{sha256}\n{options_text}".encode()).hexdigest()
    return KEY_PREFIX + digest[:40]


def hash_file(path: Path, expected: FileStat | None = None) -> tuple[str, FileStat]:
    """Stream ``path`` through sha256 and return the digest with the stat it belongs to.

    Raises a transient :class:`SourceError` when the file changed while it was read, so the
    caller settles it again instead of trusting a hash of half a file.
    """
    try:
        with path.open("rb") as f:
            before = FileStat.of(os.fstat(f.fileno()))
            if expected is not None and before != expected:
                raise SourceError("changed since it was last seen", transient=True)
            h = hashlib.sha256()
            while chunk := f.read(_CHUNK):
                h.update(chunk)
            after = FileStat.of(os.fstat(f.fileno()))
    except FileNotFoundError:
        raise SourceError("disappeared while being read", transient=True) from None
    except PermissionError:
        raise SourceError(
            "permission denied reading the file: give the watcherd user read access"
        ) from None
    except IsADirectoryError:
        raise SourceError("is a folder, not a file") from None
    if after != before:
        raise SourceError("changed while it was being hashed", transient=True)
    return h.hexdigest(), after
