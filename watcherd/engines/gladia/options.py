"""Gladia's options: what ``[defaults.options]`` and ``[watch.options]`` may hold.

The create-body fields of docs/gladia-contract.md, each checked against its documented type,
so a mistake is found when the config loads instead of by a rejected job. The config asks
this engine for its :data:`OPTIONS` (through the engine registry) and knows none of them.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from watcherd.configkit import EngineOptions, SectionParser, deep_merge, did_you_mean
from watcherd.errors import ConfigError

__all__ = ["KNOWN_OPTIONS", "LANGUAGE_CODES", "MODELS", "OPTIONS", "OPTION_SCHEMAS",
           "REFUSED_OPTIONS", "SOLARIA_3_LANGUAGES", "TRANSLATION_CODES", "UNSET_KEY",
           "OptionField", "model_problem"]

# Gladia allows 2000 characters of custom_metadata; watcherd keeps 500 for its own keys.
_USER_METADATA_LIMIT = 1500
# Keys watcherd writes into custom_metadata itself (see pipeline); a user value would be lost.
_RESERVED_METADATA_PREFIX = "wf_"

# Gladia's documented create-body fields (docs/gladia-contract.md), minus the two we refuse.
_FLAG_OPTIONS = (
    "diarization",
    "translation",
    "subtitles",
    "summarization",
    "pii_redaction",
    "sentiment_analysis",
    "named_entity_recognition",
    "sentences",
    "punctuation_enhanced",
    "custom_vocabulary",
    "custom_spelling",
    "audio_to_llm",
    "callback",
)
_TABLE_OPTIONS = (
    "language_config",
    "diarization_config",
    "translation_config",
    "subtitles_config",
    "summarization_config",
    "pii_redaction_config",
    "custom_vocabulary_config",
    "custom_spelling_config",
    "audio_to_llm_config",
    "callback_config",
    "custom_metadata",
)
# Options with a plain value: which model transcribes (docs/gladia-contract.md, 2026).
_VALUE_OPTIONS = ("model",)
KNOWN_OPTIONS = _FLAG_OPTIONS + _TABLE_OPTIONS + _VALUE_OPTIONS
#: Gladia's models in 2026: solaria-1 is the default; solaria-3 is pre-recorded only.
MODELS = ("solaria-1", "solaria-3")
DEFAULT_MODEL = "solaria-1"
#: solaria-3 takes exactly one of these languages, without code switching.
SOLARIA_3_LANGUAGES = ("en", "fr", "de", "es", "it")
_LANGUAGE_INSTEAD = 'use language_config = { languages = ["en"] }'
#: Fields Gladia dropped from the request in March 2026: a create sending one gets a 400.
_REMOVED_OPTIONS: dict[str, str] = {
    "chapterization": "Gladia removed it in March 2026; remove it (no replacement)",
    "name_consistency": "Gladia removed it in March 2026; remove it (no replacement)",
    "structured_data_extraction": (
        "Gladia removed it in March 2026; ask for the data with audio_to_llm = true and "
        "audio_to_llm_config = { prompts = [\"...\"] }"),
    "structured_data_extraction_config": (
        "Gladia removed it in March 2026; ask for the data with audio_to_llm_config = "
        "{ prompts = [\"...\"] }"),
    "display_mode": "Gladia removed it in March 2026; remove it (no replacement)",
    "moderation": "Gladia removed it in March 2026; remove it (no replacement)",
    "context_prompt": (
        "Gladia removed it in March 2026; favour words with custom_vocabulary = true and "
        "custom_vocabulary_config = { vocabulary = [\"...\"] }"),
    "detect_language": (
        "Gladia removed it in March 2026; leave language_config.languages empty to detect "
        "the language, or pin one with language_config = { languages = [\"en\"] }"),
    "enable_code_switching": (
        "Gladia removed it in March 2026; use language_config = { code_switching = true }"),
    "code_switching_config": (
        "Gladia removed it in March 2026; list the languages in language_config = "
        "{ languages = [\"en\", \"fr\"], code_switching = true }"),
    "language": f"Gladia removed it in March 2026; {_LANGUAGE_INSTEAD}",
}
#: Fields of *_config tables Gladia dropped: (table, field) -> what to do.
_REMOVED_FIELDS: dict[tuple[str, str], str] = {
    ("summarization_config", "model"): (
        "Gladia removed it in April 2026 (only type remains); remove it"),
}
REFUSED_OPTIONS = {
    "audio_url": "watcherd uploads each source and sets audio_url itself",
    "callback_url": (
        "Gladia deprecated it; use callback = true with callback_config = { url = \"...\" }"
    ),
}
_SUBTITLE_FORMATS = ("srt", "vtt")
# In [watch.options] only: option names (or dotted paths into them) inherited from
# [defaults.options] that this watch drops before its own options are merged in.
UNSET_KEY = "unset"

# Gladia's transcription language codes (docs/gladia-contract.md); translation adds "wo".
LANGUAGE_CODES: frozenset[str] = frozenset({
    "af", "am", "ar", "as", "az", "ba", "be", "bg", "bn", "bo", "br", "bs", "ca", "cs", "cy",
    "da", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fo", "fr", "gl", "gu", "ha", "haw",
    "he", "hi", "hr", "ht", "hu", "hy", "id", "is", "it", "ja", "jw", "ka", "kk", "km", "kn",
    "ko", "la", "lb", "ln", "lo", "lt", "lv", "mg", "mi", "mk", "ml", "mn", "mr", "ms", "mt",
    "my", "ne", "nl", "nn", "no", "oc", "pa", "pl", "ps", "pt", "ro", "ru", "sa", "sd", "si",
    "sk", "sl", "sn", "so", "sq", "sr", "su", "sv", "sw", "ta", "te", "tg", "th", "tk", "tl",
    "tr", "tt", "uk", "ur", "uz", "vi", "yi", "yo", "zh",
})
TRANSLATION_CODES: frozenset[str] = LANGUAGE_CODES | {"wo"}


@dataclass(frozen=True)
class OptionField:
    """The documented type of one field inside a ``*_config`` option (docs/gladia-contract.md)."""

    kind: Literal[
        "bool", "int", "number", "string", "uri", "enum", "enum_list", "codes", "strings",
        "entity_types", "vocabulary", "spelling",
    ]
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | frozenset[str] = ()
    min_items: int = 0


_BOOL = OptionField("bool")
OPTION_SCHEMAS: dict[str, dict[str, OptionField]] = {
    "language_config": {
        "languages": OptionField("codes", choices=LANGUAGE_CODES),
        "code_switching": _BOOL,
    },
    "diarization_config": {
        "number_of_speakers": OptionField("int", minimum=1),
        "min_speakers": OptionField("int", minimum=0),
        "max_speakers": OptionField("int", minimum=0),
    },
    "translation_config": {
        "target_languages": OptionField("codes", choices=TRANSLATION_CODES, min_items=1),
        "model": OptionField("enum", choices=("base", "enhanced")),
        "match_original_utterances": _BOOL,
        "lipsync": _BOOL,
        "context_adaptation": _BOOL,
        "context": OptionField("string"),
        "informal": _BOOL,
    },
    "subtitles_config": {
        "formats": OptionField("enum_list", choices=_SUBTITLE_FORMATS, min_items=1),
        "minimum_duration": OptionField("number", minimum=0),
        "maximum_duration": OptionField("number", minimum=1, maximum=30),
        "maximum_characters_per_row": OptionField("int", minimum=1),
        "maximum_rows_per_caption": OptionField("int", minimum=1, maximum=5),
        "style": OptionField("enum", choices=("default", "compliance")),
    },
    "summarization_config": {
        "type": OptionField("enum", choices=("general", "bullet_points", "concise")),
    },
    "pii_redaction_config": {
        "entity_types": OptionField("entity_types"),
        "processed_text_type": OptionField("enum", choices=("MARKER", "MASK")),
    },
    "custom_vocabulary_config": {
        "vocabulary": OptionField("vocabulary", min_items=1),
        "default_intensity": OptionField("number", minimum=0, maximum=1),
    },
    "custom_spelling_config": {"spelling_dictionary": OptionField("spelling")},
    "audio_to_llm_config": {
        "prompts": OptionField("strings", min_items=1),
        "model": OptionField("string"),
    },
    "callback_config": {
        "url": OptionField("uri"),
        "method": OptionField("enum", choices=("POST", "PUT")),
    },
}
# Fields Gladia requires whenever their *_config object is sent.
_REQUIRED_FIELDS: dict[str, str] = {
    "translation_config": "target_languages",
    "custom_vocabulary_config": "vocabulary",
    "custom_spelling_config": "spelling_dictionary",
    "audio_to_llm_config": "prompts",
    "callback_config": "url",
}
# Flags that do nothing useful (or are refused) without these config fields.
_FLAG_NEEDS: dict[str, tuple[str, str, str]] = {
    "translation": ("translation_config", "target_languages",
                    'a non-empty array of language codes such as ["fr"]'),
    "custom_vocabulary": ("custom_vocabulary_config", "vocabulary",
                          'the words to favour, e.g. ["Gladia", "watcherd"]'),
    "custom_spelling": ("custom_spelling_config", "spelling_dictionary",
                        'a table such as { "Gladia" = ["gladya", "gladiah"] }'),
    "audio_to_llm": ("audio_to_llm_config", "prompts",
                     'a non-empty array of prompts such as ["List the action items"]'),
    "callback": ("callback_config", "url", "the URL Gladia calls when done"),
}


def _watch_options(
    p: SectionParser, value: Any, inherited: Mapping[str, Any], prefix: str
) -> dict[str, Any]:
    """A watch's own options over the defaults: first ``unset``, then a deep merge."""
    key = prefix
    if not isinstance(value, dict):
        p.expected(key, "a table of Gladia options", value)
    own = {name: item for name, item in value.items() if name != UNSET_KEY}
    base = dict(inherited)
    if UNSET_KEY in value:
        base = unset(p, base, value[UNSET_KEY], f"{key}.{UNSET_KEY}")
    merged: dict[str, Any] = deep_merge(base, options(p, own, key))
    _check_option_rules(p, merged, key)
    return merged


def unset(p: SectionParser, base: dict[str, Any], value: Any, key: str) -> dict[str, Any]:
    """``base`` without the options (or dotted fields of them) named in ``value``."""
    names = p.strings(value, key)
    result = copy.deepcopy(base)
    for index, name in enumerate(names, start=1):
        item_key = f"{key}[{index}]"
        parts = name.split(".")
        if not all(parts) or (parts[0] not in KNOWN_OPTIONS and parts[0] not in result):
            p.expected(item_key, "the name of a Gladia option, or a dotted path into one "
                          'such as "diarization_config.max_speakers"', name,
                          hint=did_you_mean(parts[0], KNOWN_OPTIONS))
        table: Any = result
        for part in parts[:-1]:
            table = table.get(part) if isinstance(table, dict) else None
        if not isinstance(table, dict) or parts[-1] not in table:
            p.fail(item_key, f'"{name}" is not set in [defaults.options], so there is '
                      "nothing to unset; remove it from the list")
        del table[parts[-1]]
    return result

def options(
    p: SectionParser, value: Any, prefix: str) -> dict[str, Any]:
    """Type-check one options table on its own; returns a deep copy."""
    if not isinstance(value, dict):
        p.expected(prefix, "a table of Gladia options", value)
    for name, item in value.items():
        key = f"{prefix}.{name}"
        if name == UNSET_KEY:
            p.fail(key, "only allowed in [watch.options], where it removes options "
                      "inherited from [defaults.options]")
        if name in REFUSED_OPTIONS:
            p.fail(key, f"not allowed: {REFUSED_OPTIONS[name]}")
        if name in _REMOVED_OPTIONS:
            p.fail(key, _REMOVED_OPTIONS[name])
        if name not in KNOWN_OPTIONS:
            # Gladia adds fields faster than watcherd is released: say so, send it as written
            # (Gladia's own 400 then names it if it does not know it either).
            _json_only(p, item, key)
            p.warn(f"{p.where}: [{prefix}] {name}: not a Gladia option watcherd knows"
                   f"{did_you_mean(name, KNOWN_OPTIONS)}; it is sent to Gladia as written")
            continue
        if name == "model":
            chosen = p.string(item, key)
            if chosen not in MODELS:
                p.warn(f"{p.where}: {key}: {chosen!r} is not a model watcherd knows (it "
                       f"knows {', '.join(MODELS)}){did_you_mean(chosen, MODELS)}; it is "
                       "sent to Gladia as written")
        elif name in _FLAG_OPTIONS:
            p.boolean(item, key)
        elif not isinstance(item, dict):
            p.expected(key, "a table", item)
        else:
            _json_only(p, item, key)
            if name in OPTION_SCHEMAS:
                _config_table(p, item, OPTION_SCHEMAS[name], key)
    _check_metadata_keys(p, value, prefix)
    return copy.deepcopy(value)

def _json_only(
    p: SectionParser, value: Any, key: str) -> None:
    """Refuse TOML values JSON cannot carry (dates and times): options are sent as JSON."""
    if isinstance(value, dict):
        for name, item in value.items():
            _json_only(p, item, f"{key}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value, start=1):
            _json_only(p, item, f"{key}[{index}]")
    elif not isinstance(value, str | int | float | bool):
        p.expected(key, "a string, number, boolean, array or table (JSON has no dates)",
                      value)
    elif isinstance(value, float) and not math.isfinite(value):
        p.expected(key, "a finite number (JSON has no inf or nan)", value)

def _config_table(
    p: SectionParser, table: Mapping[str, Any], schema: Mapping[str, OptionField],
                 prefix: str) -> None:
    """Each field of one ``*_config`` table against its documented type."""
    option = prefix.rsplit('.', 1)[-1]
    for name, value in table.items():
        removed = _REMOVED_FIELDS.get((option, name))
        if removed is not None:
            p.fail(f"{prefix}.{name}", removed)
        spec = schema.get(name)
        if spec is None:
            p.warn(f"{p.where}: [{prefix}] {name}: not a field of {option} watcherd knows"
                   f"{did_you_mean(name, list(schema))}; it is sent to Gladia as written")
            continue
        _config_field(p, value, spec, f"{prefix}.{name}")

def _config_field(
    p: SectionParser, value: Any, spec: OptionField, key: str) -> None:
    kind = spec.kind
    if kind == "bool":
        p.boolean(value, key)
    elif kind == "int":
        bounded(p, value, key, spec, integer=True)
    elif kind == "number":
        bounded(p, value, key, spec, integer=False)
    elif kind == "string":
        p.string(value, key)
    elif kind == "uri":
        parts = urlsplit(value.strip()) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            p.expected(key, "an http(s) URL", value)
    elif kind == "enum":
        p.choice(value, key, sorted(spec.choices) if isinstance(
            spec.choices, frozenset) else spec.choices)
    elif kind in ("enum_list", "codes", "strings"):
        items = p.strings(value, key)
        if len(items) < spec.min_items:
            p.fail(key, _at_least(spec.min_items, kind))
        if kind == "enum_list":
            for index, item in enumerate(items, start=1):
                p.choice(item, f"{key}[{index}]", tuple(spec.choices))
        elif kind == "codes":
            for index, item in enumerate(items, start=1):
                _language_code(p, item, f"{key}[{index}]", spec.choices)
    elif kind == "entity_types":
        # The OAS says one value, the docs an array (docs/gladia-contract.md): accept both.
        if not isinstance(value, str):
            items = p.strings(value, key)
            if not items:
                p.fail(key, _at_least(1, "strings"))
        else:
            p.string(value, key)
    elif kind == "vocabulary":
        vocabulary(p, value, key, spec)
    elif kind == "spelling":
        spelling(p, value, key)

def bounded(
    p: SectionParser, value: Any, key: str, spec: OptionField, *, integer: bool) -> None:
    low, high = spec.minimum, spec.maximum
    noun = "an integer" if integer else "a number"
    if low is not None and high is not None:
        what = f"{noun} from {low:g} to {high:g}"
    elif low is not None:
        what = f"{noun} >= {low:g}"
    else:
        what = noun
    ok = not isinstance(value, bool) and (
        isinstance(value, int) if integer else isinstance(value, int | float)
    )
    if not ok or (low is not None and value < low) or (high is not None and value > high):
        p.expected(key, what, value)

def _language_code(
    p: SectionParser, value: str, key: str, codes: tuple[str, ...] | frozenset[str]
                  ) -> None:
    if value not in codes:
        lowered = value.lower()
        hint = f'; did you mean "{lowered}"?' if lowered in codes else ""
        p.expected(key, 'one of Gladia\'s language codes such as "en", "fr" or "de"',
                      value, hint=hint)

def vocabulary(
    p: SectionParser, value: Any, key: str, spec: OptionField) -> None:
    if not isinstance(value, list):
        p.expected(key, "an array of words (strings or { value = ... } tables)", value)
    if len(value) < spec.min_items:
        p.fail(key, 'expected at least one word, e.g. ["Gladia"]')
    schema = {
        "value": OptionField("string"),
        "intensity": OptionField("number", minimum=0, maximum=1),
        "pronunciations": OptionField("strings"),
        "language": OptionField("codes"),
    }
    for index, item in enumerate(value, start=1):
        item_key = f"{key}[{index}]"
        if isinstance(item, str):
            p.string(item, item_key)
            continue
        if not isinstance(item, dict):
            p.expected(item_key, "a string or a { value = ... } table", item)
        if "value" not in item:
            p.fail(f"{item_key}.value", "missing; expected the word itself")
        for name, field_value in item.items():
            if name not in schema:
                raise ConfigError(f"{p.where}: [{item_key}] {name}: unknown field of a "
                                  f"vocabulary entry{did_you_mean(name, list(schema))}")
            if name == "language":
                p.string(field_value, f"{item_key}.language")
                _language_code(p, field_value, f"{item_key}.language", LANGUAGE_CODES)
            else:
                _config_field(p, field_value, schema[name], f"{item_key}.{name}")

def spelling(
    p: SectionParser, value: Any, key: str) -> None:
    if not isinstance(value, dict) or not value:
        p.expected(key, 'a table such as { "Gladia" = ["gladya", "gladiah"] }', value)
    for name, variants in value.items():
        items = p.strings(variants, f"{key}.{name}")
        if not items:
            p.fail(f"{key}.{name}", "expected at least one spelling variant")

def _check_metadata_keys(
    p: SectionParser, options: Mapping[str, Any], prefix: str) -> None:
    metadata = options.get("custom_metadata", {})
    for name in metadata:
        if name.startswith(_RESERVED_METADATA_PREFIX):
            p.fail(
                f"{prefix}.custom_metadata.{name}",
                f'keys starting with "{_RESERVED_METADATA_PREFIX}" are reserved for watcherd',
            )

def _check_option_rules(
    p: SectionParser, options: Mapping[str, Any], prefix: str) -> None:
    """Checks on the options that will actually be sent (after merging)."""
    for flag, (config_name, needed, example) in _FLAG_NEEDS.items():
        if options.get(flag) and not options.get(config_name, {}).get(needed):
            p.fail(
                f"{prefix}.{flag}",
                f"{flag} = true needs {config_name}.{needed}, {example}",
            )
    for config_name, needed in _REQUIRED_FIELDS.items():
        if config_name in options and needed not in options[config_name]:
            p.fail(
                f"{prefix}.{config_name}",
                f"missing {needed}: Gladia requires it whenever {config_name} is sent "
                f"(or unset {config_name} in this watch)",
            )
    problem = model_problem(options)
    if problem is not None:
        p.fail(f"{prefix}.model", problem)
    speakers = options.get("diarization_config", {})
    low, high = speakers.get("min_speakers"), speakers.get("max_speakers")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        p.fail(
            f"{prefix}.diarization_config",
            f"min_speakers ({low}) is greater than max_speakers ({high})",
        )
    metadata = options.get("custom_metadata")
    if metadata is not None:
        size = len(json.dumps(metadata, ensure_ascii=False))
        if size > _USER_METADATA_LIMIT:
            p.fail(
                f"{prefix}.custom_metadata",
                f"expected at most {_USER_METADATA_LIMIT} characters once written as JSON, "
                f"got {size} (Gladia allows 2000 and watcherd adds its own keys)",
            )


def model_problem(options: Mapping[str, Any]) -> str | None:
    """What breaks solaria-3's rule in these (merged) options, or None.

    solaria-3 needs exactly one language of :data:`SOLARIA_3_LANGUAGES` and no code switching
    (docs/gladia-contract.md); Gladia refuses the job otherwise, so it is said at load time.
    """
    if options.get("model") != "solaria-3":
        return None
    config = options.get("language_config")
    languages = config.get("languages", []) if isinstance(config, Mapping) else []
    rule = (f"solaria-3 needs exactly one language in language_config.languages, one of "
            f"{', '.join(SOLARIA_3_LANGUAGES)}, and no code switching")
    if not isinstance(languages, list) or len(languages) != 1:
        count = len(languages) if isinstance(languages, list) else 0
        return (f"{rule}; this folder has {count}: add language_config = "
                '{ languages = ["en"] } (or use model = "solaria-1")')
    if languages[0] not in SOLARIA_3_LANGUAGES:
        return f"{rule}; {languages[0]!r} is not one of them: use model = \"solaria-1\""
    if isinstance(config, Mapping) and config.get("code_switching") is True:
        return f"{rule}; remove language_config.code_switching"
    return None


def _at_least(count: int, kind: str) -> str:
    if kind == "codes":
        return 'expected at least one language code, e.g. ["fr"]'
    if kind == "enum_list":
        return 'expected at least one of "srt", "vtt"'
    return f"expected at least {count} item{'s' if count > 1 else ''}"


def defaults_options(p: SectionParser, value: Any, prefix: str) -> dict[str, Any]:
    """``[defaults.options]``: checked alone and as it will be sent."""
    checked = options(p, value, prefix)
    _check_option_rules(p, checked, prefix)
    return checked


def _reject_listener_options(
    p: SectionParser, tables: Sequence[tuple[str, Mapping[str, Any]]]
) -> None:
    """With the listener on, watcherd sets callback itself: a user callback would be lost."""
    for prefix, checked in tables:
        for name in ("callback", "callback_config"):
            if name in checked:
                p.fail(
                    f"{prefix}.{name}",
                    "not allowed with [callback] listen: watcherd sets callback and "
                    "callback_config on every job itself; remove one of the two",
                )


OPTIONS = EngineOptions(defaults=defaults_options, watch=_watch_options,
                        reject_listener=_reject_listener_options)
