"""Drive one source through the local engine: transcribe, keep the result, write the outputs.

The journal is the only memory here too. ``transcribing`` is committed before the work starts
(the intent), the finished job is stored by content key before any output is written, and
the shared :func:`watcherd.outcomes.finish` writes the files. A crash mid-transcription leaves
the source in ``transcribing``, which is due again after a restart, so the file is simply
transcribed again: local work costs nothing but time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from watcherd import outcomes
from watcherd.config import default_outputs
from watcherd.engines.local.estimate import Run, Speed
from watcherd.engines.local.model import ModelError
from watcherd.engines.local.runner import LocalEngineError, TranscriberPool
from watcherd.errors import SourceError
from watcherd.fileops import run_on
from watcherd.identity import stored_result
from watcherd.journal import Journal, Source
from watcherd.outcomes import OutputsNotWritten, finish
from watcherd.outputs.settings import OutputSettings
from watcherd.progress import ProgressBoard
from watcherd.retry import RetryPolicy

log = structlog.get_logger("watcherd.engines.local.pipeline")

_METADATA_FILE_CHARS = 100


class LocalPipeline:
    """Moves sources through the local engine, one :meth:`drive` call per attempt."""

    #: The work happens here: nothing exists elsewhere while no task watches it.
    remote_jobs = False

    def __init__(
        self,
        journal: Journal,
        engine: TranscriberPool,
        *,
        retry_budget: int = 3,
        outputs_for: Callable[[Source], Sequence[str] | OutputSettings] = default_outputs,
        retry: RetryPolicy | None = None,
        progress: ProgressBoard | None = None,
    ) -> None:
        self.journal = journal
        self.engine = engine
        self.retry_budget = retry_budget
        self.outputs_for = outputs_for
        self.retry = retry or RetryPolicy()
        # Where the status page learns how far each file has come (memory only).
        self.progress = progress or ProgressBoard()
        # Source id -> its transcription in a worker process, and the engine's speed: for a
        # stop's grace (a file about to end is finished).
        self._running: dict[int, Run] = {}
        self.speed = Speed()

    async def drive(self, source_id: int) -> None:
        """Take one source as far as it can go now; every outcome lands in the journal."""
        source = self.journal.get(source_id)
        try:
            await self._drive(source)
        except LocalEngineError as exc:
            if exc.transient:
                self._retry_later(source_id, exc.message)
            else:
                outcomes.fail(self.journal, source_id, exc.message)
        except ModelError as exc:
            # The installation's problem, not the file's: wait as for a rejected key, never fail.
            outcomes.wait(self.journal, source_id, exc.message, self.retry.auth_pause)
            log.error("local_model_unusable", source=source.path, error=exc.message)
        except (SourceError, OutputsNotWritten, OSError) as exc:
            # The file, or where its transcript goes, is the trouble: the same for every engine.
            await outcomes.file_trouble(self.journal, source_id, exc, self.retry)
        finally:
            # Whatever happened, this attempt is over: the page stops showing it in flight.
            self.progress.clear(source_id)

    async def _drive(self, source: Source) -> None:
        assert source.content_key is not None, "only settled sources are driven"
        job = stored_result(self.journal, source)
        if job is None:
            job = await self._transcribe(source)
        source = self.journal.get(source.id)
        await run_on(source.watch_root, outcomes.check_present, source)
        try:
            await finish(self.journal, source, job, self.outputs_for(source), engine="local")
        except OSError as exc:
            raise OutputsNotWritten(exc) from exc

    async def _transcribe(self, source: Source) -> dict[str, Any]:
        path = Path(source.path)
        await run_on(source.watch_root, outcomes.check_unchanged, source, "since it was hashed",
                     "disappeared before it was transcribed")
        if source.size == 0:
            raise SourceError("the file is empty; replace it with the full recording")
        source = self.journal.transition(
            source, "transcribing", actor="worker", reason="local transcription started",
            last_error=None, note=None, next_attempt_at=None, engine="local",
        )
        log.info("transcription_started", source=source.path, engine="local")
        # Shown at once: Whisper's first report comes only after its first 30 s window.
        self.progress.report(source.id, fraction=0.0, phase="transcribing")

        def started(audio_seconds: float | None) -> None:
            self._running[source.id] = Run(time.monotonic(), audio_seconds)

        def progressed(fraction: float) -> None:
            run = self._running.get(source.id)
            if run is not None:
                self._running[source.id] = dataclasses.replace(run, fraction=fraction)
            self.progress.report(source.id, fraction=fraction, phase="transcribing")

        try:
            job = await self.engine.transcribe(path, self._options(source),
                                               on_progress=progressed, on_start=started)
        except asyncio.CancelledError:
            # Shutting down: the interrupted run is not the file's fault; it starts over.
            # Best effort only: left in "transcribing" it is re-run after a restart as well.
            # A source the worker stopped because it was deleted is already gone: kept so.
            with contextlib.suppress(Exception):
                current = self.journal.get(source.id)
                if current.state == "transcribing":
                    self.journal.transition(
                        current, "pending", actor="worker", reason="interrupted by shutdown",
                        note="interrupted; transcribed again when watcherd runs",
                    )
            raise
        finally:
            self._running.pop(source.id, None)
        # The result belongs to the content that was hashed; a file that changed meanwhile
        # is settled again rather than given someone else's transcript.
        await run_on(source.watch_root, outcomes.check_unchanged, source, "since it was hashed",
                     "disappeared before it was transcribed")
        self.journal.store_result(source, job)
        metadata = job["result"]["metadata"]
        self.speed.learn(float(metadata["audio_duration"]), float(metadata["transcription_time"]))
        unavailable = job.get("watcherd", {}).get("unavailable_options") or []
        if unavailable:
            log.warning("options_not_available_locally", source=source.path,
                        options=unavailable,
                        hint="these need the gladia engine; the transcript is still written")
        log.info("transcribed", source=source.path, job_id=job.get("id"),
                 language=(job["result"]["transcription"]["languages"] or [None])[0])
        return job

    def finishing_within(self, source_id: int, seconds: float) -> bool:
        """Whether this source's transcription should end within ``seconds``.

        Before its first progress report, from the recording's length and the engine's speed
        (short files report nothing until they are done); after it, from its own pace. A file
        still waiting for a worker process, or of unknown length, is not counted as near.
        """
        run = self._running.get(source_id)
        if run is None:
            return False
        left = self.speed.seconds_left(run, time.monotonic())
        return left is not None and left <= seconds

    def _options(self, source: Source) -> dict[str, Any]:
        options = source.options
        user_metadata = options.get("custom_metadata")
        metadata: dict[str, Any] = dict(user_metadata) if isinstance(user_metadata, Mapping) else {}
        # The same keys Gladia jobs carry, so a local JSON tells which content it belongs to.
        metadata["wf_key"] = source.content_key
        metadata["wf_file"] = Path(source.path).name[:_METADATA_FILE_CHARS]
        return {**options, "custom_metadata": metadata}

    # -- outcomes ------------------------------------------------------------------------

    def _retry_later(self, source_id: int, reason: str) -> None:
        current = self.journal.get(source_id)
        attempts = current.attempts + 1
        if attempts >= self.retry_budget:
            outcomes.fail(self.journal, source_id,
                          f"the local engine failed {attempts} times on this file "
                          f"(last: {reason}); run `watcherd retry` to try again",
                          attempts=attempts)
            return
        delay = self.retry.delay(attempts)
        outcomes.wait(self.journal, source_id, reason, delay, attempts=attempts)
        log.warning("local_engine_transient_error", source=current.path, error=reason,
                    retry_in=round(delay, 1))
