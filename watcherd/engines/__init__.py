"""Engines: what turns a settled source into a transcript, behind one interface.

Each engine is a package under ``watcherd/engines/`` (``gladia/``, ``local/``) with a class
implementing :class:`Engine`, listed in :mod:`watcherd.engines.registry`. Nothing outside an
engine's package imports its modules: the worker, daemon, CLI and doctor use this module.
Which engine a folder uses is decided here: ``auto`` means Gladia when an API key is
configured, else the local engine when it is installed, else none (files wait, saying how to
get an engine).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import structlog

from watcherd.engines._base import Capabilities, Engine, EngineContext, Pipeline
from watcherd.engines.registry import ENGINES, engine_class
from watcherd.errors import ConfigError
from watcherd.health import ApiHealth
from watcherd.journal import Journal, Source
from watcherd.outputs.formats import default_outputs
from watcherd.outputs.settings import OutputSettings
from watcherd.progress import ProgressBoard

if TYPE_CHECKING:
    # Types only: watcherd.config finds the engines' tables through the registry, so an
    # import here would make the two import each other.
    from watcherd.config import Config, WatchConfig

log = structlog.get_logger("watcherd.engines")

__all__ = ["ENGINES", "Capabilities", "Engine", "EngineContext", "Engines", "Pipeline",
           "computes_here", "engine_class", "engine_for", "engines_needed", "no_engine_reason",
           "open_engines", "reusable"]

INSTALL_LOCAL = "pip install 'watcherd[local]'"
#: Which engine ``auto`` picks, in order: the first usable one.
_AUTO_ORDER: tuple[str, ...] = ("gladia", "local")


def computes_here(name: str | None) -> bool:
    """Whether engine ``name`` runs on this machine's CPU or GPU (False for an unknown one)."""
    if name is None or name not in ENGINES:
        return False
    try:
        return engine_class(name).capabilities.local_compute
    except ImportError:  # its optional parts are not installed: no speed of its to show
        return False


def no_engine_reason(config: Config) -> str:
    """What to tell a person whose files wait because no engine is available."""
    return (
        "no transcription engine: set a Gladia API key ([gladia] api_key, api_key_file or "
        f"GLADIA_API_KEY), or install the offline engine ({INSTALL_LOCAL}), then restart "
        "watcherd"
    )


def _problem(config: Config, name: str, local_installed: bool | None) -> str | None:
    """Why engine ``name`` cannot run here, or None (``local_installed`` overrides a probe)."""
    if name == "local" and local_installed is not None:
        return None if local_installed else f"the offline engine is not installed: {INSTALL_LOCAL}"
    return engine_class(name).unusable(config)


def _resolve_engine(config: Config, name: str, *, local_installed: bool | None = None
                   ) -> str | None:
    """What an engine setting (``auto`` or a registered name) means with this config.

    Naming an engine that cannot run is a config error that says how to fix it. ``auto``
    takes the first of AUTO_ORDER that can run, else None (files wait).
    ``local_installed`` overrides the local engine's install probe (doctor, tests).
    """
    where = config.source or "config"
    if name != "auto":
        problem = _problem(config, name, local_installed)
        if problem is not None:
            raise ConfigError(f"{where}: the engine \"{name}\" is chosen but {problem}")
        return name
    for candidate in _AUTO_ORDER:
        if _problem(config, candidate, local_installed) is None:
            return candidate
    return None


def engine_for(config: Config, *, local_installed: bool | None = None) -> str | None:
    """The engine of the whole config ([engine] name), which folders use unless they override.

    Also checks every folder's own engine and fallback, so a config naming an engine that
    cannot run fails at start with the folder named.
    """
    default = _resolve_engine(config, config.engine, local_installed=local_installed)
    for watch in config.watches:
        try:
            if watch.engine is not None:
                _resolve_engine(config, watch.engine, local_installed=local_installed)
            if watch.fallback == "local":
                _resolve_engine(config, "local", local_installed=local_installed)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in the watch of {watch.path})") from None
    return default


def engines_needed(config: Config) -> set[str]:
    """Every engine some folder (or a fallback, or ``transcribe``) may use."""
    names = {engine_for(config)}
    for watch in config.watches:
        names.add(_resolve_engine(config, watch.engine or config.engine))
        if watch.fallback == "local":
            names.add("local")
    gladia = config.gladia
    if "gladia" in names and gladia.monthly_hours_limit is not None and (
        gladia.over_limit == "local"
    ):
        names.add("local")  # where files go once the month's hours are used
    return {name for name in names if name is not None}


class Engines:
    """Every engine the configured folders use, opened together, closed together."""

    def __init__(self, config: Config, opened: dict[str, Engine], health: ApiHealth) -> None:
        self.config = config
        self.opened = opened
        self.health = health
        self.default = engine_for(config)

    def for_worker(self) -> dict[str, tuple[Pipeline, int]]:
        """Engine name -> (pipeline, concurrency), for the worker."""
        return {name: (e.pipeline, e.max_concurrent) for name, e in self.opened.items()
                if e.pipeline is not None}

    def engine_of(self, watch: WatchConfig | None) -> str | None:
        """The engine name a folder's files use."""
        if watch is None or watch.engine is None:
            return self.default
        return _resolve_engine(self.config, watch.engine)

    def problem(self) -> str:
        """Why files wait when their engine is missing."""
        problems = [e.problem for e in self.opened.values() if e.problem]
        return problems[0] if problems else no_engine_reason(self.config)

    async def start(self) -> None:
        """Let each engine say up front what is wrong (a rejected key, an unreachable API)."""
        for engine in self.opened.values():
            await engine.start()

    async def check(self) -> None:
        """Raise the first fatal problem an engine finds (a rejected key), for one-shot runs."""
        for engine in self.opened.values():
            await engine.check()

    async def close(self) -> None:
        """Close every engine."""
        for engine in self.opened.values():
            await engine.close()


def reusable(engines: Engines, config: Config) -> dict[str, Engine]:
    """The opened engines a reload to ``config`` can keep as they are: still needed, opened
    from the same settings, and usable (a reload is also how an unusable one is tried again).
    """
    needed = engines_needed(config)
    return {
        name: engine for name, engine in engines.opened.items()
        if name in needed and engine.pipeline is not None
        and type(engine).settings(config) == type(engine).settings(engines.config)
    }


async def open_engines(
    config: Config, journal: Journal, *,
    outputs_for: Callable[[Source], Sequence[str] | OutputSettings] = default_outputs,
    health: ApiHealth | None = None,
    listen: bool = True,
    progress: ProgressBoard | None = None,
    on_request: Callable[[str, int | None], None] | None = None,
    keep: Mapping[str, Engine] | None = None,
) -> Engines:
    """Open every engine the folders need, each with the same context.

    ``listen`` lets an engine start what receives calls from outside (Gladia's callback
    listener); a one-shot ``transcribe`` runs without. ``keep``: engines already open (see
    :func:`reusable`), used instead of opening them again.
    """
    health = health or ApiHealth(journal)
    context = EngineContext(config=config, journal=journal, health=health, retry=config.retry,
                            outputs_for=outputs_for, listen=listen, progress=progress,
                            on_request=on_request)
    kept = dict(keep or {})
    opened: dict[str, Engine] = {}
    try:
        for name in sorted(engines_needed(config)):
            opened[name] = kept[name] if name in kept else await engine_class(name).open(context)
    except BaseException:
        for name, engine in opened.items():
            if name not in kept:
                await engine.close()
        raise
    return Engines(config, opened, health)
