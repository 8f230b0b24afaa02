"""A faithful simulator of Gladia's pre-recorded v2 API (see /work/shared/gladia-api.md).

It serves real HTTP on 127.0.0.1 from a background thread so the daemon (as a subprocess) and
our httpx client talk to it for real. It is the project's only mock, so it follows the API
document, not any client: shapes, status codes, error bodies, list filtering, concurrency
queueing and limits. Where the document says [?] it takes the recommended behaviour and makes
the alternative switchable. Faults (status codes, dropped connections, lost responses, delays,
outages, failing jobs) are injected on demand, and a ledger records everything for assertions.

Run it by hand: ``python -m tests.gladia_sim --port 8765 --api-key KEY --job-seconds 1.0``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import hashlib
import hmac
import http
import json
import queue
import random
import re
import shutil
import socket
import socketserver
import struct
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import httpx

from tests.sim_media import (
    MediaInfo,
    make_corrupt,
    make_mp3,
    make_sparse_wav,
    make_wav,
    probe_media,
    sniff_media,
)

__all__ = [
    "Endpoint",
    "FaultKind",
    "FaultPlan",
    "GladiaSimulator",
    "RequestRecord",
    "expected_transcript",
    "expected_translation",
    "make_corrupt",
    "make_mp3",
    "make_sparse_wav",
    "make_wav",
    "sniff_media",
]

Endpoint = Literal["upload", "create", "get", "list", "delete", "file", "any"]
FaultKind = Literal["status", "reset", "lose_response", "delay"]
_ENDPOINTS = ("upload", "create", "get", "list", "delete", "file", "any")
_FAULT_KINDS = ("status", "reset", "lose_response", "delay")

DEFAULT_MAX_UPLOAD_BYTES = 1000 * 1024 * 1024
DEFAULT_MAX_AUDIO_SECONDS = 135 * 60
_MAX_JSON_BODY = 1024 * 1024
_SMALL_UNREAD_BODY = 1024 * 1024  # unread bodies up to this size are drained to keep the connection
_CHUNK = 256 * 1024
_JOB_STATUSES = ("queued", "processing", "done", "error")

# The 99 ISO-639-1-style transcription codes of gladia-api.md section 3.1 (Whisper's set).
_LANGUAGE_CODES_TEXT = """
af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi
hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no
oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo
zh
"""
LANGUAGE_CODES: frozenset[str] = frozenset(_LANGUAGE_CODES_TEXT.split())
TRANSLATION_CODES: frozenset[str] = LANGUAGE_CODES | {"wo"}


class RequestRecord(NamedTuple):
    """One request the simulator received; status is None when no response was sent."""

    method: str
    path: str
    endpoint: str
    status: int | None
    time: float


@dataclass
class _Fault:
    endpoint: str
    kind: str
    count: int
    status: int
    retry_after: float | None
    delay: float


class FaultPlan:
    """Faults to inject, fired in the order added, each `count` times, on matching requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    def add(
        self,
        endpoint: Endpoint,
        kind: FaultKind,
        *,
        count: int = 1,
        status: int = 503,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue a fault for `count` requests to `endpoint` ("any" matches every endpoint)."""
        if endpoint not in _ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        if kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._faults.append(_Fault(endpoint, kind, count, status, retry_after, delay))

    def clear(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> int:
        """How many fault firings are still queued (for tests that check faults were used)."""
        with self._lock:
            return sum(f.count for f in self._faults)

    def take(self, endpoint: str) -> _Fault | None:
        """The first pending fault matching `endpoint`, consuming one of its firings."""
        with self._lock:
            for fault in self._faults:
                if fault.endpoint in (endpoint, "any"):
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return copy.copy(fault)
        return None


# ---------------------------------------------------------------------------------------------
# Deterministic "speech recognition": every piece of a result is a pure function of the upload's
# sha256, its duration and the job's options, so tests can predict it exactly.

_WORDS: tuple[str, ...] = (
    "the", "meeting", "starts", "after", "lunch", "please", "send", "figures", "budget",
    "review", "project", "team", "schedule", "today", "tomorrow", "quarter", "report",
    "numbers", "agree", "plan", "next", "week", "call", "client", "draft", "final", "version",
    "update", "notes", "share", "with", "everyone", "we", "should", "check", "results",
    "before", "friday", "morning", "coffee", "office", "quickly", "again", "later", "good",
    "idea", "thanks", "question", "answer", "data", "model", "launch", "market", "sales",
    "growth", "risk", "cost", "time", "Anna", "Paris", "Monday", "Berlin", "David", "June",
)  # fmt: skip

# Words the fake named-entity recogniser (and PII redaction) knows, with Gladia-style types.
ENTITIES: Mapping[str, str] = {
    "Anna": "NAME_GIVEN",
    "David": "NAME_GIVEN",
    "Paris": "LOCATION_CITY",
    "Berlin": "LOCATION_CITY",
    "Monday": "DATE",
    "June": "DATE",
}

_SENTIMENTS = ("positive", "neutral", "negative")
_EMOTIONS = ("joy", "neutral", "sadness", "surprise")


def script_for_sha(sha256_hex: str) -> list[list[str]]:
    """The utterances (each a list of display words, punctuation attached) for a content hash."""
    rng = random.Random(f"watcherd-sim-script:{sha256_hex}")
    utterances: list[list[str]] = []
    for _ in range(rng.randint(2, 4)):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 8))]
        words[0] = words[0][:1].upper() + words[0][1:]
        words[-1] += rng.choice((".", ".", "?", "!"))
        utterances.append(words)
    return utterances


def _split_punct(word: str) -> tuple[str, str]:
    core = word.rstrip(".?!,")
    return core, word[len(core) :]


def redact(words: Sequence[str], text_type: str = "MARKER") -> list[str]:
    """Words with named entities replaced the way pii_redaction does (MARKER or MASK)."""
    out = []
    for word in words:
        core, punct = _split_punct(word)
        kind = ENTITIES.get(core)
        if kind is None:
            out.append(word)
        elif text_type == "MASK":
            out.append("*" * len(core) + punct)
        else:
            out.append(f"[{kind}]{punct}")
    return out


def translate_words(words: Sequence[str], language: str) -> list[str]:
    """A deterministic pseudo-translation: each known word shifts along the word list."""
    shift = sum(language.encode()) % (len(_WORDS) - 1) + 1
    lower = [w.lower() for w in _WORDS]
    out = []
    for i, word in enumerate(words):
        core, punct = _split_punct(word)
        if core in ENTITIES or core.lower() not in lower:
            out.append(word)
            continue
        new = lower[(lower.index(core.lower()) + shift) % len(lower)]
        if new.capitalize() in ENTITIES:
            new = new.capitalize()
        if i == 0:
            new = new[:1].upper() + new[1:]
        out.append(new + punct)
    return out


def pii_settings(options: Mapping[str, Any] | None) -> str | None:
    """The processed_text_type when the options ask for PII redaction, else None."""
    if not options or options.get("pii_redaction") is not True:
        return None
    config = options.get("pii_redaction_config") or {}
    text_type = config.get("processed_text_type", "MARKER") if isinstance(config, dict) else None
    return text_type if text_type in ("MARKER", "MASK") else "MARKER"


def transcript_for_sha(sha256_hex: str, options: Mapping[str, Any] | None = None) -> str:
    """The full_transcript the simulator returns for content with this sha256 and these options."""
    text_type = pii_settings(options)
    texts = []
    for words in script_for_sha(sha256_hex):
        shown = redact(words, text_type) if text_type else words
        texts.append(" ".join(shown))
    return " ".join(texts)


def expected_transcript(data: bytes, *, options: Mapping[str, Any] | None = None) -> str:
    """The full_transcript the simulator returns for these uploaded bytes (and job options)."""
    return transcript_for_sha(hashlib.sha256(data).hexdigest(), options)


def expected_translation(data: bytes, language: str) -> str:
    """The translated full_transcript the simulator returns for `language`."""
    sha = hashlib.sha256(data).hexdigest()
    return " ".join(" ".join(translate_words(u, language)) for u in script_for_sha(sha))


def _clock(seconds: float, sep: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def subtitles(utterances: Sequence[Mapping[str, Any]], fmt: str) -> str:
    """SRT or VTT text for utterances, in the layout of gladia-api.md section 4.3."""
    blocks = []
    for n, utt in enumerate(utterances, 1):
        if fmt == "vtt":
            span = f"{_clock(utt['start'], '.')} --> {_clock(utt['end'], '.')}"
            blocks.append(f"{span}\n{utt['text']}")
        else:
            span = f"{_clock(utt['start'], ',')} --> {_clock(utt['end'], ',')}"
            blocks.append(f"{n}\n{span}\n{utt['text']}")
    body = "\n\n".join(blocks) + "\n"
    return "WEBVTT\n\n" + body if fmt == "vtt" else body


def _envelope(results: Any, rng: random.Random) -> dict[str, Any]:
    return {
        "success": True,
        "is_empty": not results,
        "exec_time": round(0.2 + rng.random(), 3),
        "error": None,
        "results": results,
    }


def _speaker_count(options: Mapping[str, Any]) -> int:
    config = options.get("diarization_config") or {}
    if not isinstance(config, dict):
        return 2
    for key in ("number_of_speakers", "max_speakers"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return min(value, 2)
    return 2


def _language(options: Mapping[str, Any]) -> str:
    config = options.get("language_config") or {}
    languages = config.get("languages") if isinstance(config, dict) else None
    if isinstance(languages, list) and len(languages) == 1 and isinstance(languages[0], str):
        return languages[0]
    return "en"


def _utterances(
    script: Sequence[Sequence[str]],
    duration: float,
    language: str,
    speakers: int | None,
    rng: random.Random,
) -> list[dict[str, Any]]:
    """Utterances with word timings spread evenly over 5%..95% of the audio."""
    total_words = sum(len(u) for u in script)
    slots = total_words + max(0, len(script) - 1)
    slot = duration * 0.9 / slots if slots else 0.0
    t = duration * 0.05
    out: list[dict[str, Any]] = []
    for index, words in enumerate(script):
        word_objs: list[dict[str, Any]] = []
        for i, word in enumerate(words):
            word_objs.append(
                {
                    "word": word if i == 0 else " " + word,
                    "start": t,
                    "end": t + slot * 0.8,
                    "confidence": round(0.8 + rng.random() * 0.19, 3),
                }
            )
            t += slot
        t += slot  # a pause between utterances
        utt: dict[str, Any] = {
            "start": word_objs[0]["start"],
            "end": word_objs[-1]["end"],
            "confidence": round(sum(w["confidence"] for w in word_objs) / len(word_objs), 3),
            "channel": 0,
            "words": word_objs,
            "text": " ".join(words),
            "language": language,
        }
        if speakers is not None:
            utt["speaker"] = index % speakers
        out.append(utt)
    return out


def build_result(
    sha256_hex: str,
    duration: float,
    options: Mapping[str, Any],
    transcription_time: float,
) -> dict[str, Any]:
    """The `result` object of a done job (gladia-api.md section 4.2), add-ons as requested."""
    rng = random.Random(f"watcherd-sim-result:{sha256_hex}")
    language = _language(options)
    speakers = _speaker_count(options) if options.get("diarization") is True else None
    text_type = pii_settings(options)
    script = script_for_sha(sha256_hex)
    shown = [redact(u, text_type) for u in script] if text_type else script
    utterances = _utterances(shown, duration, language, speakers, rng)
    transcription: dict[str, Any] = {
        "full_transcript": " ".join(u["text"] for u in utterances),
        "languages": [language],
        "utterances": utterances,
    }
    formats: list[str] = ["srt"]
    if options.get("subtitles") is True:
        config = options.get("subtitles_config") or {}
        if isinstance(config, dict) and isinstance(config.get("formats"), list):
            formats = list(config["formats"])
        transcription["subtitles"] = [
            {"format": fmt, "subtitles": subtitles(utterances, fmt)} for fmt in formats
        ]
    result: dict[str, Any] = {
        "metadata": {
            "audio_duration": duration,
            "number_of_distinct_channels": 1,
            "billing_time": duration,
            "transcription_time": round(transcription_time, 3),
        },
        "transcription": transcription,
    }
    if options.get("translation") is True:
        targets = (options.get("translation_config") or {}).get("target_languages") or []
        translations = []
        for target in targets:
            translated = [translate_words(u, target) for u in shown]
            t_utts = _utterances(translated, duration, target, speakers, rng)
            entry: dict[str, Any] = {
                "error": None,
                "full_transcript": " ".join(u["text"] for u in t_utts),
                "languages": [target],
                "utterances": t_utts,
            }
            if options.get("subtitles") is True:
                entry["subtitles"] = [
                    {"format": fmt, "subtitles": subtitles(t_utts, fmt)} for fmt in formats
                ]
            translations.append(entry)
        result["translation"] = _envelope(translations, rng)
    if options.get("summarization") is True:
        config = options.get("summarization_config") or {}
        kind = config.get("type", "general") if isinstance(config, dict) else "general"
        texts = [u["text"] for u in utterances]
        if kind == "bullet_points":
            summary = "\n".join(f"- {t}" for t in texts)
        elif kind == "concise":
            summary = texts[0]
        else:
            summary = "The speakers discuss: " + " ".join(texts)
        result["summarization"] = _envelope(summary, rng)
    if options.get("named_entity_recognition") is True:
        entities = []
        for utt in utterances:
            for word in utt["words"]:
                core, _ = _split_punct(word["word"].strip())
                if core in ENTITIES:
                    entities.append(
                        {
                            "entity_type": ENTITIES[core],
                            "text": core,
                            "start": word["start"],
                            "end": word["end"],
                        }
                    )
        result["named_entity_recognition"] = _envelope(entities, rng)
    if options.get("sentiment_analysis") is True:
        sentiments = []
        for utt in utterances:
            item: dict[str, Any] = {
                "text": utt["text"],
                "sentiment": rng.choice(_SENTIMENTS),
                "emotion": rng.choice(_EMOTIONS),
                "start": utt["start"],
                "end": utt["end"],
                "channel": 0,
            }
            if "speaker" in utt:
                item["speaker"] = utt["speaker"]
            sentiments.append(item)
        result["sentiment_analysis"] = _envelope(sentiments, rng)
    if options.get("sentences") is True:
        sentences = []
        for utt in utterances:
            sentence: dict[str, Any] = {
                "sentence": utt["text"],
                "start": utt["start"],
                "end": utt["end"],
                "words": utt["words"],
                "confidence": utt["confidence"],
                "language": language,
                "channel": 0,
            }
            if "speaker" in utt:
                sentence["speaker"] = utt["speaker"]
            sentences.append(sentence)
        result["sentences"] = _envelope(sentences, rng)
    if options.get("audio_to_llm") is True:
        prompts = (options.get("audio_to_llm_config") or {}).get("prompts") or []
        answers = [
            {
                "success": True,
                "is_empty": False,
                "exec_time": round(0.5 + rng.random(), 3),
                "error": None,
                "results": {
                    "prompt": prompt,
                    "response": f"Answer to {prompt!r}: {utterances[0]['text']}",
                },
            }
            for prompt in prompts
        ]
        result["audio_to_llm"] = _envelope(answers, rng)
    return result


# ---------------------------------------------------------------------------------------------
# Validation of the create body (gladia-api.md section 3.1), with NestJS/class-validator style
# messages, since that is the framework behind Gladia's error bodies.

_Validator = Callable[[str, Any, list[str]], None]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _v_bool(path: str, value: Any, errors: list[str]) -> None:
    if not isinstance(value, bool):
        errors.append(f"{path} must be a boolean value")


def _v_string(path: str, value: Any, errors: list[str]) -> None:
    if not isinstance(value, str):
        errors.append(f"{path} must be a string")


def _v_uri(path: str, value: Any, errors: list[str]) -> None:
    if not isinstance(value, str):
        errors.append(f"{path} must be a string")
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        errors.append(f"{path} must be a URL address")


def _v_number(
    low: float | None = None, high: float | None = None, *, integer: bool = False
) -> _Validator:
    def check(path: str, value: Any, errors: list[str]) -> None:
        if not _is_number(value) or (integer and not float(value).is_integer()):
            errors.append(f"{path} must be {'an integer' if integer else 'a'} number")
            return
        if low is not None and value < low:
            errors.append(f"{path} must not be less than {low:g}")
        if high is not None and value > high:
            errors.append(f"{path} must not be greater than {high:g}")

    return check


def _v_enum(choices: Sequence[str]) -> _Validator:
    def check(path: str, value: Any, errors: list[str]) -> None:
        if value not in choices:
            errors.append(f"{path} must be one of the following values: {', '.join(choices)}")

    return check


def _v_codes(codes: frozenset[str], *, min_items: int = 0) -> _Validator:
    def check(path: str, value: Any, errors: list[str]) -> None:
        if not isinstance(value, list):
            errors.append(f"{path} must be an array")
            return
        if len(value) < min_items:
            errors.append(f"{path} must contain at least {min_items} elements")
        if any(not isinstance(v, str) or v not in codes for v in value):
            errors.append(
                f"{path} must only contain the following values: {', '.join(sorted(codes))}"
            )

    return check


def _v_list(item: _Validator, *, min_items: int = 0) -> _Validator:
    def check(path: str, value: Any, errors: list[str]) -> None:
        if not isinstance(value, list):
            errors.append(f"{path} must be an array")
            return
        if len(value) < min_items:
            errors.append(f"{path} must contain at least {min_items} elements")
        for i, v in enumerate(value):
            item(f"{path}.{i}", v, errors)

    return check


def _v_object(fields: Mapping[str, _Validator], required: Sequence[str] = ()) -> _Validator:
    def check(path: str, value: Any, errors: list[str]) -> None:
        if not isinstance(value, dict):
            errors.append(f"{path} must be an object")
            return
        for key in required:
            if key not in value:
                errors.append(f"{path}.{key} should not be empty")
        for key, v in value.items():
            if key not in fields:
                errors.append(f"property {path}.{key} should not exist")
            else:
                fields[key](f"{path}.{key}", v, errors)

    return check


def _v_vocabulary_item(path: str, value: Any, errors: list[str]) -> None:
    if isinstance(value, str):
        return
    _v_object(
        {
            "value": _v_string,
            "intensity": _v_number(0, 1),
            "pronunciations": _v_list(_v_string),
            "language": _v_enum(sorted(LANGUAGE_CODES)),
        },
        required=("value",),
    )(path, value, errors)


def _v_entity_types(path: str, value: Any, errors: list[str]) -> None:
    # The OAS types it as one enum value, the docs send an array: accept both (section 3.1).
    if isinstance(value, str):
        return
    _v_list(_v_string)(path, value, errors)


def _v_spelling(path: str, value: Any, errors: list[str]) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in value.values()
    ):
        errors.append(f"{path} must be an object mapping each spelling to an array of strings")


def _v_custom_metadata(path: str, value: Any, errors: list[str]) -> None:
    if not isinstance(value, dict):
        errors.append(f"{path} must be an object")
    elif len(json.dumps(value)) > 2000:
        errors.append(f"{path} must be shorter than or equal to 2000 characters once stringified")


_CREATE_FIELDS: dict[str, _Validator] = {
    "audio_url": _v_uri,
    "language_config": _v_object(
        {"languages": _v_codes(LANGUAGE_CODES), "code_switching": _v_bool}
    ),
    "diarization": _v_bool,
    "diarization_config": _v_object(
        {
            "number_of_speakers": _v_number(1, integer=True),
            "min_speakers": _v_number(0, integer=True),
            "max_speakers": _v_number(0, integer=True),
        }
    ),
    "translation": _v_bool,
    "translation_config": _v_object(
        {
            "target_languages": _v_codes(TRANSLATION_CODES, min_items=1),
            "model": _v_enum(("base", "enhanced")),
            "match_original_utterances": _v_bool,
            "lipsync": _v_bool,
            "context_adaptation": _v_bool,
            "context": _v_string,
            "informal": _v_bool,
        },
        required=("target_languages",),
    ),
    "subtitles": _v_bool,
    "subtitles_config": _v_object(
        {
            "formats": _v_list(_v_enum(("srt", "vtt")), min_items=1),
            "minimum_duration": _v_number(0),
            "maximum_duration": _v_number(1, 30),
            "maximum_characters_per_row": _v_number(1, integer=True),
            "maximum_rows_per_caption": _v_number(1, 5, integer=True),
            "style": _v_enum(("default", "compliance")),
        }
    ),
    "summarization": _v_bool,
    "summarization_config": _v_object({"type": _v_enum(("general", "bullet_points", "concise"))}),
    "pii_redaction": _v_bool,
    "pii_redaction_config": _v_object(
        {"entity_types": _v_entity_types, "processed_text_type": _v_enum(("MARKER", "MASK"))}
    ),
    "sentiment_analysis": _v_bool,
    "named_entity_recognition": _v_bool,
    "sentences": _v_bool,
    "punctuation_enhanced": _v_bool,
    "custom_vocabulary": _v_bool,
    "custom_vocabulary_config": _v_object(
        {"vocabulary": _v_list(_v_vocabulary_item), "default_intensity": _v_number(0, 1)},
        required=("vocabulary",),
    ),
    "custom_spelling": _v_bool,
    "custom_spelling_config": _v_object(
        {"spelling_dictionary": _v_spelling}, required=("spelling_dictionary",)
    ),
    "audio_to_llm": _v_bool,
    "audio_to_llm_config": _v_object(
        {"prompts": _v_list(_v_string, min_items=1), "model": _v_string}, required=("prompts",)
    ),
    "callback": _v_bool,
    "callback_config": _v_object(
        {"url": _v_uri, "method": _v_enum(("POST", "PUT"))}, required=("url",)
    ),
    "callback_url": _v_uri,
    "custom_metadata": _v_custom_metadata,
}

# Flags whose feature cannot run without its config object (the config has a required field).
_NEEDS_CONFIG = {
    "translation": "translation_config",
    "custom_vocabulary": "custom_vocabulary_config",
    "custom_spelling": "custom_spelling_config",
    "audio_to_llm": "audio_to_llm_config",
}

# What the OAS example echoes in request_params for a flag that was not sent.
_FLAG_DEFAULTS = (
    "diarization", "translation", "subtitles", "summarization", "pii_redaction",
    "sentiment_analysis", "named_entity_recognition", "sentences", "punctuation_enhanced",
    "custom_vocabulary", "custom_spelling", "audio_to_llm", "callback",
)  # fmt: skip


def validate_create_body(body: Any, *, reject_unknown_fields: bool = True) -> list[str]:
    """The validation_errors a create body earns (empty when it is acceptable)."""
    if not isinstance(body, dict):
        return ["body must be a JSON object"]
    errors: list[str] = []
    if "audio_url" not in body:
        errors.append("audio_url should not be empty")
    for key, value in body.items():
        check = _CREATE_FIELDS.get(key)
        if check is None:
            if reject_unknown_fields:
                errors.append(f"property {key} should not exist")
            continue
        check(key, value, errors)
    for flag, config in _NEEDS_CONFIG.items():
        if body.get(flag) is True and config not in body:
            errors.append(f"{config} should not be empty when {flag} is true")
    return errors


# ---------------------------------------------------------------------------------------------
# Streaming multipart/form-data: the body is read from the socket in bounded chunks and the
# `audio` part goes straight to disk while being hashed, so memory never grows with file size.


class ClientGone(Exception):
    """The client closed the connection before sending the whole body."""


class BadMultipart(Exception):
    """The multipart body is ill-formed."""


class BodyReader:
    """Reads exactly Content-Length bytes from the connection, never more."""

    def __init__(self, rfile: BinaryIO, length: int) -> None:
        self._rfile = rfile
        self.remaining = length

    def read(self, size: int) -> bytes:
        """Up to `size` bytes of the body; b"" once it is all read."""
        if self.remaining <= 0:
            return b""
        try:
            data = self._rfile.read1(min(size, self.remaining))  # type: ignore[attr-defined]
        except (OSError, ValueError) as exc:
            raise ClientGone(str(exc)) from exc
        if not data:
            raise ClientGone("connection closed before the end of the body")
        self.remaining -= len(data)
        return cast(bytes, data)

    def drain(self, limit: int) -> None:
        """Read and discard the rest of the body, if it is at most `limit` bytes."""
        while 0 < self.remaining <= limit:
            self.read(_CHUNK)


def _parse_header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `form-data; name="audio"; filename="a b.wav"` into its kind and parameters."""
    kind, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in re.finditer(r'\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)\s*;?', rest):
        key, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[key] = raw
    return kind.strip().lower(), params


def _part_filename(params: Mapping[str, str]) -> str | None:
    """The filename of a part: RFC 5987 `filename*` first, else HTML5-escaped `filename`."""
    star = params.get("filename*")
    if star and "'" in star:
        charset, _, rest = star.partition("'")
        _lang, _, encoded = rest.partition("'")
        try:
            return unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            pass
    name = params.get("filename")
    if name is None:
        return None
    # Browsers and httpx escape '"' and control characters as %XX (HTML5 form encoding).
    return re.sub(r"%(0[0-9A-F]|1[0-9A-F]|22)", lambda m: chr(int(m.group(1), 16)), name)


@dataclass
class _SpooledAudio:
    path: Path
    filename: str
    size: int
    sha256: str
    head: bytes


class _AudioSink:
    """Writes a part to a file while hashing it and keeping its first bytes for sniffing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.head = bytearray()

    def write(self, data: bytes) -> None:
        if len(self.head) < 4096:
            self.head += bytes(data[: 4096 - len(self.head)])
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def close(self) -> str:
        self._file.close()
        return self._hash.hexdigest()


class _MemorySink:
    """Collects a small non-file field; refuses to grow past a bound."""

    def __init__(self, limit: int = 64 * 1024) -> None:
        self.data = bytearray()
        self._limit = limit

    def write(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > self._limit:
            raise BadMultipart("a form field is too large")


def parse_multipart_upload(reader: BodyReader, boundary: bytes, spool_dir: Path) -> _SpooledAudio:
    """Stream a multipart body and spool its first `audio` part to a file in `spool_dir`.

    Raises BadMultipart (ill-formed or no audio part) or ClientGone (truncated body).
    """
    delimiter = b"--" + boundary
    separator = b"\r\n" + delimiter
    buf = bytearray()
    audio: _SpooledAudio | None = None

    def fill() -> None:
        chunk = reader.read(_CHUNK)
        if not chunk:
            raise BadMultipart("the body ends before the closing boundary")
        buf.extend(chunk)

    # Preamble: everything before the first delimiter is ignored (RFC 2046).
    while True:
        i = buf.find(delimiter)
        if i >= 0:
            del buf[: i + len(delimiter)]
            break
        del buf[: max(0, len(buf) - len(delimiter))]
        fill()
    try:
        while True:
            while len(buf) < 2:
                fill()
            if buf[:2] == b"--":
                reader.drain(_SMALL_UNREAD_BODY)  # the epilogue, ignored
                break
            # Transport padding (spaces/tabs) may follow a delimiter before its CRLF.
            while True:
                stripped = buf.lstrip(b" \t")
                if len(stripped) >= 2:
                    break
                fill()
            if stripped[:2] != b"\r\n":
                raise BadMultipart("a boundary is not followed by CRLF")
            del buf[: len(buf) - len(stripped) + 2]
            while (end := buf.find(b"\r\n\r\n")) < 0:
                if len(buf) > 16 * 1024:
                    raise BadMultipart("part headers are too large")
                fill()
            headers: dict[str, str] = {}
            for line in bytes(buf[:end]).decode("utf-8", "replace").split("\r\n"):
                key, sep, value = line.partition(":")
                if sep:
                    headers[key.strip().lower()] = value.strip()
            del buf[: end + 4]
            kind, params = _parse_header_params(headers.get("content-disposition", ""))
            if kind != "form-data" or "name" not in params:
                raise BadMultipart("a part has no Content-Disposition: form-data name")
            sink: _AudioSink | _MemorySink
            if params["name"] == "audio" and audio is None:
                sink = _AudioSink(spool_dir / f"upload-{uuid.uuid4().hex}")
            else:
                sink = _MemorySink()
            try:
                while True:
                    k = buf.find(separator)
                    if k >= 0:
                        sink.write(bytes(buf[:k]))
                        del buf[: k + len(separator)]
                        break
                    safe = len(buf) - (len(separator) - 1)
                    if safe > 0:
                        sink.write(bytes(buf[:safe]))
                        del buf[:safe]
                    fill()
            except BaseException:
                if isinstance(sink, _AudioSink):
                    sink.close()
                    sink.path.unlink(missing_ok=True)
                raise
            if isinstance(sink, _AudioSink):
                digest = sink.close()
                filename = _part_filename(params) or "audio"
                audio = _SpooledAudio(sink.path, filename, sink.size, digest, bytes(sink.head))
    except BaseException:
        if audio is not None:
            audio.path.unlink(missing_ok=True)
        raise
    if audio is None:
        raise BadMultipart("audio should not be empty")
    return audio


# ---------------------------------------------------------------------------------------------
# List filters (gladia-api.md section 5).

_DEEP_OBJECT_KEY = re.compile(r"^custom_metadata((?:\[[^\[\]]*\])+)$")


class _QueryError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass
class _ListQuery:
    offset: int = 0
    limit: int = 20
    statuses: set[str] | None = None
    after: datetime | None = None
    before: datetime | None = None
    day: date | None = None
    metadata: dict[str, Any] | None = None
    filter_pairs: list[tuple[str, str]] = field(default_factory=list)


def _parse_datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip())
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def parse_list_query(pairs: Sequence[tuple[str, str]]) -> _ListQuery:
    """Parse list query pairs; raises _QueryError with validation_errors when one is invalid."""
    q = _ListQuery()
    errors: list[str] = []
    for key, value in pairs:
        if key not in ("offset", "limit"):
            q.filter_pairs.append((key, value))
        if key in ("offset", "limit"):
            low = 0 if key == "offset" else 1
            try:
                number = int(value)
            except ValueError:
                errors.append(f"{key} must be an integer number")
                continue
            if number < low:
                errors.append(f"{key} must not be less than {low}")
            elif key == "offset":
                q.offset = number
            else:
                q.limit = number
        elif key == "status":
            # The documented encoding repeats the key; a comma list is accepted too.
            for part in (p.strip() for p in value.split(",")):
                if not part:
                    continue
                if part not in _JOB_STATUSES:
                    errors.append(
                        "each value in status must be one of the following values: "
                        + ", ".join(_JOB_STATUSES)
                    )
                    continue
                q.statuses = (q.statuses or set()) | {part}
        elif key in ("after_date", "before_date"):
            try:
                moment = _parse_datetime(value)
            except ValueError:
                errors.append(f"{key} must be a valid ISO 8601 date string")
                continue
            if key == "after_date":
                q.after = moment
            else:
                q.before = moment
        elif key == "date":
            try:
                q.day = (
                    date.fromisoformat(value)
                    if len(value.strip()) == 10
                    else _parse_datetime(value).date()
                )
            except ValueError:
                errors.append("date must be a valid ISO 8601 date string")
        elif key == "custom_metadata":
            try:
                wanted = json.loads(value)
            except ValueError:
                errors.append("custom_metadata must be a valid JSON object")
                continue
            if not isinstance(wanted, dict):
                errors.append("custom_metadata must be a valid JSON object")
                continue
            q.metadata = q.metadata or {}
            _merge(q.metadata, wanted)
        elif match := _DEEP_OBJECT_KEY.match(key):
            # deepObject style, as the SDK sends it: custom_metadata[a][b]=value (a string).
            segments = re.findall(r"\[([^\[\]]*)\]", match.group(1))
            nested: dict[str, Any] = {}
            cursor = nested
            for segment in segments[:-1]:
                cursor = cursor.setdefault(segment, {})
            cursor[segments[-1]] = value
            q.metadata = q.metadata or {}
            _merge(q.metadata, nested)
    if errors:
        raise _QueryError(errors)
    return q


def _json_equal(a: Any, b: Any) -> bool:
    """Strict JSON equality: no string/number coercion, booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def metadata_contains(stored: Any, wanted: Any) -> bool:
    """Containment matching: every key of `wanted` is in `stored`, nested objects recursively."""
    if isinstance(wanted, dict):
        return isinstance(stored, dict) and all(
            key in stored and metadata_contains(stored[key], value) for key, value in wanted.items()
        )
    return _json_equal(stored, wanted)


# ---------------------------------------------------------------------------------------------
# The simulator.


def _now() -> datetime:
    """The current UTC time truncated to milliseconds, the precision the API shows."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and Z, e.g. 2023-12-28T09:04:17.210Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@dataclass
class _Upload:
    id: str
    path: Path
    sha256: str
    size: int
    filename: str
    extension: str
    audio_duration: float
    number_of_channels: int
    corrupt: bool
    too_long: bool
    source: str | None
    audio_url: str


@dataclass
class _Job:
    id: str
    seq: int
    upload: _Upload
    body: dict[str, Any]
    created_at: datetime
    created_mono: float
    fail_code: int | None
    status: str = "queued"
    started_mono: float = 0.0
    due_mono: float = 0.0
    completed_at: datetime | None = None
    error_code: int | None = None
    result: dict[str, Any] | None = None
    deleted: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    sim: GladiaSimulator

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection-level errors are the clients' business; handler bugs are recorded."""


class GladiaSimulator:
    """Gladia's pre-recorded v2 API over real HTTP, with fault injection and a ledger."""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        job_seconds: float = 0.2,
        concurrency: int = 3,
        list_lag_seconds: float = 0.0,
        corrupt_media: Literal["job_error", "upload_error"] = "job_error",
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS,
        host: str = "127.0.0.1",
        port: int = 0,
        reject_unknown_fields: bool = True,
        echo_all_params: bool = False,
        null_on_error: bool = True,
        max_queued_jobs: int | None = None,
        forbidden_features: Sequence[str] = (),
        job_transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        """Configure; nothing listens until start().

        The extra switches choose among [?] behaviours of gladia-api.md: unknown create fields
        give 400 (or are ignored); request_params echoes only the sent keys (or every flag with
        its default, like the OAS example); an error job has null file/request_params (or keeps
        them); with max_queued_jobs, a create beyond that many queued jobs gets 429 (section 8).
        ``forbidden_features`` are create fields the account's plan lacks: a create that turns
        one on gets 403, as SKILLS describes ("key doesn't have access to the feature").
        ``job_transform`` rewrites what GET of a done job returns (odd shapes, lone surrogate
        escapes; bytes are sent as the raw body) to test how the client copes with odd answers.
        """
        if corrupt_media not in ("job_error", "upload_error"):
            raise ValueError("corrupt_media must be 'job_error' or 'upload_error'")
        self._api_key = api_key
        self.job_seconds = job_seconds
        self._concurrency = concurrency
        self.list_lag_seconds = list_lag_seconds
        self.corrupt_media = corrupt_media
        self.max_upload_bytes = max_upload_bytes
        self.max_audio_seconds = max_audio_seconds
        self.host = host
        self.port = port
        self.reject_unknown_fields = reject_unknown_fields
        self.echo_all_params = echo_all_params
        self.null_on_error = null_on_error
        self.max_queued_jobs = max_queued_jobs
        self.forbidden_features = frozenset(forbidden_features)
        self.job_transform = job_transform
        self.faults = FaultPlan()

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._server_lock = threading.Lock()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._scheduler: threading.Thread | None = None
        self._callback_thread: threading.Thread | None = None
        self._callback_queue: queue.Queue[tuple[str, str, dict[str, Any], str] | None] = (
            queue.Queue()
        )
        self._spool: tempfile.TemporaryDirectory[str] | None = None
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

        self._uploads: dict[str, _Upload] = {}
        self._upload_order: list[_Upload] = []
        self._jobs: dict[str, _Job] = {}
        self._job_order: list[_Job] = []
        self._queue: collections.deque[_Job] = collections.deque()
        self._processing: list[_Job] = []
        self._requests: list[RequestRecord] = []
        self._callbacks: list[dict[str, Any]] = []
        self._internal_errors: list[str] = []
        self._creates: collections.Counter[str] = collections.Counter()
        self._fail_next: collections.deque[int] = collections.deque()
        self._peak_processing = 0
        self._seq = 0
        self._down = False
        self._started = False
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> GladiaSimulator:
        """Bind the port (an ephemeral one when port=0), start serving; returns self."""
        if self._started:
            return self
        self._started = True
        self._spool = tempfile.TemporaryDirectory(prefix="gladia-sim-")
        with self._server_lock:
            self._bind()
        self._scheduler = threading.Thread(
            target=self._run_scheduler, name="gladia-sim-scheduler", daemon=True
        )
        self._scheduler.start()
        self._callback_thread = threading.Thread(
            target=self._deliver_callbacks, name="gladia-sim-callbacks", daemon=True
        )
        self._callback_thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end the background threads, delete spooled uploads. Never hangs."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        with self._server_lock:
            if not self._down:
                self._unbind()
        with self._cond:
            self._cond.notify_all()
        if self._scheduler is not None:
            self._scheduler.join(timeout=5)
        self._callback_queue.put(None)
        if self._callback_thread is not None:
            self._callback_thread.join(timeout=5)
        if self._spool is not None:
            shutil.rmtree(self._spool.name, ignore_errors=True)

    def __enter__(self) -> GladiaSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The root URL clients use, e.g. http://127.0.0.1:41234 (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def spool_dir(self) -> Path:
        """Where uploaded files are kept while the simulator runs."""
        if self._spool is None:
            raise RuntimeError("the simulator is not started")
        return Path(self._spool.name)

    @property
    def concurrency(self) -> int:
        """How many jobs may be processing at once (the plan's concurrency)."""
        return self._concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        with self._cond:
            self._concurrency = value
            self._cond.notify_all()

    def _bind(self) -> None:
        server = _Server((self.host, self.port), _Handler)
        server.sim = self
        self.port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"gladia-sim-{self.port}",
            daemon=True,
        )
        self._server, self._serve_thread = server, thread
        thread.start()

    def _unbind(self) -> None:
        server, thread = self._server, self._serve_thread
        self._server = self._serve_thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def set_outage(self, down: bool) -> None:
        """Down: close the listening socket and cut open connections. Up: listen on the same port.

        Jobs keep progressing during an outage, as they would on Gladia's side.
        """
        with self._server_lock:
            if self._stopped or not self._started:
                raise RuntimeError("set_outage needs a running simulator")
            if down and not self._down:
                self._down = True
                self._unbind()
            elif not down and self._down:
                self._bind()
                self._down = False

    @property
    def is_down(self) -> bool:
        """True while set_outage(True) is in force."""
        return self._down

    def _register(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.add(conn)

    def _unregister(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.discard(conn)

    # -- test controls and ledger ------------------------------------------------------------

    def fail_next_jobs(self, count: int, error_code: int = 500) -> None:
        """The next `count` jobs created end with status "error" and this error_code."""
        with self._lock:
            self._fail_next.extend([error_code] * count)

    def jobs(self) -> list[dict[str, Any]]:
        """Every job ever created (deleted ones too), each as GET returns it, oldest first."""
        with self._lock:
            return [self._job_object(job) for job in self._job_order]

    def uploads(self) -> list[dict[str, Any]]:
        """Every upload: id, sha256, size, filename, audio_url (plus extension, audio_duration)."""
        with self._lock:
            return [
                {
                    "id": u.id,
                    "sha256": u.sha256,
                    "size": u.size,
                    "filename": u.filename,
                    "audio_url": u.audio_url,
                    "extension": u.extension,
                    "audio_duration": u.audio_duration,
                }
                for u in self._upload_order
            ]

    def requests(self) -> list[RequestRecord]:
        """Every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    def callbacks(self) -> list[dict[str, Any]]:
        """Every callback attempt: job_id, url, method, event, body, status (None), error."""
        with self._lock:
            return copy.deepcopy(self._callbacks)

    def internal_errors(self) -> list[str]:
        """Tracebacks of simulator bugs hit while handling requests (should stay empty)."""
        with self._lock:
            return list(self._internal_errors)

    def creates_per_content(self) -> collections.Counter[str]:
        """Uploaded-file sha256 -> number of jobs created for it (lost responses included)."""
        with self._lock:
            return collections.Counter(self._creates)

    @property
    def peak_processing(self) -> int:
        """The most jobs ever processing at the same time."""
        with self._lock:
            return self._peak_processing

    def wait_idle(self, timeout: float) -> None:
        """Block until no job is queued or processing; TimeoutError after `timeout` seconds."""
        with self._cond:
            idle = self._cond.wait_for(lambda: not self._queue and not self._processing, timeout)
            if not idle:
                raise TimeoutError(
                    f"{len(self._queue)} queued and {len(self._processing)} processing jobs "
                    f"after {timeout} s"
                )

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _record_internal_error(self, text: str) -> None:
        with self._lock:
            self._internal_errors.append(text)

    # -- state: uploads and jobs ---------------------------------------------------------------

    def _store_upload(self, spooled: _SpooledAudio, info: MediaInfo, source: str | None) -> _Upload:
        upload_id = str(uuid.uuid4())
        corrupt = info.extension is None
        extension = info.extension or (
            Path(spooled.filename).suffix.lstrip(".").lower() or "unknown"
        )
        # A file we cannot read still gets a plausible duration, as for an undecodable stream.
        duration = info.audio_duration if not corrupt else spooled.size / 16_000
        upload = _Upload(
            id=upload_id,
            path=spooled.path,
            sha256=spooled.sha256,
            size=spooled.size,
            filename=spooled.filename,
            extension=extension,
            audio_duration=duration,
            number_of_channels=info.number_of_channels,
            corrupt=corrupt,
            too_long=not corrupt and duration > self.max_audio_seconds,
            source=source,
            audio_url=f"{self.base_url}/file/{upload_id}",
        )
        with self._lock:
            self._uploads[upload_id] = upload
            self._upload_order.append(upload)
        return upload

    def _upload_for_url(self, url: str) -> _Upload | None:
        prefix = f"{self.base_url}/file/"
        if not url.startswith(prefix):
            return None
        with self._lock:
            return self._uploads.get(url[len(prefix) :])

    def _create_job(self, body: dict[str, Any], upload: _Upload) -> _Job | None:
        """Queue a new job; None when the queue is full (max_queued_jobs)."""
        with self._cond:
            if self.max_queued_jobs is not None and len(self._queue) >= self.max_queued_jobs:
                return None
            fail_code = self._fail_next.popleft() if self._fail_next else None
            if fail_code is None and (upload.corrupt or upload.too_long):
                fail_code = 422
            self._seq += 1
            job = _Job(
                id=str(uuid.uuid4()),
                seq=self._seq,
                upload=upload,
                body=copy.deepcopy(body),
                created_at=_now(),
                created_mono=time.monotonic(),
                fail_code=fail_code,
            )
            self._jobs[job.id] = job
            self._job_order.append(job)
            self._queue.append(job)
            self._creates[upload.sha256] += 1
            self._cond.notify_all()
            return job

    def _visible_job(self, job_id: str) -> _Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None or job.deleted else job

    def _delete_job(self, job_id: str) -> int:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.deleted:
                return 404
            if job.status not in ("done", "error"):
                return 403
            job.deleted = True
            return 202

    def _list_page(self, q: _ListQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of matching jobs, newest first, as one consistent snapshot; and the total."""
        now = time.monotonic()
        with self._lock:
            found = []
            for job in self._job_order:
                if job.deleted or now < job.created_mono + self.list_lag_seconds:
                    continue
                if q.statuses is not None and job.status not in q.statuses:
                    continue
                if q.after is not None and not job.created_at > q.after:
                    continue
                if q.before is not None and not job.created_at < q.before:
                    continue
                if q.day is not None and job.created_at.date() != q.day:
                    continue
                stored = job.body.get("custom_metadata")
                if q.metadata and not metadata_contains(stored, q.metadata):
                    continue
                found.append(job)
            found.sort(key=lambda j: (j.created_at, j.seq), reverse=True)
            page = found[q.offset : q.offset + q.limit]
            return [self._job_object(job) for job in page], len(found)

    def _job_object(self, job: _Job) -> dict[str, Any]:
        """The job exactly as GET /v2/pre-recorded/{id} shows it (sections 4.1, 4.3, 4.4)."""
        upload = job.upload
        file: dict[str, Any] | None = {
            "id": upload.id,
            "filename": upload.filename,
            "source": upload.source,
            "audio_duration": upload.audio_duration,
            "number_of_channels": upload.number_of_channels,
        }
        params: dict[str, Any] | None = {
            k: copy.deepcopy(v) for k, v in job.body.items() if k != "custom_metadata"
        }
        if self.echo_all_params and params is not None:
            for flag in _FLAG_DEFAULTS:
                params.setdefault(flag, False)
        if job.status == "error" and self.null_on_error:
            file = params = None
        return {
            "id": job.id,
            "request_id": "G-" + job.id[:8],
            "version": 2,
            "kind": "pre-recorded",
            "status": job.status,
            "created_at": iso(job.created_at),
            "completed_at": iso(job.completed_at) if job.completed_at else None,
            "custom_metadata": copy.deepcopy(job.body.get("custom_metadata")),
            "error_code": job.error_code,
            "post_session_metadata": {},
            "file": file,
            "request_params": params,
            "result": copy.deepcopy(job.result) if job.status == "done" else None,
        }

    # -- simulated processing ----------------------------------------------------------------

    def _run_scheduler(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                self._advance_locked(now)
                dues = [job.due_mono for job in self._processing]
                self._cond.wait(max(0.0, min(dues) - now) if dues else None)

    def _advance_locked(self, now: float) -> None:
        changed = False
        while True:
            progressed = False
            for job in [j for j in self._processing if j.due_mono <= now]:
                self._finish_locked(job, now)
                progressed = True
            while self._queue and len(self._processing) < self._concurrency:
                job = self._queue.popleft()
                job.status = "processing"
                job.started_mono = now
                job.due_mono = now + self.job_seconds
                self._processing.append(job)
                self._peak_processing = max(self._peak_processing, len(self._processing))
                progressed = True
            if not progressed:
                break
            changed = True
        if changed:
            self._cond.notify_all()

    def _finish_locked(self, job: _Job, now: float) -> None:
        self._processing.remove(job)
        job.completed_at = _now()
        if job.fail_code is not None:
            job.status = "error"
            job.error_code = job.fail_code
        else:
            job.status = "done"
            job.result = build_result(
                job.upload.sha256, job.upload.audio_duration, job.body, now - job.started_mono
            )
        self._queue_callbacks(job)

    def _queue_callbacks(self, job: _Job) -> None:
        body = job.body
        targets: list[tuple[str, str]] = []
        config = body.get("callback_config")
        if body.get("callback") is True and isinstance(config, dict) and "url" in config:
            targets.append((config["url"], config.get("method", "POST")))
        if isinstance(body.get("callback_url"), str):
            targets.append((body["callback_url"], "POST"))
        if not targets:
            return
        payload: dict[str, Any]
        if job.status == "done":
            payload = {
                "id": job.id,
                "event": "transcription.success",
                "payload": copy.deepcopy(job.result),
                "custom_metadata": copy.deepcopy(body.get("custom_metadata")),
            }
        else:
            code = job.error_code or 500
            payload = {
                "id": job.id,
                "event": "transcription.error",
                "error": {"code": code, "message": _phrase(code)},
                "custom_metadata": copy.deepcopy(body.get("custom_metadata")),
            }
        for url, method in targets:
            self._callback_queue.put((url, method, payload, job.id))

    def _deliver_callbacks(self) -> None:
        with httpx.Client(timeout=3.0) as client:
            while True:
                item = self._callback_queue.get()
                if item is None:
                    return
                url, method, payload, job_id = item
                record: dict[str, Any] = {
                    "job_id": job_id,
                    "url": url,
                    "method": method,
                    "event": payload["event"],
                    "body": payload,
                    "status": None,
                    "error": None,
                }
                try:
                    record["status"] = client.request(method, url, json=payload).status_code
                except httpx.HTTPError as exc:  # delivery failures are ignored, as Gladia would
                    record["error"] = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self._callbacks.append(record)


# ---------------------------------------------------------------------------------------------
# HTTP.

_JOB_PATH = re.compile(r"^/v2/(?:pre-recorded|transcription)/([^/]+)(/file)?/?$")
_COLLECTION_PATH = re.compile(r"^/v2/(?:pre-recorded|transcription)/?$")


def classify(method: str, path: str) -> tuple[str, str | None]:
    """The ledger endpoint name of a request and the job id in its path, if any."""
    if path.rstrip("/") == "/v2/upload" and method == "POST":
        return "upload", None
    if _COLLECTION_PATH.match(path):
        if method == "POST":
            return "create", None
        if method == "GET":
            return "list", None
    match = _JOB_PATH.match(path)
    if match:
        job_id = match.group(1)
        if match.group(2) and method == "GET":
            return "file", job_id
        if not match.group(2) and method == "GET":
            return "get", job_id
        if not match.group(2) and method == "DELETE":
            return "delete", job_id
    return "other", None


def _format_retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gladia-sim/2"
    sys_version = ""
    timeout = 60
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    # -- plumbing ------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.sim._register(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.sim._unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the ledger is the log."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def _handle(self) -> None:
        sim = self.server.sim
        started = time.time()
        parts = urlsplit(self.path)
        self._route_path = parts.path
        self._query = parts.query
        self._status: int | None = None
        self._lose = False
        self._close_after = False
        self._call_id = str(uuid.uuid4())
        endpoint, job_id = classify(self.command, parts.path)
        length = self.headers.get("Content-Length")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        try:
            body_length = int(length) if length is not None else 0
            if body_length < 0:
                raise ValueError(length)
        except ValueError:
            body_length = 0
            self._close_after = True
        self._body = BodyReader(cast(BinaryIO, self.rfile), body_length)
        if chunked:
            self._close_after = True  # we do not parse chunked bodies: never reuse this socket
        try:
            self._serve(sim, endpoint, job_id, chunked)
        except ClientGone:
            self._drop(rst=False)
        except OSError:
            self._status = None
            self.close_connection = True
        except Exception:
            import traceback

            sim._record_internal_error(traceback.format_exc())
            if self._status is None and not self._lose:
                try:
                    self._error(500, "Internal Server Error")
                except OSError:
                    self.close_connection = True
        finally:
            sim._record(RequestRecord(self.command, parts.path, endpoint, self._status, started))

    def _serve(
        self, sim: GladiaSimulator, endpoint: str, job_id: str | None, chunked: bool
    ) -> None:
        if sim.is_down:
            self._drop(rst=True)
            return
        fault = sim.faults.take(endpoint)
        if fault is not None:
            if fault.kind == "reset":
                self._drop(rst=True)
                return
            if fault.kind == "status":
                self._error(fault.status, _phrase(fault.status), retry_after=fault.retry_after)
                return
            if fault.kind == "delay":
                time.sleep(fault.delay)
            elif fault.kind == "lose_response":
                self._lose = True
        if not self._authorized(sim):
            self._error(401, "Unauthorized: missing or invalid x-gladia-key header")
            return
        if chunked and endpoint in ("upload", "create"):
            self._error(411, "Length Required")
            return
        if endpoint == "upload":
            self._upload(sim)
        elif endpoint == "create":
            self._create(sim)
        elif endpoint == "list":
            self._list(sim)
        elif endpoint == "get":
            self._get(sim, cast(str, job_id))
        elif endpoint == "delete":
            self._delete(sim, cast(str, job_id))
        elif endpoint == "file":
            self._file(sim, cast(str, job_id))
        else:
            self._error(404, f"Cannot {self.command} {self._route_path}")

    def _authorized(self, sim: GladiaSimulator) -> bool:
        given = self.headers.get("x-gladia-key", "")
        return hmac.compare_digest(given.encode(), sim._api_key.encode())

    def _drop(self, *, rst: bool) -> None:
        """End the connection without a response; with rst, abort it (TCP RST)."""
        self._status = None
        self.close_connection = True
        if rst:
            try:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
            except OSError:
                pass

    def _settle_body(self) -> None:
        """Before answering: drain a small unread body, or plan to close after a large one."""
        remaining = self._body.remaining
        if 0 < remaining <= _SMALL_UNREAD_BODY and not self._close_after:
            self._body.drain(_SMALL_UNREAD_BODY)
        elif remaining > 0:
            self._close_after = True

    def _linger(self) -> None:
        """After an early answer, read (and discard) what the client still sends for a moment.

        Closing with unread data makes the kernel send RST, which can destroy the answer before
        the client reads it (the 413 would turn into a reset). So half-close, drain briefly,
        then close: the body is never read in full if the client keeps sending.
        """
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + 2.0
            while self._body.remaining > 0 and time.monotonic() < deadline:
                self._body.read(_CHUNK)
        except (ClientGone, OSError):
            pass

    def _send(
        self,
        status: int,
        body: bytes | Path = b"",
        content_type: str | None = "application/json; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if self.server.sim.is_down or self._lose:
            self._drop(rst=False)
            return
        self._settle_body()
        size = body.stat().st_size if isinstance(body, Path) else len(body)
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(size))
        self.send_header("x-aipi-call-id", self._call_id)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self._close_after:
            self.send_header("Connection", "close")
        self.end_headers()
        if isinstance(body, Path):
            with body.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    self.wfile.write(chunk)
        else:
            self.wfile.write(body)
        self._status = status
        if self._close_after:
            self.close_connection = True
            if self._body.remaining > 0:
                self._linger()

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode(), headers=headers)

    def _error(
        self,
        status: int,
        message: str,
        validation_errors: Sequence[str] = (),
        *,
        retry_after: float | None = None,
    ) -> None:
        """Answer with Gladia's error body (section 3.3); validation_errors only on 400."""
        body: dict[str, Any] = {
            "timestamp": iso(_now()),
            "path": self._route_path,
            "request_id": "G-" + uuid.uuid4().hex[:8],
            "statusCode": status,
            "message": message,
        }
        if status == 400:
            body["validation_errors"] = list(validation_errors)
        headers = {} if retry_after is None else {"Retry-After": _format_retry_after(retry_after)}
        self._send_json(status, body, headers)

    def _read_json(self) -> tuple[bool, Any]:
        if self._body.remaining > _MAX_JSON_BODY:
            self._error(413, "Payload Too Large")
            return False, None
        data = bytearray()
        while chunk := self._body.read(_CHUNK):
            data += chunk
        try:
            return True, json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._error(400, "Invalid JSON body", ["body must be a valid JSON object"])
            return False, None

    # -- endpoints -------------------------------------------------------------------------------

    def _upload(self, sim: GladiaSimulator) -> None:
        if self._body.remaining > sim.max_upload_bytes:
            self._error(413, "File too large: the maximum upload size is 1000 MB")
            return
        kind, params = _parse_header_params(self.headers.get("Content-Type", ""))
        source: str | None = None
        if kind == "multipart/form-data":
            boundary = params.get("boundary")
            if not boundary:
                self._error(400, "Content-Type is missing Multipart Boundary.")
                return
            try:
                spooled = parse_multipart_upload(
                    self._body, boundary.encode("latin-1"), sim.spool_dir
                )
            except BadMultipart as exc:
                self._error(400, "Invalid multipart body", [str(exc)])
                return
        elif kind == "application/json":
            ok, body = self._read_json()
            if not ok:
                return
            url = body.get("audio_url") if isinstance(body, dict) else None
            errors: list[str] = []
            _v_uri("audio_url", url, errors)
            if errors:
                self._error(400, "Invalid parameter(s).", errors)
                return
            fetched = self._fetch(sim, cast(str, url))
            if fetched is None:
                self._error(400, "Could not download the file at audio_url", ["audio_url"])
                return
            spooled, source = fetched, url
        else:
            self._error(400, "Content-Type is missing Multipart Boundary.")
            return
        info = probe_media(spooled.path, spooled.head)
        too_long = info.extension is not None and info.audio_duration > sim.max_audio_seconds
        if (info.extension is None or too_long) and sim.corrupt_media == "upload_error":
            spooled.path.unlink(missing_ok=True)
            if too_long:
                self._error(422, "Audio duration exceeds the maximum of 135 minutes")
            else:
                self._error(422, "Unable to process the file: unsupported or corrupted media")
            return
        upload = sim._store_upload(spooled, info, source)
        metadata: dict[str, Any] = {
            "id": upload.id,
            "filename": upload.filename,
            "extension": upload.extension,
            "size": upload.size,
            "audio_duration": upload.audio_duration,
            "number_of_channels": upload.number_of_channels,
        }
        if source is not None:
            metadata["source"] = source
        self._send_json(200, {"audio_url": upload.audio_url, "audio_metadata": metadata})

    def _fetch(self, sim: GladiaSimulator, url: str) -> _SpooledAudio | None:
        """URL import: download to the spool while hashing (any reachable http URL)."""
        sink = _AudioSink(sim.spool_dir / f"upload-{uuid.uuid4().hex}")
        try:
            with httpx.stream("GET", url, timeout=10.0, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise httpx.HTTPError(f"status {response.status_code}")
                for chunk in response.iter_bytes(_CHUNK):
                    sink.write(chunk)
                    if sink.size > sim.max_upload_bytes:
                        raise httpx.HTTPError("too large")
        except httpx.HTTPError:
            sink.close()
            sink.path.unlink(missing_ok=True)
            return None
        digest = sink.close()
        name = Path(urlsplit(url).path).name or "audio"
        return _SpooledAudio(sink.path, name, sink.size, digest, bytes(sink.head))

    def _create(self, sim: GladiaSimulator) -> None:
        kind, _ = _parse_header_params(self.headers.get("Content-Type", ""))
        if kind != "application/json":
            self._error(
                400,
                "/v2/pre-recorded only accept application/json",
                ["Content-Type must be application/json"],
            )
            return
        ok, body = self._read_json()
        if not ok:
            return
        errors = validate_create_body(body, reject_unknown_fields=sim.reject_unknown_fields)
        upload = None
        if not errors:
            upload = sim._upload_for_url(body["audio_url"])
            if upload is None:
                errors.append(
                    "audio_url must be a file URL returned by POST /v2/upload on this server"
                )
        if errors or upload is None:
            self._error(
                400, "Invalid parameter(s). See validation_errors for more details.", errors
            )
            return
        lacking = sorted(f for f in sim.forbidden_features if body.get(f) not in (None, False))
        if lacking:
            self._error(403, f"Your plan does not include {', '.join(lacking)}: upgrade it")
            return
        job = sim._create_job(body, upload)
        if job is None:
            self._error(429, "Too many queued transcriptions: wait for some to finish")
            return
        self._send_json(
            201, {"id": job.id, "result_url": f"{sim.base_url}/v2/pre-recorded/{job.id}"}
        )

    def _list(self, sim: GladiaSimulator) -> None:
        pairs = parse_qsl(self._query, keep_blank_values=True)
        try:
            q = parse_list_query(pairs)
        except _QueryError as exc:
            self._error(400, "Invalid query parameter(s).", exc.errors)
            return
        items, total = sim._list_page(q)

        def page_url(offset: int) -> str:
            query = urlencode([*q.filter_pairs, ("offset", str(offset)), ("limit", str(q.limit))])
            return f"{sim.base_url}{self._route_path}?{query}"

        more = q.offset + q.limit < total
        self._send_json(
            200,
            {
                "first": page_url(0),
                "current": page_url(q.offset),
                "next": page_url(q.offset + q.limit) if more else None,
                "items": items,
            },
        )

    def _get(self, sim: GladiaSimulator, job_id: str) -> None:
        job = sim._visible_job(job_id)
        if job is None:
            self._error(404, "The transcription doesn't exist or has been deleted")
            return
        with sim._lock:
            obj = sim._job_object(job)
        if sim.job_transform is not None and obj.get("status") == "done":
            odd = sim.job_transform(obj)
            if isinstance(odd, bytes):
                self._send(200, odd)
            else:
                # ASCII JSON: lone surrogates travel as the \uXXXX escapes a backend would send.
                self._send(200, json.dumps(odd, ensure_ascii=True).encode())
            return
        self._send_json(200, obj)

    def _delete(self, sim: GladiaSimulator, job_id: str) -> None:
        status = sim._delete_job(job_id)
        if status == 202:
            self._send(202, b"", content_type=None)
        elif status == 403:
            self._error(403, "The transcription is not in a deletable state (queued or processing)")
        else:
            self._error(404, "The transcription doesn't exist or has been deleted")

    def _file(self, sim: GladiaSimulator, job_id: str) -> None:
        job = sim._visible_job(job_id)
        if job is None or not job.upload.path.exists():
            self._error(
                404, "The transcription or its audio file doesn't exist or has been deleted"
            )
            return
        self._send(200, job.upload.path, content_type="application/octet-stream")


# ---------------------------------------------------------------------------------------------
# Manual runs.


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator in the foreground until Ctrl-C, printing its base URL."""
    parser = argparse.ArgumentParser(description="Gladia pre-recorded v2 API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--job-seconds", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--list-lag-seconds", type=float, default=0.0)
    parser.add_argument(
        "--corrupt-media", choices=("job_error", "upload_error"), default="job_error"
    )
    args = parser.parse_args(argv)
    sim = GladiaSimulator(
        api_key=args.api_key,
        job_seconds=args.job_seconds,
        concurrency=args.concurrency,
        list_lag_seconds=args.list_lag_seconds,
        corrupt_media=args.corrupt_media,
        host=args.host,
        port=args.port,
    )
    with sim:
        print(sim.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
