"""Transcript outputs: render a finished job as txt/json/srt/vtt/md and write them atomically.

A "job" is the full job object as ``GET /v2/pre-recorded/{id}`` returns it (the local engine
produces the same shape). Rendering is pure; writing goes through :func:`atomic_write` so a
reader never sees half a transcript, and temp files carry :data:`TEMP_MARKER` so the watcher
never mistakes them (or the outputs) for recordings.

Add-ons add their own files whatever the formats: ``NAME.<lang>.txt`` per translation and
``NAME.summary.md`` for a summary. An add-on that failed (``success: false``) is logged and
noted in ``NAME.md``; the transcript is written all the same. With PII redaction Gladia
redacts the transcription itself, so every output is already redacted.

Any source name works: outputs keep the raw stem (bytes that are not UTF-8 included), and a
stem too long for ``NAME.<lang>.txt`` plus the temp file to fit 255 bytes is shortened
deterministically (:func:`output_base`). Outputs take the source's read/write permission bits
(``mode=``). Any JSON-shaped job renders, replacing what cannot be encoded (U+FFFD in text,
``\\uXXXX`` in NAME.json), or is refused with a ValueError before anything is written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog

from watcherd.display import json_safe, printable, utf8_text

log = structlog.get_logger("watcherd.outputs")

FORMATS: tuple[str, ...] = ("txt", "json", "srt", "vtt", "md")
SUMMARY_SUFFIX: str = "summary.md"
TEMP_MARKER: str = ".watcherd-tmp"
OUTPUT_SUFFIXES: frozenset[str] = frozenset({".txt", ".json", ".srt", ".vtt", ".md"})

# Subtitle readability limits: two rows of 42 characters, at most 7 seconds on screen.
MAX_CUE_SECONDS: float = 7.0
MAX_LINE_CHARS: int = 42
MAX_CUE_LINES: int = 2

# 99:59:59.999, the largest time the HH:MM:SS.mmm stamp can show.
_MAX_MS = ((99 * 60 + 59) * 60 + 59) * 1000 + 999
_MAX_CUE_MS = round(MAX_CUE_SECONDS * 1000)
# Language codes come from the remote job and become part of a file name: accept only
# code-like strings so a hostile or broken response cannot write outside the folder. Always
# matched whole (fullmatch): with match, "$" also matches before a final newline.
_LANG_MAX = 16
_LANG_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{_LANG_MAX - 1}}}")
# Most filesystems cap one name at 255 bytes; the temp name adds a prefix and a suffix.
_NAME_MAX = 255
_TEMP_RANDOM_HEX = 12
# What atomic_write adds around an output's name for its temp file: "." NAME ".watcherd-tmp-" HEX.
_TEMP_OVERHEAD = len(f".{TEMP_MARKER}-") + _TEMP_RANDOM_HEX
# The longest suffix any job can add to a base: a translation such as ".<16-char lang>.txt".
_LONGEST_SUFFIX = max(
    len(f".{'x' * _LANG_MAX}.{fmt}") for fmt in ("txt", "srt", "vtt")
)
# The longest base name (in bytes) for which every output AND its temp file fit in 255 bytes,
# whatever the job holds: 255 - 21 - 27 = 207. Longer bases are shortened (see _fit_name).
BASE_MAX_BYTES: int = _NAME_MAX - _LONGEST_SUFFIX - _TEMP_OVERHEAD
# A shortened base ends in "~" and this many hex digits of the SHA-256 of the full name.
_HASH_CHARS = 12
# Job times are clamped to this many seconds (about 31 years), so that sums, differences and
# products of any values a job holds stay finite.
_TIME_LIMIT = 1e9


# -- names -------------------------------------------------------------------------------


def is_output_or_temp(path: Path) -> bool:
    """True for our temp files and for any file whose suffix marks it as a transcript output."""
    name = path.name
    return TEMP_MARKER in name or path.suffix.lower() in OUTPUT_SUFFIXES


def _fs_bytes(name: str) -> bytes:
    """The bytes the filesystem sees for ``name``; ValueError when no file can have it."""
    try:
        return os.fsencode(name)
    except UnicodeEncodeError as exc:
        # A lone surrogate that surrogateescape did not produce: no file name decodes to it.
        raise ValueError(
            f"{printable(name)} cannot be a file name (it holds characters that do not encode "
            "to bytes); rename the source"
        ) from exc


def _cut(name: str, room: int) -> str:
    """The longest prefix of ``name`` whose bytes fit in ``room``, cut between characters.

    A character is a whole UTF-8 sequence or one undecodable byte (a surrogate escape), so
    the prefix's bytes are a prefix of the original bytes and decode back to the same text.
    """
    used = 0
    for index, char in enumerate(name):
        used += len(_fs_bytes(char))
        if used > room:
            return name[:index]
    return name


def _fit_name(name: str) -> str:
    """``name`` itself when its outputs fit the filesystem, else a deterministic short form.

    The short form is the longest prefix of ``name`` that fits (cut between characters), "~",
    and the first 12 hex digits of the SHA-256 of the whole name's bytes: the same name gives
    the same short form, and distinct long names stay distinct.
    """
    raw = _fs_bytes(name)
    if len(raw) <= BASE_MAX_BYTES:
        return name
    tail = "~" + hashlib.sha256(raw).hexdigest()[:_HASH_CHARS]
    return _cut(name, BASE_MAX_BYTES - len(tail)) + tail


def output_base_candidates(source: Path) -> list[Path]:
    """The bases outputs of ``source`` take unless another source owns them: stem, then name.

    Each is shortened by :func:`_fit_name` when needed, so this also tells where outputs of a
    long name are found after the journal is lost.
    """
    # "..wav" has the stem "." and "...wav" the stem "..": names of folders, not files.
    by_stem = source.suffix and source.stem not in (".", "..")
    found = [source.with_name(_fit_name(source.stem))] if by_stem else []
    found.append(source.with_name(_fit_name(source.name)))
    return found


def output_base(source: Path, *, taken: Callable[[Path], bool]) -> Path:
    """The path outputs are named after: DIR/STEM, or DIR/NAME when another source owns DIR/STEM.

    Any name works: raw bytes that are not UTF-8, newlines, quotes, ':'. A base longer than
    :data:`BASE_MAX_BYTES` bytes is shortened deterministically (see :func:`_fit_name`), so
    every output (the longest suffix a job can produce, ".<lang>.txt") and its temp file fit
    the 255-byte name limit whatever the job holds; the formats are not needed. The caller
    records the result (the journal's ``output_base``) and passes it to :func:`write_outputs`.
    In the rare case that both are owned (a suffix-less "talk" after "talk.wav" took "talk"),
    "NAME~1", "NAME~2", ... are tried, so two sources never share outputs.
    """
    candidates = output_base_candidates(source)
    for candidate in candidates:
        if not taken(candidate):
            return candidate
    for n in range(1, 100):
        candidate = source.with_name(_fit_name(f"{source.name}~{n}"))
        if not taken(candidate):
            return candidate
    raise ValueError(
        f"every output name for {printable(source)} is used by another source; rename it"
    )


def base_fits(base: Path) -> bool:
    """True when every output of ``base`` (and its temp file) fits the 255-byte name limit.

    A base recorded before long names were shortened may not; compute a new one for it.
    """
    try:
        return len(_fs_bytes(base.name)) <= BASE_MAX_BYTES
    except ValueError:
        return False


def _with_suffix(base: Path, suffix: str) -> Path:
    # base may itself contain dots (talk.wav), so append rather than use Path.with_suffix.
    return base.with_name(f"{base.name}.{suffix}")


def _checked_formats(formats: Sequence[str]) -> list[str]:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(
            f"unknown output format(s) {', '.join(map(repr, unknown))}: "
            f"expected any of {', '.join(FORMATS)}"
        )
    return list(dict.fromkeys(formats))


def output_paths(base: Path, formats: Sequence[str], job: Mapping[str, Any]) -> list[Path]:
    """Every path :func:`write_outputs` would write for this job (add-ons too), unwritten."""
    job = _job(job)
    wanted = _checked_formats(formats)
    paths = [_with_suffix(base, fmt) for fmt in wanted]
    paths += [_with_suffix(base, suffix) for suffix, _ in _translation_plan(job, wanted)]
    if _summary_result(job) is not None:
        paths.append(_with_suffix(base, SUMMARY_SUFFIX))
    return paths


# -- reading the job tolerantly ----------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if isinstance(value, int) and abs(value) > _TIME_LIMIT:
        return _TIME_LIMIT if value > 0 else -_TIME_LIMIT  # float() of it would overflow
    if not math.isfinite(value):
        return default
    return max(-_TIME_LIMIT, min(_TIME_LIMIT, float(value)))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _job(job: Any) -> Mapping[str, Any]:
    """The job itself when it is a JSON object; ValueError for anything else."""
    if not isinstance(job, Mapping):
        raise ValueError(
            f"the job is a JSON {_json_kind(job)}, not an object: nothing can be rendered from it"
        )
    return job


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _json_text(value: Any, *, indent: int | None = None) -> str:
    """``value`` as JSON (non-ASCII kept); ValueError when it nests too deep to write."""
    try:
        return json.dumps(value, ensure_ascii=False, indent=indent)
    except RecursionError as exc:
        raise ValueError("the job nests too deeply to be written as JSON") from exc


def _transcription(job: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_mapping(job.get("result")).get("transcription"))


def _utterances(transcription: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = [u for u in _list(transcription.get("utterances")) if isinstance(u, Mapping)]
    # Multichannel results may list each channel in turn; readers want one timeline.
    return sorted(found, key=lambda u: _number(u.get("start")))


# Speaker numbers beyond this are not speakers (and a huge int cannot even become text).
_MAX_SPEAKER = 10_000


def _speaker_number(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_SPEAKER:
        return None
    return value


def _speaker(utterance: Mapping[str, Any]) -> int | None:
    return _speaker_number(utterance.get("speaker"))


def _diarized(utterances: Sequence[Mapping[str, Any]]) -> bool:
    return any(_speaker(u) is not None for u in utterances)


# -- txt and json ------------------------------------------------------------------------


def _txt_of(transcription: Mapping[str, Any]) -> str:
    utterances = _utterances(transcription)
    if not utterances:
        full = _text(transcription.get("full_transcript")).strip()
        return f"{full}\n" if full else ""
    diarized = _diarized(utterances)
    lines: list[str] = []
    for utterance in utterances:
        text = " ".join(_text(utterance.get("text")).split())
        if not text:
            continue
        speaker = _speaker(utterance)
        if diarized and speaker is not None:
            text = f"Speaker {speaker + 1}: {text}"
        lines.append(text)
    return "".join(f"{line}\n" for line in lines)


def render_txt(job: Mapping[str, Any]) -> str:
    """The transcript as text: one utterance per line, with "Speaker N: " when diarized."""
    return utf8_text(_txt_of(_transcription(_job(job))))


def render_json(job: Mapping[str, Any]) -> str:
    """The job object as given, as indented UTF-8 JSON, with callback URLs shortened.

    A callback URL may carry a secret token (watcherd's own listener puts one there), and
    transcripts get shared: its path and query are replaced by "[redacted]". Lossless
    otherwise: a lone surrogate (a string cut mid-emoji) is written as its ``\\uXXXX`` escape,
    so the file is valid UTF-8 and ``json.loads`` gives the same job back.
    """
    return json_safe(_json_text(scrub_job(_job(job)), indent=2)) + "\n"


def scrub_job(job: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``job`` whose echoed callback URLs keep only their scheme and host."""
    copied = dict(_job(job))
    params = job.get("request_params")
    if not isinstance(params, Mapping):
        return copied
    new_params = dict(params)
    config = params.get("callback_config")
    if isinstance(config, Mapping) and isinstance(config.get("url"), str):
        new_params["callback_config"] = {**config, "url": _scrub_url(config["url"])}
    if isinstance(params.get("callback_url"), str):
        new_params["callback_url"] = _scrub_url(params["callback_url"])
    copied["request_params"] = new_params
    return copied


def _scrub_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. a malformed IPv6 host: keep nothing of it
        return "[redacted]"
    if not parts.scheme or not host:
        return "[redacted]"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/[redacted]"


# -- subtitles ---------------------------------------------------------------------------


@dataclass
class _Cue:
    start_ms: int
    end_ms: int
    text: str


@dataclass(frozen=True)
class _Word:
    text: str
    start: float
    end: float


def _ms(seconds: float) -> int:
    return max(0, min(_MAX_MS, round(seconds * 1000)))


def _stamp(ms: int, separator: str) -> str:
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


def _words_of(utterance: Mapping[str, Any]) -> list[_Word]:
    """The utterance's words, cleaned; synthesised from its text when it has no word times."""
    start = _number(utterance.get("start"))
    end = max(start, _number(utterance.get("end"), start))
    words: list[_Word] = []
    for raw in _list(utterance.get("words")):
        if not isinstance(raw, Mapping):
            continue
        text = " ".join(_text(raw.get("word")).split())
        if not text:
            continue
        w_start = _number(raw.get("start"), start)
        words.append(_Word(text, w_start, max(w_start, _number(raw.get("end"), w_start))))
    if words:
        return [piece for word in words for piece in _split_long_word(word)]
    # No word times: spread the text over the utterance by character count, so a long
    # utterance still splits into readable cues and a short one stays a single cue.
    tokens = _text(utterance.get("text")).split()
    total = sum(len(t) + 1 for t in tokens)
    spread: list[_Word] = []
    done = 0
    for token in tokens:
        t_start = start + (end - start) * done / total
        done += len(token) + 1
        spread.append(_Word(token, t_start, start + (end - start) * done / total))
    return [piece for word in spread for piece in _split_long_word(word)]


def _split_long_word(word: _Word) -> list[_Word]:
    """A word wider than a row (a URL, say) as row-sized pieces sharing its time span."""
    pieces = _hard_split(word.text)
    if len(pieces) == 1:
        return [word]
    step = (word.end - word.start) / len(word.text)
    return [
        _Word(piece, word.start + step * i * MAX_LINE_CHARS,
              word.start + step * (i * MAX_LINE_CHARS + len(piece)))
        for i, piece in enumerate(pieces)
    ]


def _hard_split(token: str) -> list[str]:
    return [token[i : i + MAX_LINE_CHARS] for i in range(0, len(token), MAX_LINE_CHARS)] or [""]


def _lines(tokens: Sequence[str]) -> list[str]:
    """Break tokens into as few rows of <= 42 characters as possible, balancing two rows."""
    pieces = [piece for token in tokens for piece in _hard_split(token)]
    joined = " ".join(pieces)
    if len(joined) <= MAX_LINE_CHARS:
        return [joined]
    best: tuple[int, int] | None = None
    for cut in range(1, len(pieces)):
        first, second = " ".join(pieces[:cut]), " ".join(pieces[cut:])
        longest = max(len(first), len(second))
        if longest <= MAX_LINE_CHARS and (best is None or longest < best[0]):
            best = (longest, cut)
    if best is not None:
        cut = best[1]
        return [" ".join(pieces[:cut]), " ".join(pieces[cut:])]
    rows: list[str] = []
    for piece in pieces:
        if rows and len(rows[-1]) + 1 + len(piece) <= MAX_LINE_CHARS:
            rows[-1] += " " + piece
        else:
            rows.append(piece)
    return rows


def _cues_of_utterance(words: Sequence[_Word], prefix: str) -> Iterator[_Cue]:
    prefix_tokens = [prefix.strip()] if prefix else []
    current: list[_Word] = []

    def cue_of(group: Sequence[_Word]) -> _Cue:
        text = "\n".join(_lines(prefix_tokens + [w.text for w in group]))
        return _Cue(_ms(group[0].start), _ms(group[-1].end), text)

    for word in words:
        if current:
            candidate = prefix_tokens + [w.text for w in current] + [word.text]
            too_long = len(_lines(candidate)) > MAX_CUE_LINES
            too_slow = _ms(word.end) - _ms(current[0].start) > _MAX_CUE_MS
            if too_long or too_slow:
                yield cue_of(current)
                current = []
        current.append(word)
    if current:
        yield cue_of(current)


def _cues(transcription: Mapping[str, Any]) -> list[_Cue]:
    utterances = _utterances(transcription)
    diarized = _diarized(utterances)
    raw: list[_Cue] = []
    for utterance in utterances:
        speaker = _speaker(utterance)
        prefix = f"[Speaker {speaker + 1}] " if diarized and speaker is not None else ""
        raw.extend(_cues_of_utterance(_words_of(utterance), prefix))
    raw.sort(key=lambda c: c.start_ms)
    # Make every cue visible (start < end), never longer than the limit, and never
    # overlapping the one before it: overlapping speech shortens the earlier cue.
    cues: list[_Cue] = []
    for cue in raw:
        start = cue.start_ms
        if cues:
            prev = cues[-1]
            if start < prev.end_ms:
                prev.end_ms = max(start, prev.start_ms + 1)
                start = max(start, prev.end_ms)
        end = min(max(cue.end_ms, start + 1), start + _MAX_CUE_MS)
        if end > _MAX_MS:
            if start >= _MAX_MS:
                continue  # beyond what a stamp can show
            end = _MAX_MS
        cues.append(_Cue(start, end, cue.text))
    return cues


def _gladia_subtitles(transcription: Mapping[str, Any], fmt: str) -> str | None:
    for entry in _list(transcription.get("subtitles")):
        entry = _mapping(entry)
        text = entry.get("subtitles")
        if entry.get("format") == fmt and isinstance(text, str) and text.strip():
            return text
    return None


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _srt_of(transcription: Mapping[str, Any]) -> str:
    given = _gladia_subtitles(transcription, "srt")
    if given is not None:
        return given
    return "".join(
        f"{n}\n{_stamp(c.start_ms, ',')} --> {_stamp(c.end_ms, ',')}\n{c.text}\n\n"
        for n, c in enumerate(_cues(transcription), start=1)
    )


def _vtt_of(transcription: Mapping[str, Any]) -> str:
    given = _gladia_subtitles(transcription, "vtt")
    if given is not None:
        # A player rejects a VTT without its header; Gladia's always has one, but be sure.
        return given if given.lstrip("\ufeff").startswith("WEBVTT") else f"WEBVTT\n\n{given}"
    return "WEBVTT\n\n" + "".join(
        f"{_stamp(c.start_ms, '.')} --> {_stamp(c.end_ms, '.')}\n{_vtt_escape(c.text)}\n\n"
        for c in _cues(transcription)
    )


def render_srt(job: Mapping[str, Any]) -> str:
    """SubRip subtitles: Gladia's own when present, else cues generated from the utterances."""
    return utf8_text(_srt_of(_transcription(_job(job))))


def render_vtt(job: Mapping[str, Any]) -> str:
    """WebVTT subtitles: Gladia's own when present, else cues generated from the utterances."""
    return utf8_text(_vtt_of(_transcription(_job(job))))


# -- add-ons: failures, summary, and the Markdown report ------------------------------------


@dataclass(frozen=True)
class AddonFailure:
    """One Gladia add-on that delivered nothing (or not everything): which, and why."""

    addon: str
    message: str

    def describe(self) -> str:
        """One line for a person: "the summarization add-on failed: ..."."""
        # Logged and written into NAME.md: never a lone surrogate from Gladia's text.
        return utf8_text(f"the {self.addon.replace('_', ' ')} add-on failed: {self.message}")


# result keys that are not add-on blocks.
_NOT_ADDONS = frozenset({"metadata", "transcription"})
# Markdown characters that would change how transcript text renders.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
_MD_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+[.)])")
_ADDON_FLAGS = (
    "diarization", "translation", "subtitles", "summarization", "pii_redaction",
    "sentiment_analysis", "named_entity_recognition", "sentences", "punctuation_enhanced",
    "custom_vocabulary", "custom_spelling", "audio_to_llm",
)  # fmt: skip


def _addon_error(error: Any) -> str:
    error = _mapping(error)
    message = " ".join(_text(error.get("message")).split())
    extras = [x for x in (_text(error.get("exception")).strip(),) if x]
    status = error.get("status_code")
    if isinstance(status, int) and not isinstance(status, bool):
        extras.append(f"status {status}")
    text = message or "Gladia gave no reason"
    return f"{text} ({', '.join(extras)})" if extras else text


def addon_failures(job: Mapping[str, Any]) -> list[AddonFailure]:
    """Every add-on of a done job that failed, whole (``success: false``) or in part."""
    job = _job(job)
    result = _mapping(job.get("result"))
    targets = _list(_mapping(_mapping(job.get("request_params")).get("translation_config"))
                    .get("target_languages"))
    failures: list[AddonFailure] = []
    for name, raw in result.items():
        block = _mapping(raw)
        if name in _NOT_ADDONS or not block:
            continue
        if block.get("success") is False:
            failures.append(AddonFailure(str(name), _addon_error(block.get("error"))))
            continue
        for index, entry in enumerate(_list(block.get("results"))):
            entry = _mapping(entry)
            if name == "translation" and entry.get("error"):
                languages = _list(entry.get("languages")) or targets[index : index + 1]
                lang = languages[0] if languages and isinstance(languages[0], str) else "?"
                failures.append(AddonFailure(
                    "translation", f"to {lang}: {_addon_error(entry.get('error'))}"))
            elif name == "audio_to_llm" and entry.get("success") is False:
                prompt = _text(_mapping(entry.get("results")).get("prompt"))
                label = f'prompt "{prompt}"' if prompt else f"prompt {index + 1}"
                failures.append(AddonFailure(
                    "audio_to_llm", f"{label}: {_addon_error(entry.get('error'))}"))
    return failures


def _summary_result(job: Mapping[str, Any]) -> Any:
    """The summarization results when the add-on succeeded with something, else None."""
    block = _mapping(_mapping(job.get("result")).get("summarization"))
    if block.get("success") is False:
        return None
    results = block.get("results")
    if results is None or (isinstance(results, str) and not results.strip()):
        return None
    if isinstance(results, list | dict) and not results:
        return None
    return results


def _source_name(job: Mapping[str, Any], fallback: str | None) -> str:
    # Gladia echoes whatever multipart filename was sent, which may carry folders.
    name = _text(_mapping(job.get("file")).get("filename")).replace("\\", "/").rsplit("/", 1)[-1]
    return name or (_readable_name(fallback) if fallback else "") or "Transcript"


def _readable_name(name: str) -> str:
    """A file name as text: bytes that are not UTF-8 become U+FFFD, like a file manager shows."""
    try:
        return os.fsencode(name).decode("utf-8", errors="replace")
    except UnicodeEncodeError:
        return utf8_text(name)


def _md_inline(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _md_cell(value: Any) -> str:
    return _md_inline(value if isinstance(value, str) else _json_text(value))


def _md_paragraphs(text: str, *, bullets: bool = False) -> list[str]:
    """Plain text as Markdown paragraphs that render literally (bullet lines kept if asked)."""
    out: list[str] = []
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            if out and out[-1]:
                out.append("")
            continue
        if bullets and re.match(r"^[-*\u2022]\s+", line):
            out.append("- " + _md_inline(re.sub(r"^[-*\u2022]\s+", "", line)))
            continue
        escaped = _md_inline(line)
        out.append(_MD_LINE_START.sub(r"\1\\\2", escaped))
        if not bullets:
            out.append("")
    while out and not out[-1]:
        out.pop()
    return out


def _md_raw(value: Any) -> list[str]:
    """A value whose shape we do not know, kept as JSON in a fenced block."""
    text = _json_text(value, indent=2)
    fence = "```"
    while fence in text:
        fence += "`"
    return [f"{fence}json", text, fence]


def _clock(seconds: float) -> str:
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _speaker_label(value: Any) -> str:
    number = _speaker_number(value)
    return "" if number is None else f"Speaker {number + 1}"


def _md_details(job: Mapping[str, Any], speakers: Sequence[int]) -> list[str]:
    result = _mapping(job.get("result"))
    metadata = _mapping(result.get("metadata"))
    transcription = _mapping(result.get("transcription"))
    params = _mapping(job.get("request_params"))
    duration = _number(metadata.get("audio_duration"),
                       _number(_mapping(job.get("file")).get("audio_duration")))
    rows: list[tuple[str, str]] = [("Duration", _clock(duration))]
    languages = [x for x in _list(transcription.get("languages")) if isinstance(x, str)]
    if languages:
        rows.append(("Language" if len(languages) == 1 else "Languages",
                     ", ".join(_md_inline(x) for x in languages)))
    if speakers:
        rows.append(("Speakers", str(len(speakers))))
    addons = [flag.replace("_", " ") for flag in _ADDON_FLAGS if params.get(flag) is True]
    if addons:
        rows.append(("Add-ons", ", ".join(addons)))
    if params.get("pii_redaction") is True:
        config = _mapping(params.get("pii_redaction_config"))
        kinds = config.get("entity_types")
        kinds_text = (", ".join(k for k in kinds if isinstance(k, str)) if isinstance(kinds, list)
                      else _text(kinds))
        shown = _text(config.get("processed_text_type")) or "MARKER"
        bits = [_md_inline(kinds_text)] if kinds_text else []
        bits.append(f"shown as {_md_inline(shown)}")
        rows.append(("Personal data", "redacted by Gladia in this transcript and every output "
                     f"({'; '.join(bits)})"))
    job_id = _text(job.get("id"))
    if job_id:
        request_id = _text(job.get("request_id"))
        rows.append(("Job", f"`{job_id}`" + (f" (request `{request_id}`)" if request_id else "")))
    completed = _text(job.get("completed_at"))
    if completed:
        rows.append(("Completed", _md_inline(completed)))
    return [f"- **{label}:** {value}" for label, value in rows]


def _md_speakers(utterances: Sequence[Mapping[str, Any]]) -> list[str]:
    talk: dict[int, float] = {}
    turns: dict[int, int] = {}
    for utterance in utterances:
        speaker = _speaker(utterance)
        if speaker is None:
            continue
        start = _number(utterance.get("start"))
        talk[speaker] = talk.get(speaker, 0.0) + max(0.0, _number(utterance.get("end"), start)
                                                    - start)
        turns[speaker] = turns.get(speaker, 0) + 1
    total = sum(talk.values()) or 1.0
    lines = ["| Speaker | Speaking time | Share | Turns |", "|---|---|---|---|"]
    for speaker in sorted(talk):
        lines.append(f"| {_speaker_label(speaker)} | {_clock(talk[speaker])} | "
                     f"{round(100 * talk[speaker] / total)}% | {turns[speaker]} |")
    return lines


def _md_transcript(transcription: Mapping[str, Any]) -> list[str]:
    utterances = _utterances(transcription)
    lines: list[str] = []
    diarized = _diarized(utterances)
    for utterance in utterances:
        text = _md_inline(_text(utterance.get("text")))
        if not text:
            continue
        label = _speaker_label(utterance.get("speaker")) if diarized else ""
        stamp = f"[{_clock(_number(utterance.get('start')))}]"
        lines += [f"**{stamp} {label}:** {text}" if label else f"**{stamp}** {text}", ""]
    if not lines:
        full = _text(transcription.get("full_transcript")).strip()
        lines = [*_md_paragraphs(full), ""] if full else ["_No speech was recognised._", ""]
    return lines[:-1]


def _md_sentiment(results: Any) -> list[str]:
    items = [_mapping(x) for x in _list(results)]
    if not items or not all(items):
        return _md_paragraphs(results) if isinstance(results, str) else _md_raw(results)
    lines = ["| Time | Speaker | Sentiment | Emotion | Text |", "|---|---|---|---|---|"]
    for item in items:
        lines.append(
            f"| {_clock(_number(item.get('start')))} | {_speaker_label(item.get('speaker'))} | "
            f"{_md_cell(item.get('sentiment', ''))} | {_md_cell(item.get('emotion', ''))} | "
            f"{_md_cell(item.get('text', ''))} |"
        )
    return lines


def _md_entities(results: Any) -> list[str]:
    items = [_mapping(x) for x in _list(results)]
    if not items or not all(items):
        return _md_paragraphs(results) if isinstance(results, str) else _md_raw(results)
    lines = ["| Type | Text | Time |", "|---|---|---|"]
    for item in items:
        lines.append(f"| {_md_cell(item.get('entity_type', ''))} | "
                     f"{_md_cell(item.get('text', ''))} | "
                     f"{_clock(_number(item.get('start')))} |")
    return lines


def _md_answers(results: Any) -> list[str]:
    lines: list[str] = []
    for index, entry in enumerate(_list(results), start=1):
        entry = _mapping(entry)
        if entry.get("success") is False:
            continue  # listed under Notes
        answer = _mapping(entry.get("results"))
        prompt = _text(answer.get("prompt")) or f"Prompt {index}"
        response = answer.get("response")
        lines += [f"### {_md_inline(prompt)}", ""]
        lines += (_md_paragraphs(response, bullets=True) if isinstance(response, str)
                  else _md_raw(response))
        lines.append("")
    if not lines and results:
        return _md_raw(results)
    return lines[:-1]


def _addon_results(job: Mapping[str, Any], name: str) -> Any:
    block = _mapping(_mapping(job.get("result")).get(name))
    if block.get("success") is False:
        return None
    results = block.get("results")
    return results if results not in (None, "", [], {}) else None


def render_md(job: Mapping[str, Any], *, title: str | None = None) -> str:
    """A readable Markdown report: details, notes, summary, speakers, transcript, add-ons."""
    return utf8_text(_md_of(_job(job), title))


def _md_of(job: Mapping[str, Any], title: str | None) -> str:
    transcription = _transcription(job)
    utterances = _utterances(transcription)
    speakers = sorted({s for u in utterances if (s := _speaker(u)) is not None})
    lines = [f"# {_md_inline(_source_name(job, title))}", "", *_md_details(job, speakers), ""]
    failures = addon_failures(job)
    if failures:
        lines += ["## Notes", ""]
        lines += [f"- {_md_inline(f.describe())}; the transcript is complete." for f in failures]
        lines.append("")
    summary = _summary_result(job)
    if summary is not None:
        lines += ["## Summary", ""]
        lines += (_md_paragraphs(summary, bullets=True) if isinstance(summary, str)
                  else _md_raw(summary))
        lines.append("")
    if speakers:
        lines += ["## Speakers", "", *_md_speakers(utterances), ""]
    lines += ["## Transcript", "", *_md_transcript(transcription), ""]
    translations = [(s.split(".", 1)[0], entry) for s, entry in _translation_plan(job, ["txt"])]
    if translations:
        lines += ["## Translations", ""]
        for lang, entry in translations:
            lines += [f"### {_md_inline(lang)}", "", *_md_transcript(entry), ""]
    for name, heading, render_block in (
        ("sentiment_analysis", "Sentiment", _md_sentiment),
        ("named_entity_recognition", "Named entities", _md_entities),
        ("audio_to_llm", "Answers", _md_answers),
    ):
        results = _addon_results(job, name)
        if results is not None:
            block_lines = render_block(results)
            if block_lines:
                lines += [f"## {heading}", "", *block_lines, ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def render_summary(job: Mapping[str, Any], *, title: str | None = None) -> str | None:
    """NAME.summary.md: the summarization add-on's result, or None when there is none."""
    summary = _summary_result(_job(job))
    if summary is None:
        return None
    body = (_md_paragraphs(summary, bullets=True) if isinstance(summary, str)
            else _md_raw(summary))
    heading = f"# Summary of {_md_inline(_source_name(job, title))}"
    return utf8_text("\n".join([heading, "", *body]) + "\n")


_RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "txt": render_txt,
    "json": render_json,
    "srt": render_srt,
    "vtt": render_vtt,
    "md": render_md,
}
_TRANSCRIPTION_RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "txt": _txt_of,
    "srt": _srt_of,
    "vtt": _vtt_of,
}


def render(fmt: str, job: Mapping[str, Any]) -> str:
    """The job rendered in one of :data:`FORMATS`; ValueError for any other format."""
    _checked_formats([fmt])
    return _RENDERERS[fmt](job)


# -- translations ------------------------------------------------------------------------


def _translation_plan(
    job: Mapping[str, Any], formats: Sequence[str]
) -> list[tuple[str, Mapping[str, Any]]]:
    """(suffix such as "fr.srt", translated transcription) for every translation output."""
    block = _mapping(_mapping(job.get("result")).get("translation"))
    if block.get("success") is False:
        return []
    plan: list[tuple[str, Mapping[str, Any]]] = []
    seen: set[str] = set()
    for entry in _list(block.get("results")):
        if not isinstance(entry, Mapping) or entry.get("error"):
            continue
        languages = _list(entry.get("languages"))
        lang = languages[0] if languages else None
        if not isinstance(lang, str) or not _LANG_RE.fullmatch(lang) or lang in seen:
            continue
        seen.add(lang)
        plan.append((f"{lang}.txt", entry))
        plan.extend((f"{lang}.{fmt}", entry) for fmt in ("srt", "vtt") if fmt in formats)
    return plan


def render_translations(job: Mapping[str, Any], formats: Sequence[str]) -> dict[str, str]:
    """Each usable translation rendered: suffix like "fr.txt" or "fr.srt" -> text."""
    rendered: dict[str, str] = {}
    for suffix, entry in _translation_plan(_job(job), formats):
        fmt = suffix.rsplit(".", 1)[1]
        rendered[suffix] = utf8_text(_TRANSCRIPTION_RENDERERS[fmt](entry))
    return rendered


# -- writing -----------------------------------------------------------------------------


def _temp_name(name: str) -> str:
    """A hidden, marked, random temp name for ``name``, within the 255-byte name limit.

    Outputs of a base from :func:`output_base` always fit whole (``.NAME.watcherd-tmp-HEX``,
    which the stale-temp cleanup looks for); any other long name is cut between characters
    (by bytes, so a long non-ASCII or non-UTF-8 name still fits).
    """
    tail = f"{TEMP_MARKER}-{secrets.token_hex(_TEMP_RANDOM_HEX // 2)}"
    return f".{_cut(name, _NAME_MAX - len(tail) - 1)}{tail}"


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
    temp = _temp_name(name)
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


def _shown(value: Any) -> str:
    """A job field for an error message: its repr, on one line and at most 80 characters."""
    text = printable(repr(value))
    return text if len(text) <= 80 else f"{text[:77]}..."


def write_outputs(
    base: Path, formats: Sequence[str], job: Mapping[str, Any], *, mode: int | None = None,
    folder: int | None = None,
) -> list[Path]:
    """Render every output of a done job, then write each atomically; returns the paths.

    ``mode`` is the source's ``st_mode``: outputs get its read/write bits (:func:`file_mode`).
    ``folder``: a descriptor of ``base``'s folder to write in (see :func:`atomic_write`).
    Any JSON-shaped job either renders (text that cannot be encoded is replaced) or raises
    ValueError before anything is written; nothing here raises UnicodeEncodeError.
    """
    job = _job(job)
    status = job.get("status")
    if status != "done":
        raise ValueError(
            f"job {_shown(job.get('id'))} is {_shown(status)}, not 'done': nothing to write")
    if not isinstance(job.get("result"), Mapping):
        raise ValueError(
            f"job {_shown(job.get('id'))} is done but has no result: nothing to write")
    wanted = _checked_formats(formats)
    # Render everything before touching the disk, so a rendering bug writes nothing at all.
    rendered = [
        (_with_suffix(base, fmt), render_md(job, title=base.name) if fmt == "md"
         else render(fmt, job))
        for fmt in wanted
    ]
    rendered += [
        (_with_suffix(base, suffix), text)
        for suffix, text in render_translations(job, wanted).items()
    ]
    summary = render_summary(job, title=base.name)
    if summary is not None:
        rendered.append((_with_suffix(base, SUMMARY_SUFFIX), summary))
    for failure in addon_failures(job):
        log.warning("addon_failed", job_id=job.get("id"), addon=failure.addon,
                    error=failure.message, outputs=str(base),
                    note="the transcript is written without this add-on's result")
    for path, text in rendered:
        atomic_write(path, text.encode("utf-8"), mode=mode, folder=folder)
    return [path for path, _ in rendered]


def _is_our_temp(name: str) -> bool:
    return name.startswith(".") and f"{TEMP_MARKER}-" in name


def sweep_temp_files(
    folder: Path, *, older_than_seconds: float = 3600, recursive: bool = False
) -> int:
    """Remove our own temp files left by a crash mid-write; returns how many were removed."""
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
            if not _is_our_temp(entry.name):
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
