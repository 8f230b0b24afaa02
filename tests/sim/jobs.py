"""The job model: every piece of a result is a pure function of the upload and the options."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

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
    """SRT or VTT text for utterances, in the layout of docs/gladia-contract.md."""
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
    *,
    distinct_channels: int = 1,
) -> dict[str, Any]:
    """The `result` object of a done job (docs/gladia-contract.md), add-ons as requested."""
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
            "number_of_distinct_channels": distinct_channels,
            # Channels that differ are each transcribed, and each billed.
            "billing_time": duration * distinct_channels,
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
