"""What a reload carries from one generation of the daemon to the next.

A generation is one config's engines, worker and watcher. A reload must not throw work away:
engines whose settings did not change are kept as they are (no new worker processes, no model
loaded again), and attempts in flight are handed to the next generation's worker instead of
being cancelled. An attempt whose engine's settings changed finishes on that engine, which
is closed once its last attempt is over ("retiring"), while the new engine takes new files.
Only an engine whose jobs live elsewhere (Gladia) is closed at once when its settings change:
its attempts resume from the journal on the new one (nothing is created or paid twice), and its
callback listener must free its address for the new one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from watcherd.config import Config
from watcherd.engines import Engine, Engines, reusable
from watcherd.health import ApiHealth
from watcherd.worker import InFlight, Worker

log = structlog.get_logger("watcherd.generations")


@dataclass(frozen=True)
class Carry:
    """Handed from a generation to the next by a reload."""

    #: Engines opened with the same settings as the next config needs: used as they are.
    engines: dict[str, Engine] = field(default_factory=dict)
    #: The remote API's view, kept with a kept remote engine (its pipeline reports to it).
    health: ApiHealth | None = None
    #: Attempts still running, for the next worker to adopt.
    attempts: dict[int, InFlight] = field(default_factory=dict)


@dataclass(frozen=True)
class HandOver:
    """A reload's hand-over: what goes on, which engines retire, which attempts were stopped."""

    carry: Carry
    #: Engines whose settings changed but still finish attempts: closed after those.
    retiring: dict[Engine, list[asyncio.Task[None]]]
    #: Attempts of remote engines whose settings changed: cancelled, resumed from the journal.
    stopped: list[asyncio.Task[None]]


def hand_over(worker: Worker, engines: Engines, config: Config) -> HandOver:
    """Take this generation's running attempts from ``worker`` for a reload to ``config``."""
    kept = reusable(engines, config)
    going_on: dict[int, InFlight] = {}
    retiring: dict[Engine, list[asyncio.Task[None]]] = {}
    stopped: list[asyncio.Task[None]] = []
    for source_id, attempt in worker.hand_over().items():
        engine = engines.opened.get(attempt.engine)
        if attempt.engine in kept or engine is None:
            going_on[source_id] = attempt  # same engine; or one retiring since an earlier reload
        elif not engine.capabilities.remote_jobs:
            going_on[source_id] = attempt
            retiring.setdefault(engine, []).append(attempt.task)
        else:
            attempt.task.cancel()
            stopped.append(attempt.task)
    remote_kept = any(e.capabilities.remote_jobs for e in kept.values())
    carry = Carry(engines=kept, health=engines.health if remote_kept else None,
                  attempts=going_on)
    return HandOver(carry, retiring, stopped)


async def retire(engine: Engine, attempts: list[asyncio.Task[None]]) -> None:
    """Close ``engine`` once the attempts it still runs are over (done, failed or stopped)."""
    log.info("engine_retiring", engine=engine.name, files=len(attempts),
             hint="its settings changed: it finishes the files it started, then closes")
    await asyncio.wait(attempts)
    await engine.close()
    log.info("engine_retired", engine=engine.name)
