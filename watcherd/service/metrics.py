"""Metrics in the Prometheus text format, for node_exporter's textfile collector."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from watcherd.journal import STATES, Journal
from watcherd.outputs import atomic_write


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _family(
    name: str, kind: str, help_text: str, samples: Sequence[tuple[Mapping[str, str], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        label_text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels.items())
        braces = f"{{{label_text}}}" if label_text else ""
        lines.append(f"{name}{braces} {_sample_value(value)}")
    return lines


def render_metrics(
    journal: Journal,
    *,
    in_flight: int,
    upload_bytes: int,
    audio_seconds: float,
    errors_by_class: Mapping[str, int],
    last_success: float | None,
) -> str:
    """The daemon's metrics in the Prometheus text exposition format (version 0.0.4)."""
    counts = journal.counts()
    lines: list[str] = []
    lines += _family(
        "watcherd_sources", "gauge", "Sources in the journal, by state.",
        [({"state": state}, counts.get(state, 0)) for state in STATES],
    )
    lines += _family(
        "watcherd_jobs_in_flight", "gauge", "Remote jobs created and not yet finished.",
        [({}, in_flight)],
    )
    lines += _family(
        "watcherd_upload_bytes_total", "counter", "Bytes uploaded to Gladia since start.",
        [({}, upload_bytes)],
    )
    lines += _family(
        "watcherd_audio_seconds_total", "counter", "Seconds of audio transcribed since start.",
        [({}, audio_seconds)],
    )
    lines += _family(
        "watcherd_errors_total", "counter", "Errors since start, by class.",
        [({"class": name}, errors_by_class[name]) for name in sorted(errors_by_class)],
    )
    if last_success is not None:
        lines += _family(
            "watcherd_last_success_timestamp_seconds", "gauge",
            "Unix time of the last source transcribed.", [({}, last_success)],
        )
    return "\n".join(lines) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Replace ``path`` atomically, so node_exporter's textfile collector never reads half."""
    # The temp name starts with "." and does not end in ".prom": the collector skips it.
    atomic_write(path, text.encode("utf-8"))


