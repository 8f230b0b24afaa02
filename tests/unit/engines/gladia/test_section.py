"""The ``[gladia]`` table as declared by the engine (GladiaTable): its keys, defaults and
messages, and any value at any of its keys."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcherd.config import Secret, parse_config, secret_values
from watcherd.configfile import effective_toml
from watcherd.configkit import table_keys
from watcherd.engines.gladia.config import KEYS, GladiaConfig, GladiaTable
from watcherd.errors import ConfigError


def problems(table: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"gladia": table}, source=None, env={})
    text = str(caught.value)
    return [line.removeprefix("  - ") for line in text.splitlines()[1:]] or [text]


def test_the_defaults_are_the_tables_own() -> None:
    gladia = parse_config({}, source=None, env={}).gladia
    table = GladiaTable()
    assert gladia == GladiaConfig()
    assert [getattr(gladia, key) for key in KEYS if key not in ("api_key", "api_key_file")] \
        == [getattr(table, key) for key in KEYS if key not in ("api_key", "api_key_file")]


@pytest.mark.parametrize(("table", "message"), [
    ({"billing_day": 32}, "config: gladia.billing_day: expected a day of the month from 1 to 31, "
                          "got 32"),
    ({"billing_day": 0}, "config: gladia.billing_day: expected a day of the month from 1 to 31, "
                         "got 0"),
    ({"queue_ahead": -1}, "config: gladia.queue_ahead: expected an integer >= 0, got -1"),
    ({"monthly_hours_limit": math.nan},
     "config: gladia.monthly_hours_limit: expected a finite number >= 0, got nan"),
    ({"upload": "audi"}, 'config: gladia.upload: expected one of "audio", "original", got '
                         '"audi"; did you mean "audio"?'),
    ({"over_limit": 1}, 'config: gladia.over_limit: expected one of "pause", "local", got 1'),
    ({"api_key": 5}, "config: gladia.api_key: expected a non-empty string, got an integer"),
    ({"qeue_ahead": 1}, 'config: [gladia] qeue_ahead: unknown key; did you mean "queue_ahead"?'),
    ({"api_key": "k" * 32, "api_key_file": "/x"},
     "config: gladia.api_key: set either api_key or api_key_file, not both"),
])
def test_a_bad_gladia_key_is_named_with_what_it_expects(table: dict[str, Any],
                                                         message: str) -> None:
    assert problems(table) == [message]


def test_every_problem_of_the_table_is_reported_at_once() -> None:
    assert problems({"max_concurrent_jobs": 0, "price_per_hour": -1, "upload": "video"}) == [
        "gladia.max_concurrent_jobs: expected an integer >= 1, got 0",
        'gladia.upload: expected one of "audio", "original", got "video"',
        "gladia.price_per_hour: expected a number >= 0, got -1",
    ]


_VALUES: st.SearchStrategy[Any] = (
    st.booleans() | st.integers(-5, 40) | st.floats() | st.text(max_size=12)
    | st.lists(st.integers(), max_size=2) | st.just({}))


@given(key=st.sampled_from([k for k in KEYS if k != "api_key_file"]), value=_VALUES)
def test_any_value_at_any_gladia_key_is_kept_or_refused_naming_that_key(
        key: str, value: Any) -> None:
    """The secret's value is never echoed; every refusal names gladia.KEY."""
    try:
        gladia = parse_config({"gladia": {key: value}}, source=None, env={}).gladia
    except ConfigError as exc:
        assert re.match(rf"config: gladia\.{key}: ", str(exc)), str(exc)
        if key == "api_key" and isinstance(value, str) and len(value) > 3:
            assert value not in str(exc)
    else:
        kept = gladia.api_key.reveal() if key == "api_key" and gladia.api_key else \
            getattr(gladia, key)
        assert kept is not None


def test_the_checked_table_is_the_declaration_plus_where_the_key_came_from() -> None:
    """[gladia] is declared once: GladiaConfig is GladiaTable with one field that is no key
    of the file (where the key came from), so a new key cannot be forgotten in one of two."""
    own = [f.name for f in msgspec.structs.fields(GladiaConfig)
           if f.name not in table_keys(GladiaTable)]
    assert issubclass(GladiaConfig, GladiaTable)
    assert own == ["api_key_origin"]
    assert problems({"api_key_origin": "x"}) == [
        "config: [gladia] api_key_origin: unknown key; did you mean api_key or api_key_file?"]


# Printable ASCII without spaces (any usable key), long and marked enough not to be a word of
# the rest of `config show` by chance.
_KEYS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                min_size=12, max_size=40).map(lambda text: "Gk_" + text)


@given(key=_KEYS, where=st.sampled_from(["inline", "file", "environment"]))
def test_the_key_is_a_secret_wherever_it_is_read_from(tmp_path_factory: pytest.TempPathFactory,
                                                      key: str, where: str) -> None:
    """However the key is given, the checked table holds it as a Secret: its repr never shows
    it, `config show` writes *** or the file's name, and the log's redaction knows it."""
    table: dict[str, Any] = {}
    env: dict[str, str] = {}
    if where == "inline":
        table["api_key"] = key
    elif where == "file":
        path = tmp_path_factory.mktemp("key") / "gladia.key"
        path.write_text(key + "\n")
        table["api_key_file"] = str(path)
    else:
        env["GLADIA_API_KEY"] = key
    config = parse_config({"gladia": table}, source=None, env=env)
    assert isinstance(config.gladia.api_key, Secret)
    assert config.gladia.api_key.reveal() == key
    assert key in secret_values(config)
    assert key not in repr(config.gladia)
    assert key not in effective_toml(config)


def test_config_show_writes_every_gladia_key_from_the_declaration() -> None:
    """Each key of GladiaTable is a row of config show; a key set to None without a note of
    its own (a new optional key) is a "not set" comment, never a crash (TOML has no null)."""
    from watcherd.configkit import Note, table_rows

    gladia = parse_config({}, source=None, env={}).gladia
    for row, key in zip(table_rows(gladia, keys=KEYS[2:]), KEYS[2:], strict=True):
        value = getattr(gladia, key)
        if value is None:
            assert isinstance(row, Note) and row.text == f"{key}: not set"
        else:
            assert row == (key, value)
