"""What the local engine decodes a file with, and the job object it answers with.

A folder's options are Gladia's (the same config serves both engines): :func:`plan_for` reads
the ones Whisper can honour (languages, translation, vocabulary) and names the others, and
:func:`build_job` shapes a worker's reply as ``GET /v2/pre-recorded/{id}`` does (status done;
docs/gladia-contract.md) so the same output writers serve both engines. Pure functions: the
worker processes and the tests use them without a model.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["DecodePlan", "Tuning", "build_job", "iso_now", "plan_for"]

# Gladia options the local engine cannot honour, by the label reported to the user.
_GLADIA_ONLY_FLAGS: Mapping[str, str] = {
    "diarization": "diarization",
    "summarization": "summarization",
    "pii_redaction": "pii_redaction",
    "sentiment_analysis": "sentiment_analysis",
    "named_entity_recognition": "named_entity_recognition",
    "sentences": "sentences",
    "punctuation_enhanced": "punctuation_enhanced",
    "custom_spelling": "custom_spelling",
    "audio_to_llm": "audio_to_llm",
    "callback": "callback",
    "callback_url": "callback_url",
    "chapterization": "chapterization",
    "moderation": "moderation",
    "name_consistency": "name_consistency",
    "structured_data_extraction": "structured_data_extraction",
    "diarization_enhanced": "diarization_enhanced",
    "audio_enhancer": "audio_enhancer",
}


# -- what the options ask for ------------------------------------------------------------


@dataclass(frozen=True)
class Tuning:
    """What ``[local]`` adds to every file: the VAD filter, hotwords, a language, niceness."""

    vad: bool = True
    hotwords: tuple[str, ...] = ()
    # Used when a file's folder names no single language (None: detected).
    language: str | None = None
    # The worker processes' niceness (never below the daemon's own).
    nice: int = 0


@dataclass(frozen=True)
class DecodePlan:
    """How one file is transcribed locally, derived from its Gladia-style options."""

    language: str | None
    languages: tuple[str, ...]
    translate_to_english: bool
    unavailable: tuple[str, ...]
    # Whisper's hotwords: [local] hotwords, then the folder's custom_vocabulary.
    hotwords: tuple[str, ...] = ()


def _vocabulary(options: Mapping[str, Any]) -> list[str]:
    """The words of a folder's ``custom_vocabulary`` (plain strings or ``{value: ...}``)."""
    if not options.get("custom_vocabulary"):
        return []
    config = options.get("custom_vocabulary_config")
    entries = config.get("vocabulary") if isinstance(config, Mapping) else None
    if not isinstance(entries, list | tuple):
        return []
    words = [entry.get("value") if isinstance(entry, Mapping) else entry for entry in entries]
    return [word.strip() for word in words if isinstance(word, str) and word.strip()]


def plan_for(options: Mapping[str, Any], tuning: Tuning | None = None) -> DecodePlan:
    """Map Gladia options onto Whisper: pinned language, English translation, hotwords, what
    is missing.

    The folder's ``language_config.languages`` comes first: one code pins it; several leave
    it to detection among them, unless ``[local] language`` is one of them. Without any,
    ``[local] language`` pins it.
    """
    tuning = tuning or Tuning()
    config = options.get("language_config")
    config = config if isinstance(config, Mapping) else {}
    raw_languages = config.get("languages")
    languages = tuple(
        dict.fromkeys(
            code.strip().lower() for code in (raw_languages or ())
            if isinstance(code, str) and code.strip()
        )
    ) if isinstance(raw_languages, list | tuple) else ()
    unavailable = [label for flag, label in _GLADIA_ONLY_FLAGS.items() if options.get(flag)]
    if config.get("code_switching") and len(languages) != 1:
        unavailable.append("language_config.code_switching")
    translate = False
    if options.get("translation"):
        settings = options.get("translation_config")
        settings = settings if isinstance(settings, Mapping) else {}
        raw_targets = settings.get("target_languages")
        targets = [t for t in raw_targets if isinstance(t, str)] if isinstance(
            raw_targets, list | tuple
        ) else []
        translate = "en" in targets
        others = [t for t in dict.fromkeys(targets) if t != "en"]
        if others:
            unavailable.append("translation to " + ", ".join(others))
        elif not targets:
            unavailable.append("translation (no target_languages given)")
    if len(languages) == 1:
        language: str | None = languages[0]
    elif tuning.language is not None and (not languages or tuning.language in languages):
        language = tuning.language
    else:
        language = None
    return DecodePlan(
        language=language,
        languages=languages,
        translate_to_english=translate,
        unavailable=tuple(unavailable),
        hotwords=tuple(dict.fromkeys([*tuning.hotwords, *_vocabulary(options)])),
    )


# -- the job object ----------------------------------------------------------------------


def iso_now() -> str:
    """Now as Gladia writes a job's times (UTC, milliseconds, ``Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utterances(segments: Sequence[Mapping[str, Any]], language: str) -> list[dict[str, Any]]:
    utterances = []
    for segment in segments:
        text = str(segment["text"]).strip()
        if not text:
            continue
        utterances.append({
            "start": segment["start"],
            "end": segment["end"],
            "confidence": segment["confidence"],
            "channel": 0,
            "words": [dict(w) for w in segment["words"]],
            "text": text,
            "language": language,
        })
    return utterances


def _transcription(utterances: list[dict[str, Any]], language: str) -> dict[str, Any]:
    return {
        "full_transcript": " ".join(u["text"] for u in utterances),
        "languages": [language],
        "utterances": utterances,
    }


def build_job(
    *, options: Mapping[str, Any], filename: str, reply: Mapping[str, Any], plan: DecodePlan,
    created_at: str, completed_at: str, transcription_time: float, model: str | None = None,
) -> dict[str, Any]:
    """The job-shaped dict (``GET /v2/pre-recorded/{id}``, status done) for a worker's reply."""
    language = str(reply["language"])
    duration = float(reply["duration"])
    utterances = _utterances(reply["segments"], language)
    result: dict[str, Any] = {
        "metadata": {
            "audio_duration": duration,
            "number_of_distinct_channels": 1,
            "billing_time": 0,
            "transcription_time": round(transcription_time, 3),
        },
        "transcription": _transcription(utterances, language),
    }
    translation = reply.get("translation")
    if plan.translate_to_english and isinstance(translation, Mapping):
        translated = _utterances(translation["segments"], "en")
        result["translation"] = {
            "success": True,
            "is_empty": not translated,
            "exec_time": round(float(translation["seconds"]), 3),
            "error": None,
            "results": [{"error": None, **_transcription(translated, "en")}],
        }
    metadata = options.get("custom_metadata")
    job_id = f"local-{uuid.uuid4()}"
    unavailable = [*plan.unavailable, *(str(x) for x in reply.get("ignored", ()))]
    return {
        "id": job_id,
        "request_id": f"local-{uuid.uuid4().hex[:12]}",
        "version": 2,
        "kind": "pre-recorded",
        "status": "done",
        "created_at": created_at,
        "completed_at": completed_at,
        "custom_metadata": dict(metadata) if isinstance(metadata, Mapping) else None,
        "error_code": None,
        "post_session_metadata": {},
        "file": {
            "id": job_id,
            "filename": filename,
            "source": None,
            "audio_duration": duration,
            "number_of_channels": int(reply.get("channels") or 1),
        },
        "request_params": {k: v for k, v in options.items() if k != "custom_metadata"},
        "result": result,
        "engine": "local",
        # Which faster-whisper pipeline made it: the batched one for long recordings.
        # Which Whisper model made it ("model" in NAME.md's front matter).
        "watcherd": {"model": model,
                     "unavailable_options": unavailable,
                     "batched": bool(reply.get("batched")),
                     # What the worker passed to faster-whisper (doctor, tests, support).
                     "decode": dict(reply.get("decode") or {})},
    }
