"""Tests for watcherd.engines.gladia.definition: reading Gladia's published definition."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.sim import GladiaSimulator
from tests.sim.validation import openapi_definition
from watcherd.engines.gladia.definition import RequestFields, advice, fetch, request_fields
from watcherd.engines.gladia.options import KNOWN_OPTIONS

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def test_the_simulators_definition_reads_as_its_request_fields() -> None:
    fields = request_fields(openapi_definition())
    assert fields is not None
    assert {"audio_url", "model", "diarization_config", "custom_metadata"} <= fields.top
    assert fields.nested["language_config"] == {"languages", "code_switching"}
    assert "chapterization" not in fields.top  # removed by Gladia in March 2026


def test_every_option_watcherd_knows_is_in_the_simulators_definition() -> None:
    """The simulator and watcherd's option checker agree on the create request's fields."""
    fields = request_fields(openapi_definition())
    assert fields is not None
    assert sorted(set(KNOWN_OPTIONS) - fields.top) == []


def test_advice_names_unknown_options_and_fields_with_did_you_mean() -> None:
    fields = RequestFields(frozenset({"diarization", "diarization_config"}),
                           {"diarization_config": frozenset({"number_of_speakers"})})
    lines = advice({"diarisation": True, "diarization": True,
                    "diarization_config": {"number_of_speaker": 2, "number_of_speakers": 2}},
                   fields, "[[watch]] /in")
    assert len(lines) == 2
    assert "'diarisation' is not in Gladia's published definition" in lines[0]
    assert 'did you mean "diarization"' in lines[0]
    assert "diarization_config.number_of_speaker " in lines[1]
    assert lines[0].startswith("[[watch]] /in: ")


def test_a_ref_loop_or_odd_shapes_read_as_absent() -> None:
    loop = {"paths": {"/v2/pre-recorded": {"post": {"requestBody": {"content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/A"}}}}}}},
        "components": {"schemas": {"A": {"$ref": "#/components/schemas/A"}}}}
    assert request_fields(loop) is None
    assert request_fields({"paths": []}) is None
    assert request_fields(None) is None


@given(JSON)
def test_any_json_is_read_without_an_error(document: Any) -> None:
    """Whatever a server sends as its definition, reading it never raises."""
    found = request_fields(document)
    assert found is None or isinstance(found, RequestFields)
    found = request_fields({"paths": {"/v2/pre-recorded": {"post": document}}})
    if found is not None:
        advice({"x": {"y": 1}}, found, "w")


@given(st.dictionaries(st.text(max_size=12), JSON, max_size=6))
def test_advice_on_any_options_is_one_line_per_unknown(options: dict[str, Any]) -> None:
    fields = request_fields(openapi_definition())
    assert fields is not None
    lines = advice(options, fields, "w")
    assert len([k for k in options if k not in fields.top]) <= len(lines)
    assert all("\n" not in line or "\n" in json.dumps(options) for line in lines)


def test_fetch_from_the_simulator_needs_no_key_and_fails_softly() -> None:
    with GladiaSimulator(api_key="definition-key") as sim:
        fields, said = asyncio.run(fetch(sim.base_url, timeout=10))
        assert fields is not None and said.endswith("/openapi.json")
        sim.set_outage(True)
        fields, said = asyncio.run(fetch(sim.base_url, timeout=5))
        assert fields is None and "could not be fetched" in said
    fields, said = asyncio.run(fetch("http://127.0.0.1:9", timeout=5))
    assert fields is None
