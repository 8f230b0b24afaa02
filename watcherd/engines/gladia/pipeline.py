"""Drive one source through Gladia: upload, create, wait for the result, write the outputs.

The journal is the pipeline's only memory. Each remote side effect is preceded by a committed
intent (``uploading``, ``submitting``) and followed by a committed result (``uploaded`` with
the audio URL, ``submitted`` with the job id), so :meth:`GladiaPipeline.drive` can be called
again after a crash at any instant and continues from where the journal says it stopped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog

from watcherd import media, outcomes, outputs
from watcherd.config import default_outputs
from watcherd.engines.gladia import audioonly
from watcherd.engines.gladia.client import GladiaClient, UploadResult
from watcherd.engines.gladia.deletes import RemoteDeletes
from watcherd.engines.gladia.jobtime import (
    JobTimeModel,
    Observation,
    job_seconds,
    options_class,
    poll_schedule,
)
from watcherd.engines.gladia.polling import (
    JobHints,
    NewJobLooks,
    job_age,
    job_time,
    poll_cap_for,
)
from watcherd.engines.gladia.queueahead import QueueBudget, QueueModel
from watcherd.engines.gladia.refusals import refusal_reason
from watcherd.errors import (
    AuthError,
    GladiaError,
    JobNotFound,
    PermanentGladiaError,
    SourceError,
    TransientGladiaError,
)
from watcherd.fileops import run_on
from watcherd.health import ApiHealth
from watcherd.identity import stored_result
from watcherd.journal import CreateIntentHeld, Journal, PlanFull, Source
from watcherd.outcomes import OutputsNotWritten, finish
from watcherd.outputs.settings import OutputSettings
from watcherd.progress import ProgressBoard
from watcherd.retry import RetryPolicy, poll_delays
from watcherd.usage import MonthlyLimit, billing_period

log = structlog.get_logger("watcherd.engines.gladia.pipeline")
T = TypeVar("T")

# While a lost create's grace runs, how often the list is looked at again for evidence that
# it has caught up (a job of ours created after the lost one listed already).
EVIDENCE_RELOOK = 1.0
# How many of this process's latest creates are remembered as such evidence.
_RECENT_CREATES = 64
# How far before our own clock's create attempt a found job may be dated (clock skew).
_ADOPT_WINDOW = 24 * 3600.0
# How far back the look-up before every create searches. A job for the same content and options
# from this window is reused instead of paying again; the bound keeps the look-up small even if
# Gladia ignored the metadata filter.
_REUSE_WINDOW = 30 * 24 * 3600.0
# Statuses that say the server did not act on the request (timed out reading it, rate limited),
# unlike a 5xx, which a gateway may return after the job was created.
_NOT_PROCESSED = frozenset({408, 429})
_METADATA_LIMIT = 2000
# A shared journal refused the create intent: another node's copy of the same content is
# creating the job (its result is awaited), or the account's plan is full over every node.
# Both clear by themselves; these are the waits before looking again.
_INTENT_HELD_WAIT = 5.0
# Short: a slot freed on another node stays empty until this runs out (bench_nodes measured
# 2 s costing a fifth of the throughput); each look is one small query. A job of this
# process that ends wakes the wait at once.
PLAN_FULL_WAIT = 0.5
# A file held back by the monthly limit looks again this often (the limit may be raised by a
# reload, or the month turn), at most until the month turns.
_LIMIT_WAIT = 300.0
# How long the hours billed are reused before the journal is read again (every node's jobs).
_USAGE_CACHE_SECONDS = 2.0


#: No size limit on a source whose audio alone is sent (the track is checked instead).
_NO_LIMIT = 1 << 62


def _extract_timeout(size: int) -> float:
    """How long writing the audio track of a ``size``-byte source may take: generous (a
    slow disk reads 20 MB/s; encoding an hour takes about a minute of one core)."""
    return 600.0 + size / (20 * 1024 * 1024)


class Later(Exception):
    """Stop here and come back after ``delay`` seconds; the reason is shown in ``status``."""

    def __init__(self, reason: str, delay: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Stopped(Exception):
    """The source was already moved to its next state; nothing more to do in this pass."""


class GladiaPipeline:
    """Moves sources through the Gladia engine, one :meth:`drive` call per attempt.

    Every collaborator comes in at construction: ``health`` is shared with the worker,
    ``hints`` with the callback listener, and ``create_extras`` (the listener's callback
    fields) means results are announced, so polling is only the slowed safety net.
    """

    #: Jobs exist at Gladia and count against the plan even while nothing watches them.
    remote_jobs = True

    def __init__(
        self,
        journal: Journal,
        client: GladiaClient,
        *,
        outputs_for: Callable[[Source], Sequence[str] | OutputSettings] = default_outputs,
        health: ApiHealth | None = None,
        retry: RetryPolicy | None = None,
        hints: JobHints | None = None,
        create_extras: Callable[[Source], Mapping[str, Any]] | None = None,
        progress: ProgressBoard | None = None,
        max_in_flight: int | None = None,
        delete_for: Callable[[Source], bool] | None = None,
        deletes: RemoteDeletes | None = None,
        limit: MonthlyLimit | None = None,
        queue_ahead: int = 0,
        upload: str = "audio",
        spool: Path | None = None,
    ) -> None:
        self.journal = journal
        # [gladia] upload, and the folder (beside the journal) where a video's audio track is
        # written before it is sent; without a folder the file is always sent as it is.
        self.upload_mode = upload
        self.spool = spool
        # The plan's concurrent jobs plus the queue ahead, enforced at the create intent (over
        # every node sharing the journal: the worker's dispatch counting is per pass and may
        # race other nodes), halved on a 429 to a create and grown back slowly.
        self.budget = (QueueBudget(max_in_flight, queue_ahead) if max_in_flight is not None
                       else None)
        # This process's live jobs: when a job created into Gladia's queue should end.
        self._queue = QueueModel(max_in_flight if max_in_flight is not None else 1 << 30)
        # Set (and replaced) whenever an attempt ends: a create waiting for the budget looks.
        self._freed = asyncio.Event()
        # Set (and replaced) whenever a job ended or a job time was learnt: new jobs' looks
        # are planned again (their predicted starts moved).
        self._moved = asyncio.Event()
        # This process's latest creates (when sent, content key, job id): once one sent after
        # a lost create's outcome was settled is listed, the list has caught up past it.
        # Sources of this process whose job is done and result stored, outputs not yet
        # written: still counted by the journal, no longer by Gladia.
        self._stored: set[int] = set()
        self._recent: collections.deque[tuple[float, str, str]] = collections.deque(
            maxlen=_RECENT_CREATES)
        self.client = client
        self.outputs_for = outputs_for
        self.health = health or ApiHealth(journal)
        self.retry = retry or RetryPolicy()
        self.hints = hints or JobHints()
        # Fields added to every create body (callback_config from the callback listener).
        self.create_extras = create_extras or (lambda s: {})
        self.expect_callbacks = create_extras is not None
        # Where the status page learns each file's phase and expected end (memory only).
        self.progress = progress or ProgressBoard()
        # When this process first looked for the job of an unknown create outcome. The list's
        # lag is allowed for from then too: after a crash the request may have reached Gladia
        # long after the intent was committed. Memory only: a restart just waits once more.
        self._first_lookup: dict[int, float] = {}
        # When this process saw a create fail with an unknown outcome, by source id.
        self._lost_at: dict[int, float] = {}
        # When each job this process created was created (memory: a restart polls at once).
        self._created: dict[str, float] = {}
        self._jobtimes: JobTimeModel | None = None
        # Whether a source's job is deleted at Gladia once done (its folder's delete_after).
        self.delete_for = delete_for or (lambda s: False)
        self.deletes = deletes
        self.limit = limit
        # Sources the monthly limit sends to another engine (over_limit = "local"); the
        # dispatch reads it through diverted_to. Memory only: the check is made again.
        self._diverted: set[int] = set()
        self._billed: tuple[float, float, float] | None = None  # (read at, since, seconds)

    # -- the one entry point ---------------------------------------------------------------

    async def drive(self, source_id: int) -> None:
        """Take one source as far as it can go now; every outcome lands in the journal."""
        source = self.journal.get(source_id)
        bound = log.bind(source=source.path, source_id=source.id)
        try:
            await self._drive(source)
        except Stopped:
            pass
        except Later as later:
            outcomes.wait(self.journal, source_id, later.reason, later.delay)
        except AuthError as exc:
            outcomes.wait(self.journal, source_id, exc.describe(), self.retry.auth_pause)
            self.health.key_rejected(exc)
        except TransientGladiaError as exc:
            current = self.journal.get(source_id)
            attempts = current.attempts + 1
            if exc.malformed and attempts >= self.retry.malformed_budget:
                outcomes.fail(
                    self.journal, source_id,
                    f"{exc.describe()} ({attempts} times in a row); Gladia's answers for this "
                    "file cannot be used: run `watcherd retry` later, and report it if it "
                    "persists", attempts=attempts,
                )
                return
            delay = self.retry.delay(attempts, retry_after=exc.retry_after)
            if exc.idempotent:
                # A read can be repeated at no cost: never wait long after one failed.
                delay = min(delay, max(exc.retry_after or 0.0, self.retry.read_step_max_wait))
            elif source_id in self._lost_at:
                # A create of unknown outcome: what comes next is only a look at the list,
                # and until it settles the outcome the source holds a job's place.
                delay = min(delay, max(exc.retry_after or 0.0, EVIDENCE_RELOOK))
            outcomes.wait(self.journal, source_id, exc.describe(), delay, attempts=attempts)
            bound.warning("gladia_transient_error", error=exc.describe(), retry_in=round(delay, 1))
            if not exc.maybe_sent:
                self.health.down(exc)
        except PermanentGladiaError as exc:
            outcomes.fail(self.journal, source_id, refusal_reason(exc))
        except (SourceError, OutputsNotWritten, OSError) as exc:
            # The file, or where its transcript goes, is the trouble: the same for every engine.
            await outcomes.file_trouble(self.journal, source_id, exc, self.retry)
        finally:
            # Whatever happened, this attempt is over: the page stops showing it in flight,
            # and a create waiting for the budget looks again (a job may have ended).
            self.progress.clear(source_id)
            self._stored.discard(source_id)
            self._wake_creates()

    def _wake_creates(self) -> None:
        """A job's place may have freed: a create waiting for the budget looks again."""
        freed, self._freed = self._freed, asyncio.Event()
        freed.set()

    @property
    def max_in_flight(self) -> int | None:
        """The jobs that may be in flight now, queued ones included (None: no limit).

        The journal counts a source until its outputs are written; one whose job is done
        and whose result is stored holds no place at Gladia any more, so it is not counted
        against the budget meanwhile (its job is never created again: the result is kept).
        """
        if self.budget is None:
            return None
        return self.budget.limit + len(self._stored)

    # -- steps ---------------------------------------------------------------------------

    async def _drive(self, source: Source) -> None:
        assert source.content_key is not None, "only settled sources are driven"
        job = stored_result(self.journal, source)
        if job is None:
            fresh = False
            if source.job_id is None and source.submit_started_at is not None:
                source = await self._recover_create(source)
            if source.job_id is None:
                # Look Gladia up before anything is sent: a copy, a moved folder or a lost
                # journal may already have a job for this content, and a 1 GB file is then
                # not uploaded again only to be adopted.
                adopted = await self._reuse_existing(source)
                if adopted is not None:
                    source = adopted
                else:
                    await self._check_limit(source)
                    if source.audio_url is None:
                        source = await self._upload(source)
                    source = await self._create(source)
                    fresh = True
            job = await self._await_result(source, fresh=fresh)
        source = self.journal.get(source.id)
        await run_on(source.watch_root, outcomes.check_present, source)
        await self._finish(source, job)
        if self.deletes is not None and self.delete_for(source):
            self.deletes.wake()  # its outputs are written: the job may go at Gladia

    # -- the monthly limit -------------------------------------------------------------------

    def billed(self, now: float, *, fresh: bool = False) -> float:
        """Seconds Gladia billed this billing month, over every node (briefly cached for the
        dispatch's look at every due file; ``fresh`` before anything is sent)."""
        assert self.limit is not None
        since = billing_period(now, self.limit.billing_day).start
        cached = self._billed
        if not fresh and cached is not None and cached[1] == since and (
            now - cached[0] < _USAGE_CACHE_SECONDS
        ):
            return cached[2]
        seconds = self.journal.billed_since(since)
        self._billed = (now, since, seconds)
        return seconds

    async def _check_limit(self, source: Source) -> None:
        """Before anything billed is sent: would this file take the month past the limit?"""
        if self.limit is None:
            return
        audio = await run_on(source.watch_root, media.audio_duration, Path(source.path))
        now = time.time()
        refused = self.limit.refusal(self.billed(now, fresh=True), audio or 0.0, now)
        if refused is None:
            self._diverted.discard(source.id)
            return
        reason, period = refused
        if self.limit.over_limit == "local":
            self._diverted.add(source.id)
            raise Later(f"{reason}; going to the local engine", 0.0)
        raise Later(reason, max(0.0, min(_LIMIT_WAIT, period.end - now)))

    def diverted_to(self, source: Source) -> str | None:
        """The engine this source goes to instead (the monthly limit's over_limit), or None."""
        if self.limit is None or self.limit.over_limit != "local":
            return None
        if source.job_id is not None or source.submit_started_at is not None:
            return None  # a job exists (or may): it is finished here
        if source.id in self._diverted:
            return "local"
        now = time.time()
        return "local" if self.limit.refusal(self.billed(now), 0.0, now) else None

    async def _upload(self, source: Source) -> Source:
        path = Path(source.path)
        await run_on(source.watch_root, outcomes.check_unchanged, source)
        assert source.size is not None
        track = None
        if self.upload_mode == "audio" and self.spool is not None:
            track = await run_on(source.watch_root, audioonly.plan, path, source.size)
        # Sent alone, the audio must be within Gladia's limit, not the whole file (checked
        # once it is written); the 135-minute limit holds either way.
        limit = media.MAX_BYTES if track is None else _NO_LIMIT
        await run_on(source.watch_root, functools.partial(media.check_source, max_bytes=limit),
                     path, source.size)
        source = self.journal.transition(
            source, "uploading", actor="worker", reason="upload started", last_error=None,
            note=None, engine="gladia",
        )
        self.progress.report(source.id, phase="uploading")
        if track is None:
            log.info("upload_started", source=source.path, bytes=source.size)
            size = source.size
            # Sent again from the start on a failure: an upload makes no job, so repeating it
            # costs only the bytes, and waiting a step's backoff for it holds the file back.
            result = await self._read(lambda: self.client.upload(path, expected_size=size))
            if result.sha256 != source.sha256:
                raise SourceError("changed while it was uploading", transient=True)
        else:
            result = await self._upload_audio(source, track)
        self.health.ok()
        # The open file was read to the end even if it was deleted or replaced meanwhile.
        await run_on(source.watch_root, outcomes.check_unchanged, source,
                     "while it was uploading")
        source = self.journal.transition(
            source, "uploaded", actor="worker", reason="uploaded", audio_url=result.audio_url,
            attempts=0,
        )
        log.info("uploaded", source=source.path, audio_url_id=result.audio_url.rsplit("/", 1)[-1])
        return source

    async def _upload_audio(self, source: Source, plan: audioonly.TrackPlan) -> UploadResult:
        """Write the source's audio track beside the journal, send it, remove it.

        The content key stays the source's: the track is checked against the hashed file
        by its identity (size, times, inode) before and after it is written, as the local
        engine checks what it transcribed.
        """
        assert self.spool is not None and source.size is not None
        path = Path(source.path)
        track = await run_on(source.watch_root, audioonly.extract, path, plan, self.spool,
                             timeout=_extract_timeout(source.size))
        try:
            await run_on(source.watch_root, outcomes.check_unchanged, source,
                         "while its audio was extracted")
            if track.size > media.MAX_BYTES:
                raise SourceError(
                    f"its audio alone is {track.size / 1024 / 1024:.0f} MB, over Gladia's "
                    "1000 MB limit; split the recording and drop the parts in")
            log.info("upload_started", source=source.path, bytes=track.size,
                     source_bytes=source.size, audio_only=plan.reason, codec=plan.codec,
                     copied=plan.copy)
            return await self.client.upload_file(
                track.file, track.size, filename=f"{path.stem}{plan.suffix}")
        finally:
            track.close()

    def _create_body(self, source: Source) -> dict[str, Any]:
        options = source.options
        user_metadata = options.get("custom_metadata") or {}
        # Undecodable bytes of a POSIX name become U+FFFD: the body must be valid UTF-8 JSON.
        name = os.fsencode(Path(source.path).name).decode("utf-8", "replace")
        metadata = {**user_metadata, "wf_key": source.content_key, "wf_file": name}
        if len(_json(metadata)) > _METADATA_LIMIT:
            metadata["wf_file"] = metadata["wf_file"][:100]
        return {**options, **self.create_extras(source), "audio_url": source.audio_url,
                "custom_metadata": metadata}

    async def _take_intent(self, source: Source) -> Source:
        """The create intent, once the budget (plan + queue ahead, every node) has room.

        The wait is here, uploaded and ready: the moment a job ends, the next is created.
        """
        while True:
            try:
                return self.journal.take_create_intent(
                    source, actor="worker", reason="creating job",
                    max_in_flight=self.max_in_flight, submit_started_at=time.time(),
                )
            except CreateIntentHeld as exc:
                # A duplicate whose leader (maybe on another node) creates the job: its
                # stored result finishes this source too, without a second job.
                raise Later(f"same content is being created by node {exc.node or '?'}; "
                            "waiting for its result", _INTENT_HELD_WAIT) from None
            except PlanFull as exc:
                self.progress.report(source.id, phase=f"waiting for one of {exc.limit} jobs "
                                     "(the plan's and the queue ahead) to end")
                freed = self._freed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(freed.wait(), timeout=PLAN_FULL_WAIT)

    async def _create(self, source: Source) -> Source:
        """Create the job (the look-up for an existing one was made just before)."""
        body = self._create_body(source)
        source = await self._take_intent(source)
        attempt = 0
        while True:
            attempt += 1
            sent = time.time()
            try:
                created = await self.client.create(body)
                break
            except GladiaError as exc:
                shrunk = False
                if exc.status == 429 and self.budget is not None and self.budget.most_ahead:
                    # Gladia's queue may be full: queue fewer ahead.
                    ahead = self.budget.refused(exc.retry_after, again=attempt > 1)
                    shrunk = ahead is not None
                    if shrunk:
                        log.info("queue_ahead_shrunk", queue_ahead=ahead, source=source.path)
                if not exc.maybe_sent or not exc.transient or exc.status in _NOT_PROCESSED:
                    # Refused or never sent: certainly no job exists, so no lookup is needed,
                    # and the same create may be sent again at once under the intent it
                    # holds (a rate limit's Retry-After, a refused connection), unless the
                    # queue ahead just shrank: then the intent's place goes back.
                    delay = (self.retry.read_delay(attempt, exc.retry_after)
                             if exc.transient and not shrunk else None)
                    if delay is not None:
                        log.info("gladia_create_retry", error=exc.describe(),
                                 retry_in=round(delay, 2), source=source.path)
                        await asyncio.sleep(delay)
                        continue
                    self.journal.transition(
                        source, "uploaded", actor="worker", reason="job not created",
                        submit_started_at=None,
                    )
                else:
                    # Whether it made a job is unknown: from now on, Gladia has either made it
                    # or never will, so a job of ours sent after this and listed proves the
                    # answer.
                    self._lost_at[source.id] = time.time()
                raise
        self.health.ok()
        if self.budget is not None:
            self.budget.accepted()
        self._created[created.id] = time.time()
        assert source.content_key is not None
        self._recent.append((sent, source.content_key, created.id))
        source = self.journal.transition(
            source, "submitted", actor="worker", reason="job created", job_id=created.id,
            submit_started_at=None, attempts=0,
        )
        log.info("job_created", source=source.path, job_id=created.id)
        return source

    async def _reuse_existing(self, source: Source) -> Source | None:
        """Adopt a live or done job Gladia already has for this content key, if any.

        Whatever the journal forgot (a source deleted and dropped again, a lost journal, an
        intent cleared by a rescan) Gladia remembers: one list call per create is the cheap
        insurance that a recording is not billed twice. Jobs that ended in error are not reused.
        """
        assert source.content_key is not None
        since = datetime.fromtimestamp(time.time() - _REUSE_WINDOW, tz=UTC)
        key = source.content_key
        jobs = await self._read(lambda: self.client.find_jobs({"wf_key": key}, after_date=since))
        self.health.ok()
        live = [j for j in jobs if j.get("status") != "error" and j.get("id")]
        if not live:
            return None
        job = _newest(live)
        log.info("job_reused", source=source.path, job_id=job["id"], status=job.get("status"))
        return self.journal.transition(
            source, "submitted", actor="worker", job_id=str(job["id"]), submit_started_at=None,
            attempts=0, reason="Gladia already has a job for this content; not creating another",
        )

    async def _recover_create(self, source: Source) -> Source:
        """After an unknown create outcome: adopt the job if Gladia has it, else allow a create."""
        assert source.content_key is not None and source.submit_started_at is not None
        first_look = self._first_lookup.setdefault(source.id, time.time())
        since = datetime.fromtimestamp(source.submit_started_at - _ADOPT_WINDOW, tz=UTC)
        key = source.content_key
        jobs = await self._read(lambda: self.client.find_jobs({"wf_key": key}, after_date=since))
        self.health.ok()
        jobs = [j for j in jobs if j.get("id")]
        live = [j for j in jobs if j.get("status") != "error"]
        errored = [j for j in jobs if j.get("status") == "error"]
        # An errored job we have not counted yet is the outcome of the lost create itself.
        pick = live or (errored if len(errored) > source.job_errors else [])
        if pick:
            job = _newest(pick)
            log.info("job_adopted", source=source.path, job_id=job["id"])
            self._first_lookup.pop(source.id, None)
            self._lost_at.pop(source.id, None)
            return self.journal.transition(
                source, "submitted", actor="worker", job_id=str(job["id"]),
                submit_started_at=None,
                reason="found the job created before the interruption; not creating another",
            )
        # Gladia's list may lag behind a create: only a job missing for the whole grace, counted
        # from both the intent and this process's first look, was certainly not created,
        # unless the list shows it has caught up past the lost create.
        left = max(source.submit_started_at, first_look) + self.retry.list_lag_grace - time.time()
        # Since when the lost request is settled: its failure seen here, or (after a restart,
        # which closed its connection) this process's first look.
        settled = self._lost_at.get(source.id, first_look)
        if left > 0:
            if not await self._list_caught_up(settled):
                raise Later("checking whether Gladia created the job",
                            min(left, EVIDENCE_RELOOK))
            log.info("lost_create_settled", source=source.path, grace_left=round(left, 1),
                     evidence="a job of ours created after it is listed, this one is not")
        self._first_lookup.pop(source.id, None)
        self._lost_at.pop(source.id, None)
        return self.journal.transition(
            source, "uploaded" if source.audio_url else "pending", actor="worker",
            submit_started_at=None, reason="no job was created before the interruption",
        )

    async def _list_caught_up(self, settled: float) -> bool:
        """Whether a job this process sent after ``settled`` is listed already.

        The list shows jobs in creation order, late by its lag: once a job of ours created
        after the lost request was settled is in it, a job that request made would be too,
        so its absence is final.
        """
        later = [(key, job_id) for at, key, job_id in self._recent if at > settled]
        if not later:
            return False
        key, job_id = later[0]  # the earliest after the attempt: the first to be listed
        since = datetime.fromtimestamp(settled - _ADOPT_WINDOW, tz=UTC)
        jobs = await self._read(lambda: self.client.find_jobs({"wf_key": key}, after_date=since))
        return any(j.get("id") == job_id for j in jobs)

    async def _await_result(self, source: Source, *, fresh: bool = False) -> dict[str, Any]:
        job_id = source.job_id
        assert job_id is not None
        if source.state != "submitted":
            source = self.journal.transition(
                source, "submitted", actor="worker", reason="waiting for the result"
            )
        looks: NewJobLooks | None = None
        if self.expect_callbacks:
            # Callbacks say when a job ends; polling is only the (slowed) safety net.
            delays: Iterator[float] = poll_delays(start=self.retry.poll_start,
                                                  cap=self.retry.poll_cap)
            if fresh:
                await self._pause(job_id, next(delays))
        else:
            audio = await run_on(source.watch_root, media.audio_duration, Path(source.path))
            kind = options_class(source.options)
            prediction = self._model().predict(audio, kind)
            created = self._created.pop(job_id, None)
            cap = poll_cap_for(audio, self.retry)
            if fresh:
                created = time.time() if created is None else created
                queued = self._queue.created(job_id, prediction, now=created, key=(audio, kind))
                expected = queued.queue_wait + prediction.seconds
                # Looked at when it should end, planned again as the jobs ahead end and as
                # job times are learnt (polling.py).
                looks = NewJobLooks(job_id, self._queue, prediction, created=created,
                                    poll_start=self.retry.poll_start, cap=cap)
                await self._until(looks)
            else:
                # Resumed (restart, adopted job): look now; the schedule starts from the
                # job's own age once its created_at is known.
                self._queue.resumed(job_id, prediction)
                expected = prediction.seconds
                delays = iter(())
        while True:
            try:
                job = await self._read(lambda: self.client.get(job_id))
            except JobNotFound:
                self._queue.forget(job_id)
                self._queue_moved()
                raise PermanentGladiaError(
                    f"the job {job_id} no longer exists at Gladia (deleted or expired); "
                    "`watcherd retry` creates a new one, billed again",
                    status=404,
                ) from None
            self.health.ok()
            status = job.get("status")
            if status in ("queued", "processing") and not self.expect_callbacks:
                self.progress.report(source.id, phase=str(status),
                                     expected_end=time.time() - job_age(job) + expected)
            elif status in ("queued", "processing"):
                self.progress.report(source.id, phase=str(status))
            if status == "done":
                # The journal keeps the job without the callback URL, which carries a token.
                self.journal.store_result(source, outputs.scrub_job(job),
                                          delete=self.delete_for(source))
                self._stored.add(source.id)
                self._wake_creates()
                self._learn(source, job)
                return job
            if status == "error":
                self._queue.ended(job_id, job_time(job.get("completed_at")))
                self._queue_moved()
                self._job_error(source, job)
            if looks is not None:
                looks.looked(time.time())
                await self._until(looks)
                continue
            wait = next(delays, None)
            if wait is None:
                age = job_age(job)
                delays = poll_schedule(prediction, since_created=age,
                                       start=self.retry.poll_start, cap=cap)
                wait = next(delays)
            await self._pause(job_id, wait)

    def _model(self) -> JobTimeModel:
        """The job time model, loaded from the journal the first time it is needed."""
        if self._jobtimes is None:
            self._jobtimes = JobTimeModel(
                [Observation(kind, audio, seconds)
                 for kind, audio, seconds in self.journal.job_times()]
            )
        return self._jobtimes

    def _learn(self, source: Source, job: Mapping[str, Any]) -> None:
        """Remember how long this job ran, for the next predictions (never fails a job).

        Its run time, not its time in Gladia's queue: from its creation, or from the end of
        ours that freed its slot. A job whose start is unknown (created into the queue before
        a restart) teaches nothing while jobs are queued ahead.
        """
        try:
            self._learn_time(source, job)
        finally:
            # The job's end started the next queued one, and what was learnt may predict
            # the live jobs better: their looks are planned again.
            model = self._model()
            self._queue.relearn(lambda key: model.predict(*key))
            self._queue_moved()

    def _learn_time(self, source: Source, job: Mapping[str, Any]) -> None:
        seconds = job_seconds(job)
        created = job_time(job.get("created_at"))
        completed = job_time(job.get("completed_at"))
        known, start = self._queue.ended(str(job.get("id")), completed)
        if not known and self.budget is not None and self.budget.most_ahead:
            return
        if seconds is None:
            return
        if start is not None and created is not None and completed is not None:
            seconds = max(0.0, completed - max(created, start))
        audio = _audio_seconds(job)
        kind = options_class(source.options)
        try:
            self.journal.record_job_time(kind, audio, seconds)
        except Exception as exc:  # the model is an optimisation: a job never fails for it
            log.warning("job_time_not_recorded", error=str(exc))
            return
        self._model().add(Observation(kind, audio, seconds))

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
        """A request that is harmless to repeat (GET a job, GET the list, an upload), retried
        within the step.

        A transient failure is retried after the server's Retry-After (or a short jittered
        delay) a few times before the step itself waits: a lost GET costs a second, not a
        backoff of the whole step. Creates never come through here (see :meth:`_create`).
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return await call()
            except TransientGladiaError as exc:
                delay = self.retry.read_delay(attempt, exc.retry_after)
                if delay is None:
                    raise
                log.info("gladia_read_retry", error=exc.describe(), retry_in=round(delay, 2))
                await asyncio.sleep(delay)

    def job_finished(self, job_id: str) -> None:
        """A hint (callback, webhook) that a job ended: poll it now instead of at its time."""
        self.hints.finished(job_id)

    async def _pause(self, job_id: str, seconds: float) -> None:
        await self.hints.pause(job_id, seconds)

    async def _until(self, looks: NewJobLooks) -> None:
        """Wait for a new job's next look, planned again whenever the queue moves (a job
        ended, a job time was learnt), or until a hint says it ended."""
        while (left := looks.next_at - time.time()) > 0:
            moved = self._moved
            if await self.hints.pause(looks.job_id, left, also=moved):
                return
            if moved.is_set():
                looks.replan(time.time())

    def _queue_moved(self) -> None:
        """Predicted starts may have changed: waiting looks plan again."""
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def _job_error(self, source: Source, job: Mapping[str, Any]) -> None:
        code = job.get("error_code")
        code = code if isinstance(code, int) else 500
        if code >= 500 and source.job_errors + 1 < self.retry.job_error_budget:
            delay = self.retry.delay(source.job_errors + 1)
            self.journal.transition(
                source, "waiting", actor="worker", job_id=None, job_errors=source.job_errors + 1,
                next_attempt_at=time.time() + delay,
                last_error=f"Gladia job {source.job_id} failed on Gladia's side (error {code}); "
                "a new job will be created",
                reason="job error",
            )
            raise Stopped()
        if code >= 500:
            reason = (f"Gladia failed this file {source.job_errors + 1} times (last job "
                      f"{source.job_id}, error {code}); run `watcherd retry` later")
        else:
            reason = (f"Gladia could not transcribe this file (job {source.job_id}, error "
                      f"{code}): it is probably corrupt, not audio, or too long; replace the "
                      "file with a good recording (a changed file is picked up again)")
        raise PermanentGladiaError(reason, status=code)

    async def _finish(self, source: Source, job: Mapping[str, Any]) -> None:
        try:
            await finish(self.journal, source, job, self.outputs_for(source), engine="gladia")
        except OSError as exc:
            raise OutputsNotWritten(exc) from exc
        except ValueError as exc:
            # A "done" job without a usable result: Gladia's answer, not ours, is at fault.
            raise PermanentGladiaError(
                f"Gladia's result for job {job.get('id')} cannot be written: {exc}; "
                "run `watcherd retry` to transcribe the file again", status=None,
            ) from exc

    # -- outcomes ------------------------------------------------------------------------




def _newest(jobs: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    return max(jobs, key=lambda j: str(j.get("created_at", "")))


def _json(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _audio_seconds(job: Mapping[str, Any]) -> float | None:
    """The audio's length as Gladia measured it (file, then result metadata)."""
    for holder in (job.get("file"), (job.get("result") or {}).get("metadata")
                   if isinstance(job.get("result"), dict) else None):
        if isinstance(holder, dict):
            value = holder.get("audio_duration")
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
    return None

