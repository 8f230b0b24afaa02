"""How values are stored in the journal: paths, human text and job objects, per backend.

The one module that owns the journal's encodings. The two backends store non-UTF-8 paths
differently (SQLite behind a NUL mark, PostgreSQL, whose text holds no NUL, behind U+FFFF);
both encodings stay as they are, so every existing journal opens unchanged.
"""

from __future__ import annotations

import bz2
import json
import os
import zlib
from collections.abc import Mapping
from dataclasses import fields
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from watcherd.journal._base import Source

__all__ = ["PATH_COLUMNS", "SOURCE_FIELDS", "column_value", "decode_path", "encode_path",
           "from_stored", "job_text", "pack_job", "pack_text", "packed_job", "pg_column_value",
           "pg_decode_path", "pg_encode_path", "pg_local_path", "pg_stored_path", "pg_text",
           "safe_text", "to_stored", "unpack_job"]

SOURCE_FIELDS = tuple(f.name for f in fields(Source))

# Columns that hold file system paths: stored losslessly (see encode_path).
PATH_COLUMNS = frozenset({"path", "watch_root", "output_base"})

# -- SQLite ----------------------------------------------------------------------------------

# No path can contain NUL, so a stored value starting with it is never a real path's text.
_BYTES_MARK = "\x00"


def encode_path(path: str) -> str:
    """The journal's text for a path: itself when it is UTF-8, else its exact bytes, quoted.

    Python hands a name that is not valid UTF-8 (a Latin-1 name from an old share or a zip
    archive) over as text with lone surrogates, which SQLite cannot store. Such a path is kept
    as a NUL mark followed by its percent-quoted bytes, so it round-trips byte for byte and
    every UTF-8 path (all paths of journals written before) stays as it was.
    """
    if _is_utf8(path):
        return path
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:
        # Surrogates that no file system name produces: keep a readable, lossy form.
        return safe_text(path)
    return _BYTES_MARK + quote(raw, safe="/")


def decode_path(stored: str) -> str:
    """The path (as Python's os functions take it) from its journal text."""
    if stored.startswith(_BYTES_MARK):
        return os.fsdecode(unquote_to_bytes(stored[len(_BYTES_MARK):]))
    return stored


def safe_text(text: str) -> str:
    """Human text (reasons, errors, notes) that SQLite can store: lone surrogates escaped."""
    if _is_utf8(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def column_value(name: str, value: Any) -> Any:
    """A column's value as the SQLite journal stores it."""
    if not isinstance(value, str):
        return value
    return encode_path(value) if name in PATH_COLUMNS else safe_text(value)


# -- PostgreSQL ------------------------------------------------------------------------------

# PostgreSQL text holds neither NUL nor lone surrogates (SQLite's NUL mark is not storable):
# a path that is not plain UTF-8 text is kept as this mark and its percent-quoted bytes.
# U+FFFF is a noncharacter, so no sane name starts with it; one that does is quoted too,
# which keeps the encoding one-to-one.
_PATH_MARK = "\uffff"


def pg_text(text: str) -> str:
    """Human text PostgreSQL can store: lone surrogates and NUL characters escaped."""
    return safe_text(text).replace("\x00", "\\x00")


def pg_encode_path(path: str) -> str:
    """The PostgreSQL journal's text for a path: itself when plain UTF-8, else marked bytes.

    Lossless for every name a file system gives (``os.fsdecode`` text with lone surrogates);
    one-to-one, so the unique index on paths and look-ups by path stay exact.
    """
    if not path.startswith(_PATH_MARK) and "\x00" not in path and _is_utf8(path):
        return path
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:
        # Surrogates that no file system name produces: keep a readable, lossy form.
        raw = pg_text(path).encode("utf-8")
    return _PATH_MARK + quote(raw, safe="/")


def pg_decode_path(stored: str) -> str:
    """The path (as Python's os functions take it) from its PostgreSQL journal text."""
    if stored.startswith(_PATH_MARK):
        return os.fsdecode(unquote_to_bytes(stored[len(_PATH_MARK):]))
    return stored


#: A stored path relative to a watch id: ``@ID/RELATIVE`` (``@ID`` for the watch's root).
#: No absolute path starts with "@" (POSIX "/", Windows a drive letter or "\\"), so the forms
#: cannot be confused, and a path under no configured watch is stored absolute.
_WATCH_MARK = "@"


def to_stored(path: str, roots: Mapping[str, str]) -> str:
    """A node's absolute path as the shared journal holds it: relative to its watch's id.

    Nodes mount the share at different places; the watch id (``[[watch]] id``) names the same
    folder on every node, so ``@id/rel`` is one file for all of them. The innermost root that
    holds the path wins (nested watches).
    """
    best: tuple[int, str, str] | None = None
    for watch_id, root in roots.items():
        root = root.rstrip("/") or "/"
        if path == root:
            rel = ""
        elif path.startswith(root if root.endswith("/") else root + "/"):
            rel = path[len(root):].lstrip("/")
        else:
            continue
        if best is None or len(root) > best[0]:
            best = (len(root), watch_id, rel)
    if best is None:
        return path
    _, watch_id, rel = best
    return f"{_WATCH_MARK}{watch_id}/{rel}" if rel else f"{_WATCH_MARK}{watch_id}"


def from_stored(stored: str, roots: Mapping[str, str]) -> str:
    """This node's absolute path for a stored one (``@id/rel`` mapped through ``roots``).

    A watch id this node does not have stays in its stored form: it names another node's
    folder, which this node never touches (the worker skips sources outside its watches).
    """
    if not stored.startswith(_WATCH_MARK):
        return stored
    watch_id, _, rel = stored[len(_WATCH_MARK):].partition("/")
    root = roots.get(watch_id)
    if root is None:
        return stored
    return os.path.join(root, rel) if rel else root


def pg_stored_path(path: str, roots: Mapping[str, str]) -> str:
    """A node's local path as the PostgreSQL journal stores it: relative to its watch id
    (:func:`to_stored`), then made storable text (:func:`pg_encode_path`)."""
    return pg_encode_path(to_stored(path, roots))


def pg_local_path(stored: str, roots: Mapping[str, str]) -> str:
    """A path the PostgreSQL journal stores as this node's local path."""
    return from_stored(pg_decode_path(stored), roots)


def pg_column_value(name: str, value: Any, roots: Mapping[str, str]) -> Any:
    """A column's value as the PostgreSQL journal stores it (paths through ``roots``)."""
    if not isinstance(value, str):
        return value
    return pg_stored_path(value, roots) if name in PATH_COLUMNS else pg_text(value)


# -- both ------------------------------------------------------------------------------------


def job_text(job: Mapping[str, Any]) -> str:
    """A job object as JSON text either database can store, losslessly.

    A backend that cuts a string mid-emoji leaves a lone surrogate escape in its JSON; it is
    kept as its ``\\uXXXX`` escape (ASCII JSON) instead of failing the store.
    """
    text = json.dumps(job, ensure_ascii=False)
    return text if _is_utf8(text) else json.dumps(job, ensure_ascii=True)


# -- job objects, compressed ---------------------------------------------------------------
#
# A stored job object is its JSON text (job_text), compressed, behind a one-byte tag that says
# how. Measured on job objects shaped like Gladia's (bench/bench_journal.py, RESULTS.md):
# zlib with a preset dictionary (a skeleton job object: keys, separators, usual values) keeps a
# short recording's 3.0 KB object in ~0.5 KB, where zlib alone needs 0.84 KB, zstd 0.87 KB and
# zstd with the same dictionary 0.50 KB; a one-hour object (780 KB, 8,300 words) is best kept
# by bz2 (12.6% in ~60 ms) - zlib's 32 KB window cannot reach the words the subtitles repeat
# (19.8%), and zstd needs level 16+ with long matching (14.5%, 170-860 ms) to get under 15%.
# Both are in the standard library, so no package is needed to read a journal.
#
# Tags are never reused: a new dictionary or method gets a new tag, old rows stay readable.
_ZLIB_DICT_V1 = b"z"
_BZ2 = b"b"
# Below this size bz2 never wins (its blocks carry more overhead than the dictionary saves).
_BZ2_FROM = 16 * 1024


@cache
def _dictionary() -> bytes:
    """zlib's preset dictionary for tag ``z``: data/job_dictionary.json, byte for byte."""
    return (resources.files("watcherd.journal") / "data" / "job_dictionary.json").read_bytes()


def pack_job(job: Mapping[str, Any]) -> bytes:
    """A job object as the journal stores it: tagged, compressed JSON text (see above)."""
    return pack_text(job_text(job))


def pack_text(text: str) -> bytes:
    """A job object's JSON text (as either database holds it) packed as it is: not parsed
    and written again, so the text unpacked is the text given, byte for byte."""
    raw = text.encode("utf-8")
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _dictionary())
    packed = _ZLIB_DICT_V1 + packer.compress(raw) + packer.flush()
    if len(raw) >= _BZ2_FROM:
        other = _BZ2 + bz2.compress(raw, 9)
        if len(other) < len(packed):
            return other
    return packed


def packed_job(job_json: str | None, job_z: bytes | memoryview | None) -> bytes:
    """A results row's job object in its packed form: ``job_z`` as stored, or the plain JSON
    text of a row written before results were packed, packed as it is (:func:`pack_text`)."""
    return pack_text(job_json or "null") if job_z is None else bytes(job_z)


def unpack_job(job_json: str | None, job_z: bytes | memoryview | None) -> dict[str, Any]:
    """The job object stored in a results row: packed (``job_z``), or plain JSON text (rows
    written before results were compressed, until the background pass packs them)."""
    if job_z is None:
        value: dict[str, Any] = json.loads(job_json or "null")
        return value
    data = bytes(job_z)
    tag, body = data[:1], data[1:]
    if tag == _ZLIB_DICT_V1:
        unpacker = zlib.decompressobj(-15, _dictionary())
        raw = unpacker.decompress(body) + unpacker.flush()
    elif tag == _BZ2:
        raw = bz2.decompress(body)
    else:
        raise ValueError(f"a stored job object in an unknown format (tag {tag!r})")
    value = json.loads(raw.decode("utf-8"))
    return value


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (Python text may hold lone surrogates, which not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
