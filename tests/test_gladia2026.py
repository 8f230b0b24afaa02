"""Gladia as it is in 2026 (issue 21): the model and its rule, options that move, removed
fields, hours counted per job in the journal, and the delete intent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sim import validate_create_body
from watcherd.config import Config, parse_config
from watcherd.errors import ConfigError
from watcherd.identity import content_key, options_json
from watcherd.journal import FileStat, Journal, SQLiteJournal
from watcherd.journal.postgres import PostgresJournal
from watcherd.usage import billing_period, job_usage, limit_reason

pytest_plugins = ("tests.pg",)


def load(text: str, tmp_path: Path) -> Config:
    import tomllib

    return parse_config(tomllib.loads(text), source=tmp_path / "c.toml", env={},
                        need_key=False)


def problem(text: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load(text, tmp_path)
    return str(caught.value)


# -- model ---------------------------------------------------------------------------------


def test_solaria_3_with_one_language_loads(tmp_path: Path) -> None:
    """The issue's new user: model = "solaria-3" with one language no longer stops the daemon."""
    config = load('[defaults.options]\nmodel = "solaria-3"\n'
                  'language_config = { languages = ["en"] }\n', tmp_path)
    assert config.defaults.options["model"] == "solaria-3"
    assert config.warnings == ()


@pytest.mark.parametrize(("languages", "said"), [
    ("[]", "this folder has 0"), ('["en", "fr"]', "this folder has 2"),
    ('["nl"]', "'nl' is not one of them"),
])
def test_solaria_3_rule_names_the_folder_and_the_rule(tmp_path: Path, languages: str,
                                                      said: str) -> None:
    message = problem(f'[[watch]]\npath = "{tmp_path}/calls"\n[watch.options]\n'
                      f'model = "solaria-3"\nlanguage_config = {{ languages = {languages} }}\n',
                      tmp_path)
    assert "watch[1].options.model" in message and f"in the watch of {tmp_path}/calls" in message
    assert "solaria-3 needs exactly one language" in message and said in message


def test_solaria_3_refuses_code_switching(tmp_path: Path) -> None:
    message = problem('[defaults.options]\nmodel = "solaria-3"\nlanguage_config = '
                      '{ languages = ["fr"], code_switching = true }\n', tmp_path)
    assert "remove language_config.code_switching" in message


def test_unknown_model_is_a_warning(tmp_path: Path) -> None:
    config = load('[defaults.options]\nmodel = "solaria-4"\n', tmp_path)
    assert config.defaults.options == {"model": "solaria-4"}
    assert len(config.warnings) == 1 and "'solaria-4' is not a model" in config.warnings[0]


def test_model_is_part_of_the_content_key() -> None:
    """solaria-3 is a new job; solaria-1 written out is the default, the same job as none."""
    sha = "ab" * 32
    none = content_key(sha, options_json({}))
    assert content_key(sha, options_json({"model": "solaria-1"})) == none
    assert content_key(sha, options_json({"model": "solaria-3"})) != none


# -- options that move -----------------------------------------------------------------------


def test_unknown_option_passes_through_with_a_warning(tmp_path: Path) -> None:
    config = load(f'[defaults.options]\nspeaker_sentiment = true\n'
                  f'[[watch]]\npath = "{tmp_path}/in"\n[watch.options]\n'
                  'diarization_config = { max_speaker = 2 }\n', tmp_path)
    assert config.watches[0].options == {"speaker_sentiment": True,
                                         "diarization_config": {"max_speaker": 2}}
    assert any("speaker_sentiment: not a Gladia option watcherd knows" in w
               for w in config.warnings)
    assert any('max_speaker: not a field of diarization_config watcherd knows; did you mean '
               '"max_speakers"?' in w and f"in the watch of {tmp_path}/in" in w
               for w in config.warnings)


def test_unknown_option_can_be_unset(tmp_path: Path) -> None:
    config = load(f'[defaults.options]\nnew_thing = true\n[[watch]]\npath = "{tmp_path}/in"\n'
                  '[watch.options]\nunset = ["new_thing"]\n', tmp_path)
    assert config.watches[0].options == {}


@pytest.mark.parametrize(("toml", "said"), [
    ('language = "en"', 'language: Gladia removed it in March 2026; use language_config = '
                        '{ languages = ["en"] }'),
    ("detect_language = true", "detect_language: Gladia removed it in March 2026"),
    ("chapterization = true", "chapterization: Gladia removed it in March 2026"),
    ("enable_code_switching = true", "use language_config = { code_switching = true }"),
    ('summarization_config = { model = "x" }',
     "summarization_config.model: Gladia removed it in April 2026 (only type remains)"),
])
def test_removed_fields_get_their_own_message(tmp_path: Path, toml: str, said: str) -> None:
    assert said in problem(f"[defaults.options]\n{toml}\n", tmp_path)


def test_audio_to_llm_model_stays(tmp_path: Path) -> None:
    config = load('[defaults.options]\naudio_to_llm = true\naudio_to_llm_config = '
                  '{ prompts = ["a"], model = "m" }\n', tmp_path)
    assert config.warnings == ()


# -- the simulator's validation ---------------------------------------------------------------


def test_sim_refuses_removed_and_unknown_fields_like_gladia() -> None:
    body = {"audio_url": "http://x/file/1", "language": "en", "summarization_config":
            {"model": "x"}, "chapterization": True}
    errors = validate_create_body(body)
    assert "property language should not exist" in errors
    assert "property chapterization should not exist" in errors
    assert "property summarization_config.model should not exist" in errors


@settings(max_examples=200)
@given(languages=st.lists(st.sampled_from(["en", "fr", "de", "es", "it", "nl", "ja"]),
                          max_size=3),
       switching=st.booleans())
def test_config_and_sim_agree_on_solaria_3(languages: list[str], switching: bool) -> None:
    """What the config refuses for solaria-3 is what Gladia (the simulator) refuses."""
    from watcherd.engines.gladia.options import model_problem

    options: dict[str, Any] = {"model": "solaria-3",
                               "language_config": {"languages": languages,
                                                   "code_switching": switching}}
    refused_here = model_problem(options) is not None
    refused_there = validate_create_body({**options, "audio_url": "http://x/f"}) != []
    assert refused_here == refused_there


# -- usage -----------------------------------------------------------------------------------


def test_billing_period_starts_on_the_billing_day() -> None:
    at = time.mktime((2026, 12, 7, 12, 0, 0, 0, 0, 0)) - time.timezone
    period = billing_period(at, 1)
    assert period.resumes_on == "2027-01-01"
    assert billing_period(at, 15).resumes_on == "2026-12-15"
    # A billing day past a short month's end is that month's last day.
    feb = time.mktime((2027, 2, 10, 0, 0, 0, 0, 0, 0)) - time.timezone
    assert billing_period(feb, 31).resumes_on == "2027-02-28"
    assert limit_reason(9.8 * 3600, 10, period) == (
        "monthly limit: 9.8 of 10 h used; resumes on 2027-01-01")


@settings(max_examples=300)
@given(now=st.floats(min_value=0, max_value=4e9), day=st.integers(min_value=1, max_value=31))
def test_billing_period_holds_now(now: float, day: int) -> None:
    period = billing_period(now, day)
    assert period.start <= now < period.end
    assert 27 * 86400 <= period.end - period.start <= 31 * 86400


@given(job=st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5),
                        lambda inner: st.dictionaries(st.sampled_from(
                            ["result", "metadata", "billing_time", "audio_duration",
                             "request_params", "model", "completed_at", "engine",
                             "number_of_distinct_channels"]), inner, max_size=4),
                        max_leaves=12))
def test_job_usage_of_any_answer_is_a_number(job: Any) -> None:
    """Whatever Gladia's job object holds, its usage is non-negative numbers (never raises)."""
    used = job_usage(job if isinstance(job, dict) else {}, now=5.0)
    assert used.billing_seconds >= 0 and (used.audio_seconds is None or used.audio_seconds >= 0)


def test_channels_billed_when_billing_time_is_missing() -> None:
    job = {"result": {"metadata": {"audio_duration": 10, "number_of_distinct_channels": 2}}}
    assert job_usage(job, now=0).billing_seconds == 20


# -- the journal: hours and delete intents, both backends --------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    if request.param == "sqlite":
        opened: Journal = SQLiteJournal.open(tmp_path / "j.db")
    else:
        opened = PostgresJournal.open(request.getfixturevalue("pg_url"), node="n1",
                                      roots={"inbox": "/in"})
    try:
        yield opened
    finally:
        opened.close()


def _done_job(job_id: str, seconds: float, model: str = "solaria-1") -> dict[str, Any]:
    return {"id": job_id, "status": "done", "completed_at": "2026-12-03T10:00:00Z",
            "request_params": {"model": model},
            "result": {"metadata": {"audio_duration": seconds / 2, "billing_time": seconds}}}


def _settled(journal: Journal, name: str, key: str) -> Any:
    (source,) = journal.observe_many([(f"/in/{name}", "/in", FileStat(1, 1, 1, 1), "{}")])
    return journal.transition(source, "submitted", actor="test", sha256="0" * 64,
                              content_key=key)


def test_hours_are_counted_once_per_job(journal: Journal) -> None:
    a = _settled(journal, "a.wav", "wf2-a")
    b = _settled(journal, "b.wav", "wf2-b")
    journal.store_result(a, _done_job("j1", 60))
    journal.store_result(a, _done_job("j1", 60))  # stored again: not billed again
    journal.store_result(b, _done_job("j2", 30, "solaria-3"))
    since = billing_period(time.mktime((2026, 12, 3, 0, 0, 0, 0, 0, 0)) - time.timezone).start
    rows = journal.usage(since)
    assert [(r.watch_root, r.engine, r.model, r.jobs, r.billing_seconds) for r in rows] == [
        ("/in", "gladia", "solaria-1", 1, 60.0), ("/in", "gladia", "solaria-3", 1, 30.0)]
    assert journal.billed_since(since) == 90.0
    assert journal.billed_since(since + 40 * 86400) == 0.0


def test_delete_is_due_once_a_source_is_done(journal: Journal) -> None:
    a = _settled(journal, "a.wav", "wf2-a")
    journal.store_result(a, _done_job("j1", 60), delete=True)
    assert journal.due_deletes(time.time()) == []  # outputs not written yet
    journal.transition(journal.get(a.id), "done", actor="test", done_at=time.time())
    assert journal.due_deletes(time.time()) == [("j1", 0)]
    journal.delete_deferred("j1", time.time() + 60)
    assert journal.due_deletes(time.time()) == []
    assert journal.next_delete_at(time.time()) is not None
    assert journal.due_deletes(time.time() + 61) == [("j1", 1)]
    assert journal.deletes_pending() == 1
    journal.delete_done("j1")
    assert journal.due_deletes(time.time() + 61) == [] and journal.deletes_pending() == 0


def test_doctor_warns_of_options_watcherd_does_not_know(tmp_path: Path) -> None:
    from watcherd.doctor import check_config

    config = load(f'[defaults.options]\ndiarizaton = true\n[[watch]]\npath = "{tmp_path}"\n',
                  tmp_path)
    (warned,) = [f for f in check_config(config) if f.level == "WARN"]
    assert warned.topic == "options" and 'did you mean "diarization"?' in warned.detail
