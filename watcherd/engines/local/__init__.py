"""The local engine: Whisper through faster-whisper on this machine, offline.

Its modules: ``model`` (the bundled weights: joined once, verified, loaded by path, never
downloaded), ``runner`` (worker processes that each load the model once), ``pipeline`` (one
source through a worker, with the same job-shaped result as Gladia's so every output writer
serves both).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog

from watcherd.config import Config
from watcherd.engines._base import Capabilities, Engine, EngineContext
from watcherd.engines.local.decoding import Tuning
from watcherd.engines.local.model import (
    BUNDLED,
    ModelError,
    ModelSpec,
    bundled_model,
    choose_device,
    folder_model,
    local_engine_installed,
)
from watcherd.engines.local.pipeline import LocalPipeline
from watcherd.engines.local.runner import TranscriberPool

log = structlog.get_logger("watcherd.engines.local")

__all__ = ["LocalWhisperEngine", "local_engine_installed"]

INSTALL_LOCAL = "pip install 'watcherd[local]'"


def model_for(config: Config) -> ModelSpec:
    """The model ``[local]`` names, checked, with its device and compute type chosen."""
    device, compute_type = choose_device(config.local.device, config.local.compute_type)
    if config.local.model == BUNDLED:
        return bundled_model(device=device, compute_type=compute_type)
    return folder_model(Path(config.local.model), device=device, compute_type=compute_type)


class LocalWhisperEngine(Engine):
    """faster-whisper in worker processes: the work runs here, nothing is sent anywhere."""

    name = "local"
    capabilities = Capabilities(remote_jobs=False, callbacks=False, local_compute=True)

    def __init__(self, pipeline: LocalPipeline | None, max_concurrent: int, *,
                 runner: TranscriberPool | None = None, problem: str | None = None) -> None:
        super().__init__(pipeline, max_concurrent, problem=problem)
        self.runner = runner

    @classmethod
    def installed(cls) -> bool:
        """faster-whisper and both weight packages are installed."""
        return local_engine_installed()

    @classmethod
    def unusable(cls, config: Config) -> str | None:
        """Only an installation problem stops it: it needs no key and no network."""
        if not local_engine_installed():
            return f"the offline engine is not installed: {INSTALL_LOCAL}"
        return None

    @classmethod
    def settings(cls, config: Config) -> tuple[object, ...]:
        """The model, its worker processes and the retry policy its pipeline applies."""
        return (config.local, config.local_model, config.retry)

    @classmethod
    async def open(cls, context: EngineContext) -> LocalWhisperEngine:
        """Verify the model and start the worker processes; an unusable model leaves files
        waiting, with why."""
        config = context.config
        try:
            model = await asyncio.to_thread(model_for, config)
            log.info("local_model", model=model.label, device=model.device,
                     compute_type=model.compute_type)
            local = config.local
            runner = TranscriberPool(model, workers=local.workers, cpu_threads=local.cpu_threads,
                                     beam_size=local.beam_size,
                                     tuning=Tuning(vad=local.vad, hotwords=local.hotwords,
                                                   language=local.language, nice=local.nice))
            await runner.start()
        except ModelError as exc:
            log.error("local_model_unusable", error=exc.message)
            return cls(None, 1, problem=exc.message)
        pipeline = LocalPipeline(context.journal, runner, outputs_for=context.outputs_for,
                                 retry=context.retry, progress=context.progress)
        return cls(pipeline, runner.workers, runner=runner)

    async def close(self) -> None:
        """Stop the worker processes."""
        if self.runner is not None:
            await self.runner.close()

    def status_fields(self) -> dict[str, Any]:
        """How many worker processes run."""
        return {"workers": self.runner.workers if self.runner is not None else 0}
