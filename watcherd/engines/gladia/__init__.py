"""The Gladia engine: Gladia's pre-recorded API (upload, create, poll), with callbacks.

Its modules: ``client`` (the HTTP client and error classification), ``pipeline`` (one source
through upload, create and result, resumable from the journal), ``jobtime`` (when to poll),
``listener`` and ``webhooks`` (the optional callback receiver). What the code relies on from
Gladia is in docs/gladia-contract.md.
"""

from __future__ import annotations

from typing import Any

import structlog

from watcherd.config import Config
from watcherd.engines._base import Capabilities, Engine, EngineContext
from watcherd.engines.gladia.client import GladiaClient
from watcherd.engines.gladia.listener import Listener, safety_net, start_listener
from watcherd.engines.gladia.pipeline import GladiaPipeline, JobHints
from watcherd.errors import AuthError, TransientGladiaError

log = structlog.get_logger("watcherd.engines.gladia")

__all__ = ["GladiaClient", "GladiaEngine", "GladiaPipeline"]


class GladiaEngine(Engine):
    """Gladia's API: jobs run remotely, count against the plan, and can call back."""

    name = "gladia"
    capabilities = Capabilities(remote_jobs=True, callbacks=True, local_compute=False)

    def __init__(self, pipeline: GladiaPipeline, max_concurrent: int, *,
                 client: GladiaClient, listener: Listener | None) -> None:
        super().__init__(pipeline, max_concurrent)
        self.client = client
        self.listener = listener
        self.gladia_pipeline = pipeline

    @classmethod
    def installed(cls) -> bool:
        """Always: the client is part of watcherd itself."""
        return True

    @classmethod
    def unusable(cls, config: Config) -> str | None:
        """Without an API key nothing can be sent."""
        if config.gladia.api_key is None:
            return ("no Gladia API key is set: add [gladia] api_key or api_key_file, or set "
                    "GLADIA_API_KEY")
        return None

    @classmethod
    async def open(cls, context: EngineContext) -> GladiaEngine:
        """The client, the callback listener when configured, and the pipeline using both."""
        config = context.config
        assert config.gladia.api_key is not None
        client = GladiaClient(config.gladia.api_url, config.gladia.api_key)
        hints = JobHints()
        try:
            listener = (await start_listener(config, context.journal, hints)
                        if context.listen else None)
        except BaseException:
            await client.aclose()
            raise
        pipeline = GladiaPipeline(
            context.journal, client, outputs_for=context.outputs_for, health=context.health,
            retry=safety_net(context.retry) if listener is not None else context.retry,
            hints=hints, create_extras=listener.create_extras if listener is not None else None,
            max_in_flight=config.gladia.max_concurrent_jobs,
        )
        return cls(pipeline, config.gladia.max_concurrent_jobs, client=client,
                   listener=listener)

    async def start(self) -> None:
        """One cheap call, so a bad key or a dead network is said once, up front."""
        health = self.gladia_pipeline.health
        try:
            await self.client.check_key()
        except AuthError as exc:
            health.key_rejected(exc)
        except TransientGladiaError as exc:
            health.down(exc)

    async def check(self) -> None:
        """The key check, raising AuthError (or a transient error) for a one-shot run."""
        await self.client.check_key()

    async def close(self) -> None:
        """Stop the listener and close the HTTP client."""
        if self.listener is not None:
            await self.listener.close()
        await self.client.aclose()

    def status_fields(self) -> dict[str, Any]:
        """Whether callbacks are on."""
        return {"callbacks": self.listener is not None}
