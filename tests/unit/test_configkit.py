"""The generic table checker (configkit.SectionParser.section): a table checked against its
declared Struct, every problem in today's words and naming its key path."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from msgspec import Meta

from watcherd.configkit import AUTO, SectionParser, Table, Text, Word, table_keys, table_rows
from watcherd.errors import ConfigError


class Sample(Table, frozen=True):
    """A table with one key of each kind the config's tables declare."""

    name: Text = "base"
    mode: Literal["fast", "careful", "off"] = "fast"
    count: Annotated[int, Meta(ge=1)] = 5
    workers: Annotated[int, Meta(ge=1, extra=AUTO)] = 0
    ratio: Annotated[float, Meta(ge=0)] = 1.0
    flag: bool = True
    words: tuple[Word, ...] = ()
    limit: Annotated[float, Meta(ge=0)] | None = None
    nice: Annotated[int, Meta(ge=0, le=19)] = 10


KEYS = table_keys(Sample)


def check(table: Any) -> tuple[Sample | None, list[str]]:
    parser = SectionParser(None, {})
    try:
        return parser.section(table, Sample, "sample"), parser.problems
    except ConfigError as exc:
        return None, parser.problems or [str(exc)]


@pytest.mark.parametrize(("table", "message"), [
    ({"cuont": 3}, 'config: [sample] cuont: unknown key; did you mean "count"?'),
    ({"count": "3"}, 'config: sample.count: expected an integer >= 1, got "3"'),
    ({"count": 0}, "config: sample.count: expected an integer >= 1, got 0"),
    ({"count": True}, "config: sample.count: expected an integer >= 1, got true"),
    ({"workers": "many"}, 'config: sample.workers: expected "auto" or an integer >= 1, '
                          'got "many"'),
    ({"ratio": -0.5}, "config: sample.ratio: expected a number >= 0, got -0.5"),
    ({"ratio": math.inf}, "config: sample.ratio: expected a finite number >= 0, got inf"),
    ({"ratio": math.nan}, "config: sample.ratio: expected a finite number >= 0, got nan"),
    ({"mode": "carefull"}, 'config: sample.mode: expected one of "fast", "careful", "off", '
                           'got "carefull"; did you mean "careful"?'),
    ({"flag": "yes"}, 'config: sample.flag: expected true or false, got "yes"'),
    ({"name": "  "}, 'config: sample.name: expected a non-empty string, got "  "'),
    ({"words": "a"}, 'config: sample.words: expected an array of strings, got "a"'),
    ({"words": ["a", ""]}, 'config: sample.words[2]: expected a non-empty string, got ""'),
    ({"nice": 20}, "config: sample.nice: expected an integer from 0 to 19, got 20"),
    ({"limit": "none"}, 'config: sample.limit: expected a number >= 0, got "none"'),
])
def test_a_bad_key_is_named_with_what_it_expects(table: dict[str, Any], message: str) -> None:
    assert check(table) == (None, [message])


def test_every_problem_of_a_table_is_reported_at_once() -> None:
    _, problems = check({"count": 0, "flag": 1, "colour": "red"})
    assert problems == ["config: [sample] colour: unknown key",
                        "config: sample.count: expected an integer >= 1, got 0",
                        "config: sample.flag: expected true or false, got 1"]


def test_keys_not_set_take_the_declared_defaults_and_auto_is_kept_as_zero() -> None:
    table, _ = check({"workers": "auto", "count": 2, "ratio": 3})
    assert table == Sample(count=2, ratio=3.0)
    assert isinstance(table.ratio, float)
    assert ("workers", "auto") in table_rows(table) and ("count", 2) in table_rows(table)


def test_a_table_that_is_not_a_table_says_so() -> None:
    assert check("fast") == (None, ['config: sample: expected a table, got "fast"'])


def test_the_keys_are_the_fields_in_order() -> None:
    assert KEYS == ("name", "mode", "count", "workers", "ratio", "flag", "words", "limit",
                    "nice")


_SCALARS = (st.booleans() | st.integers(-3, 25) | st.floats(allow_nan=True)
            | st.sampled_from(["auto", "fast", "off", "", " ", "base"]) | st.text(max_size=8))
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=4), inner, max_size=2), max_leaves=6)
_KEYS = st.sampled_from(KEYS) | st.text(max_size=10)
_PROBLEM = re.compile(r"config: (?:sample\.(?P<key>\w+)(?:\[\d+\])?: expected .+, got .+"
                      r"|\[sample\] (?P<unknown>.*): unknown key.*)", re.DOTALL)


@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_any_table_is_its_structs_decode_or_problems_naming_real_keys(
        table: dict[str, Any]) -> None:
    """Accepted: exactly what msgspec itself decodes ("auto" read as 0). Refused: each
    problem names a key of that table and says what it expected. Never another exception."""
    checked, problems = check(table)
    plain = {k: (0 if k == "workers" and v == "auto" else v) for k, v in table.items()}
    try:
        decoded: Sample | None = msgspec.convert(plain, Sample, strict=True)
    except msgspec.ValidationError:
        decoded = None
    if checked is not None:
        assert checked == decoded and problems == []
        return
    assert problems
    for problem in problems:
        found = _PROBLEM.fullmatch(problem)
        assert found, problem
        named = found["key"] if found["key"] is not None else found["unknown"]
        assert named in table
        assert (named in KEYS) == (found["key"] is not None)
    # Refused only for a reason msgspec sees too, or a non-finite number it lets through.
    assert decoded is None or any(isinstance(v, float) and not math.isfinite(v)
                                  for v in table.values())
