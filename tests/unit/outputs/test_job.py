"""Tests for watcherd.outputs.job: the lenient typed reading of an untrusted job object."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given

from tests.unit.outputs.test_outputs import DONE_JOB, jobs
from watcherd.outputs.job import Job, Transcription, read_job

LANGUAGE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _check_transcription(transcription: Transcription) -> None:
    starts = [u.start for u in transcription.utterances]
    assert starts == sorted(starts)
    for utterance in transcription.utterances:
        assert isinstance(utterance.text, str)
        assert math.isfinite(utterance.start) and abs(utterance.start) <= 1e9
        assert utterance.start <= utterance.end <= 1e9
        assert utterance.speaker is None or 0 <= utterance.speaker < 10_000
        for word in utterance.words:
            assert word.text and word.text == " ".join(word.text.split())
            assert math.isfinite(word.start) and word.start <= word.end
    formats = [fmt for fmt, _ in transcription.subtitles]
    assert len(formats) == len(set(formats))
    assert all(given.strip() for _, given in transcription.subtitles)
    assert all(isinstance(lang, str) for lang in transcription.languages)


@given(jobs)
def test_any_json_object_reads_into_clean_typed_fields(job: Any) -> None:
    """Whatever a JSON object holds, reading it never raises and every field is clean."""
    if not isinstance(job, dict):
        with pytest.raises(ValueError, match="not an object"):
            read_job(job)
        return
    read = read_job(job)
    assert read.raw is job
    assert all(isinstance(v, str) for v in (read.id, read.request_id, read.completed_at))
    assert "/" not in read.filename and "\\" not in read.filename
    assert math.isfinite(read.duration)
    _check_transcription(read.transcription)
    langs = [t.lang for t in read.translations]
    assert len(langs) == len(set(langs))
    for translation in read.translations:
        # A language code becomes part of a file name: never a separator, dot or newline.
        assert 1 <= len(translation.lang) <= 16 and set(translation.lang) <= LANGUAGE_CHARS
        assert translation.lang[0] not in "_-"
        _check_transcription(translation.transcription)
    for failure in read.failures:
        failure.describe().encode("utf-8")


def test_a_realistic_job_reads_as_expected() -> None:
    """The contract's done job: utterances, speakers, words and add-ons where Gladia puts them."""
    read: Job = read_job(DONE_JOB)
    assert read.done and read.has_result
    assert read.id == DONE_JOB["id"]
    assert read.transcription.utterances
    assert read.transcription.diarized == any(
        isinstance(u.get("speaker"), int)
        for u in DONE_JOB["result"]["transcription"]["utterances"]
    )
    assert read.failures == ()


def test_odd_values_become_defaults_not_errors() -> None:
    """Wrong types, NaN, huge numbers and booleans read as "missing", never as an error."""
    job = {
        "status": "done",
        "id": 7,
        "result": {"transcription": {"utterances": [
            {"text": 5, "start": float("nan"), "end": 10**400, "speaker": True,
             "words": [{"word": " hi\n", "start": "0", "end": -1.0}, "junk", {"word": ""}]},
            "not an utterance",
        ], "subtitles": [{"format": "srt", "subtitles": "  "}, {"format": "srt", "subtitles": "1"}],
        }},
    }
    read = read_job(job)
    assert read.id == "" and read.done and read.has_result
    (utterance,) = read.transcription.utterances
    assert (utterance.text, utterance.start, utterance.end, utterance.speaker) == ("", 0.0, 1e9,
                                                                                   None)
    (word,) = utterance.words
    assert (word.text, word.start, word.end) == ("hi", 0.0, 0.0)
    assert read.transcription.subtitle("srt") == "1"
    assert read.transcription.subtitle("vtt") is None
