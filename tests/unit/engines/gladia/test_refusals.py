"""Gladia's refusals in the user's words (watcherd/engines/gladia/refusals.py): which options
a validation answer names. Gladia's words are outside input, so Hypothesis searches them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from watcherd.engines.gladia.refusals import options_named


def test_gladias_validation_errors_name_the_option() -> None:
    assert options_named([
        "property speaker_magic should not exist",
        "language_config.languages must contain exactly one of the following values when "
        "model is solaria-3: en, fr, de, es, it",
        "property speaker_magic should not exist",
        "something else entirely",
    ]) == ["speaker_magic", "language_config.languages"]


@given(errors=st.lists(st.text(max_size=60), max_size=5))
def test_options_named_of_any_answer(errors: list[str]) -> None:
    """Gladia's words are outside input: any text gives names found in it, never a crash."""
    for name in options_named(errors):
        assert any(name in error for error in errors)
