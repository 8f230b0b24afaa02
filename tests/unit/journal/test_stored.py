"""How job objects are stored (watcherd/journal/stored.py): packed and back, losslessly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watcherd.journal.stored import job_text, pack_job, unpack_job


def test_a_short_job_object_is_packed_with_the_dictionary() -> None:
    """A short object takes zlib's dictionary form, a big one bz2's; both read back."""
    short = {"id": "j", "result": {"transcription": {"utterances": [
        {"words": [{"word": " the", "start": 1.0, "end": 1.2, "confidence": 0.9}]}]}}}
    big = {"id": "j", "words": [{"word": f" w{i % 50}", "start": i / 3} for i in range(20_000)]}
    assert pack_job(short)[:1] == b"z" and pack_job(big)[:1] == b"b"
    assert unpack_job("", pack_job(short)) == short and unpack_job("", pack_job(big)) == big
    assert len(pack_job(short)) < len(json.dumps(short))


def test_a_plain_row_reads_as_its_json() -> None:
    assert unpack_job('{"id": "old"}', None) == {"id": "old"}


@settings(max_examples=150, deadline=None)
@given(job=st.dictionaries(st.text(max_size=10), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(st.characters(codec=None)),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=6),
    max_leaves=40), max_size=6), repeat=st.integers(1, 400))
def test_any_job_object_round_trips_through_its_packed_form(job: dict[str, Any],
                                                            repeat: int) -> None:
    """Whatever JSON the API returns (lone surrogates, big numbers, any size: both the zlib
    and the bz2 forms) comes back equal, with its key order."""
    big = {"items": [job] * repeat, **job}
    for value in (job, big):
        packed = pack_job(value)
        back = unpack_job("", packed)
        assert back == value
        assert job_text(back) == job_text(value)


def test_an_unknown_packed_form_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        unpack_job("", b"?garbage")
