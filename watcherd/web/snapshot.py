"""What the page and /metrics show, read from the journal off the event loop and cached.

Each refresh opens the journal read-only in a worker thread (SQLite's WAL lets it read while
the daemon writes), so a page left open never stalls the worker, and reads only through the
journal's public methods. Figures that need a source's events or its stored result (latency,
job duration, the local engine's speed) are computed once per finished source and kept, so a
refresh costs one pass over the rows. A refresh is reused for a while that grows with how long
it took, so even a huge journal costs a bounded share of a core however often it is asked.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from watcherd.engines import computes_here
from watcherd.journal import STATES, Journal, Source
from watcherd.usage import Plan, UsageReport, read_report

# States in which an engine is working on a file right now.
_WORKING_STATES = ("uploading", "uploaded", "submitting", "submitted", "transcribing")
# How a source starts a new version: the drop that the latency is counted from.
_NEW_VERSION_REASONS = frozenset({"seen", "changed on disk", "reappeared"})
_WORK_STATES = frozenset({"uploading", "transcribing", "submitting"})
_DAY = 24 * 3600.0
_RECENT_DONE = 10
_MAX_LISTED = 200
_LOCAL_RTF_SAMPLES = 200
_MIN_REUSE_SECONDS = 2.0
# A refresh is reused for this many times as long as it took: at most ~1/6 of a core.
_REUSE_FACTOR = 5.0


@dataclass(frozen=True)
class Finished:
    """Figures of one finished source, from its events: when it ended and how long it took."""

    done_at: float
    latency: float  # the drop (new version seen) to its transcript
    duration: float | None  # work started (upload or local transcription) to done


@dataclass(frozen=True)
class Snapshot:
    """The journal as the page shows it, at ``taken_at``."""

    taken_at: float
    counts: dict[str, int]
    working: list[Source]
    queued: list[Source]
    queued_total: int
    waiting: list[Source]
    failed: list[Source]
    failed_total: int
    recent: list[Source]
    since: dict[int, float]
    finished: dict[int, Finished]
    jobs_in_flight: int = 0
    local_rtf: float | None = None
    local_rtf_samples: int = 0
    error: str | None = None
    read_seconds: float = 0.0
    #: This billing month's hours against the plan (None: no Gladia plan to show).
    usage: UsageReport | None = None

    def finished_within(self, seconds: float) -> list[Finished]:
        """Sources finished in the last ``seconds`` before the snapshot, oldest first."""
        start = self.taken_at - seconds
        return sorted((f for f in self.finished.values() if f.done_at >= start),
                      key=lambda f: f.done_at)


def _empty_snapshot(now: float, error: str) -> Snapshot:
    """What is shown when the journal cannot be read: nothing, and why."""
    return Snapshot(taken_at=now, counts=dict.fromkeys(STATES, 0), working=[], queued=[],
                    queued_total=0, waiting=[], failed=[], failed_total=0, recent=[], since={},
                    finished={}, error=error)


class SnapshotReader:
    """Reads snapshots of the journal at ``path``; :meth:`get` caches and serialises them."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time,
                 min_reuse: float = _MIN_REUSE_SECONDS,
                 opener: Callable[[], Journal] | None = None, plan: Plan | None = None
                 ) -> None:
        self.path = path
        self.plan = plan
        # How to open a read-only journal; a shared one needs this node's watch roots so the
        # page shows local paths, not the database's "@id/relative" form.
        self.opener = opener or (lambda: Journal.open(self.path, readonly=True))
        self.clock = clock
        self.min_reuse = min_reuse
        self._finished: dict[int, Finished] = {}
        self._rtf: dict[str, tuple[float, float] | None] = {}
        self._latest: Snapshot | None = None
        self._fresh_until = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> Snapshot:
        """A snapshot no older than the reuse period; one read at a time."""
        async with self._lock:
            if self._latest is None or time.monotonic() >= self._fresh_until:
                started = time.monotonic()
                self._latest = await asyncio.to_thread(self.read)
                took = time.monotonic() - started
                self._fresh_until = time.monotonic() + max(self.min_reuse, took * _REUSE_FACTOR)
            return self._latest

    def invalidate(self) -> None:
        """The next :meth:`get` reads again (after an action changed the journal)."""
        self._fresh_until = 0.0

    def read(self) -> Snapshot:
        """Read a snapshot now (in the calling thread, with its own connection)."""
        started = time.monotonic()
        now = self.clock()
        try:
            journal = self.opener()
        except Exception as exc:
            return _empty_snapshot(now, f"the journal cannot be read: {exc}")
        try:
            snapshot = self._read(journal, now)
        except Exception as exc:
            return _empty_snapshot(now, f"the journal cannot be read: {type(exc).__name__}: {exc}")
        finally:
            journal.close()
        return _with_read_time(snapshot, time.monotonic() - started)

    def _read(self, journal: Journal, now: float) -> Snapshot:
        counts = journal.counts()
        since = journal.state_since()
        active = journal.in_states([*_WORKING_STATES, "pending", "waiting", "failed"])
        working = [s for s in active if s.state in _WORKING_STATES]
        queued = [s for s in active if s.state == "pending"]
        waiting = sorted((s for s in active if s.state == "waiting"),
                         key=lambda s: s.next_attempt_at or 0.0)
        failed = sorted((s for s in active if s.state == "failed"),
                        key=lambda s: -(since.get(s.id) or s.updated_at))
        done = journal.in_states(["done"])
        finished: dict[int, Finished] = {}
        for source in done:
            if source.done_at is None:
                continue
            known = self._finished.get(source.id)
            if known is None or known.done_at != source.done_at:
                known = _finished(source, journal.events(source.id))
            finished[source.id] = known
        # Forget sources no longer done (reprocessed, changed): the cache follows the journal.
        self._finished = finished
        recent = sorted(done, key=lambda s: -(s.done_at or 0.0))[:_RECENT_DONE]
        rtf, samples = self._local_rtf(journal, done, now)
        return Snapshot(
            taken_at=now, counts=counts, working=working, queued=queued[:_MAX_LISTED],
            queued_total=len(queued), waiting=waiting[:_MAX_LISTED], failed=failed[:_MAX_LISTED],
            failed_total=len(failed), recent=recent,
            since={s.id: since[s.id] for s in [*working, *queued, *waiting, *failed, *recent]
                   if s.id in since},
            finished=finished, local_rtf=rtf, local_rtf_samples=samples,
            jobs_in_flight=journal.count_in_flight(exclude=set()),
            usage=read_report(journal, self.plan, now) if self.plan is not None else None,
        )

    def _local_rtf(self, journal: Journal, done: Sequence[Source], now: float
                   ) -> tuple[float | None, int]:
        """Processing time over audio time of the recent local transcriptions (<1 is faster)."""
        recent = sorted((s for s in done if computes_here(s.engine) and s.content_key
                         and (s.done_at or 0.0) >= now - _DAY),
                        key=lambda s: -(s.done_at or 0.0))[:_LOCAL_RTF_SAMPLES]
        spent = audio = 0.0
        samples = 0
        for source in recent:
            assert source.content_key is not None
            if source.content_key not in self._rtf:
                self._rtf[source.content_key] = _rtf_pair(journal.result_for(source.content_key))
            pair = self._rtf[source.content_key]
            if pair is not None:
                spent += pair[0]
                audio += pair[1]
                samples += 1
        if len(self._rtf) > 4 * _LOCAL_RTF_SAMPLES:
            keep = {s.content_key for s in recent}
            self._rtf = {k: v for k, v in self._rtf.items() if k in keep}
        return (spent / audio if audio > 0 else None), samples


def _with_read_time(snapshot: Snapshot, seconds: float) -> Snapshot:
    return replace(snapshot, read_seconds=seconds)


def _finished(source: Source, events: Sequence[dict[str, Any]]) -> Finished:
    """Latency and job duration of one done source, from its transitions."""
    assert source.done_at is not None
    dropped = source.created_at
    work_started: float | None = None
    for event in events:
        at = event.get("at")
        if not isinstance(at, int | float) or at > source.done_at:
            continue
        to_state, from_state = event.get("to_state"), event.get("from_state")
        if to_state == "pending" and (from_state is None or from_state in ("done", "gone")
                                      or event.get("reason") in _NEW_VERSION_REASONS):
            dropped = float(at)
            work_started = None  # a new version: its work is what counts
        elif to_state in _WORK_STATES and from_state != to_state and work_started is None:
            work_started = float(at)
    latency = max(0.0, source.done_at - dropped)
    duration = max(0.0, source.done_at - work_started) if work_started is not None else None
    return Finished(done_at=source.done_at, latency=latency, duration=duration)


def _rtf_pair(job: dict[str, Any] | None) -> tuple[float, float] | None:
    """(transcription seconds, audio seconds) from a local job's metadata, when both are sane."""
    try:
        metadata = job["result"]["metadata"]  # type: ignore[index]
        spent = float(metadata["transcription_time"])
        audio = float(metadata["audio_duration"])
    except (TypeError, KeyError, ValueError, OverflowError):
        return None
    if not (math.isfinite(spent) and math.isfinite(audio)) or spent < 0 or audio <= 0:
        return None
    return spent, audio
