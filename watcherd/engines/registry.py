"""The engines watcherd knows: adding an engine is one package and one line here.

Names map to ``module:Class`` and are imported only when used, so a heavy engine (the local
Whisper model) costs nothing to a daemon that does not use it. The config accepts exactly
these names (plus ``auto``) for ``[engine] name`` and a folder's ``engine``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watcherd.engines._base import Engine

__all__ = ["ENGINES", "engine_class"]

ENGINES: dict[str, str] = {
    "gladia": "watcherd.engines.gladia:GladiaEngine",
    "local": "watcherd.engines.local:LocalWhisperEngine",
}


def engine_class(name: str) -> type[Engine]:
    """The class of the engine registered under ``name`` (KeyError for an unknown one)."""
    module_name, _, class_name = ENGINES[name].partition(":")
    cls: type[Engine] = getattr(importlib.import_module(module_name), class_name)
    return cls
