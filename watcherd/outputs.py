"""Transcript outputs: render a finished job as txt/json/srt/vtt and write the files atomically.

A "job" is the full job object as ``GET /v2/pre-recorded/{id}`` returns it (the local engine
produces the same shape). Rendering is pure; writing goes through :func:`atomic_write` so a
reader never sees half a transcript, and temp files carry :data:`TEMP_MARKER` so the watcher
never mistakes them (or the outputs) for recordings.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS: tuple[str, ...] = ("txt", "json", "srt", "vtt")
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
# code-like strings so a hostile or broken response cannot write outside the folder.
_LANG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,15}$")
# Most filesystems cap one name at 255 bytes; the temp name adds a prefix and a suffix.
_NAME_MAX = 255
_TEMP_RANDOM_HEX = 12


# -- names -------------------------------------------------------------------------------


def is_output_or_temp(path: Path) -> bool:
    """True for our temp files and for any file whose suffix marks it as a transcript output."""
    name = path.name
    return TEMP_MARKER in name or path.suffix.lower() in OUTPUT_SUFFIXES


def output_base(source: Path, *, taken: Callable[[Path], bool]) -> Path:
    """The path outputs are named after: DIR/STEM, or DIR/NAME when another source owns DIR/STEM."""
    if not source.suffix:
        return source
    by_stem = source.with_name(source.stem)
    if taken(by_stem):
        return source
    return by_stem


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
    """Every path :func:`write_outputs` would write for this job (translations too), unwritten."""
    wanted = _checked_formats(formats)
    paths = [_with_suffix(base, fmt) for fmt in wanted]
    paths += [_with_suffix(base, suffix) for suffix, _ in _translation_plan(job, wanted)]
    return paths


# -- reading the job tolerantly ----------------------------------------------------------


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value) if math.isfinite(value) else default


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _transcription(job: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_mapping(job.get("result")).get("transcription"))


def _utterances(transcription: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = [u for u in _list(transcription.get("utterances")) if isinstance(u, Mapping)]
    # Multichannel results may list each channel in turn; readers want one timeline.
    return sorted(found, key=lambda u: _number(u.get("start")))


def _speaker(utterance: Mapping[str, Any]) -> int | None:
    value = utterance.get("speaker")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


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
    return _txt_of(_transcription(job))


def render_json(job: Mapping[str, Any]) -> str:
    """The job object exactly as given, as indented UTF-8 JSON."""
    return json.dumps(dict(job), ensure_ascii=False, indent=2) + "\n"


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
    return _srt_of(_transcription(job))


def render_vtt(job: Mapping[str, Any]) -> str:
    """WebVTT subtitles: Gladia's own when present, else cues generated from the utterances."""
    return _vtt_of(_transcription(job))


_RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "txt": render_txt,
    "json": render_json,
    "srt": render_srt,
    "vtt": render_vtt,
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
        if not isinstance(lang, str) or not _LANG_RE.match(lang) or lang in seen:
            continue
        seen.add(lang)
        plan.append((f"{lang}.txt", entry))
        plan.extend((f"{lang}.{fmt}", entry) for fmt in ("srt", "vtt") if fmt in formats)
    return plan


def render_translations(job: Mapping[str, Any], formats: Sequence[str]) -> dict[str, str]:
    """Each usable translation rendered: suffix like "fr.txt" or "fr.srt" -> text."""
    rendered: dict[str, str] = {}
    for suffix, entry in _translation_plan(job, formats):
        fmt = suffix.rsplit(".", 1)[1]
        rendered[suffix] = _TRANSCRIPTION_RENDERERS[fmt](entry)
    return rendered


# -- writing -----------------------------------------------------------------------------


def _temp_name(name: str) -> str:
    tail = f"{TEMP_MARKER}-{secrets.token_hex(_TEMP_RANDOM_HEX // 2)}"
    room = _NAME_MAX - len(tail.encode()) - 1
    # Cut by bytes, not characters, so a long non-ASCII name still fits the filesystem.
    head = name.encode()[:room].decode(errors="ignore")
    return f".{head}{tail}"


def _fsync_folder(folder: Path) -> None:
    if os.name == "nt":  # pragma: no cover - Windows cannot open a folder for fsync
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems cannot fsync a folder; the rename itself already happened.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old file or the new, never half.

    On any error the temp file is removed and the error re-raised (ENOSPC included), leaving
    the previous content of ``path`` untouched.
    """
    folder = path.parent
    temp = folder / _temp_name(path.name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temp, flags, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_folder(folder)


def write_outputs(base: Path, formats: Sequence[str], job: Mapping[str, Any]) -> list[Path]:
    """Render every output of a done job, then write each atomically; returns the paths."""
    status = job.get("status")
    if status != "done":
        raise ValueError(f"job {job.get('id')!r} is {status!r}, not 'done': nothing to write")
    if not isinstance(job.get("result"), Mapping):
        raise ValueError(f"job {job.get('id')!r} is done but has no result: nothing to write")
    wanted = _checked_formats(formats)
    # Render everything before touching the disk, so a rendering bug writes nothing at all.
    rendered = [(_with_suffix(base, fmt), render(fmt, job)) for fmt in wanted]
    rendered += [
        (_with_suffix(base, suffix), text)
        for suffix, text in render_translations(job, wanted).items()
    ]
    for path, text in rendered:
        atomic_write(path, text.encode("utf-8"))
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
