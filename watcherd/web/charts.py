"""The page's charts, drawn here as SVG text: files finished per hour and their latency.

No JavaScript library, no CDN, nothing to build: the server writes the SVG into the page and
the browser draws it, offline. Colours and sizes are presentation attributes (not ``style``),
so the page's Content-Security-Policy needs no exception for them.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from watcherd.web.snapshot import Finished

HOURS = 24
_WIDTH = 520
_HEIGHT = 170
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 14, 26
BAR = "#3b82f6"
_LINE = "#f59e0b"
_AXIS = "#94a3b8"
TEXT = "#475569"


@dataclass(frozen=True)
class HourBucket:
    """One hour of the chart: when it starts, files finished in it, their latencies."""

    start: float
    files: int
    median_latency: float | None
    max_latency: float | None


def buckets(finished: Sequence[Finished], now: float) -> list[HourBucket]:
    """The last 24 hours, oldest first, each from the top of an hour (local time)."""
    local = time.localtime(now)
    top = now - local.tm_min * 60 - local.tm_sec - (now % 1)
    first = top - (HOURS - 1) * 3600
    latencies: list[list[float]] = [[] for _ in range(HOURS)]
    for item in finished:
        index = math.floor((item.done_at - first) / 3600)
        if 0 <= index < HOURS:
            latencies[index].append(item.latency)
    return [HourBucket(first + i * 3600, len(values),
                       statistics.median(values) if values else None,
                       max(values) if values else None)
            for i, values in enumerate(latencies)]


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (>= 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _nice_duration(seconds: float) -> float:
    """A round top for a latency axis, in the unit it is shown in (s, min or h)."""
    if seconds < 90:
        return _nice_ceiling(seconds)
    if seconds < 90 * 60:
        return _nice_ceiling(seconds / 60) * 60
    return _nice_ceiling(seconds / 3600) * 3600


def duration_text(seconds: float) -> str:
    """A short human duration: 45 s, 12 min, 3.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _frame(title: str, top_label: str, hours: Sequence[HourBucket]) -> list[str]:
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'width="{_WIDTH}" height="{_HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_LEFT + plot_w}" y2="{_TOP + plot_h}" '
        f'stroke="{_AXIS}"/>',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT + plot_w}" y2="{_TOP}" stroke="{_AXIS}" '
        'stroke-dasharray="3 3"/>',
        f'<text x="{_LEFT - 6}" y="{_TOP + 4}" text-anchor="end" font-size="11" '
        f'fill="{TEXT}">{escape(top_label)}</text>',
        f'<text x="{_LEFT - 6}" y="{_TOP + plot_h + 4}" text-anchor="end" font-size="11" '
        f'fill="{TEXT}">0</text>',
    ]
    slot = plot_w / HOURS
    for i, hour in enumerate(hours):
        if i % 3 == 0:
            label = time.strftime("%H:00", time.localtime(hour.start))
            parts.append(f'<text x="{_LEFT + i * slot + slot / 2:.1f}" y="{_HEIGHT - 8}" '
                         f'text-anchor="middle" font-size="11" fill="{TEXT}">{label}</text>')
    return parts


def files_chart(hours: Sequence[HourBucket]) -> str:
    """Bars: files finished in each of the last 24 hours."""
    peak = _nice_ceiling(max((h.files for h in hours), default=0))
    parts = _frame("Files finished per hour, last 24 hours", f"{peak:g}", hours)
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    slot = plot_w / HOURS
    for i, hour in enumerate(hours):
        if not hour.files:
            continue
        height = plot_h * hour.files / peak
        label = time.strftime("%H:00", time.localtime(hour.start))
        parts.append(
            f'<rect class="bar" x="{_LEFT + i * slot + 2:.1f}" y="{_TOP + plot_h - height:.1f}" '
            f'width="{slot - 4:.1f}" height="{height:.1f}" fill="{BAR}" rx="2">'
            f"<title>{label}: {hour.files} file{'s' if hour.files != 1 else ''}</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def latency_chart(hours: Sequence[HourBucket]) -> str:
    """A line: the median drop-to-transcript latency of each hour (a dot per hour with files)."""
    peak = _nice_duration(max((h.median_latency or 0.0 for h in hours), default=0.0))
    parts = _frame("Drop to transcript latency (median per hour), last 24 hours",
                   duration_text(peak), hours)
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    slot = plot_w / HOURS
    points: list[tuple[float, float, HourBucket]] = []
    for i, hour in enumerate(hours):
        if hour.median_latency is not None:
            points.append((_LEFT + i * slot + slot / 2,
                           _TOP + plot_h - plot_h * hour.median_latency / peak, hour))
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{_LINE}" '
                     'stroke-width="2"/>')
    for x, y, hour in points:
        assert hour.median_latency is not None and hour.max_latency is not None
        label = time.strftime("%H:00", time.localtime(hour.start))
        parts.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{_LINE}">'
                     f"<title>{label}: median {duration_text(hour.median_latency)}, "
                     f"longest {duration_text(hour.max_latency)}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)
