"""GET /metrics: the Prometheus exposition, made by ``prometheus_client`` from live figures.

A custom collector reads, at scrape time, the journal snapshot (files by state, jobs in
flight, drop-to-transcript latency and job duration histograms, the local engine's real-time
factor), the daemon's :class:`~watcherd.activity.Activity` counters (upload bytes, audio
seconds, errors by class, last success), the transitions counted since start, and the Gladia
requests by endpoint and status class. The process collector adds CPU, memory and open files.
The families the node_exporter textfile (``[metrics] textfile``) also carries are made by
:mod:`watcherd.service.metrics`, so both say the same thing the same way.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import httpx
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from watcherd.journal import Journal, Source
from watcherd.service.metrics import (
    ActivityFigures,
    activity_families,
    in_flight_family,
    sources_family,
)
from watcherd.usage import UsageReport
from watcherd.web.snapshot import Snapshot

# Latency spans seconds (a short local file) to a day (a long queue, an outage).
_LATENCY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
                   21600.0, 86400.0)
_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
# Gladia endpoints by (method, path shape): ids are dropped so labels stay few.
_ENDPOINTS = (
    ("POST", re.compile(r"/v2/upload/?"), "upload"),
    ("POST", re.compile(r"/v2/pre-recorded/?"), "create"),
    ("GET", re.compile(r"/v2/pre-recorded/?"), "list"),
    ("GET", re.compile(r"/v2/pre-recorded/[^/]+/?"), "get"),
    ("DELETE", re.compile(r"/v2/pre-recorded/[^/]+/?"), "delete"),
)


class TransitionCounter:
    """Journal listener: transitions committed since start, by (from, to) state."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, source: Source, previous: str) -> None:
        """Count one committed transition (a note without a state change is not one)."""
        if source.state != previous:
            with self._lock:
                self.counts[(previous, source.state)] += 1

    def attach(self, journal: Journal) -> None:
        """Start counting the transitions of ``journal``."""
        journal.listeners.append(self)

    def detach(self, journal: Journal) -> None:
        """Stop counting."""
        if self in journal.listeners:
            journal.listeners.remove(self)

    def copy(self) -> dict[tuple[str, str], int]:
        """The counts so far."""
        with self._lock:
            return dict(self.counts)


def endpoint_of(method: str, path: str) -> str:
    """The Gladia endpoint a request went to, as a label: upload, create, get, list, ..."""
    for want, shape, name in _ENDPOINTS:
        if method.upper() == want and shape.fullmatch(path):
            return name
    return "other"


def status_class(status: int | None) -> str:
    """``2xx``..``5xx`` for an HTTP status, ``error`` when no answer came back."""
    if status is None or not 100 <= status <= 599:
        return "error"
    return f"{status // 100}xx"


class ApiRequests:
    """Gladia API requests by endpoint and status class.

    Wire :meth:`on_response` into the Gladia client's httpx ``event_hooks["response"]`` (and
    :meth:`record` with ``status=None`` where a request gets no answer).
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def record(self, endpoint: str, status: int | None) -> None:
        """Count one request to ``endpoint`` that ended with ``status`` (None: no answer)."""
        with self._lock:
            self.counts[(endpoint, status_class(status))] += 1

    async def on_response(self, response: httpx.Response) -> None:
        """An httpx response event hook: count the response by endpoint and status class."""
        self.record(endpoint_of(response.request.method, response.request.url.path),
                    response.status_code)

    def copy(self) -> dict[tuple[str, str], int]:
        """The counts so far."""
        with self._lock:
            return dict(self.counts)


def _histogram(name: str, doc: str, values: Iterable[float],
               bounds: Sequence[float]) -> HistogramMetricFamily:
    ordered = sorted(values)
    buckets: list[tuple[str, float]] = []
    index = 0
    for bound in bounds:
        while index < len(ordered) and ordered[index] <= bound:
            index += 1
        buckets.append((repr(float(bound)), float(index)))
    buckets.append(("+Inf", float(len(ordered))))
    family = HistogramMetricFamily(name, doc)
    family.add_metric([], buckets=buckets, sum_value=float(sum(ordered)))
    return family


class WatcherdCollector(Collector):
    """Builds every watcherd family from the latest snapshot and the live counters."""

    def __init__(self, snapshot: Snapshot, *, activity: ActivityFigures | None,
                 transitions: TransitionCounter | None, api: ApiRequests | None) -> None:
        self.snapshot = snapshot
        self.activity = activity
        self.transitions = transitions
        self.api = api

    def collect(self) -> Iterator[Metric]:
        """The families, in a stable order."""
        snap = self.snapshot
        yield sources_family(snap.counts)
        yield GaugeMetricFamily("watcherd_journal_readable",
                                "1 when the journal could be read for this scrape.",
                                value=0 if snap.error else 1)
        yield in_flight_family(snap.jobs_in_flight)
        yield GaugeMetricFamily("watcherd_files_working",
                                "Files an engine is working on (upload to result).",
                                value=len(snap.working))
        if self.transitions is not None:
            family = CounterMetricFamily("watcherd_transitions",
                                         "State transitions committed since start.",
                                         labels=["from_state", "to_state"])
            for (old, new), count in sorted(self.transitions.copy().items()):
                family.add_metric([old, new], count)
            yield family
        api = CounterMetricFamily("watcherd_api_requests",
                                  "Gladia API requests since start, by endpoint and status "
                                  "class (error: no answer).", labels=["endpoint", "status_class"])
        for (endpoint, klass), count in sorted((self.api.copy() if self.api else {}).items()):
            api.add_metric([endpoint, klass], count)
        yield api
        if self.activity is not None:
            yield from activity_families(self.activity)
        finished = list(snap.finished.values())
        yield _histogram("watcherd_latency_seconds",
                         "Drop to transcript: a file first seen to its outputs written, for "
                         "the finished files in the journal.",
                         (f.latency for f in finished), _LATENCY_BUCKETS)
        yield _histogram("watcherd_job_duration_seconds",
                         "Work on a file: upload (or local transcription) start to done, for "
                         "the finished files in the journal.",
                         (f.duration for f in finished if f.duration is not None),
                         _DURATION_BUCKETS)
        if snap.local_rtf is not None:
            yield GaugeMetricFamily(
                "watcherd_local_real_time_factor",
                "Local engine: transcription time over audio time, last 24 h (0.13 = 7.5x "
                "faster than real time).", value=snap.local_rtf)
        if snap.usage is not None:
            yield from _usage_families(snap.usage)
        yield GaugeMetricFamily("watcherd_journal_read_seconds",
                                "How long reading the journal for this scrape took.",
                                value=snap.read_seconds)


def _usage_families(report: UsageReport) -> Iterator[Metric]:
    """This billing month's hours by folder, engine and model, and the plan's figures."""
    billed = GaugeMetricFamily("watcherd_usage_billed_hours",
                               "Hours billed this billing month (Gladia's billing_time; 0 for "
                               "the local engine), by folder, engine and model.",
                               labels=["watch", "engine", "model"])
    audio = GaugeMetricFamily("watcherd_usage_audio_hours",
                              "Hours of audio transcribed this billing month, by folder, "
                              "engine and model.", labels=["watch", "engine", "model"])
    for row in report.rows:
        labels = [row.watch_root, row.engine, row.model or ""]
        billed.add_metric(labels, row.billing_seconds / 3600)
        audio.add_metric(labels, row.audio_seconds / 3600)
    yield billed
    yield audio
    yield GaugeMetricFamily("watcherd_plan_monthly_hours",
                            "[gladia] monthly_hours: the hours the plan includes a month.",
                            value=report.plan.monthly_hours)
    if report.plan.limit_hours is not None:
        yield GaugeMetricFamily("watcherd_plan_limit_hours",
                                "[gladia] monthly_hours_limit: remote work pauses before it.",
                                value=report.plan.limit_hours)
    yield GaugeMetricFamily("watcherd_gladia_deletes_pending",
                            "Jobs to delete at Gladia whose delete is not yet confirmed.",
                            value=report.deletes_pending)


def render(snapshot: Snapshot, *, activity: ActivityFigures | None,
           transitions: TransitionCounter | None, api: ApiRequests | None) -> bytes:
    """The exposition text for one scrape (runs the process collector: call off the loop)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WatcherdCollector(snapshot, activity=activity, transitions=transitions,
                                        api=api))
    ProcessCollector(registry=registry)
    return generate_latest(registry)
