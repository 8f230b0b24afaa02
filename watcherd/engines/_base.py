"""The engine interface: what the worker, daemon, CLI and doctor may ask of any engine."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from watcherd.findings import Finding
from watcherd.health import ApiHealth
from watcherd.journal import Journal, Source
from watcherd.outputs.settings import OutputSettings
from watcherd.progress import ProgressBoard
from watcherd.retry import RetryPolicy

if TYPE_CHECKING:
    # Types only: watcherd.config finds the engines' tables through the registry, so an
    # import here would make the two import each other.
    from watcherd.config import Config

__all__ = ["Capabilities", "Engine", "EngineContext", "Pipeline"]


class Pipeline(Protocol):
    """An engine's way of taking one settled source to ``done`` (or to a retry or failure)."""

    #: True when its jobs live elsewhere and count against a plan (Gladia), so the worker
    #: counts them even while no task watches them and probes while the API is down.
    remote_jobs: bool

    async def drive(self, source_id: int) -> None:
        """Take the source as far as it can go now; every outcome lands in the journal."""


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do, asked instead of checking its type."""

    #: Jobs run elsewhere, count against an account's plan, and survive our restarts.
    remote_jobs: bool
    #: The engine can be told that a job ended (callbacks, webhooks).
    callbacks: bool
    #: The work runs on this machine's CPU (or GPU).
    local_compute: bool


@dataclass(frozen=True)
class EngineContext:
    """What every engine gets when it is opened: nothing is set on it afterwards."""

    config: Config
    journal: Journal
    health: ApiHealth
    retry: RetryPolicy
    outputs_for: Callable[[Source], Sequence[str] | OutputSettings]
    #: Whether the engine may start what receives calls from outside (a callback listener).
    listen: bool = True
    #: Where engines report how far a file has come (the status page reads it).
    progress: ProgressBoard | None = None
    #: Told of every remote request once it ends: (endpoint, HTTP status or None), for metrics.
    on_request: Callable[[str, int | None], None] | None = None


class Engine(abc.ABC):
    """An opened engine. Subclasses implement all abstract methods.

    ``pipeline`` is None when the engine could not be opened (its model is unusable...);
    ``problem`` then says why, and its files wait with that reason.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(self, pipeline: Pipeline | None, max_concurrent: int, *,
                 problem: str | None = None) -> None:
        self.pipeline = pipeline
        self.max_concurrent = max_concurrent
        self.problem = problem

    @classmethod
    @abc.abstractmethod
    def installed(cls) -> bool:
        """Whether the engine's code and data are installed on this machine."""

    @classmethod
    @abc.abstractmethod
    def unusable(cls, config: Config) -> str | None:
        """Why this engine cannot run with ``config`` (a sentence naming the fix), or None."""

    @classmethod
    @abc.abstractmethod
    async def open(cls, context: EngineContext) -> Engine:
        """Open the engine: its clients, processes and pipeline."""

    @classmethod
    def settings(cls, config: Config) -> tuple[object, ...]:
        """What of ``config`` this engine is opened from: while it compares equal, a reload
        keeps the opened engine (its processes, connections, listener). By default every
        engine-related table, so a subclass that says less is never kept by mistake."""
        return (config.engine, config.gladia, config.local, config.local_model,
                config.callback, config.webhook, config.retry)

    @classmethod
    def describe(cls, config: Config) -> str:
        """The engine as `watcherd doctor` names it once chosen (its name by default)."""
        return cls.name

    @classmethod
    async def doctor(cls, config: Config) -> list[Finding]:
        """What `watcherd doctor` should say about this engine with ``config`` (nothing by
        default); a check, so it reports instead of raising."""
        return []

    async def start(self) -> None:  # noqa: B027 - optional: most engines have nothing to say
        """Say up front what is wrong (a rejected key, an unreachable API); never raises."""

    async def check(self) -> None:  # noqa: B027 - optional, like start()
        """Raise a fatal problem found up front (a rejected key); nothing by default."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release what :meth:`open` took (connections, processes, listeners)."""

    def status_fields(self) -> dict[str, Any]:
        """Facts about the engine for ``status`` and ``doctor`` (none by default)."""
        return {}
