"""The engines watcherd knows: adding an engine is one package and one line here.

Names map to ``module:Class`` and are imported only when used, so a heavy engine (the local
Whisper model) costs nothing to a daemon that does not use it. The config accepts exactly
these names (plus ``auto``) for ``[engine] name`` and a folder's ``engine``.

Each engine's package also has a ``config`` module whose ``SECTION`` declares its own table
(``[gladia]``, ``[local]``) and, for Gladia, the options folders send: the config asks
:func:`config_sections` for them and knows none of their keys.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from watcherd.configkit import EngineSection
    from watcherd.engines._base import Engine

__all__ = ["ENGINES", "config_section", "config_sections", "default_model", "engine_class",
           "recorded_engine"]

ENGINES: dict[str, str] = {
    "gladia": "watcherd.engines.gladia:GladiaEngine",
    "local": "watcherd.engines.local:LocalWhisperEngine",
}


def engine_class(name: str) -> type[Engine]:
    """The class of the engine registered under ``name`` (KeyError for an unknown one)."""
    module_name, _, class_name = ENGINES[name].partition(":")
    cls: type[Engine] = getattr(importlib.import_module(module_name), class_name)
    return cls


def config_sections() -> tuple[EngineSection[Any], ...]:
    """Every engine's own config table, in registry order (``<engine package>.config:SECTION``).

    Light on purpose: an engine's config module imports no more than its settings need, so
    reading a config never loads a model or a client.
    """
    return tuple(config_section(name) for name in ENGINES)


def config_section(name: str) -> EngineSection[Any]:
    """The config table of the engine registered under ``name`` (KeyError for an unknown one)."""
    package = ENGINES[name].partition(":")[0]
    section: EngineSection[Any] = importlib.import_module(f"{package}.config").SECTION
    return section


def recorded_engine(engine: str | None) -> str:
    """The engine a job or source was run by: the one it names, else the first registered.

    ``None`` is a source or job stored before they recorded their engine: watcherd then had
    one engine, the first registered, so it was that engine's.
    """
    return engine if engine is not None else next(iter(ENGINES))


def default_model(engine: str | None) -> str | None:
    """The model a job of ``engine`` (see :func:`recorded_engine`) is billed under when it
    names none; None for an engine that is not registered or bills nothing."""
    name = recorded_engine(engine)
    return config_section(name).default_model if name in ENGINES else None
