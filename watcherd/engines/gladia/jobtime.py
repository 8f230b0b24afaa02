"""How long a Gladia job takes, learnt from finished jobs, so a job is polled when it ends.

Gladia says nothing about when a job will be done; polling on a fixed schedule is either late
(the transcript waits) or wasteful (GETs for nothing). Finished jobs say how long they took
(``completed_at - created_at``, both Gladia's clock; for a job created into Gladia's queue,
from the end that freed its slot: see queueahead.py), and that time
depends mostly on the audio's length and on the add-ons that cost time. The model fits
``seconds = base + per_audio_second * audio_seconds`` over the recent jobs of the same kind
(the same costly add-ons), falls back to all recent jobs, and before any job has finished uses
the figures in docs/gladia-contract.md (83 s of audio done in 31 s). The observations live in
the journal, so what was learnt survives a restart.

A job is then polled at its predicted end, densely just after it, then less and less often.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from watcherd.usage import job_time

__all__ = ["JobTimeModel", "Prediction", "after_end", "first_look", "guard_wait", "job_seconds",
           "options_class", "poll_schedule"]

#: Create fields whose add-on makes a job take longer (docs/gladia-contract.md).
_COSTLY_OPTIONS: tuple[str, ...] = (
    "diarization", "translation", "summarization", "sentiment_analysis",
    "named_entity_recognition", "chapterization", "audio_to_llm", "pii_redaction",
    "custom_spelling", "structured_data_extraction", "sentences", "subtitles",
    "display_mode", "name_consistency", "custom_vocabulary",
)
#: Before any job finished: a fixed cost plus a share of the audio's length (SAMPLE: 31 s
#: for 83 s of audio).
PRIOR_BASE = 3.0
PRIOR_PER_SECOND = 0.33
#: Observations kept per kind of job, and how many make a fit worth trusting.
_KEEP_PER_CLASS = 100
MIN_FIT = 3
#: Before anything is learnt, extra polls at these shares of the prior's guess.
PRIOR_MARKS = (0.85, 1.0, 1.15, 1.35)
#: Dense polls just after the predicted end: how many, and their spacing (a share of the
#: prediction, within bounds).
DENSE_POLLS = 4
_DENSE_SHARE = 0.05
DENSE_MIN = 0.15
DENSE_MAX = 2.0


def options_class(options: Mapping[str, Any]) -> str:
    """The kind of a job for timing: the costly add-ons it turns on, sorted ("" for none)."""
    on = [name for name in _COSTLY_OPTIONS if options.get(name) not in (None, False, {}, [])]
    return "+".join(sorted(on))


def job_seconds(job: Mapping[str, Any]) -> float | None:
    """How long a done job took at Gladia (its own timestamps), or None if it does not say."""
    created, completed = job_time(job.get("created_at")), job_time(job.get("completed_at"))
    if created is None or completed is None:
        return None
    seconds = completed - created
    return seconds if 0.0 <= seconds < 7 * 24 * 3600 else None


@dataclass(frozen=True)
class Observation:
    """One finished job: its kind, its audio's length and how long it took."""

    options_class: str
    audio_seconds: float | None
    seconds: float


@dataclass(frozen=True)
class Prediction:
    """Expected job time in seconds, and how sure the model is (its typical error)."""

    seconds: float
    spread: float
    learnt_from: int


def _fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares ``y = a + b x`` with a, b >= 0; a flat fit when x barely varies."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var_x = sum((x - mean_x) ** 2 for x in xs)
    if var_x < 1e-6 * max(1.0, mean_x * mean_x) * len(xs):
        return max(0.0, statistics.median(ys)), 0.0
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / var_x
    slope = max(0.0, slope)
    base = max(0.0, mean_y - slope * mean_x)
    return base, slope


class JobTimeModel:
    """Predicts a job's duration from recent observations (see the module docstring)."""

    def __init__(self, observations: Sequence[Observation] = ()) -> None:
        self._by_class: dict[str, list[Observation]] = {}
        for obs in observations:
            self.add(obs)

    def add(self, obs: Observation) -> None:
        """Learn one finished job (the oldest of its kind is forgotten past KEEP_PER_CLASS)."""
        kept = self._by_class.setdefault(obs.options_class, [])
        kept.append(obs)
        if len(kept) > _KEEP_PER_CLASS:
            del kept[0]

    def predict(self, audio_seconds: float | None, kind: str) -> Prediction:
        """Expected seconds from create to done for a job of this kind and audio length."""
        pool = self._by_class.get(kind, [])
        if len(pool) < MIN_FIT:
            pool = [o for kept in self._by_class.values() for o in kept]
        if len(pool) < MIN_FIT:
            audio = audio_seconds if audio_seconds is not None else 60.0
            guess = PRIOR_BASE + PRIOR_PER_SECOND * audio
            return Prediction(guess, guess * 0.5, 0)
        known = [(o.audio_seconds, o.seconds) for o in pool if o.audio_seconds is not None]
        if audio_seconds is None or len(known) < MIN_FIT:
            values = [o.seconds for o in pool]
            middle = statistics.median(values)
            spread = statistics.median(abs(v - middle) for v in values)
            return Prediction(middle, spread, len(pool))
        base, slope = _fit(known)
        residuals = [abs(y - (base + slope * x)) for x, y in known]
        return Prediction(base + slope * audio_seconds, statistics.median(residuals),
                          len(known))


def poll_schedule(prediction: Prediction, *, since_created: float, start: float, cap: float
                  ) -> Iterator[float]:
    """The waits between polls of one job, ``since_created`` seconds after it was created.

    First wait: until just before the predicted end (early by the model's typical error);
    then DENSE_POLLS polls close together; then waits growing by half each time up to
    ``cap``. ``start`` is the shortest first wait (a job is never done instantly).
    """
    if prediction.learnt_from == 0:
        # Nothing learnt yet: the prior is only a guess, so poll from ``start`` growing by
        # half each time up to ``cap`` (the schedule Gladia's SDK guides suggest), plus a few
        # polls around the guessed end, where a first job most likely finishes.
        marks = sorted(prediction.seconds * f for f in PRIOR_MARKS)
        now, wait = since_created, start
        while True:
            mark = next((m for m in marks if now < m < now + wait), None)
            if mark is not None:
                yield mark - now
                now = mark
                continue
            yield wait
            now += wait
            wait = min(cap, wait * 1.5)
    first = max(start if since_created == 0.0 else 0.0,
                first_look(prediction) - since_created)
    # A long job is still looked at now and then before its predicted end, in case Gladia
    # got faster than what was learnt.
    guard = guard_wait(first, cap)
    while first > guard:
        yield guard
        first -= guard
    yield first
    yield from after_end(prediction, cap)


def first_look(prediction: Prediction) -> float:
    """Seconds after a job's start of its first look: its predicted end, early by the model's
    typical error (at most a quarter of the prediction)."""
    return prediction.seconds - min(prediction.spread, prediction.seconds * 0.25)


def guard_wait(left: float, cap: float) -> float:
    """The longest wait before a look while ``left`` seconds remain to a predicted end."""
    return max(4 * cap, left / 4)


def after_end(prediction: Prediction, cap: float) -> Iterator[float]:
    """The waits after the first look found the job not done: DENSE_POLLS close together,
    then growing by half each time up to ``cap``."""
    step = min(DENSE_MAX, max(DENSE_MIN, prediction.seconds * _DENSE_SHARE,
                              prediction.spread / 2))
    for _ in range(DENSE_POLLS):
        yield step
    wait = step
    while True:
        wait = min(cap, wait * 1.5)
        yield wait if math.isfinite(wait) else cap
