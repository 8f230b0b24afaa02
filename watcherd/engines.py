"""Which engine transcribes (Gladia or the local Whisper model), and opening it."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import structlog

from watcherd.config import Config
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


def engine_for(config: Config, *, local_installed: bool | None = None) -> str | None:
    """The engine that will transcribe, or None when none is available (files then wait).

    ``auto`` means Gladia when an API key is configured, else the local engine when it is
    installed. Naming an engine that cannot run is a configuration error.
    ``local_installed`` overrides the check for the local engine (doctor's tests use it).
    """
    if local_installed is None:
        local_installed = local_engine_installed()
    where = config.source or "config"
    if config.engine == "gladia":
        if config.gladia.api_key is None:
            raise ConfigError(
                f"{where}: [engine] name is \"gladia\" but no Gladia API key is set: add "
                "[gladia] api_key or api_key_file, or set GLADIA_API_KEY"
            )
        return "gladia"
    if config.engine == "local":
        if not local_installed:
            raise ConfigError(
                f"{where}: [engine] name is \"local\" but the offline engine is not installed: "
                f"{INSTALL_LOCAL}"
            )
        return "local"
    if config.gladia.api_key is not None:
        return "gladia"
    return "local" if local_installed else None


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


async def open_engine(config: Config, journal: Journal) -> Engine:
    """Open the configured engine; an unusable local model leaves files waiting, with why."""
    name = engine_for(config)
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
