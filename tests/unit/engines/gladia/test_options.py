"""Gladia's options as they are in 2026 (issue 21): the model and solaria-3's rule, options
and fields watcherd does not know (warnings, passed through), fields Gladia removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sim import validate_create_body
from watcherd.config import Config, parse_config
from watcherd.errors import ConfigError
from watcherd.identity import content_key, options_json


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


def test_doctor_warns_of_options_watcherd_does_not_know(tmp_path: Path) -> None:
    from watcherd.doctor import check_config

    config = load(f'[defaults.options]\ndiarizaton = true\n[[watch]]\npath = "{tmp_path}"\n',
                  tmp_path)
    (warned,) = [f for f in check_config(config) if f.level == "WARN"]
    assert warned.topic == "options" and 'did you mean "diarization"?' in warned.detail
