"""A lenient typed reading of the job object, made once before anything is rendered.

The job comes from a remote API (or the local engine) as parsed JSON, and any field may be
missing, null, or of the wrong type. :func:`read_job` turns it into frozen dataclasses that
hold only what the outputs use, already cleaned: numbers finite and clamped, texts ``str``,
speakers small non-negative ints, language codes safe in a file name. It never raises on odd
JSON; only a job that is not a JSON object at all is refused (ValueError). Renderers then read
plain attributes instead of guarding every access.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from watcherd.display import utf8_text

# Job times are clamped to this many seconds (about 31 years), so that sums, differences and
# products of any values a job holds stay finite.
_TIME_LIMIT = 1e9
# Speaker numbers beyond this are not speakers (and a huge int cannot even become text).
_MAX_SPEAKER = 10_000
# Language codes come from the remote job and become part of a file name: accept only
# code-like strings so a hostile or broken response cannot write outside the folder. Always
# matched whole (fullmatch): with match, "$" also matches before a final newline.
LANGUAGE_MAX: int = 16
_LANGUAGE_CODE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{LANGUAGE_MAX - 1}}}")
# result keys that are not add-on blocks.
_NOT_ADDONS = frozenset({"metadata", "transcription"})
#: The key of watcherd's own block in a stored job (and NAME.json): the speakers' names.
_WATCHERD_BLOCK = "watcherd"
#: The longest speaker name kept (a name is a label, not a paragraph).
SPEAKER_NAME_MAX = 100


# -- reading one value --------------------------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def _items(value: object) -> list[object]:
    """``value``'s elements when it is a JSON array, else none."""
    return list(value) if isinstance(value, list | tuple) else []


def _number(value: object, default: float = 0.0) -> float:
    """``value`` as a finite float within ±1e9 when it is a JSON number, else ``default``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if isinstance(value, int) and abs(value) > _TIME_LIMIT:
        return _TIME_LIMIT if value > 0 else -_TIME_LIMIT  # float() of it would overflow
    if not math.isfinite(value):
        return default
    return max(-_TIME_LIMIT, min(_TIME_LIMIT, float(value)))


def _text(value: object) -> str:
    """``value`` when it is a string, else ""."""
    return value if isinstance(value, str) else ""


def _speaker_number(value: object) -> int | None:
    """``value`` as a speaker number (0-based), or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_SPEAKER:
        return None
    return value


def _json_kind(value: object) -> str:
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


# -- the shapes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    """One timed word: non-empty text on one line, ``start <= end``."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Utterance:
    """One utterance: its text as given, ``start <= end``, its cleaned timed words."""

    text: str
    start: float
    end: float
    speaker: int | None
    words: tuple[Word, ...]


@dataclass(frozen=True)
class Transcription:
    """A transcription (the job's own, or one translation's): utterances in time order."""

    utterances: tuple[Utterance, ...]
    full_transcript: str
    languages: tuple[str, ...]
    # (format, text) of the subtitles Gladia generated, first of each format, non-blank.
    subtitles: tuple[tuple[str, str], ...]
    # (speaker number, name) for the speakers a person named ([watch.speakers], `watcherd
    # speakers`); the others are "Speaker N".
    names: tuple[tuple[int, str], ...] = ()

    @property
    def diarized(self) -> bool:
        """True when any utterance names a speaker."""
        return any(u.speaker is not None for u in self.utterances)

    @property
    def speakers(self) -> list[int]:
        """The speaker numbers that occur, in order."""
        return sorted({u.speaker for u in self.utterances if u.speaker is not None})

    def subtitle(self, fmt: str) -> str | None:
        """Gladia's own subtitles in ``fmt`` ("srt", "vtt"), or None when it sent none.

        None too once speakers are named: Gladia's subtitles carry no speaker labels, so the
        cues are made from the utterances, where the names show.
        """
        if self.names and self.diarized:
            return None
        return next((given for name, given in self.subtitles if name == fmt), None)

    def label(self, speaker: int | None) -> str:
        """A speaker's name when one was given, else "Speaker N" (1-based); "" for none."""
        if speaker is None:
            return ""
        return dict(self.names).get(speaker, f"Speaker {speaker + 1}")


@dataclass(frozen=True)
class Translation:
    """One usable translation: a code-like language (safe in a file name) and its text."""

    lang: str
    transcription: Transcription


@dataclass(frozen=True)
class AddonFailure:
    """One Gladia add-on that delivered nothing (or not everything): which, and why."""

    addon: str
    message: str

    def describe(self) -> str:
        """One line for a person: "the summarization add-on failed: ..."."""
        # Logged and written into NAME.md: never a lone surrogate from Gladia's text.
        return utf8_text(f"the {self.addon.replace('_', ' ')} add-on failed: {self.message}")


@dataclass(frozen=True)
class Sentiment:
    """One row of the sentiment add-on; the cells are JSON values as given."""

    start: float
    speaker: int | None
    sentiment: object
    emotion: object
    text: object


@dataclass(frozen=True)
class Entity:
    """One named entity; the cells are JSON values as given."""

    entity_type: object
    text: object
    start: float


@dataclass(frozen=True)
class Answer:
    """One audio-to-LLM prompt that succeeded: its prompt (or "Prompt N") and response."""

    prompt: str
    response: object


RowT = TypeVar("RowT")


@dataclass(frozen=True)
class AddonResults(Generic[RowT]):
    """A successful add-on's non-empty results, as given and (when they are rows) as rows.

    ``rows`` is None when the results are not what the add-on documents (a list of
    non-empty objects): a reader is then shown them as they are.
    """

    results: object
    rows: tuple[RowT, ...] | None


@dataclass(frozen=True)
class Redaction:
    """How PII redaction was asked for: the entity kinds and how redacted text shows."""

    kinds: str
    shown: str


@dataclass(frozen=True)
class Job:
    """Everything the outputs use of one job, read leniently (see :func:`read_job`)."""

    raw: Mapping[str, Any]  # the job as given: NAME.json is written from it
    id: str
    request_id: str
    completed_at: str
    done: bool
    has_result: bool
    filename: str  # the last part of the uploaded file's name ("" when none)
    duration: float
    transcription: Transcription
    translations: tuple[Translation, ...]
    enabled: frozenset[str]  # request parameters set to true (the add-ons asked for)
    redaction: Redaction | None
    summary: object | None  # the summarization add-on's results, None when it gave none
    sentiment: AddonResults[Sentiment] | None
    entities: AddonResults[Entity] | None
    answers: AddonResults[Answer] | None
    failures: tuple[AddonFailure, ...]

    @property
    def language(self) -> str | None:
        """The detected language (the first code-like one, lower case), None when unknown."""
        return next((lang.lower() for lang in self.transcription.languages
                     if _LANGUAGE_CODE.fullmatch(lang)), None)

    @property
    def speaker_names(self) -> dict[int, str]:
        """The names given to speakers (number, 0-based -> name)."""
        return dict(self.transcription.names)

    def named(self, names: Mapping[int, str]) -> Job:
        """This job with ``names`` for its speakers (0-based numbers) in every transcription;
        names already in the job's own ``watcherd`` block win (`watcherd speakers`)."""
        merged = tuple(sorted({**names, **dict(self.transcription.names)}.items()))
        if not merged:
            return self
        return replace(
            self,
            transcription=replace(self.transcription, names=merged),
            translations=tuple(
                replace(t, transcription=replace(t.transcription, names=merged))
                for t in self.translations),
        )


def speaker_name(value: object) -> str | None:
    """A speaker's name as kept: one line of printable text, at most SPEAKER_NAME_MAX
    characters; None when ``value`` is not a usable name."""
    if not isinstance(value, str):
        return None
    name = " ".join(utf8_text(value).split())
    if not name or len(name) > SPEAKER_NAME_MAX or not name.isprintable():
        return None
    return name


def speaker_number(label: object) -> int | None:
    """A speaker's label number as people write it ("1" for "Speaker 1"), 0-based; None for
    anything else (only ASCII digits: str.isdigit also takes "¹" and other digits)."""
    if not isinstance(label, str) or not re.fullmatch(r"[0-9]{1,5}", label):
        return None
    number = int(label)
    return number - 1 if 1 <= number <= _MAX_SPEAKER else None


def stored_names(job: Mapping[str, Any]) -> dict[int, str]:
    """The names kept in a job's ``watcherd`` block: {"speakers": {"1": "Alice"}} (labels
    1-based, as people see them) -> {0: "Alice"}; anything unusable is left out."""
    block = _mapping(_mapping(job.get(_WATCHERD_BLOCK)).get("speakers"))
    found: dict[int, str] = {}
    for key, value in block.items():
        number, name = speaker_number(key), speaker_name(value)
        if number is not None and name is not None:
            found[number] = name
    return found


def with_names(job: Mapping[str, Any], names: Mapping[int, str]) -> dict[str, Any]:
    """A copy of the job object whose ``watcherd`` block holds ``names`` (0-based numbers;
    an empty mapping removes the block's speakers)."""
    copied = dict(job)
    block = dict(_mapping(copied.get(_WATCHERD_BLOCK)))
    if names:
        block["speakers"] = {str(n + 1): name for n, name in sorted(names.items())}
    else:
        block.pop("speakers", None)
    if block:
        copied[_WATCHERD_BLOCK] = block
    else:
        copied.pop(_WATCHERD_BLOCK, None)
    return copied


# -- reading ------------------------------------------------------------------------------


def job_object(job: object) -> Mapping[str, Any]:
    """The job itself when it is a JSON object; ValueError for anything else."""
    if not isinstance(job, Mapping):
        raise ValueError(
            f"the job is a JSON {_json_kind(job)}, not an object: nothing can be rendered from it"
        )
    return job


def read_job(job: object) -> Job:
    """The job read leniently; ValueError when it is not a JSON object."""
    job = job_object(job)
    result = _mapping(job.get("result"))
    file = _mapping(job.get("file"))
    params = _mapping(job.get("request_params"))
    # Gladia echoes whatever multipart filename was sent, which may carry folders.
    filename = _text(file.get("filename")).replace("\\", "/").rsplit("/", 1)[-1]
    enabled = frozenset(k for k, v in params.items() if isinstance(k, str) and v is True)
    read = Job(
        raw=job,
        id=_text(job.get("id")),
        request_id=_text(job.get("request_id")),
        completed_at=_text(job.get("completed_at")),
        done=job.get("status") == "done",
        has_result=isinstance(job.get("result"), Mapping),
        filename=filename,
        duration=_number(_mapping(result.get("metadata")).get("audio_duration"),
                        _number(file.get("audio_duration"))),
        transcription=_transcription(result.get("transcription")),
        translations=_translations(result.get("translation")),
        enabled=enabled,
        redaction=(_redaction(params.get("pii_redaction_config"))
                   if "pii_redaction" in enabled else None),
        summary=_summary(result.get("summarization")),
        sentiment=_sentiment(_addon_results(result.get("sentiment_analysis"))),
        entities=_entities(_addon_results(result.get("named_entity_recognition"))),
        answers=_answers(_addon_results(result.get("audio_to_llm"))),
        failures=tuple(_failures(result, params)),
    )
    return read.named(stored_names(job))


def _transcription(value: object) -> Transcription:
    """A transcription object (the job's, or a translation entry) read leniently."""
    transcription = _mapping(value)
    found = [_utterance(u) for u in _items(transcription.get("utterances"))
             if isinstance(u, Mapping)]
    subtitles: dict[str, str] = {}
    for entry in _items(transcription.get("subtitles")):
        entry = _mapping(entry)
        fmt, given = entry.get("format"), entry.get("subtitles")
        if isinstance(fmt, str) and isinstance(given, str) and given.strip():
            subtitles.setdefault(fmt, given)
    return Transcription(
        # Multichannel results may list each channel in turn; readers want one timeline.
        utterances=tuple(sorted(found, key=lambda u: u.start)),
        full_transcript=_text(transcription.get("full_transcript")),
        languages=tuple(x for x in _items(transcription.get("languages")) if isinstance(x, str)),
        subtitles=tuple(subtitles.items()),
    )


def _utterance(utterance: Mapping[str, Any]) -> Utterance:
    start = _number(utterance.get("start"))
    words: list[Word] = []
    for raw in _items(utterance.get("words")):
        if not isinstance(raw, Mapping):
            continue
        word = " ".join(_text(raw.get("word")).split())
        if not word:
            continue
        w_start = _number(raw.get("start"), start)
        words.append(Word(word, w_start, max(w_start, _number(raw.get("end"), w_start))))
    return Utterance(
        text=_text(utterance.get("text")),
        start=start,
        end=max(start, _number(utterance.get("end"), start)),
        speaker=_speaker_number(utterance.get("speaker")),
        words=tuple(words),
    )


def _translations(value: object) -> tuple[Translation, ...]:
    block = _mapping(value)
    if block.get("success") is False:
        return ()
    found: dict[str, Translation] = {}
    for entry in _items(block.get("results")):
        if not isinstance(entry, Mapping) or entry.get("error"):
            continue
        languages = _items(entry.get("languages"))
        lang = languages[0] if languages else None
        if isinstance(lang, str) and _LANGUAGE_CODE.fullmatch(lang) and lang not in found:
            found[lang] = Translation(lang, _transcription(entry))
    return tuple(found.values())


def _redaction(value: object) -> Redaction:
    config = _mapping(value)
    kinds = config.get("entity_types")
    return Redaction(
        kinds=(", ".join(k for k in kinds if isinstance(k, str)) if isinstance(kinds, list)
               else _text(kinds)),
        shown=_text(config.get("processed_text_type")) or "MARKER",
    )


def _summary(value: object) -> object | None:
    block = _mapping(value)
    if block.get("success") is False:
        return None
    results: object = block.get("results")
    if results is None or (isinstance(results, str) and not results.strip()):
        return None
    if isinstance(results, list | dict) and not results:
        return None
    return results


def _addon_results(value: object) -> object | None:
    block = _mapping(value)
    if block.get("success") is False:
        return None
    results = block.get("results")
    return results if results not in (None, "", [], {}) else None


def _rows(results: object) -> list[Mapping[str, Any]] | None:
    rows = [_mapping(x) for x in _items(results)]
    return rows if rows and all(rows) else None


def _sentiment(results: object | None) -> AddonResults[Sentiment] | None:
    if results is None:
        return None
    rows = _rows(results)
    return AddonResults(results, None if rows is None else tuple(
        Sentiment(start=_number(row.get("start")), speaker=_speaker_number(row.get("speaker")),
                  sentiment=row.get("sentiment", ""), emotion=row.get("emotion", ""),
                  text=row.get("text", ""))
        for row in rows
    ))


def _entities(results: object | None) -> AddonResults[Entity] | None:
    if results is None:
        return None
    rows = _rows(results)
    return AddonResults(results, None if rows is None else tuple(
        Entity(entity_type=row.get("entity_type", ""), text=row.get("text", ""),
               start=_number(row.get("start")))
        for row in rows
    ))


def _answers(results: object | None) -> AddonResults[Answer] | None:
    if results is None:
        return None
    answers: list[Answer] = []
    for index, entry in enumerate(_items(results), start=1):
        entry = _mapping(entry)
        if entry.get("success") is False:
            continue  # a failure, listed with the others
        answer = _mapping(entry.get("results"))
        answers.append(Answer(_text(answer.get("prompt")) or f"Prompt {index}",
                              answer.get("response")))
    return AddonResults(results, tuple(answers))


def _addon_error(error: object) -> str:
    error = _mapping(error)
    message = " ".join(_text(error.get("message")).split())
    extras = [x for x in (_text(error.get("exception")).strip(),) if x]
    status = error.get("status_code")
    if isinstance(status, int) and not isinstance(status, bool):
        extras.append(f"status {status}")
    reason = message or "Gladia gave no reason"
    return f"{reason} ({', '.join(extras)})" if extras else reason


def _failures(result: Mapping[str, Any], params: Mapping[str, Any]) -> list[AddonFailure]:
    """Every add-on of a done job that failed, whole (``success: false``) or in part."""
    targets = _items(_mapping(params.get("translation_config")).get("target_languages"))
    failures: list[AddonFailure] = []
    for name, raw in result.items():
        block = _mapping(raw)
        if name in _NOT_ADDONS or not block:
            continue
        if block.get("success") is False:
            failures.append(AddonFailure(str(name), _addon_error(block.get("error"))))
            continue
        for index, entry in enumerate(_items(block.get("results"))):
            entry = _mapping(entry)
            if name == "translation" and entry.get("error"):
                languages = _items(entry.get("languages")) or targets[index : index + 1]
                lang = languages[0] if languages and isinstance(languages[0], str) else "?"
                failures.append(AddonFailure(
                    "translation", f"to {lang}: {_addon_error(entry.get('error'))}"))
            elif name == "audio_to_llm" and entry.get("success") is False:
                prompt = _text(_mapping(entry.get("results")).get("prompt"))
                label = f'prompt "{prompt}"' if prompt else f"prompt {index + 1}"
                failures.append(AddonFailure(
                    "audio_to_llm", f"{label}: {_addon_error(entry.get('error'))}"))
    return failures


def addon_failures(job: Mapping[str, Any]) -> list[AddonFailure]:
    """Every add-on of a done job that failed, whole (``success: false``) or in part."""
    return list(read_job(job).failures)
