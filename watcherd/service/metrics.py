"""The daemon's own figures as prometheus_client families, and the node_exporter textfile.

The families here (files by state, jobs in flight, the :class:`~watcherd.activity.Activity`
counters) are made once and used twice: by the textfile that ``[metrics] textfile`` names, and
by the status page's ``GET /metrics`` (:mod:`watcherd.web.metrics`, which adds its own). The
exposition text is always prometheus_client's; nothing here writes it by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from watcherd.journal import STATES, Journal
from watcherd.outputs import atomic_write

__all__ = ["ActivityFigures", "activity_families", "in_flight_family", "render_metrics",
           "sources_family", "write_textfile"]


class ActivityFigures(Protocol):
    """What the families read from :class:`watcherd.activity.Activity`."""

    @property
    def upload_bytes(self) -> int: ...
    @property
    def audio_seconds(self) -> float: ...
    @property
    def errors(self) -> Mapping[str, int]: ...
    @property
    def last_success(self) -> float | None: ...


def sources_family(counts: Mapping[str, int]) -> GaugeMetricFamily:
    """``watcherd_sources``: the journal's files by state (every state, zeros included)."""
    family = GaugeMetricFamily("watcherd_sources", "Sources in the journal, by state.",
                               labels=["state"])
    for state in STATES:
        family.add_metric([state], counts.get(state, 0))
    return family


def in_flight_family(count: int) -> GaugeMetricFamily:
    """``watcherd_jobs_in_flight``: remote jobs created and not yet finished."""
    return GaugeMetricFamily("watcherd_jobs_in_flight",
                             "Remote jobs created and not yet finished.", value=count)


def activity_families(figures: ActivityFigures) -> Iterator[Metric]:
    """Upload bytes, audio seconds, errors by class and the last success, since start.

    prometheus_client names a counter's sample ``<name>_total`` (watcherd_upload_bytes_total);
    the last success is left out until there is one.
    """
    yield CounterMetricFamily("watcherd_upload_bytes", "Bytes uploaded since start.",
                              value=figures.upload_bytes)
    yield CounterMetricFamily("watcherd_audio_seconds",
                              "Seconds of audio transcribed since start.",
                              value=figures.audio_seconds)
    errors = CounterMetricFamily("watcherd_errors", "Errors since start, by class.",
                                 labels=["class"])
    for name, count in sorted(figures.errors.items()):
        errors.add_metric([name], count)
    yield errors
    if figures.last_success is not None:
        yield GaugeMetricFamily("watcherd_last_success_timestamp_seconds",
                                "Unix time of the last source transcribed.",
                                value=figures.last_success)


@dataclass(frozen=True)
class _Figures:
    """The figures of one moment, as :class:`ActivityFigures`."""

    upload_bytes: int
    audio_seconds: float
    errors: Mapping[str, int]
    last_success: float | None


class _Families(Collector):
    """A collector for families already made (one exposition, then dropped)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        """The families, in the order given."""
        return self._families


def render_metrics(
    journal: Journal,
    *,
    in_flight: int,
    upload_bytes: int,
    audio_seconds: float,
    errors_by_class: Mapping[str, int],
    last_success: float | None,
) -> str:
    """The textfile's metrics in the Prometheus text exposition format (version 0.0.4)."""
    figures = _Figures(upload_bytes, audio_seconds, errors_by_class, last_success)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([sources_family(journal.counts()), in_flight_family(in_flight),
                                 *activity_families(figures)]))
    return generate_latest(registry).decode("utf-8")


def write_textfile(path: Path, text: str) -> None:
    """Replace ``path`` atomically, so node_exporter's textfile collector never reads half.

    watcherd's own atomic write rather than prometheus_client's ``write_to_textfile``: it
    also syncs the file before the rename, so a crash never leaves an empty textfile.
    """
    # The temp name starts with "." and does not end in ".prom": the collector skips it.
    atomic_write(path, text.encode("utf-8"))
