"""Which engine drives a folder's files, and what that engine can do, as the worker asks it.

The worker never looks at an engine's name to decide anything: it asks the route's
capabilities (whether jobs run remotely, how many at once), so adding an engine needs no
change here or in the worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from watcherd.config import WatchConfig
from watcherd.engines import Engines, Pipeline
from watcherd.health import ApiHealth

__all__ = ["EngineRoutes", "EngineSlot"]


@dataclass(frozen=True)
class EngineSlot:
    """One opened engine as the worker drives it."""

    #: None when the engine could not be opened: its files wait with the routes' reason.
    pipeline: Pipeline | None
    #: How many of its sources may be driven at once.
    max_concurrent: int
    #: Its jobs live elsewhere and count against a plan (Gladia): counted even while no task
    #: watches them, one probe at a time while the API is down, files checked against the
    #: upload limits before hashing, and a folder's fallback taken when the API stays down.
    remote_jobs: bool


def _single_engine(watch: WatchConfig | None) -> str | None:
    return "default"


@dataclass(frozen=True)
class EngineRoutes:
    """The engines the worker may use and which one each folder's files go through."""

    slots: Mapping[str, EngineSlot] = field(default_factory=dict)
    #: The engine name a folder's files use (None: no engine at all).
    engine_of: Callable[[WatchConfig | None], str | None] = _single_engine
    #: What waiting files' note says when their engine is missing.
    no_engine_reason: str | None = None
    #: The remote API's health, shared with the engine that reports to it.
    health: ApiHealth | None = None

    @classmethod
    def single(cls, pipeline: Pipeline, max_concurrent: int, *,
               health: ApiHealth | None = None) -> EngineRoutes:
        """One pipeline for every folder (tests, benchmarks); its health when it has one."""
        if health is None:
            found = getattr(pipeline, "health", None)
            health = found if isinstance(found, ApiHealth) else None
        return cls({"default": EngineSlot(pipeline, max_concurrent, pipeline.remote_jobs)},
                   health=health)

    @classmethod
    def of(cls, engines: Engines) -> EngineRoutes:
        """The opened engines, each with its concurrency and capabilities."""
        return cls({name: EngineSlot(e.pipeline, e.max_concurrent, e.capabilities.remote_jobs)
                    for name, e in engines.opened.items()},
                   engine_of=engines.engine_of, no_engine_reason=engines.problem(),
                   health=engines.health)

    def slot_of(self, watch: WatchConfig | None) -> tuple[str | None, EngineSlot | None]:
        """The engine name a folder's files use, and its slot (None when not opened)."""
        name = self.engine_of(watch)
        return name, (self.slots.get(name) if name is not None else None)

    def usable(self) -> dict[str, EngineSlot]:
        """The slots whose engine opened."""
        return {name: s for name, s in self.slots.items() if s.pipeline is not None}

    def limits_uploads(self, watch: WatchConfig | None) -> bool:
        """Whether a folder's files are held to the upload limits (a remote engine's, or
        unknown: the stricter choice); an engine that computes here reads any length."""
        _, slot = self.slot_of(watch)
        return slot is None or slot.remote_jobs
