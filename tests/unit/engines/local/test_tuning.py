"""The local engine's tuning keys ([local] vad, hotwords, language, nice) and how they, with a
folder's options, become what Whisper is given (no model needed)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcherd.config import parse_config
from watcherd.engines.local.decoding import Tuning, plan_for
from watcherd.errors import ConfigError

# -- [local] keys (no model needed) ------------------------------------------------------


def test_local_tuning_defaults() -> None:
    """Out of the box: the VAD filter on, no hotwords, the language detected, niceness 10."""
    local = parse_config({}, source=None, env={}).local
    assert (local.vad, local.hotwords, local.language, local.nice) == (True, (), None, 10)


def test_local_tuning_values_kept() -> None:
    """Each key is kept as written (the language lower-cased, hotwords trimmed)."""
    local = parse_config({"local": {"vad": False, "hotwords": [" Gladia ", "watcherd"],
                                    "language": "FR", "nice": 0}},
                         source=None, env={}).local
    assert (local.vad, local.hotwords, local.language, local.nice) == (
        False, ("Gladia", "watcherd"), "fr", 0)
    assert parse_config({"local": {"language": "auto"}}, source=None,
                        env={}).local.language is None


@pytest.mark.parametrize(("table", "message"), [
    ({"vad": "yes"}, "local.vad: expected true or false"),
    ({"nice": 20}, "local.nice: expected an integer from 0 to 19"),
    ({"nice": -1}, "local.nice: expected an integer from 0 to 19"),
    ({"language": "english"}, 'local.language: expected "auto" or a language code'),
    ({"hotwords": "Gladia"}, "local.hotwords: expected an array of strings"),
    ({"hotwords": ["ok", "bad\x00word"]}, "local.hotwords[2]: expected a word or phrase"),
])
def test_local_tuning_bad_values_refused(table: dict[str, Any], message: str) -> None:
    """A wrong value names its key and what it accepts."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"local": table}, source=None, env={})


@given(value=st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.floats()))
def test_local_nice_property(value: object) -> None:
    """Any niceness is either a whole number 0-19, kept, or refused naming the key."""
    try:
        nice = parse_config({"local": {"nice": value}}, source=None, env={}).local.nice
    except ConfigError as exc:
        assert "local.nice" in str(exc)
        assert not (isinstance(value, int) and not isinstance(value, bool)
                    and 0 <= value <= 19)
    else:
        assert nice == value and 0 <= nice <= 19


@given(words=st.lists(st.text(min_size=1, max_size=20), max_size=5))
def test_local_hotwords_property(words: list[str]) -> None:
    """Printable words are kept (trimmed); anything else is refused, naming the entry."""
    try:
        kept = parse_config({"local": {"hotwords": words}}, source=None, env={}).local.hotwords
    except ConfigError as exc:
        assert re.search(r"local\.hotwords\[\d+\]", str(exc))
        assert any(not w.strip() or not w.isprintable() for w in words)
    else:
        assert kept == tuple(w.strip() for w in words)


# -- options -> plan (no model needed) ---------------------------------------------------


def test_plan_takes_hotwords_from_local_and_the_folders_vocabulary() -> None:
    """[local] hotwords first, then the folder's custom_vocabulary (plain or {value}), once."""
    plan = plan_for({"custom_vocabulary": True, "custom_vocabulary_config": {
        "vocabulary": ["Quillfeather", {"value": "Gladia", "intensity": 0.5}, "", 3]}},
        Tuning(hotwords=("Gladia", "watcherd")))
    assert plan.hotwords == ("Gladia", "watcherd", "Quillfeather")
    assert "custom_vocabulary" not in plan.unavailable
    off = plan_for({"custom_vocabulary": False,
                    "custom_vocabulary_config": {"vocabulary": ["x"]}})
    assert off.hotwords == ()


def test_plan_language_pin_and_the_folders_languages() -> None:
    """One folder language wins; several keep the pin only when it is among them; none: the
    pin."""
    pin = Tuning(language="de")
    assert plan_for({}, pin).language == "de"
    assert plan_for({"language_config": {"languages": ["fr"]}}, pin).language == "fr"
    assert plan_for({"language_config": {"languages": ["en", "de"]}}, pin).language == "de"
    assert plan_for({"language_config": {"languages": ["en", "fr"]}}, pin).language is None
    assert plan_for({}).language is None


@given(entries=st.lists(st.one_of(st.text(max_size=10), st.integers(), st.none(),
                                  st.fixed_dictionaries({"value": st.text(max_size=10)}),
                                  st.dictionaries(st.text(max_size=3), st.integers(),
                                                  max_size=2)),
                        max_size=6))
def test_plan_vocabulary_property(entries: list[Any]) -> None:
    """Whatever a folder's vocabulary holds, the hotwords are its non-blank words, trimmed,
    each once, in order."""
    plan = plan_for({"custom_vocabulary": True,
                     "custom_vocabulary_config": {"vocabulary": entries}})
    raw = [e.get("value") if isinstance(e, dict) else e for e in entries]
    expected = tuple(dict.fromkeys(w.strip() for w in raw if isinstance(w, str) and w.strip()))
    assert plan.hotwords == expected
