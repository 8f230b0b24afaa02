"""The Gladia engine: Gladia's pre-recorded API (upload, create, poll), with callbacks.

Its modules: ``client`` (the HTTP client and error classification), ``pipeline`` (one source
through upload, create and result, resumable from the journal), ``jobtime`` (when to poll),
``queueahead`` (how many jobs to queue at Gladia beyond the plan, and when each ends),
``listener`` and ``webhooks`` (the optional callback receiver). What the code relies on from
Gladia is in docs/gladia-contract.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from watcherd.config import Config
from watcherd.engines._base import Capabilities, Engine, EngineContext
from watcherd.engines.gladia import audioonly, definition
from watcherd.engines.gladia.client import GladiaClient
from watcherd.engines.gladia.config import GladiaConfig
from watcherd.engines.gladia.deletes import RemoteDeletes
from watcherd.engines.gladia.listener import Listener, safety_net, start_listener
from watcherd.engines.gladia.pipeline import GladiaPipeline
from watcherd.engines.gladia.polling import JobHints
from watcherd.engines.gladia.purge import PurgeResult, purge_remote
from watcherd.errors import AuthError, GladiaError, TransientGladiaError
from watcherd.findings import Finding, ok
from watcherd.journal import Source
from watcherd.usage import MonthlyLimit

log = structlog.get_logger("watcherd.engines.gladia")

__all__ = ["GladiaClient", "GladiaEngine", "GladiaPipeline", "PurgeResult", "purge_remote"]

#: `watcherd doctor` waits this long for Gladia (it should answer quickly or not at all).
_DOCTOR_CONNECT_TIMEOUT = 5.0
_DOCTOR_REQUEST_TIMEOUT = 15.0


def attempts_at_once(gladia: GladiaConfig) -> int:
    """How many sources the worker drives at once: a job for each of the plan's slots and
    each queued one, and, with a queue ahead, as many more uploading ahead of their create
    (they wait, uploaded, for the first job to end)."""
    ahead = gladia.jobs_ahead
    return gladia.max_concurrent_jobs + ahead + (min(ahead, gladia.max_concurrent_jobs)
                                                  if ahead else 0)


class GladiaEngine(Engine):
    """Gladia's API: jobs run remotely, count against the plan, and can call back."""

    name = "gladia"
    capabilities = Capabilities(remote_jobs=True, callbacks=True, local_compute=False)

    def __init__(self, pipeline: GladiaPipeline, max_concurrent: int, *,
                 client: GladiaClient, listener: Listener | None,
                 deletes: RemoteDeletes | None = None) -> None:
        super().__init__(pipeline, max_concurrent)
        self.client = client
        self.listener = listener
        self.gladia_pipeline = pipeline
        self.deletes = deletes

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
        async with GladiaClient(url, key, connect_timeout=_DOCTOR_CONNECT_TIMEOUT,
                                request_timeout=_DOCTOR_REQUEST_TIMEOUT) as client:
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
        return [ok("gladia api", f"{url} accepted the key"), *await _definition_advice(config)]

    @classmethod
    def settings(cls, config: Config) -> tuple[object, ...]:
        """The API (key, address, plan), the callback listener and webhooks, the retries."""
        return (config.gladia, config.callback, config.webhook, config.retry,
                config.defaults.delete_after, _delete_exceptions(config))

    @classmethod
    async def open(cls, context: EngineContext) -> GladiaEngine:
        """The client, the callback listener when configured, and the pipeline using both."""
        config = context.config
        assert config.gladia.api_key is not None
        client = GladiaClient(config.gladia.api_url, config.gladia.api_key,
                              on_request=context.on_request)
        hints = JobHints()
        gladia = config.gladia
        deletes = RemoteDeletes(context.journal, client, context.retry)
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
            delete_for=_delete_policy(config), deletes=deletes,
            limit=None if gladia.monthly_hours_limit is None else MonthlyLimit(
                gladia.monthly_hours_limit, gladia.billing_day, gladia.over_limit),
            queue_ahead=config.gladia.jobs_ahead,
            upload=config.gladia.upload, spool=spool,
        )
        return cls(pipeline, attempts_at_once(config.gladia), client=client,
                   listener=listener, deletes=deletes)

    async def start(self) -> None:
        """One cheap call, so a bad key or a dead network is said once, up front."""
        health = self.gladia_pipeline.health
        if self.deletes is not None:
            self.deletes.start()  # resumes the deletes an earlier run wanted
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
        if self.deletes is not None:
            await self.deletes.close()
        if self.listener is not None:
            await self.listener.close()
        await self.client.aclose()

    def status_fields(self) -> dict[str, Any]:
        """Whether callbacks are on."""
        return {"callbacks": self.listener is not None}


def _delete_exceptions(config: Config) -> tuple[tuple[str, str], ...]:
    """The watches whose delete_after differs from the one every other folder gets (a new
    watch like the rest does not make a reload open the engine again)."""
    fallback = config.defaults.delete_after or config.gladia.delete_after
    return tuple(sorted((str(w.path), w.delete_after) for w in config.watches
                        if w.delete_after is not None and w.delete_after != fallback))


def _delete_policy(config: Config) -> Callable[[Source], bool]:
    """Whether a source's job is deleted at Gladia once done: its watch's delete_after, else
    [defaults] delete_after, else [gladia] delete_after."""
    fallback = config.defaults.delete_after or config.gladia.delete_after
    by_root = dict(_delete_exceptions(config))

    def wanted(source: Source) -> bool:
        return by_root.get(source.watch_root, fallback) == "done"

    return wanted


async def _definition_advice(config: Config) -> list[Finding]:
    """The folders' options against Gladia's published definition (advice: never a FAIL)."""
    fields, said = await definition.fetch(config.gladia.api_url, timeout=_DOCTOR_REQUEST_TIMEOUT)
    if fields is None:
        return [ok("gladia options", f"not compared with Gladia's definition: {said}; "
                   "watcherd's own checks apply (this comparison is advice only)")]
    # A watch's options have [defaults.options] merged in already.
    tables = ([(f"[[watch]] {w.path}", w.options) for w in config.watches]
              or [("[defaults.options]", config.defaults.options)])
    lines = [line for where, options in tables
             for line in definition.advice(options, fields, where)]
    if not lines:
        return [ok("gladia options", f"every option is in Gladia's definition ({said})")]
    return [Finding("WARN", "gladia options", line,
                    "check the name in Gladia's API reference: a field its definition lacks "
                    "makes Gladia refuse the folder's files with a 400")
            for line in dict.fromkeys(lines)]
