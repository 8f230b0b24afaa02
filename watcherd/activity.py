"""What the daemon did, as it happens: counters for metrics, and the on_done/on_failed hooks.

It listens to the journal's committed transitions, so hooks run only after a state is
durable, and a failing hook is logged without ever changing a source's state. At most
``max_hooks`` hooks run at once; the others wait their turn as tasks (never blocking the loop
or the journal), and past ``max_waiting_hooks`` waiting a hook is skipped with a warning.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from watcherd import outputs
from watcherd.config import default_outputs
from watcherd.journal import Journal, Source
from watcherd.outputs.settings import OutputSettings
from watcherd.service import hook_env, render_metrics, run_hook, write_textfile

log = structlog.get_logger("watcherd.activity")


class Activity:
    """Counts uploads, audio seconds, errors and successes; runs hooks after commits."""

    def __init__(
        self,
        journal: Journal,
        *,
        outputs_for: Callable[[Source], Sequence[str] | OutputSettings] = default_outputs,
        on_done: Sequence[str] = (),
        on_failed: Sequence[str] = (),
        hook_timeout: float = 60.0,
        metrics_textfile: Path | None = None,
        max_hooks: int = 4,
        max_waiting_hooks: int = 1000,
    ) -> None:
        if max_hooks < 1 or max_waiting_hooks < 0:
            raise ValueError(
                f"max_hooks must be at least 1 (got {max_hooks}) and max_waiting_hooks at "
                f"least 0 (got {max_waiting_hooks})"
            )
        self.journal = journal
        self.outputs_for = outputs_for
        self.on_done = tuple(on_done)
        self.on_failed = tuple(on_failed)
        self.hook_timeout = hook_timeout
        self.metrics_textfile = metrics_textfile
        self.upload_bytes = 0
        self.audio_seconds = 0.0
        self.errors: Counter[str] = Counter()
        self.last_success: float | None = None
        self.max_hooks = max_hooks
        self.max_waiting_hooks = max_waiting_hooks
        self._hooks: set[asyncio.Task[None]] = set()
        # Bound to the daemon's loop on first use; hooks past the limit wait on it in turn.
        self._hook_slots = asyncio.Semaphore(max_hooks)
        journal.listeners.append(self.on_transition)

    def on_transition(self, source: Source, previous: str) -> None:
        """Journal listener: count the transition and start a hook if one is configured."""
        if source.state == previous:
            return
        if source.state == "uploaded" and previous == "uploading":
            self.upload_bytes += source.size or 0
        elif source.state == "done":
            self.last_success = time.time()
            self.audio_seconds += self._duration(source)
            if self.on_done:
                self._start_hook(self.on_done, source)
        elif source.state == "waiting":
            self.errors["transient"] += 1
        elif source.state == "failed":
            self.errors["permanent"] += 1
            if self.on_failed:
                self._start_hook(self.on_failed, source)
        elif source.state == "gone":
            self.errors["gone"] += 1

    def _duration(self, source: Source) -> float:
        job = self.journal.result_for(source.content_key) if source.content_key else None
        try:
            seconds = float(job["result"]["metadata"]["audio_duration"])  # type: ignore[index]
        except (TypeError, KeyError, ValueError, OverflowError):
            return 0.0
        return seconds if math.isfinite(seconds) and seconds >= 0 else 0.0

    def _start_hook(self, command: Sequence[str], source: Source) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a CLI command moved the state): hooks belong to the daemon
        if len(self._hooks) >= self.max_hooks + self.max_waiting_hooks:
            log.warning("hook_skipped", source=source.path, state=source.state,
                        command=command[0] if command else "",
                        reason=f"{len(self._hooks)} hooks are already running or waiting",
                        hint="files finish faster than the hook runs: make the hook faster "
                             "or lower hooks.timeout_seconds; this file's hook will not run")
            return
        written: list[Path] = []
        if source.state == "done" and source.output_base and source.content_key:
            job = self.journal.result_for(source.content_key)
            if job is not None:
                base = Path(source.output_base)
                try:
                    # What the journal recorded as written; older rows: what would be.
                    written = ([Path(p) for p in source.written_outputs]
                               or outputs.output_paths(base, self.outputs_for(source), job))
                except ValueError as exc:
                    log.warning("hook_outputs_unknown", source=source.path, error=str(exc))
        env = hook_env(Path(source.path), source.state, written, source.job_id,
                       source.last_error)
        task = loop.create_task(self._hook(command, env, source.path))
        self._hooks.add(task)
        task.add_done_callback(self._hooks.discard)

    async def _hook(self, command: Sequence[str], env: dict[str, str], path: str) -> None:
        async with self._hook_slots:
            result = await run_hook(command, env, self.hook_timeout)
        if result.ok:
            log.info("hook_finished", source=path, command=command[0],
                     seconds=round(result.duration, 2))
        else:
            log.warning("hook_failed", source=path, command=command[0],
                        problem=result.describe())

    def metrics(self) -> str:
        """The current metrics in Prometheus text format."""
        return render_metrics(
            self.journal, in_flight=self.journal.count_in_flight(exclude=set()),
            upload_bytes=self.upload_bytes, audio_seconds=self.audio_seconds,
            errors_by_class=dict(self.errors), last_success=self.last_success,
        )

    def write_metrics(self) -> None:
        """Refresh the node_exporter textfile, if one is configured."""
        if self.metrics_textfile is None:
            return
        try:
            write_textfile(self.metrics_textfile, self.metrics())
        except OSError as exc:
            log.warning("metrics_not_written", path=str(self.metrics_textfile), error=str(exc))

    async def close(self, timeout: float = 5.0) -> None:
        """Let running hooks finish (bounded), detach from the journal."""
        if self._hooks:
            await asyncio.wait(set(self._hooks), timeout=timeout)
        if self.on_transition in self.journal.listeners:
            self.journal.listeners.remove(self.on_transition)
