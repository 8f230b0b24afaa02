"""Validation of the create body, as Gladia's NestJS/class-validator answers it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from tests.sim.faults import (
    LANGUAGE_CODES,
    TRANSLATION_CODES,
)

# ---------------------------------------------------------------------------------------------
# Validation of the create body (docs/gladia-contract.md), with NestJS/class-validator style
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


#: The fields of each object validator (for the published definition, ``openapi_definition``).
_OBJECT_FIELDS: dict[int, tuple[str, ...]] = {}


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

    _OBJECT_FIELDS[id(check)] = tuple(fields)
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


#: Gladia's models (2026); solaria-3 takes exactly one of SOLARIA_3_LANGUAGES.
MODELS = ("solaria-1", "solaria-3")
DEFAULT_MODEL = "solaria-1"
SOLARIA_3_LANGUAGES = ("en", "fr", "de", "es", "it")

_CREATE_FIELDS: dict[str, _Validator] = {
    "audio_url": _v_uri,
    "model": _v_enum(MODELS),
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
    if body.get("model") == "solaria-3":
        errors.extend(_solaria_3_errors(body.get("language_config")))
    return errors


def _solaria_3_errors(config: Any) -> list[str]:
    """solaria-3: exactly one language of SOLARIA_3_LANGUAGES, no code switching (2026)."""
    config = config if isinstance(config, dict) else {}
    languages = config.get("languages")
    errors = []
    if not isinstance(languages, list) or len(languages) != 1 or (
        languages[0] not in SOLARIA_3_LANGUAGES
    ):
        errors.append("language_config.languages must contain exactly one of the following "
                      f"values when model is solaria-3: {', '.join(SOLARIA_3_LANGUAGES)}")
    if config.get("code_switching") is True:
        errors.append("language_config.code_switching must be false when model is solaria-3")
    return errors


def openapi_definition() -> dict[str, Any]:
    """What ``GET /openapi.json`` serves: the create request's schema in the shape of Gladia's
    published OpenAPI (a ``$ref`` from the path to a component; each ``*_config`` object a
    component of its own), with exactly the fields this simulator accepts."""
    schemas: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    for key, check in _CREATE_FIELDS.items():
        nested = _OBJECT_FIELDS.get(id(check))
        if nested is None:
            properties[key] = {}
            continue
        name = "".join(part.title() for part in key.split("_")) + "DTO"
        schemas[name] = {"type": "object", "properties": {k: {} for k in nested}}
        properties[key] = {"$ref": f"#/components/schemas/{name}"}
    schemas["InitTranscriptionRequest"] = {
        "type": "object", "required": ["audio_url"], "properties": properties,
    }
    body = {"content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/InitTranscriptionRequest"}}}}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Gladia Control API (simulator)", "version": "2"},
        "paths": {"/v2/pre-recorded": {"post": {"requestBody": body}}},
        "components": {"schemas": schemas},
    }
