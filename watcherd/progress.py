"""How far along each file in flight is, as the engines report it: an in-memory board.

The journal says *which* step a file is in; this board adds what only the engine knows while
it works: the local engine's fraction done (faster-whisper yields segments as it goes), or a
Gladia job's phase (``queued``/``processing``) and when it is expected to end. Nothing here is
durable, on purpose: after a restart the journal alone says where each file is, and the board
fills again from the next reports. It may be written from any thread and read from any other.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# A phase is shown as is on the status page: keep it a short word, not a message.
MAX_PHASE_CHARS = 32


@dataclass(frozen=True)
class Progress:
    """What an engine last said about one source; None where it said nothing."""

    fraction: float | None
    expected_end: float | None
    phase: str | None
    updated_at: float


class ProgressBoard:
    """Per-source progress reported by the engines; :meth:`snapshot` is a consistent copy."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[int, Progress] = {}

    def report(
        self,
        source_id: int,
        *,
        fraction: float | None = None,
        expected_end: float | None = None,
        phase: str | None = None,
    ) -> None:
        """Record what the engine knows now; a field left None keeps its previous value.

        ``fraction`` is clamped to 0..1; a value that is not a finite number is ignored, as is
        an ``expected_end`` that is not finite: a report is a hint and never raises.
        """
        clean_fraction = _finite(fraction)
        if clean_fraction is not None:
            clean_fraction = min(1.0, max(0.0, clean_fraction))
        clean_end = _finite(expected_end)
        clean_phase = phase[:MAX_PHASE_CHARS] if isinstance(phase, str) and phase else None
        with self._lock:
            old = self._entries.get(source_id)
            self._entries[source_id] = Progress(
                fraction=clean_fraction if clean_fraction is not None
                else (old.fraction if old else None),
                expected_end=clean_end if clean_end is not None
                else (old.expected_end if old else None),
                phase=clean_phase if clean_phase is not None else (old.phase if old else None),
                updated_at=self._clock(),
            )

    def clear(self, source_id: int) -> None:
        """Forget a source (its work ended, whichever way)."""
        with self._lock:
            self._entries.pop(source_id, None)

    def retain(self, source_ids: Iterable[int], *, updated_before: float | None = None) -> None:
        """Forget every source not in ``source_ids``: a report whose clear was missed.

        With ``updated_before`` (when the list was read), a source reported since is kept:
        a list read a moment ago cannot know a file that has just started.
        """
        keep = set(source_ids)
        with self._lock:
            for source_id in [s for s in self._entries if s not in keep]:
                if updated_before is None or self._entries[source_id].updated_at < updated_before:
                    del self._entries[source_id]

    def snapshot(self) -> dict[int, Progress]:
        """A copy of the board: source id -> its latest progress."""
        with self._lock:
            return dict(self._entries)


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None
