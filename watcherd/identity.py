"""Content identity: the file hash and the content key that names a job at Gladia.

The key is a hash of the file's bytes and of the *meaning* of the options it is transcribed
with: two spellings of the same request (key order, defaults written out or left out, empty
lists, the user's own ``custom_metadata``, how the result is delivered) give one key, so the
same recording is never paid for twice because two folders spell their options differently.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from watcherd.errors import SourceError
from watcherd.journal import FileStat, Journal, Source
from watcherd.media import open_source, read_error

# wf2: keys of canonical options (this module). wf1: keys of the options' JSON text as written.
KEY_PREFIX = "wf2-"
LEGACY_KEY_PREFIX = "wf1-"
_CHUNK = 1024 * 1024

# Options that change how a job is labelled or delivered, never its transcript.
_NOT_CONTENT = frozenset({"custom_metadata", "callback", "callback_config", "callback_url",
                          "audio_url"})

# "A *_config object is read only when its flag is true" (docs/gladia-contract.md).
_FLAGGED_CONFIGS = {
    f"{flag}_config": flag
    for flag in ("diarization", "translation", "subtitles", "summarization", "pii_redaction",
                 "custom_vocabulary", "custom_spelling", "audio_to_llm")
}

# Documented defaults of *_config fields (docs/gladia-contract.md): writing one out changes nothing.
# audio_to_llm_config.model is left out on purpose: its default has changed over time, so an
# explicit model and no model may not mean the same job. subtitles_config.style "default" is
# the default by its name (not stated by the docs).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "language_config": {"languages": [], "code_switching": False},
    "translation_config": {"model": "base", "match_original_utterances": True, "lipsync": True,
                           "context_adaptation": True, "informal": False, "context": ""},
    "subtitles_config": {"formats": ["srt"], "style": "default"},
    "summarization_config": {"type": "general"},
    "pii_redaction_config": {"processed_text_type": "MARKER"},
}

# Documented defaults of plain options: `model = "solaria-1"` is the job Gladia runs without
# one, so it keys the same as no model (a switch to solaria-3 is a new key: a new job).
_TOP_DEFAULTS: dict[str, Any] = {"model": "solaria-1"}

# Lists whose order and repeats mean nothing: a set of languages, formats or entity types.
# (audio_to_llm prompts keep their order: the answers come back in it.)
_SET_FIELDS: dict[str, frozenset[str]] = {
    "language_config": frozenset({"languages"}),
    "translation_config": frozenset({"target_languages"}),
    "subtitles_config": frozenset({"formats"}),
    "pii_redaction_config": frozenset({"entity_types"}),
}


def options_json(options: Mapping[str, Any]) -> str:
    """The JSON text of a watch's options as stored in the journal (everything, sorted keys).

    This is what the create body is built from, so it keeps ``custom_metadata`` and every
    spelling; :func:`content_key` canonicalises it.
    """
    return json.dumps(options, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options reduced to what changes the transcript, in one spelling per meaning.

    Dropped: ``custom_metadata`` and delivery (``callback*``, ``audio_url``), false flags (every
    Gladia flag defaults to false), a ``*_config`` whose flag is not true, documented default
    values, nulls, and empty configs and lists whose absence means the same. Set-like lists
    are sorted without repeats; ``1.0`` is ``1``.
    """
    result: dict[str, Any] = {}
    for name, value in options.items():
        if name in _NOT_CONTENT or value is None or value is False:
            continue
        if name in _TOP_DEFAULTS and value == _TOP_DEFAULTS[name]:
            continue
        flag = _FLAGGED_CONFIGS.get(name)
        if flag is not None and options.get(flag) is not True:
            continue
        if name.endswith("_config") and isinstance(value, Mapping):
            value = _canonical_config(name, value)
            if not value:
                continue
        else:
            value = _plain(value)
        result[name] = value
    return result


def _canonical_config(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    defaults = _DEFAULTS.get(name, {})
    sets = _SET_FIELDS.get(name, frozenset())
    result: dict[str, Any] = {}
    for field, value in config.items():
        if value is None:
            continue
        if field in sets:
            value = _as_set(value)
        elif name == "custom_vocabulary_config" and field == "vocabulary":
            value = _vocabulary(value)
        elif name == "custom_spelling_config" and field == "spelling_dictionary":
            value = _spelling(value)
        else:
            value = _plain(value)
        if field in defaults and value == _plain(defaults[field]):
            continue
        result[field] = value
    if name == "language_config" and len(result.get("languages", ())) == 1:
        # "code_switching ... is ignored when one language is pinned" (docs/gladia-contract.md).
        result.pop("code_switching", None)
    return result


def _as_set(value: Any) -> Any:
    """A set-like list (or a single item, as entity_types may be) sorted without repeats."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return _plain(value)
    unique = {_text(_plain(item)): _plain(item) for item in items}
    return [unique[k] for k in sorted(unique)]


def _vocabulary(value: Any) -> Any:
    """Vocabulary entries as a set; a bare word is the entry ``{value = word}``."""
    if not isinstance(value, list):
        return _plain(value)
    entries = []
    for item in value:
        entry = {"value": item} if isinstance(item, str) else _plain(item)
        if isinstance(entry, dict):
            if isinstance(entry.get("pronunciations"), list):
                entry["pronunciations"] = _as_set(entry["pronunciations"])
                if not entry["pronunciations"]:
                    del entry["pronunciations"]
            entry = {k: v for k, v in entry.items() if v is not None}
        entries.append(entry)
    return _as_set(entries)


def _spelling(value: Any) -> Any:
    """A spelling dictionary whose variant lists are sets."""
    if not isinstance(value, Mapping):
        return _plain(value)
    return {key: _as_set(variants) for key, variants in value.items()}


def _plain(value: Any) -> Any:
    """A JSON value with integral floats as ints, recursively (``1.0`` means ``1``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@functools.lru_cache(maxsize=256)
def _canonical_options_json(options_text: str) -> str:
    """The canonical JSON of options stored as ``options_text`` (the journal's text).

    Cached: a folder's files share one options text, and a first start keys each of its
    100,000 files. Text that is not a JSON object cannot be interpreted: it stands for itself
    (it can never equal canonical JSON, which is always valid).
    """
    try:
        options = json.loads(options_text)
    except ValueError:
        return options_text
    if not isinstance(options, dict):
        return options_text
    return _text(canonical_options(options))


def content_key(sha256: str, options_text: str) -> str:
    """The key of one (content, meaning of the options) pair: at most one job per key.

    ``options_text`` is the journal's ``options_json`` text; it is canonicalised here.
    """
    canonical = _canonical_options_json(options_text)
    digest = hashlib.sha256(f"{sha256}\n{canonical}".encode("utf-8", "surrogatepass")
                            ).hexdigest()
    return KEY_PREFIX + digest[:40]


def legacy_content_key(sha256: str, options_text: str) -> str:
    """The key an older watcherd (scheme wf1) gave this content and options text.

    Outputs and journals written before the canonical scheme carry it; it is recognised so
    finished work is not paid for again.
    """
    digest = hashlib.sha256(f"{sha256}\n{options_text}".encode("utf-8", "surrogatepass")
                            ).hexdigest()
    return LEGACY_KEY_PREFIX + digest[:40]


def content_keys(sha256: str, options_text: str) -> tuple[str, str]:
    """Every key this content and options may carry: the current one, then the legacy one."""
    return content_key(sha256, options_text), legacy_content_key(sha256, options_text)


def hash_file(path: Path, expected: FileStat | None = None, *,
              first: Callable[[int], None] | None = None) -> tuple[str, FileStat]:
    """Stream ``path`` through sha256 and return the digest with the stat it belongs to.

    Only a regular file is read (see :func:`watcherd.media.open_source`): a FIFO, socket or
    device is refused, never opened for reading, and nothing blocks. Every ``OSError`` becomes
    a :class:`SourceError` whose ``transient`` flag is :func:`watcherd.fserrors.classify`'s
    decision. Raises a transient :class:`SourceError` when the file changed while it was read,
    so the caller settles it again instead of trusting a hash of half a file.

    ``first`` is run on the open descriptor before anything is read (the settle's limit
    checks: one open per file, not one for the checks and one for the hash).
    """
    with open_source(path) as fd:
        try:
            if first is not None:
                first(fd)
                os.lseek(fd, 0, os.SEEK_SET)
            before = FileStat.of(os.fstat(fd))
            if expected is not None and not before.agrees(expected):
                raise SourceError("changed since it was last seen", transient=True)
            h = hashlib.sha256()
            while chunk := os.read(fd, _CHUNK):
                h.update(chunk)
            after = FileStat.of(os.fstat(fd))
        except OSError as exc:
            raise read_error(exc) from None
    if after != before:
        raise SourceError("changed while it was being hashed", transient=True)
    return h.hexdigest(), after


def source_keys(source: Source) -> tuple[str, ...]:
    """The keys a settled source's result or leader may be stored under: its own first.

    Journals written before the canonical scheme keep results and in-flight rows under the
    legacy key; looking under both means the upgrade never pays twice for finished work.
    """
    if source.content_key is None:
        return ()
    keys = [source.content_key]
    if source.sha256 is not None:
        keys += [k for k in content_keys(source.sha256, source.options_json) if k not in keys]
    return tuple(keys)


def stored_result(journal: Journal, source: Source) -> dict[str, Any] | None:
    """The finished job the journal holds for this source's content, under any of its keys."""
    for key in source_keys(source):
        job = journal.result_for(key)
        if job is not None:
            return job
    return None

