"""The ``[local]`` table: the offline Whisper engine's settings.

Declared here, by the engine, as :data:`SECTION`; the config finds it through the engine
registry and knows none of its keys. A new key is a field of :class:`LocalConfig`, a line
of :func:`parse` and of :func:`rows` (and a line of config.example.toml).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from watcherd.configkit import EngineSection, Note, Row, SectionParser
from watcherd.engines.local.model import folder_problem

__all__ = ["KEYS", "LOCAL_COMPUTE_TYPES", "LOCAL_DEVICES", "LOCAL_MODELS", "SECTION",
           "LocalConfig"]

LOCAL_MODELS = ("base",)
LOCAL_DEVICES = ("auto", "cpu", "cuda")
LOCAL_COMPUTE_TYPES = ("auto", "default", "int8", "int8_float16", "int8_float32",
                       "int8_bfloat16", "int16", "float16", "bfloat16", "float32")
KEYS = ("model", "device", "compute_type", "workers", "cpu_threads", "beam_size", "vad",
        "hotwords", "language", "nice")
# A language code as Whisper names them ("en", "fr", "haw"); one Whisper does not know is
# reported on the transcript's job (detected instead), as for a folder's language_config.
_LANGUAGE = re.compile(r"[a-z]{2,3}|yue")
# Unix niceness: 0 (normal) to 19 (only what no one else wants).
MAX_NICE = 19


@dataclass(frozen=True)
class LocalConfig:
    """The ``[local]`` table: the offline Whisper engine's settings."""

    # "base" (bundled) or the absolute path of a CTranslate2 Whisper model folder.
    model: str = "base"
    # "auto" (CUDA when CTranslate2 sees a GPU, else the CPU), "cpu" or "cuda".
    device: str = "auto"
    # "auto" is int8 on the CPU, float16 on CUDA; else a CTranslate2 compute type.
    compute_type: str = "auto"
    # 0 means "auto": chosen from the CPUs at start (watcherd.engines.local.runner.auto_layout).
    workers: int = 0
    cpu_threads: int = 0
    beam_size: int = 5
    # faster-whisper's Silero voice-activity filter: silence and music are cut before Whisper,
    # which otherwise invents words on them.
    vad: bool = True
    # Words Whisper should favour (names, jargon), added to a folder's custom_vocabulary.
    hotwords: tuple[str, ...] = ()
    # The language every file is in when its folder does not say (None: detected).
    language: str | None = None
    # The worker processes' niceness: transcribing never slows the rest of the machine.
    nice: int = 10


def model_setting(p: SectionParser, value: Any) -> str:
    """``[local] model``: "base", or a CTranslate2 Whisper model folder (checked here)."""
    text = p.string(value, "local.model")
    if text in LOCAL_MODELS:
        return text
    folder = p.path(text, "local.model")
    problem = folder_problem(folder)
    if problem is not None:
        if not folder.exists():
            problem = (f'"{text}" is neither "base" (the bundled model) nor a folder: '
                       f"{folder} does not exist. watcherd never downloads a model: give "
                       "the path of a CTranslate2 Whisper model folder")
        p.fail("local.model", problem)
    return str(folder)


def parse(p: SectionParser, table: Mapping[str, Any]) -> LocalConfig:
    """Check ``[local]``."""
    p.check_keys(table, KEYS, "local")
    return LocalConfig(
        model=model_setting(p, table.get("model", "base")),
        device=p.choice(table.get("device", "auto"), "local.device", LOCAL_DEVICES),
        compute_type=p.choice(table.get("compute_type", "auto"), "local.compute_type",
                              LOCAL_COMPUTE_TYPES),
        workers=p.count_or_auto(table.get("workers", "auto"), "local.workers", minimum=1),
        # 0 stays accepted: it meant "let the engine choose" before "auto" existed.
        cpu_threads=p.count_or_auto(table.get("cpu_threads", "auto"), "local.cpu_threads",
                                    minimum=0),
        beam_size=p.integer(table.get("beam_size", 5), "local.beam_size", minimum=1),
        vad=p.boolean(table.get("vad", True), "local.vad"),
        hotwords=_hotwords(p, table.get("hotwords", [])),
        language=_language(p, table.get("language", "auto")),
        nice=_nice(p, table.get("nice", 10)),
    )


def _hotwords(p: SectionParser, value: Any) -> tuple[str, ...]:
    words = p.strings(value, "local.hotwords")
    for index, word in enumerate(words):
        if not word.strip() or not word.isprintable():
            p.expected(f"local.hotwords[{index + 1}]", "a word or phrase in printable text",
                       word)
    return tuple(word.strip() for word in words)


def _language(p: SectionParser, value: Any) -> str | None:
    """``"auto"`` (detected: None) or a language code."""
    text = p.string(value, "local.language")
    if text == "auto":
        return None
    code = text.strip().lower()
    if not _LANGUAGE.fullmatch(code):
        p.expected("local.language", '"auto" or a language code such as "en" or "fr"', value)
    return code


def _nice(p: SectionParser, value: Any) -> int:
    nice = p.integer(value, "local.nice", minimum=0)
    if nice > MAX_NICE:
        p.expected("local.nice", f"an integer from 0 to {MAX_NICE}", value)
    return nice


def _auto(count: int) -> int | str:
    """``workers`` / ``cpu_threads``: 0 is how the model keeps "auto"."""
    return count or "auto"


def rows(local: LocalConfig) -> list[Row | Note]:
    """``[local]`` as `config show` writes it."""
    return [("model", local.model), ("device", local.device),
            ("compute_type", local.compute_type), ("workers", _auto(local.workers)),
            ("cpu_threads", _auto(local.cpu_threads)), ("beam_size", local.beam_size),
            ("vad", local.vad), ("hotwords", list(local.hotwords)),
            ("language", local.language or "auto"), ("nice", local.nice)]


SECTION: EngineSection[LocalConfig] = EngineSection(
    name="local", parse=parse, default=LocalConfig, rows=rows,
    config_fields=lambda local: {"local_model": local.model},
    internal_names={("", "local_model"): "[local] model"},
)
