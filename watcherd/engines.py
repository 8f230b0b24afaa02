"""Which engine transcribes (Gladia or the local Whisper model), and opening it."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import structlog

from watcherd.config import Config, WatchConfig
from watcherd.errors import ConfigError
from watcherd.gladia import GladiaClient
from watcherd.journal import Journal
from watcherd.local_model import ModelError, local_engine_installed
from watcherd.pipeline import GladiaPipeline, Timing
from watcherd.worker import Pipeline

log = structlog.get_logger("watcherd.engines")

INSTALL_LOCAL = "pip install 'watcherd[local]'"


def no_engine_reason(config: Config) -> str:
    """What to tell a person whose files wait because no engine is available."""
    return (
        "no transcription engine: set a Gladia API key ([gladia] api_key, api_key_file or "
        f"GLADIA_API_KEY), or install the offline engine ({INSTALL_LOCAL}), then restart "
        "watcherd"
    )


def resolve_engine(config: Config, name: str, *, local_installed: bool | None = None
                   ) -> str | None:
    """What an engine setting (``auto``, ``gladia``, ``local``) means with this config.

    ``auto`` means Gladia when an API key is configured, else the local engine when it is
    installed, else None (files wait). Naming an engine that cannot run is a config error.
    """
    if local_installed is None:
        local_installed = local_engine_installed()
    where = config.source or "config"
    if name == "gladia":
        if config.gladia.api_key is None:
            raise ConfigError(
                f"{where}: the engine \"gladia\" is chosen but no Gladia API key is set: add "
                "[gladia] api_key or api_key_file, or set GLADIA_API_KEY"
            )
        return "gladia"
    if name == "local":
        if not local_installed:
            raise ConfigError(
                f"{where}: the engine \"local\" is chosen but the offline engine is not "
                f"installed: {INSTALL_LOCAL}"
            )
        return "local"
    if config.gladia.api_key is not None:
        return "gladia"
    return "local" if local_installed else None


def engine_for(config: Config, *, local_installed: bool | None = None) -> str | None:
    """The engine of the whole config ([engine] name), which folders use unless they override.

    Also checks every folder's own engine and fallback, so a config naming an engine that
    cannot run fails at start with the folder named.
    """
    default = resolve_engine(config, config.engine, local_installed=local_installed)
    for watch in config.watches:
        try:
            if watch.engine is not None:
                resolve_engine(config, watch.engine, local_installed=local_installed)
            if watch.fallback == "local":
                resolve_engine(config, "local", local_installed=local_installed)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in the watch of {watch.path})") from None
    return default


def engines_needed(config: Config) -> set[str]:
    """Every engine some folder (or a fallback, or ``transcribe``) may use."""
    names = {engine_for(config)}
    for watch in config.watches:
        names.add(resolve_engine(config, watch.engine or config.engine))
        if watch.fallback == "local":
            names.add("local")
    return {name for name in names if name is not None}


@dataclass
class Engine:
    """An opened engine: the pipeline the worker drives, how many at once, how to close it."""

    name: str | None
    pipeline: Pipeline | None
    max_concurrent: int
    client: GladiaClient | None = None
    problem: str | None = None
    _local: object | None = None

    async def close(self) -> None:
        """Release the HTTP client or stop the local workers."""
        if self.client is not None:
            await self.client.aclose()
        if self._local is not None:
            from watcherd.local_engine import LocalEngine

            assert isinstance(self._local, LocalEngine)
            await self._local.close()


async def open_engine(config: Config, journal: Journal, name: str | None) -> Engine:
    """Open one engine; an unusable local model leaves its files waiting, with why."""
    if name == "gladia":
        assert config.gladia.api_key is not None
        client = GladiaClient(config.gladia.api_url, config.gladia.api_key)
        pipeline = GladiaPipeline(journal, client, timing=Timing.from_env(os.environ))
        return Engine(name, pipeline, config.gladia.max_concurrent_jobs, client=client)
    if name == "local":
        from watcherd.local_engine import LocalEngine
        from watcherd.local_model import ensure_model
        from watcherd.local_pipeline import LocalPipeline

        try:
            model = await asyncio.to_thread(ensure_model)
            local = LocalEngine(model, workers=config.local.workers,
                                cpu_threads=config.local.cpu_threads,
                                beam_size=config.local.beam_size)
            await local.start()
        except ModelError as exc:
            log.error("local_model_unusable", error=exc.message)
            return Engine(None, None, 1, problem=exc.message)
        return Engine(name, LocalPipeline(journal, local), local.workers, _local=local)
    return Engine(None, None, 1, problem=no_engine_reason(config))


class Engines:
    """Every engine the configured folders use, opened together, closed together."""

    def __init__(self, config: Config, opened: dict[str, Engine]) -> None:
        self.config = config
        self.opened = opened
        self.default = engine_for(config)

    @property
    def gladia(self) -> Engine | None:
        """The Gladia engine, when some folder uses it."""
        return self.opened.get("gladia")

    @property
    def pipeline(self) -> Pipeline | None:
        """The default engine's pipeline (the callback listener attaches to Gladia's)."""
        gladia = self.gladia
        return gladia.pipeline if gladia is not None else None

    def for_worker(self) -> dict[str, tuple[Pipeline, int]]:
        """Engine name -> (pipeline, concurrency), for the worker."""
        return {name: (e.pipeline, e.max_concurrent) for name, e in self.opened.items()
                if e.pipeline is not None}

    def engine_of(self, watch: WatchConfig | None) -> str | None:
        """The engine name a folder's files use."""
        if watch is None or watch.engine is None:
            return self.default
        return resolve_engine(self.config, watch.engine)

    def problem(self) -> str:
        """Why files wait when their engine is missing."""
        problems = [e.problem for e in self.opened.values() if e.problem]
        return problems[0] if problems else no_engine_reason(self.config)

    async def close(self) -> None:
        """Close every engine."""
        for engine in self.opened.values():
            await engine.close()


async def open_engines(config: Config, journal: Journal) -> Engines:
    """Open every engine the folders need (at most Gladia and local)."""
    opened: dict[str, Engine] = {}
    try:
        for name in sorted(engines_needed(config)):
            opened[name] = await open_engine(config, journal, name)
    except BaseException:
        for engine in opened.values():
            await engine.close()
        raise
    return Engines(config, opened)
