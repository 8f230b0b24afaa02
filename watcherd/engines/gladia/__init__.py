"""The Gladia engine: Gladia's pre-recorded API (upload, create, poll), with callbacks.

Its modules: ``client`` (the HTTP client and error classification), ``pipeline`` (one source
through upload, create and result, resumable from the journal), ``jobtime`` (when to poll),
``listener`` and ``webhooks`` (the optional callback receiver). What the code relies on from
Gladia is in docs/gladia-contract.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from watcherd.config import Config
from watcherd.engines._base import Capabilities, Engine, EngineContext
from watcherd.engines.gladia import audioonly
from watcherd.engines.gladia.client import GladiaClient
from watcherd.engines.gladia.listener import Listener, safety_net, start_listener
from watcherd.engines.gladia.pipeline import GladiaPipeline, JobHints
from watcherd.errors import AuthError, GladiaError, TransientGladiaError
from watcherd.findings import Finding, ok

log = structlog.get_logger("watcherd.engines.gladia")

__all__ = ["GladiaClient", "GladiaEngine", "GladiaPipeline"]

#: `watcherd doctor` waits this long for Gladia (it should answer quickly or not at all).
DOCTOR_CONNECT_TIMEOUT = 5.0
DOCTOR_REQUEST_TIMEOUT = 15.0


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
    def describe(cls, config: Config) -> str:
        """Which API key a chosen Gladia engine uses, by where it comes from."""
        return f"gladia, with the API key from {config.gladia.api_key_origin or 'the config'}"

    @classmethod
    async def doctor(cls, config: Config) -> list[Finding]:
        """One cheap authenticated call: the key is accepted and the API answers."""
        key = config.gladia.api_key
        if key is None:
            return []
        url = config.gladia.api_url
        async with GladiaClient(url, key, connect_timeout=DOCTOR_CONNECT_TIMEOUT,
                                request_timeout=DOCTOR_REQUEST_TIMEOUT) as client:
            try:
                await client.check_key()
            except AuthError as exc:
                return [Finding(
                    "FAIL", "gladia api", f"the API key was rejected: {exc.describe()}",
                    "check the key at https://app.gladia.io (copy it again, without spaces) "
                    f"and where it comes from: {config.gladia.api_key_origin or 'the config'}",
                )]
            except TransientGladiaError as exc:
                return [Finding(
                    "FAIL", "gladia api", f"unreachable: {exc.describe()}",
                    f"check the network, proxy and firewall, and [gladia] api_url ({url}); "
                    "watcherd keeps files waiting and retries while the API is down",
                )]
            except GladiaError as exc:
                return [Finding("FAIL", "gladia api", f"unexpected answer: {exc.describe()}",
                                f"check [gladia] api_url ({url})")]
        return [ok("gladia api", f"{url} accepted the key")]

    @classmethod
    def settings(cls, config: Config) -> tuple[object, ...]:
        """The API (key, address, plan), the callback listener and webhooks, the retries."""
        return (config.gladia, config.callback, config.webhook, config.retry)

    @classmethod
    async def open(cls, context: EngineContext) -> GladiaEngine:
        """The client, the callback listener when configured, and the pipeline using both."""
        config = context.config
        assert config.gladia.api_key is not None
        client = GladiaClient(config.gladia.api_url, config.gladia.api_key,
                              on_request=context.on_request)
        hints = JobHints()
        # Audio tracks are written beside the journal (this node's state folder); a crash's
        # leftovers go now, before any new one is written.
        spool = config.journal_path.parent
        await asyncio.to_thread(audioonly.sweep, spool)
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
            progress=context.progress,
            max_in_flight=config.gladia.max_concurrent_jobs,
            upload=config.gladia.upload, spool=spool,
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
