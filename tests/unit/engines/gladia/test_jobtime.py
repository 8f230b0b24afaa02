"""The job time model: what it learns, what it predicts, and the poll schedule built on it."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from watcherd.engines.gladia.jobtime import (
    MIN_FIT,
    JobTimeModel,
    Observation,
    Prediction,
    job_seconds,
    options_class,
    poll_schedule,
)
from watcherd.journal import Journal


def test_prior_before_anything_is_learnt() -> None:
    """With no finished job the prediction is the documented prior and marked unlearnt."""
    p = JobTimeModel().predict(83.0, "")
    assert p.learnt_from == 0
    assert 20.0 < p.seconds < 40.0  # docs/gladia-contract.md: 83 s of audio done in 31 s


def test_learns_a_fixed_job_time() -> None:
    """Jobs that always take 5 s whatever their length are predicted at 5 s."""
    model = JobTimeModel([Observation("", a, 5.0) for a in (10.0, 20.0, 40.0, 80.0)])
    p = model.predict(60.0, "")
    assert abs(p.seconds - 5.0) < 1e-6
    assert p.learnt_from == 4


def test_learns_a_share_of_the_audio() -> None:
    """Jobs that take 1 s plus a tenth of the audio are predicted from the audio's length."""
    model = JobTimeModel([Observation("", a, 1.0 + a / 10) for a in (10.0, 30.0, 90.0)])
    assert abs(model.predict(200.0, "").seconds - 21.0) < 1e-6


def test_kinds_are_learnt_apart() -> None:
    """Diarized jobs and plain jobs each get their own fit once each has enough."""
    obs = [Observation("", 30.0, 2.0)] * MIN_FIT + [Observation("diarization", 30.0, 9.0)] * 3
    model = JobTimeModel(obs)
    assert model.predict(30.0, "").seconds == 2.0
    assert model.predict(30.0, "diarization").seconds == 9.0
    # An unseen kind falls back to every job.
    assert model.predict(30.0, "translation").learnt_from == len(obs)


def test_options_class_names_costly_addons_only() -> None:
    """Only add-ons that cost time, turned on, make a kind; order does not matter."""
    assert options_class({}) == ""
    assert options_class({"diarization": False, "language_config": {"languages": []}}) == ""
    assert options_class({"translation": True, "diarization": True}) == "diarization+translation"


def test_job_seconds_from_gladia_timestamps() -> None:
    """Completed minus created, from the job's own ISO timestamps; None when absent or odd."""
    job = {"created_at": "2023-12-28T09:04:17.210Z", "completed_at": "2023-12-28T09:04:48.710Z"}
    assert job_seconds(job) == 31.5
    assert job_seconds({"created_at": "x", "completed_at": None}) is None
    assert job_seconds({"created_at": "2023-12-28T09:04:48Z",
                        "completed_at": "2023-12-28T09:04:17Z"}) is None


def test_schedule_polls_at_the_predicted_end_then_densely() -> None:
    """A learnt 5 s job is first polled just before 5 s, then every 0.25 s or so."""
    waits = list(itertools.islice(
        poll_schedule(Prediction(5.0, 0.1, 10), since_created=0.2, start=1.0, cap=30.0), 6))
    assert 4.5 <= waits[0] <= 4.8
    assert all(0.15 <= w <= 0.5 for w in waits[1:5])


def test_unlearnt_schedule_starts_short() -> None:
    """Before anything is learnt a long guessed job is still polled from ``start``."""
    waits = list(itertools.islice(
        poll_schedule(Prediction(1000.0, 500.0, 0), since_created=0.0, start=1.0, cap=30.0), 12))
    assert waits[0] == 1.0
    assert max(waits) <= 30.0


@given(
    seconds=st.floats(0.0, 1e5), spread=st.floats(0.0, 1e5), learnt=st.integers(0, 200),
    since=st.floats(0.0, 1e5), start=st.floats(0.01, 10.0), cap=st.floats(0.5, 120.0),
)
def test_schedule_is_always_sane(seconds: float, spread: float, learnt: int, since: float,
                                 start: float, cap: float) -> None:
    """Every wait is finite and >= 0, the waits pass the prediction, none exceeds a bound."""
    waits = list(itertools.islice(
        poll_schedule(Prediction(seconds, spread, learnt), since_created=since, start=start,
                      cap=cap), 400))
    assert all(w >= 0.0 and w == w and w != float("inf") for w in waits)
    assert max(waits[-50:]) <= max(cap, 2.0) + 1e-9
    assert max(waits) <= max(4 * cap, seconds / 4, start, cap, 2.0) + 1e-6


@given(st.lists(st.tuples(st.sampled_from(["", "diarization"]),
                          st.one_of(st.none(), st.floats(0.0, 1e4)), st.floats(0.0, 1e4)),
                max_size=60),
       st.one_of(st.none(), st.floats(0.0, 1e4)))
def test_predictions_are_finite_and_non_negative(
    rows: list[tuple[str, float | None, float]], audio: float | None
) -> None:
    """Whatever was observed, a prediction is a finite number >= 0 with a spread >= 0."""
    model = JobTimeModel([Observation(*row) for row in rows])
    for kind in ("", "diarization", "other"):
        p = model.predict(audio, kind)
        assert 0.0 <= p.seconds < float("inf")
        assert 0.0 <= p.spread < float("inf")


def test_journal_keeps_the_model_across_restarts(tmp_path: Path) -> None:
    """Job times are journaled, bounded per kind, and read back in order."""
    path = tmp_path / "journal.db"
    with Journal.open(path, exclusive=True) as journal:
        for i in range(120):
            journal.record_job_time("", 10.0, float(i))
        journal.record_job_time("diarization", None, 7.0)
    with Journal.open(path, exclusive=True) as journal:
        rows = journal.job_times()
    plain = [r for r in rows if r[0] == ""]
    assert len(plain) == 100 and plain[0][2] == 20.0 and plain[-1][2] == 119.0
    assert ("diarization", None, 7.0) in rows
