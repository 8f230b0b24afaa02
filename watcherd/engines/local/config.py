"""The ``[local]`` table: the offline Whisper engine's settings.

Declared here, by the engine, as :data:`SECTION`; the config finds it through the engine
registry and knows none of its keys. A new key is one field of :class:`LocalConfig` (its type,
its limits and its default, stated once) and a line of config.example.toml: checking it and
writing it back in ``config show`` follow from the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from msgspec import Meta

from watcherd.configkit import (
    AUTO,
    EngineSection,
    SectionParser,
    Table,
    Text,
    Word,
    table_keys,
    table_rows,
)
from watcherd.engines.local.model import folder_problem

__all__ = ["KEYS", "LOCAL_COMPUTE_TYPES", "SECTION", "LocalConfig"]

_LOCAL_MODELS = ("base",)
Device = Literal["auto", "cpu", "cuda"]
ComputeType = Literal["auto", "default", "int8", "int8_float16", "int8_float32",
                      "int8_bfloat16", "int16", "float16", "bfloat16", "float32"]
LOCAL_COMPUTE_TYPES: tuple[str, ...] = get_args(ComputeType)
# A language code as Whisper names them ("en", "fr", "haw"); one Whisper does not know is
# reported on the transcript's job (detected instead), as for a folder's language_config.
_LANGUAGE = re.compile(r"[a-z]{2,3}|yue")
# Unix niceness: 0 (normal) to 19 (only what no one else wants).
_MAX_NICE = 19


class LocalConfig(Table, frozen=True):
    """The ``[local]`` table: the offline Whisper engine's settings (its keys are the fields)."""

    # "base" (bundled) or the absolute path of a CTranslate2 Whisper model folder.
    model: Text = "base"
    # "auto" (CUDA when CTranslate2 sees a GPU, else the CPU), "cpu" or "cuda".
    device: Device = "auto"
    # "auto" is int8 on the CPU, float16 on CUDA; else a CTranslate2 compute type.
    compute_type: ComputeType = "auto"
    # 0 means "auto": chosen from the CPUs at start (watcherd.engines.local.runner.auto_layout).
    workers: Annotated[int, Meta(ge=1, extra=AUTO)] = 0
    # 0 stays accepted: it meant "let the engine choose" before "auto" existed.
    cpu_threads: Annotated[int, Meta(ge=0, extra=AUTO)] = 0
    beam_size: Annotated[int, Meta(ge=1)] = 5
    # faster-whisper's Silero voice-activity filter: silence and music are cut before Whisper,
    # which otherwise invents words on them.
    vad: bool = True
    # Words Whisper should favour (names, jargon), added to a folder's custom_vocabulary.
    hotwords: tuple[Word, ...] = ()
    # The language every file is in when its folder does not say (None, written "auto":
    # detected).
    language: Annotated[str | None, Meta(extra={"auto": None})] = None
    # The worker processes' niceness: transcribing never slows the rest of the machine.
    nice: Annotated[int, Meta(ge=0, le=_MAX_NICE)] = 10


KEYS = table_keys(LocalConfig)


def _model_setting(p: SectionParser, value: Any, key: str = "local.model") -> str:
    """``[local] model``: "base", or a CTranslate2 Whisper model folder (checked here)."""
    text = p.string(value, key)
    if text in _LOCAL_MODELS:
        return text
    folder = p.path(text, key)
    problem = folder_problem(folder)
    if problem is not None:
        if not folder.exists():
            problem = (f'"{text}" is neither "base" (the bundled model) nor a folder: '
                       f"{folder} does not exist. watcherd never downloads a model: give "
                       "the path of a CTranslate2 Whisper model folder")
        p.fail(key, problem)
    return str(folder)


def parse(p: SectionParser, table: Mapping[str, Any]) -> LocalConfig:
    """Check ``[local]`` against :class:`LocalConfig`; what a type cannot say is checked here."""
    return p.section(table, LocalConfig, "local", custom={
        "model": lambda value, key: _model_setting(p, value, key),
        "hotwords": lambda value, key: _hotwords(p, value, key),
        "language": lambda value, key: _language(p, value, key)})


def _hotwords(p: SectionParser, value: Any, key: str) -> tuple[str, ...]:
    words = p.strings(value, key)
    for index, word in enumerate(words):
        if not word.strip() or not word.isprintable():
            p.expected(f"{key}[{index + 1}]", "a word or phrase in printable text", word)
    return tuple(word.strip() for word in words)


def _language(p: SectionParser, value: Any, key: str) -> str | None:
    """``"auto"`` (detected: None) or a language code."""
    text = p.string(value, key)
    if text == "auto":
        return None
    code = text.strip().lower()
    if not _LANGUAGE.fullmatch(code):
        p.expected(key, '"auto" or a language code such as "en" or "fr"', value)
    return code


SECTION: EngineSection[LocalConfig] = EngineSection(
    name="local", parse=parse, default=LocalConfig, rows=table_rows,
    config_fields=lambda local: {"local_model": local.model},
    internal_names={("", "local_model"): "[local] model"},
)
