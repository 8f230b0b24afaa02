"""How long a local transcription still needs, so a stop can finish a file about to end.

Progress reports alone cannot tell: faster-whisper yields a 30 s window's segments only once
that window is decoded, so a short recording reports nothing until it is done. The estimate
therefore starts from the recording's length and the engine's speed (how many times faster
than real time it runs): the figure in docs/design.md until this engine has finished a file,
then what it measured. Once progress is reported, the file's own pace is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Times faster than real time before anything was measured: Whisper base, int8, beam 5 on
#: 2 cores (docs/design.md). A slower machine learns its own figure from its first file.
PRIOR_SPEED = 7.5
#: Weight of the newest file in the learned speed: quick to follow a change of load, and one
#: odd file cannot move the figure far.
_LEARN_WEIGHT = 0.5
# From this share of a file done on, its own pace alone says how long the rest takes.
_OWN_PACE_FROM = 0.1
#: A measured speed is kept within these bounds: a file that took no measurable time (or ages)
#: is noise, not the engine's speed.
_SPEED_BOUNDS = (0.01, 1000.0)


@dataclass(frozen=True)
class Run:
    """One transcription in a worker: when it started, how long its audio is, how far it is."""

    #: time.monotonic() when a worker process took the file.
    started: float
    #: The recording's length from its headers; None when unknown.
    audio_seconds: float | None
    #: The share of the audio done, from the last progress report (0 before the first).
    fraction: float = 0.0


class Speed:
    """The engine's speed as a multiple of real time: assumed at first, then measured."""

    def __init__(self, prior: float = PRIOR_SPEED) -> None:
        self.value = prior
        self.measured = False

    def learn(self, audio_seconds: float, wall_seconds: float) -> None:
        """Take in one finished file (its audio length and how long it took)."""
        if not (audio_seconds > 0.0 and wall_seconds > 0.0 and math.isfinite(audio_seconds)
                and math.isfinite(wall_seconds)):
            return  # nothing to learn from an empty or instant file
        low, high = _SPEED_BOUNDS
        speed = min(high, max(low, audio_seconds / wall_seconds))
        self.value = speed if not self.measured else (
            _LEARN_WEIGHT * speed + (1.0 - _LEARN_WEIGHT) * self.value)
        self.measured = True

    def seconds_left(self, run: Run, now: float) -> float | None:
        """The estimated seconds until ``run`` ends, or None when nothing tells.

        Past the expected end without a report it is slower than expected: it is counted as
        about to end (a stop then waits at most its grace for it).
        """
        elapsed = max(0.0, now - run.started)
        if run.fraction > 0.0:
            own = elapsed * (1.0 - run.fraction) / run.fraction
            if run.fraction >= _OWN_PACE_FROM or run.audio_seconds is None or self.value <= 0.0:
                return own
            # Early on, the time so far is mostly start-up (decoding, the VAD pass): a first
            # small fraction over it overstates what is left (5 s for 0.1% reads as 80 min),
            # so the engine's speed over the rest of the audio caps it. Optimism is safe: a
            # stop waits at most its grace for the file either way.
            return min(own, run.audio_seconds * (1.0 - run.fraction) / self.value)
        if run.audio_seconds is None or self.value <= 0.0:
            return None
        return max(0.0, run.audio_seconds / self.value - elapsed)
