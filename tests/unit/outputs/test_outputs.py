"""Tests for watcherd.outputs: rendering a job in every format and writing it atomically."""

from __future__ import annotations

import copy
import errno
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from watcherd import outputs
from watcherd.outputs import (
    FORMATS,
    OUTPUT_SUFFIXES,
    TEMP_MARKER,
    atomic_write,
    is_output_or_temp,
    output_base,
    output_paths,
    render,
    render_json,
    render_srt,
    render_translations,
    render_txt,
    render_vtt,
    sweep_temp_files,
    write_outputs,
)

# docs/gladia-contract.md, the realistic complete "done" job.
DONE_JOB: dict[str, Any] = {
    "id": "8a1f6c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b",
    "request_id": "G-8a1f6c2e",
    "version": 2,
    "kind": "pre-recorded",
    "status": "done",
    "created_at": "2026-05-04T10:15:02.118Z",
    "completed_at": "2026-05-04T10:15:41.907Z",
    "custom_metadata": {"wf_key": "sha256:3f9c0d…e1", "wf_file": "inbox/meeting-0504.mp3"},
    "error_code": None,
    "post_session_metadata": {},
    "file": {
        "id": "b7e2d1c0-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
        "filename": "meeting-0504.mp3",
        "source": None,
        "audio_duration": 12.48,
        "number_of_channels": 1,
    },
    "request_params": {
        "audio_url": "https://api.gladia.io/file/b7e2d1c0-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
        "language_config": {"languages": ["en"], "code_switching": False},
        "diarization": True, "diarization_config": {"min_speakers": 1, "max_speakers": 3},
        "subtitles": True, "subtitles_config": {"formats": ["srt", "vtt"]},
        "summarization": True, "summarization_config": {"type": "concise"},
        "named_entity_recognition": True, "sentiment_analysis": True,
        "translation": False, "pii_redaction": False, "sentences": False,
        "custom_vocabulary": False, "custom_spelling": False, "audio_to_llm": False,
        "punctuation_enhanced": False, "callback": False,
    },
    "result": {
        "metadata": {"audio_duration": 12.48, "number_of_distinct_channels": 1,
                     "billing_time": 12.48, "transcription_time": 6.31},
        "transcription": {
            "full_transcript": "Hi Anna, shall we start? Yes, send me the Q2 figures first.",
            "languages": ["en"],
            "utterances": [
                {"start": 0.41, "end": 1.93, "confidence": 0.93, "channel": 0, "speaker": 0,
                 "text": "Hi Anna, shall we start?", "language": "en",
                 "words": [
                     {"word": "Hi", "start": 0.41, "end": 0.62, "confidence": 0.97},
                     {"word": " Anna,", "start": 0.66, "end": 1.02, "confidence": 0.91},
                     {"word": " shall", "start": 1.08, "end": 1.31, "confidence": 0.94},
                     {"word": " we", "start": 1.33, "end": 1.45, "confidence": 0.96},
                     {"word": " start?", "start": 1.49, "end": 1.93, "confidence": 0.88}]},
                {"start": 2.55, "end": 5.02, "confidence": 0.9, "channel": 0, "speaker": 1,
                 "text": "Yes, send me the Q2 figures first.", "language": "en",
                 "words": [
                     {"word": "Yes,", "start": 2.55, "end": 2.81, "confidence": 0.95},
                     {"word": " send", "start": 2.9, "end": 3.12, "confidence": 0.92},
                     {"word": " me", "start": 3.14, "end": 3.25, "confidence": 0.93},
                     {"word": " the", "start": 3.27, "end": 3.36, "confidence": 0.9},
                     {"word": " Q2", "start": 3.4, "end": 3.81, "confidence": 0.81},
                     {"word": " figures", "start": 3.85, "end": 4.44, "confidence": 0.89},
                     {"word": " first.", "start": 4.47, "end": 5.02, "confidence": 0.91}]},
            ],
            "subtitles": [
                {"format": "srt", "subtitles": "1\n00:00:00,410 --> 00:00:01,930\nHi Anna, shall we start?\n\n2\n00:00:02,550 --> 00:00:05,020\nYes, send me the Q2 figures first.\n"},  # noqa: E501
                {"format": "vtt", "subtitles": "WEBVTT\n\n00:00:00.410 --> 00:00:01.930\nHi Anna, shall we start?\n\n00:00:02.550 --> 00:00:05.020\nYes, send me the Q2 figures first.\n"},  # noqa: E501
            ],
        },
        "summarization": {"success": True, "is_empty": False, "exec_time": 1.21, "error": None,
                          "results": "Two colleagues open a meeting; one asks for the Q2 figures."},
        "named_entity_recognition": {
            "success": True, "is_empty": False, "exec_time": 0.84, "error": None,
            "results": [{"entity_type": "NAME_GIVEN", "text": "Anna", "start": 0.66, "end": 1.02}]},
        "sentiment_analysis": {
            "success": True, "is_empty": False, "exec_time": 0.77, "error": None,
            "results": [
                {"text": "Hi Anna, shall we start?", "sentiment": "neutral", "emotion": "neutral",
                 "start": 0.41, "end": 1.93, "channel": 0, "speaker": 0},
                {"text": "Yes, send me the Q2 figures first.", "sentiment": "neutral",
                 "emotion": "neutral", "start": 2.55, "end": 5.02, "channel": 0, "speaker": 1}]},
    },
}

# docs/gladia-contract.md, a failed job.
ERROR_JOB: dict[str, Any] = {
    "id": "c0ffee00-1234-4abc-8def-0123456789ab",
    "request_id": "G-c0ffee00",
    "version": 2,
    "kind": "pre-recorded",
    "status": "error",
    "created_at": "2026-05-04T10:20:00.000Z",
    "completed_at": "2026-05-04T10:20:07.512Z",
    "custom_metadata": {"wf_key": "sha256:9ab1…77", "wf_file": "inbox/corrupt.wav"},
    "error_code": 422,
    "post_session_metadata": {},
    "file": None,
    "request_params": None,
    "result": None,
}

ALL_WORDS = ["Hi", "Anna,", "shall", "we", "start?", "Yes,", "send", "me", "the", "Q2",
             "figures", "first."]


# -- helpers -----------------------------------------------------------------------------


def job_variant(**transcription_changes: Any) -> dict[str, Any]:
    """A deep copy of the 4.3 job with keys of result.transcription replaced (None deletes)."""
    job = copy.deepcopy(DONE_JOB)
    transcription = job["result"]["transcription"]
    for key, value in transcription_changes.items():
        if value is None:
            transcription.pop(key, None)
        else:
            transcription[key] = value
    return job


def without_subtitles() -> dict[str, Any]:
    """The 4.3 job as if subtitles had not been requested."""
    return job_variant(subtitles=None)


def without_speakers(job: dict[str, Any]) -> dict[str, Any]:
    """The job with every utterance's speaker removed, as without diarization."""
    for utterance in job["result"]["transcription"]["utterances"]:
        utterance.pop("speaker", None)
    return job


def words_utterance(words: list[str], start: float, step: float) -> dict[str, Any]:
    """An utterance of ``words`` spoken one every ``step`` seconds from ``start``."""
    timed = [
        {"word": (" " if i else "") + w, "start": start + i * step,
         "end": start + i * step + step * 0.8, "confidence": 0.9}
        for i, w in enumerate(words)
    ]
    return {"start": start, "end": timed[-1]["end"], "confidence": 0.9, "channel": 0,
            "text": " ".join(words), "language": "en", "words": timed}


_TIME = r"(\d\d):([0-5]\d):([0-5]\d)[,.](\d{3})"
STAMP = re.compile(rf"^{_TIME} --> {_TIME}$")


def stamp_ms(groups: tuple[str | Any, ...]) -> int:
    """Milliseconds of one HH, MM, SS, mmm group of a parsed cue timing line."""
    h, m, s, ms = (int(g) for g in groups)
    return ((h * 60 + m) * 60 + s) * 1000 + ms


def parse_cues(text: str, *, vtt: bool) -> list[tuple[int, int, list[str]]]:
    """Parse SRT or VTT strictly into (start ms, end ms, text lines); asserts the layout."""
    if vtt:
        assert text.startswith("WEBVTT\n\n")
        text = text[len("WEBVTT\n\n"):]
    if not text:
        return []
    assert text.endswith("\n\n")
    cues = []
    for n, block in enumerate(text[:-2].split("\n\n"), start=1):
        lines = block.split("\n")
        if not vtt:
            assert lines.pop(0) == str(n), "SRT indexes must be consecutive from 1"
        match = STAMP.match(lines.pop(0))
        assert match, block
        assert lines and all(lines), block
        cues.append((stamp_ms(match.groups()[:4]), stamp_ms(match.groups()[4:]), lines))
    return cues


def assert_cues_readable(cues: list[tuple[int, int, list[str]]]) -> None:
    """Every cue is visible, at most 7 s, two rows of <= 42 chars, and cues never go back."""
    previous_end = 0
    for start, end, lines in cues:
        assert start < end
        assert end - start <= 7000
        assert start >= previous_end
        assert 1 <= len(lines) <= 2
        assert all(len(line) <= 42 for line in lines), lines
        previous_end = end


def cue_words(cues: list[tuple[int, int, list[str]]]) -> list[str]:
    """All words shown by the cues, in order, without speaker labels."""
    text = " ".join(" ".join(lines) for _, _, lines in cues)
    return re.sub(r"\[Speaker \d+\] ", "", text).split()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.005)


def temp_files(folder: Path) -> list[Path]:
    """Our temp files currently in ``folder``."""
    return [p for p in folder.iterdir() if TEMP_MARKER in p.name]


# -- txt ---------------------------------------------------------------------------------


def test_txt_is_one_line_per_utterance_with_speaker_labels() -> None:
    """Diarized utterances become "Speaker N: text" lines, numbered from 1."""
    assert render_txt(DONE_JOB) == (
        "Speaker 1: Hi Anna, shall we start?\n"
        "Speaker 2: Yes, send me the Q2 figures first.\n"
    )


def test_txt_without_diarization_has_no_labels() -> None:
    """Without speakers the lines are the bare utterance texts, stripped."""
    job = without_speakers(copy.deepcopy(DONE_JOB))
    job["result"]["transcription"]["utterances"][0]["text"] = "  Hi Anna, shall we start? "
    assert render_txt(job) == "Hi Anna, shall we start?\nYes, send me the Q2 figures first.\n"


def test_txt_falls_back_to_full_transcript_without_utterances() -> None:
    """With no utterances the full transcript is the text, ending with a newline."""
    job = job_variant(utterances=[])
    assert render_txt(job) == "Hi Anna, shall we start? Yes, send me the Q2 figures first.\n"


def test_silent_recording_gives_empty_outputs(tmp_path: Path) -> None:
    """An empty transcript is a valid result: empty txt and srt, a header-only vtt."""
    job = job_variant(utterances=[], full_transcript="", subtitles=None)
    written = write_outputs(tmp_path / "silence", list(FORMATS), job)
    contents = {p.suffix: p.read_text(encoding="utf-8") for p in written}
    assert contents[".txt"] == ""
    assert contents[".srt"] == ""
    assert contents[".vtt"] == "WEBVTT\n\n"
    assert json.loads(contents[".json"]) == job


def test_older_job_without_optional_keys_renders() -> None:
    """Jobs lacking post_session_metadata, subtitles, speaker and sentences still render."""
    job = without_speakers(job_variant(subtitles=None, languages=None))
    del job["post_session_metadata"]
    del job["result"]["summarization"]
    for utterance in job["result"]["transcription"]["utterances"]:
        del utterance["confidence"], utterance["channel"], utterance["language"]
    assert render_txt(job).splitlines()[0] == "Hi Anna, shall we start?"
    assert cue_words(parse_cues(render_srt(job), vtt=False)) == ALL_WORDS
    assert json.loads(render_json(job)) == job


# -- json --------------------------------------------------------------------------------


def test_json_round_trips_exactly_and_keeps_unicode(tmp_path: Path) -> None:
    """The json output loads back equal to the job, with non-ASCII kept as characters."""
    path, summary = write_outputs(tmp_path / "meeting-0504", ["json"], DONE_JOB)
    assert summary.name == "meeting-0504.summary.md"
    text = path.read_text(encoding="utf-8")
    assert json.loads(text) == DONE_JOB
    assert "sha256:3f9c0d…e1" in text
    assert text.endswith("}\n")


# -- subtitles ---------------------------------------------------------------------------


def test_srt_and_vtt_come_from_gladia_when_present() -> None:
    """Subtitles Gladia made are written exactly as given."""
    subtitles = DONE_JOB["result"]["transcription"]["subtitles"]
    assert render_srt(DONE_JOB) == subtitles[0]["subtitles"]
    assert render_vtt(DONE_JOB) == subtitles[1]["subtitles"]


def test_only_the_matching_gladia_format_is_used() -> None:
    """With only Gladia's srt, the vtt is generated rather than borrowed from the srt."""
    srt_only = job_variant(subtitles=[DONE_JOB["result"]["transcription"]["subtitles"][0]])
    assert render_srt(srt_only) == DONE_JOB["result"]["transcription"]["subtitles"][0]["subtitles"]
    vtt = render_vtt(srt_only)
    assert "[Speaker 1] Hi Anna, shall we start?" in vtt
    assert cue_words(parse_cues(vtt, vtt=True)) == ALL_WORDS


def test_generated_srt_matches_the_utterances() -> None:
    """Without Gladia subtitles, short utterances become one labelled cue each, rows balanced."""
    assert render_srt(without_subtitles()) == (
        "1\n00:00:00,410 --> 00:00:01,930\n[Speaker 1] Hi Anna, shall we start?\n\n"
        "2\n00:00:02,550 --> 00:00:05,020\n[Speaker 2] Yes, send\nme the Q2 figures first.\n\n"
    )


def test_generated_vtt_matches_the_utterances() -> None:
    """Generated VTT has the header, dot milliseconds and no cue numbers."""
    assert render_vtt(without_speakers(without_subtitles())) == (
        "WEBVTT\n\n"
        "00:00:00.410 --> 00:00:01.930\nHi Anna, shall we start?\n\n"
        "00:00:02.550 --> 00:00:05.020\nYes, send me the Q2 figures first.\n\n"
    )


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_generated_cues_parse_back_readable_and_complete(fmt: str) -> None:
    """Generated cues obey every readability rule and show every word in order."""
    cues = parse_cues(render(fmt, without_subtitles()), vtt=fmt == "vtt")
    assert len(cues) == 2
    assert_cues_readable(cues)
    assert cue_words(cues) == ALL_WORDS


def test_long_utterance_splits_into_several_cues() -> None:
    """A 60-word utterance over 30 s splits into cues of <= 7 s and <= 2 x 42 chars."""
    words = [f"word{i}" for i in range(60)]
    job = job_variant(utterances=[words_utterance(words, start=1.0, step=0.5)], subtitles=None)
    cues = parse_cues(render_srt(job), vtt=False)
    assert len(cues) >= 5
    assert_cues_readable(cues)
    assert cue_words(cues) == words


def test_long_utterance_respects_the_character_limit() -> None:
    """Fast speech is split by the two-row limit even when well under 7 seconds."""
    words = ["extraordinarily", "complicated", "sentence"] * 10
    job = job_variant(utterances=[words_utterance(words, start=0.0, step=0.1)], subtitles=None)
    cues = parse_cues(render_vtt(job), vtt=True)
    assert len(cues) >= 4
    assert_cues_readable(cues)
    assert cue_words(cues) == words


def test_words_with_leading_spaces_are_joined_with_single_spaces() -> None:
    """Real words carry leading/trailing spaces; cues never show doubled spaces."""
    utterance = words_utterance(["a", "b", "c"], start=0.0, step=0.3)
    utterance["words"][1]["word"] = "  b  "
    utterance["words"].append({"word": "   ", "start": 0.9, "end": 1.0, "confidence": 0.1})
    job = job_variant(utterances=[utterance], subtitles=None)
    assert render_srt(job).split("\n")[2] == "a b c"


def test_a_word_wider_than_a_row_is_split_across_rows() -> None:
    """A 100-character token is cut into row-sized pieces so no cue exceeds two rows."""
    url = "https://example.org/" + "x" * 80
    job = job_variant(utterances=[words_utterance(["see", url, "now"], start=0.0, step=1.0)],
                      subtitles=None)
    cues = parse_cues(render_srt(job), vtt=False)
    assert_cues_readable(cues)
    assert "".join(cue_words(cues)) == "see" + url + "now"


def test_utterances_without_words_become_cues() -> None:
    """No word times: a short utterance is one cue; a long one is split, keeping its text."""
    short = {"start": 0.5, "end": 2.0, "text": "Short and sweet."}
    long_text = " ".join(f"token{i}" for i in range(40))
    long = {"start": 3.0, "end": 33.0, "text": long_text}
    cues = parse_cues(render_srt(job_variant(utterances=[short, long], subtitles=None)),
                      vtt=False)
    assert cues[0] == (500, 2000, ["Short and sweet."])
    assert len(cues) >= 5
    assert_cues_readable(cues)
    assert cue_words(cues) == ["Short", "and", "sweet.", *long_text.split()]
    assert cues[-1][1] == 33000


def test_milliseconds_round_without_overflow_and_hours_show() -> None:
    """1.9996 s rounds to 00:00:02,000 (never 1000 ms); an hour-long offset shows its hours."""
    early = {"start": 0.0004, "end": 1.9996, "text": "early"}
    late = {"start": 3725.5, "end": 3726.25, "text": "late"}
    srt = render_srt(job_variant(utterances=[early, late], subtitles=None))
    assert "00:00:00,000 --> 00:00:02,000" in srt
    assert "01:02:05,500 --> 01:02:06,250" in srt


def test_zero_length_and_overlapping_cues_are_fixed() -> None:
    """Zero or negative lengths get a visible end; overlapping speech never runs backwards."""
    utterances = [
        {"start": 5.0, "end": 5.0, "text": "instant"},
        {"start": 1.0, "end": 0.5, "text": "backwards"},
        {"start": 2.0, "end": 6.0, "text": "long"},
        {"start": 3.0, "end": 4.0, "text": "crosstalk"},
        {"start": 3.0, "end": 3.5, "text": "same start"},
    ]
    cues = parse_cues(render_srt(job_variant(utterances=utterances, subtitles=None)), vtt=False)
    assert_cues_readable(cues)
    assert [" ".join(lines) for _, _, lines in cues] == [
        "backwards", "long", "crosstalk", "same start", "instant"]


def test_vtt_escapes_markup_characters() -> None:
    """"<" and "&" in speech cannot be read as VTT markup."""
    job = job_variant(utterances=[{"start": 0.0, "end": 1.0, "text": "R&D <3"}],
                      subtitles=None)
    assert "R&amp;D &lt;3" in render_vtt(job)


def test_render_rejects_an_unknown_format() -> None:
    """Asking for a format outside FORMATS is a clear ValueError naming it."""
    with pytest.raises(ValueError, match="'docx'"):
        render("docx", DONE_JOB)


# -- translations ------------------------------------------------------------------------


def translated_job() -> dict[str, Any]:
    """The 4.3 job with a French translation (own subtitles), a German one and a failed one."""
    job = without_subtitles()
    fr = {"error": None, "full_transcript": "Salut Anna, on commence ? Oui.",
          "languages": ["fr"],
          "utterances": [{"start": 0.41, "end": 1.93, "speaker": 0,
                          "text": "Salut Anna, on commence ?", "words": []},
                         {"start": 2.55, "end": 5.02, "speaker": 1, "text": "Oui.", "words": []}],
          "subtitles": [{"format": "srt", "subtitles": "1\n00:00:00,410 --> 00:00:05,020\nfr\n"}]}
    de = {"error": None, "full_transcript": "Hallo Anna.", "languages": ["de"],
          "utterances": [{"start": 0.41, "end": 1.93, "text": "Hallo Anna."}]}
    broken = {"error": {"status_code": 500, "exception": "X", "message": "boom"},
              "full_transcript": "", "languages": ["es"], "utterances": []}
    job["result"]["translation"] = {"success": True, "is_empty": False, "exec_time": 2.0,
                                    "error": None, "results": [fr, de, broken]}
    return job


def test_translations_render_txt_always_and_subtitles_on_request() -> None:
    """Each good translation gives LANG.txt, plus LANG.srt/.vtt only when those are asked for."""
    rendered = render_translations(translated_job(), ["txt", "srt"])
    assert sorted(rendered) == ["de.srt", "de.txt", "fr.srt", "fr.txt"]
    assert rendered["fr.txt"] == "Speaker 1: Salut Anna, on commence ?\nSpeaker 2: Oui.\n"
    assert rendered["fr.srt"] == "1\n00:00:00,410 --> 00:00:05,020\nfr\n"
    assert rendered["de.srt"] == "1\n00:00:00,410 --> 00:00:01,930\nHallo Anna.\n\n"
    assert render_translations(translated_job(), ["json"]).keys() == {"fr.txt", "de.txt"}


def test_translation_files_are_written_next_to_the_source(tmp_path: Path) -> None:
    """write_outputs writes NAME.<lang>.txt/.vtt and output_paths predicts the same list."""
    job = translated_job()
    base = tmp_path / "meeting"
    predicted = output_paths(base, ["txt", "vtt"], job)
    written = write_outputs(base, ["txt", "vtt"], job)
    assert written == predicted
    assert sorted(p.name for p in written) == [
        "meeting.de.txt", "meeting.de.vtt", "meeting.fr.txt", "meeting.fr.vtt",
        "meeting.summary.md", "meeting.txt", "meeting.vtt"]
    assert (tmp_path / "meeting.de.vtt").read_text(encoding="utf-8").startswith("WEBVTT\n\n")


def test_failed_or_unsafe_translations_are_skipped() -> None:
    """success:false drops every translation; odd language codes never become file names."""
    job = translated_job()
    job["result"]["translation"]["success"] = False
    assert render_translations(job, ["srt"]) == {}
    job = translated_job()
    results = job["result"]["translation"]["results"]
    results[0]["languages"] = ["../../etc/passwd"]
    results[1]["languages"] = []
    results.append({"error": None, "languages": ["it"], "utterances": []})
    results.append({"error": None, "languages": ["it"], "full_transcript": "duplicate"})
    assert render_translations(job, ["txt"]) == {"it.txt": ""}


# -- names -------------------------------------------------------------------------------


def test_output_base_uses_the_stem_unless_taken(tmp_path: Path) -> None:
    """talk.mp3 -> talk; if another source owns talk, talk.wav -> talk.wav; no suffix -> name."""
    assert output_base(tmp_path / "talk.mp3", taken=lambda b: False) == tmp_path / "talk"
    owned = {tmp_path / "talk"}
    assert output_base(tmp_path / "talk.wav", taken=owned.__contains__) == tmp_path / "talk.wav"
    assert output_base(tmp_path / "README", taken=lambda b: False) == tmp_path / "README"
    assert output_base(tmp_path / "a.b.c.m4a", taken=lambda b: False) == tmp_path / "a.b.c"


def test_a_suffixless_name_owned_as_another_stem_gets_a_numbered_base(tmp_path: Path) -> None:
    """"talk" after "talk.wav" took the base "talk" gets "talk~1": never shared outputs."""
    owned = {tmp_path / "talk"}
    assert output_base(tmp_path / "talk", taken=owned.__contains__) == tmp_path / "talk~1"
    owned.add(tmp_path / "talk~1")
    assert output_base(tmp_path / "talk", taken=owned.__contains__) == tmp_path / "talk~2"
    with pytest.raises(ValueError, match="used by another source; rename it"):
        output_base(tmp_path / "talk", taken=lambda b: True)


@pytest.mark.parametrize(("name", "base"), [("..wav", "..wav"), ("...wav", "...wav"),
                                            (".wav", ".wav"), ("x.\n", "x")])
def test_dot_stems_are_never_a_base(tmp_path: Path, name: str, base: str) -> None:
    """A stem that is "." or ".." (a folder name) is skipped for the full name."""
    assert output_base(tmp_path / name, taken=lambda b: False) == tmp_path / base


def test_output_base_asks_about_the_stem_path(tmp_path: Path) -> None:
    """taken() is asked about exactly DIR/STEM, the base another source could own."""
    asked: list[Path] = []

    def taken(base: Path) -> bool:
        asked.append(base)
        return False

    output_base(tmp_path / "sub" / "talk.wav", taken=taken)
    assert asked == [tmp_path / "sub" / "talk"]


def test_output_paths_append_to_a_dotted_base(tmp_path: Path) -> None:
    """A full-name base keeps its dots: talk.wav -> talk.wav.txt, never talk.txt."""
    paths = output_paths(tmp_path / "talk.wav", ["txt", "json", "txt"], DONE_JOB)
    assert paths == [tmp_path / "talk.wav.txt", tmp_path / "talk.wav.json",
                     tmp_path / "talk.wav.summary.md"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("talk.txt", True), ("talk.JSON", True), ("talk.srt", True), ("talk.vtt", True),
        ("notes.md", True), (f".talk.txt{TEMP_MARKER}-0a1b2c3d4e5f", True),
        (f"anything{TEMP_MARKER}", True),
        ("talk.wav", False), ("talk.mp3", False), ("talk.txt.wav", False), ("README", False),
        ("talk.wav.part", False),
    ],
)
def test_is_output_or_temp(name: str, expected: bool) -> None:
    """Outputs (by suffix) and our temp files (by marker) are recognised; media is not."""
    assert is_output_or_temp(Path("/inbox") / name) is expected


def test_every_format_is_an_output_suffix() -> None:
    """Every file write_outputs can produce is one the watcher will ignore."""
    assert {f".{fmt}" for fmt in FORMATS} <= OUTPUT_SUFFIXES
    for path in output_paths(Path("/inbox/talk"), FORMATS, translated_job()):
        assert is_output_or_temp(path)


# -- write_outputs -----------------------------------------------------------------------


def test_write_outputs_writes_each_format_next_to_the_source(tmp_path: Path) -> None:
    """Every requested format lands at base.EXT with exactly what render produced."""
    source = tmp_path / "meeting-0504.mp3"
    source.write_bytes(b"ID3 not really audio")
    before = source.stat()
    written = write_outputs(tmp_path / "meeting-0504", list(FORMATS), DONE_JOB)
    assert [p.name for p in written] == [
        *(f"meeting-0504.{fmt}" for fmt in FORMATS), "meeting-0504.summary.md"]
    for path, fmt in zip(written, FORMATS, strict=False):
        assert path.read_text(encoding="utf-8") == render(fmt, DONE_JOB)
    assert source.read_bytes() == b"ID3 not really audio"
    assert source.stat().st_mtime_ns == before.st_mtime_ns
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("job", [ERROR_JOB, {**DONE_JOB, "result": None}])
def test_write_outputs_refuses_a_job_without_a_result(tmp_path: Path, job: dict[str, Any]) -> None:
    """An error job, or a done job with no result, is a ValueError and writes nothing."""
    with pytest.raises(ValueError, match="nothing to write"):
        write_outputs(tmp_path / "corrupt", ["txt", "json"], job)
    assert list(tmp_path.iterdir()) == []


def test_write_outputs_rejects_unknown_formats_before_writing(tmp_path: Path) -> None:
    """An unknown format fails the whole call before any file is written."""
    with pytest.raises(ValueError, match="'pdf'"):
        write_outputs(tmp_path / "talk", ["txt", "pdf"], DONE_JOB)
    assert list(tmp_path.iterdir()) == []


def test_a_rendering_failure_writes_nothing(tmp_path: Path) -> None:
    """If any output cannot be rendered, not even the ones before it are written."""
    job = copy.deepcopy(DONE_JOB)
    job["custom_metadata"] = {"not json": {1, 2}}
    with pytest.raises(TypeError):
        write_outputs(tmp_path / "talk", ["txt", "srt", "json"], job)
    assert list(tmp_path.iterdir()) == []


def test_non_ascii_and_spaces_in_names(tmp_path: Path) -> None:
    """Folders and names with spaces and accents work, including a name near the 255-byte cap."""
    folder = tmp_path / "réunions d'équipe"
    folder.mkdir()
    base = output_base(folder / "compte rendu été 会議.mp3", taken=lambda b: False)
    written = write_outputs(base, ["txt", "srt"], DONE_JOB)
    assert [p.name for p in written] == [
        "compte rendu été 会議.txt", "compte rendu été 会議.srt",
        "compte rendu été 会議.summary.md"]
    long_name = "é" * 125 + ".txt"  # 254 bytes in UTF-8
    atomic_write(folder / long_name, "ça marche\n".encode())
    assert (folder / long_name).read_text(encoding="utf-8") == "ça marche\n"
    assert temp_files(folder) == []


# -- atomic_write ------------------------------------------------------------------------


def test_atomic_write_replaces_content_and_leaves_no_temp(tmp_path: Path) -> None:
    """A write creates the file, a second replaces it, and no temp file remains."""
    target = tmp_path / "talk.txt"
    atomic_write(target, b"first\n")
    atomic_write(target, b"second\n")
    assert target.read_bytes() == b"second\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.txt"]


def test_atomic_write_failing_replace_keeps_old_state(tmp_path: Path) -> None:
    """When the rename fails (target is a non-empty folder) the error rises and no temp stays."""
    target = tmp_path / "talk.txt"
    target.mkdir()
    (target / "inside").write_bytes(b"kept")
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert (target / "inside").read_bytes() == b"kept"
    assert temp_files(tmp_path) == []


def test_atomic_write_disk_full_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC during fsync propagates as OSError; the old content is intact, no temp remains."""
    target = tmp_path / "talk.txt"
    atomic_write(target, b"old transcript\n")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError) as caught:
        atomic_write(target, b"new transcript that does not fit\n")
    assert caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old transcript\n"
    assert temp_files(tmp_path) == []


def test_write_outputs_disk_full_propagates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """write_outputs lets ENOSPC through so the caller can retry, leaving no temp files."""

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        write_outputs(tmp_path / "talk", ["txt", "json"], DONE_JOB)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_temp_name_is_hidden_and_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temp file lives in the target's folder, is hidden, and carries the marker."""
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
        # Renamed inside the folder's descriptor, which is the target's folder.
        assert os.path.samestat(os.fstat(src_dir_fd), os.stat(tmp_path))
        assert src_dir_fd == dst_dir_fd and os.sep not in src
        seen.append(src)
        real_replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write(tmp_path / "talk.srt", b"x")
    (temp,) = seen
    assert temp.startswith(f".talk.srt{TEMP_MARKER}-")
    assert is_output_or_temp(tmp_path / temp)


def test_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    """A thread reading the target during 200 rewrites only ever sees whole versions."""
    target = tmp_path / "talk.txt"
    size = 64 * 1024

    def version(i: int) -> bytes:
        return (b"%05d\n" % i) * (size // 6)

    atomic_write(target, version(0))
    stop = threading.Event()
    reads: list[int] = []
    problems: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                data = target.read_bytes()
            except OSError as exc:  # a missing target is itself a failure of atomicity
                problems.append(repr(exc))
                continue
            if data != data[:6] * (size // 6):
                problems.append(f"partial read of {len(data)} bytes")
            reads.append(len(data))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(reads) > 0)
        for i in range(1, 201):
            atomic_write(target, version(i))
        wait_until(lambda: len(reads) > 1)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert problems == []
    assert target.read_bytes() == version(200)
    assert temp_files(tmp_path) == []


# -- sweep_temp_files --------------------------------------------------------------------


def make_old(path: Path, age: float) -> None:
    """Backdate ``path``'s modification time by ``age`` seconds."""
    then = time.time() - age
    os.utime(path, (then, then))


def test_sweep_removes_only_old_temp_files(tmp_path: Path) -> None:
    """Old temp files go; fresh temps, outputs, sources and look-alikes stay."""
    old_temp = tmp_path / f".talk.txt{TEMP_MARKER}-aaaaaaaaaaaa"
    fresh_temp = tmp_path / f".talk.srt{TEMP_MARKER}-bbbbbbbbbbbb"
    unmarked = tmp_path / ".talk.txt.tmp-cccccccccccc"
    output = tmp_path / "talk.txt"
    source = tmp_path / "talk.wav"
    for path in (old_temp, fresh_temp, unmarked, output, source):
        path.write_bytes(b"x")
    for path in (old_temp, unmarked, output, source):
        make_old(path, 7200)
    assert sweep_temp_files(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (fresh_temp, unmarked, output, source))
    assert sweep_temp_files(tmp_path, older_than_seconds=0) == 1
    assert not fresh_temp.exists()


def test_sweep_recursive_and_missing_folder(tmp_path: Path) -> None:
    """Recursive sweeping reaches sub-folders; a missing folder sweeps nothing."""
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    deep = sub / f".x.txt{TEMP_MARKER}-000000000000"
    deep.write_bytes(b"")
    make_old(deep, 7200)
    assert sweep_temp_files(tmp_path) == 0
    assert sweep_temp_files(tmp_path, recursive=True) == 1
    assert not deep.exists()
    assert sweep_temp_files(tmp_path / "missing") == 0


def test_sweep_leaves_a_marked_folder_alone(tmp_path: Path) -> None:
    """Only regular files are swept: a folder that happens to carry the marker stays."""
    folder = tmp_path / f".odd{TEMP_MARKER}-000000000000"
    folder.mkdir()
    make_old(folder, 7200)
    assert sweep_temp_files(tmp_path) == 0
    assert folder.is_dir()


def test_module_constants_are_the_documented_ones() -> None:
    """The constants other modules rely on have the values the brief fixes."""
    assert outputs.FORMATS == ("txt", "json", "srt", "vtt", "md")
    assert outputs.TEMP_MARKER == ".watcherd-tmp"
    assert frozenset({".txt", ".json", ".srt", ".vtt", ".md"}) == outputs.OUTPUT_SUFFIXES


# -- add-ons: the Markdown report, the summary, failures ---------------------------------


def failing(job: dict[str, Any], addon: str, message: str = "model crashed") -> dict[str, Any]:
    """The job with one add-on block turned into a documented failure envelope."""
    job["result"][addon] = {
        "success": False, "is_empty": True, "exec_time": 0.3, "results": None,
        "error": {"status_code": 500, "exception": "InternalError", "message": message},
    }
    return job


def md_section(text: str, heading: str) -> str:
    """The body of one "## heading" section of a Markdown report (up to the next "## ")."""
    start = text.index(f"## {heading}\n\n") + len(f"## {heading}\n\n")
    end = text.find("\n## ", start)
    return text[start:] if end < 0 else text[start:end + 1]


def test_md_report_has_details_summary_speakers_and_timestamped_transcript() -> None:
    """The md report names the source, shows duration and job, and each utterance with its time."""
    text = render("md", DONE_JOB)
    assert text.startswith("# meeting-0504.mp3\n\n")
    assert "- **Duration:** 00:12\n" in text
    assert "- **Speakers:** 2\n" in text
    assert "`8a1f6c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b` (request `G-8a1f6c2e`)" in text
    assert md_section(text, "Summary") == (
        "Two colleagues open a meeting; one asks for the Q2 figures.\n\n")
    assert md_section(text, "Transcript") == (
        "**[00:00] Speaker 1:** Hi Anna, shall we start?\n\n"
        "**[00:02] Speaker 2:** Yes, send me the Q2 figures first.\n\n")
    speakers = md_section(text, "Speakers")
    assert "| Speaker 1 | 00:01 | 38% | 1 |" in speakers
    assert "| Speaker 2 | 00:02 | 62% | 1 |" in speakers
    assert "## Notes" not in text


def test_md_report_shows_sentiment_and_entities_as_tables() -> None:
    """Sentiment rows carry time, speaker and labels; entities carry type, text and time."""
    text = render("md", DONE_JOB)
    assert md_section(text, "Sentiment").splitlines()[2] == (
        "| 00:00 | Speaker 1 | neutral | neutral | Hi Anna, shall we start? |")
    assert md_section(text, "Named entities").splitlines()[2] == "| NAME\\_GIVEN | Anna | 00:00 |"


def test_md_report_without_diarization_or_addons_is_just_the_transcript() -> None:
    """No speakers section and no labels when the job was not diarized; no add-on sections."""
    job = without_speakers(copy.deepcopy(DONE_JOB))
    for addon in ("summarization", "named_entity_recognition", "sentiment_analysis"):
        del job["result"][addon]
    text = render("md", job)
    assert "## Speakers" not in text and "## Summary" not in text
    assert "## Sentiment" not in text and "## Named entities" not in text
    assert md_section(text, "Transcript").startswith("**[00:00]** Hi Anna, shall we start?\n")


def test_md_report_escapes_markdown_in_transcript_text() -> None:
    """Characters that Markdown would interpret are escaped, so the text shows as spoken."""
    job = copy.deepcopy(DONE_JOB)
    job["result"]["transcription"]["utterances"][0]["text"] = "a *star* [link](x) <b>|</b> # no"
    text = render("md", job)
    assert "a \\*star\\* \\[link\\](x) \\<b\\>\\|\\</b\\> # no" in text


def test_md_report_translations_and_audio_to_llm_answers() -> None:
    """Translations appear per language; audio_to_llm answers appear under their prompt."""
    job = translated_job()
    job["result"]["audio_to_llm"] = {
        "success": True, "is_empty": False, "exec_time": 1.0, "error": None,
        "results": [{"success": True, "is_empty": False, "exec_time": 0.5, "error": None,
                     "results": {"prompt": "Who speaks?", "response": "- Anna\n- Bob"}}]}
    text = render("md", job)
    translations = md_section(text, "Translations")
    assert "### fr\n\n**[00:00] Speaker 1:** Salut Anna, on commence ?\n" in translations
    assert "### de\n\n**[00:00]** Hallo Anna.\n" in translations
    assert "### es" not in translations
    assert md_section(text, "Answers") == "### Who speaks?\n\n- Anna\n- Bob\n"


def test_md_report_keeps_undocumented_shapes_as_raw_json() -> None:
    """Sentiment results as an unexpected shape are shown as JSON, not dropped or crashed on."""
    job = copy.deepcopy(DONE_JOB)
    job["result"]["sentiment_analysis"]["results"] = {"overall": "positive", "score": 0.9}
    section = md_section(render("md", job), "Sentiment")
    assert section.startswith("```json\n")
    assert json.loads(section.split("```json\n", 1)[1].rsplit("```", 1)[0]) == {
        "overall": "positive", "score": 0.9}


def test_md_report_notes_pii_redaction() -> None:
    """With pii_redaction on, the report says the text was redacted and how it is shown."""
    job = copy.deepcopy(DONE_JOB)
    job["request_params"]["pii_redaction"] = True
    job["request_params"]["pii_redaction_config"] = {"entity_types": ["GDPR"],
                                                     "processed_text_type": "MASK"}
    assert ("- **Personal data:** redacted by Gladia in this transcript and every output "
            "(GDPR; shown as MASK)\n") in render("md", job)


def test_addon_failures_lists_whole_and_partial_failures() -> None:
    """success:false blocks, failed translation languages and failed prompts are all reported."""
    job = failing(translated_job(), "summarization", "too short to summarise")
    job["result"]["audio_to_llm"] = {
        "success": True, "is_empty": False, "exec_time": 1.0, "error": None,
        "results": [{"success": False, "is_empty": True, "exec_time": 0.1, "results": None,
                     "error": {"status_code": 429, "exception": "RateLimit", "message": "busy"}}]}
    found = {(f.addon, f.message) for f in outputs.addon_failures(job)}
    assert found == {
        ("summarization", "too short to summarise (InternalError, status 500)"),
        ("translation", "to es: boom (X, status 500)"),
        ("audio_to_llm", "prompt 1: busy (RateLimit, status 429)"),
    }
    assert outputs.addon_failures(DONE_JOB) == []


def test_a_failed_addon_is_noted_logged_and_the_transcript_still_written(
    tmp_path: Path,
) -> None:
    """A failed summary: no summary file, a line under Notes in NAME.md, a log line, and txt."""
    job = failing(copy.deepcopy(DONE_JOB), "summarization")
    with structlog.testing.capture_logs() as logs:
        written = write_outputs(tmp_path / "meeting", ["txt", "md"], job)
    assert [p.name for p in written] == ["meeting.txt", "meeting.md"]
    assert (tmp_path / "meeting.txt").read_text(encoding="utf-8") == render_txt(DONE_JOB)
    assert md_section((tmp_path / "meeting.md").read_text(encoding="utf-8"), "Notes") == (
        "- the summarization add-on failed: model crashed (InternalError, status 500); "
        "the transcript is complete.\n\n")
    (line,) = [entry for entry in logs if entry["event"] == "addon_failed"]
    assert (line["addon"], line["log_level"], line["job_id"]) == (
        "summarization", "warning", DONE_JOB["id"])


def test_summary_file_holds_the_summary_and_follows_bullets() -> None:
    """NAME.summary.md is titled after the source; bullet summaries stay a Markdown list."""
    assert outputs.render_summary(DONE_JOB) == (
        "# Summary of meeting-0504.mp3\n\n"
        "Two colleagues open a meeting; one asks for the Q2 figures.\n")
    job = copy.deepcopy(DONE_JOB)
    job["result"]["summarization"]["results"] = "- Anna opens\n- Q2 figures *first*"
    assert outputs.render_summary(job, title="x") == (
        "# Summary of meeting-0504.mp3\n\n- Anna opens\n- Q2 figures \\*first\\*\n")
    job["result"]["summarization"]["results"] = "  "
    assert outputs.render_summary(job) is None
    assert outputs.render_summary(failing(copy.deepcopy(DONE_JOB), "summarization")) is None


def test_json_output_shortens_callback_urls_that_may_carry_a_token(tmp_path: Path) -> None:
    """request_params.callback_config.url keeps its host but loses path and query in NAME.json."""
    job = copy.deepcopy(DONE_JOB)
    job["request_params"]["callback"] = True
    job["request_params"]["callback_config"] = {
        "url": "https://hooks.example.com:8443/callback/SECRET-TOKEN?x=SECRET2", "method": "PUT"}
    job["request_params"]["callback_url"] = "http://user:pw@old.example.com/cb/SECRET3"
    text = render_json(job)
    assert "SECRET" not in text and "pw" not in text
    data = json.loads(text)
    assert data["request_params"]["callback_config"] == {
        "url": "https://hooks.example.com:8443/[redacted]", "method": "PUT"}
    assert data["request_params"]["callback_url"] == "http://old.example.com/[redacted]"
    assert job["request_params"]["callback_config"]["url"].endswith("SECRET2")


# -- any job content: render or a clear ValueError, never anything else --------------------

# Strings as a broken backend sends them: any text, plus lone UTF-16 halves (a string cut
# mid-emoji), surrogate escapes, NUL, ESC and line separators.
odd_text = st.text(
    st.characters() | st.sampled_from(["\ud83d", "\ude00", "\udce9", "\x00", "\x1b", "\u2028"]),
    max_size=40,
)
json_leaves = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**309)
    | st.floats() | odd_text
)
# Keys the renderers look up, so random objects reach the code that reads them.
KEYS = [
    "result", "transcription", "utterances", "words", "word", "text", "start", "end",
    "speaker", "full_transcript", "subtitles", "format", "translation", "results",
    "languages", "summarization", "success", "error", "message", "status_code", "status",
    "id", "file", "filename", "request_params", "callback_url", "callback_config", "url",
    "metadata", "audio_duration", "sentiment_analysis", "named_entity_recognition",
    "audio_to_llm", "response", "prompt", "pii_redaction", "pii_redaction_config",
    "entity_types", "processed_text_type", "sentiment", "emotion", "entity_type",
    "translation_config", "target_languages", "completed_at", "request_id", "exception",
]
json_keys = st.sampled_from(KEYS) | odd_text
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_keys, inner, max_size=5),
    max_leaves=30,
)


def shaped(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the documented shape, sometimes any JSON value instead (a wrong type, a null)."""
    return st.one_of(strategy, strategy, strategy, json_values)


def loose(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A JSON object with any subset of ``fields`` (each shaped), or any JSON value."""
    return shaped(st.fixed_dictionaries({}, optional={k: shaped(v) for k, v in fields.items()}))


def strict(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A JSON object with every one of ``fields``: the structure is right, only leaves are odd."""
    return st.fixed_dictionaries(fields)


Obj = Callable[..., st.SearchStrategy[Any]]
numbers = st.floats(allow_nan=True) | st.integers() | st.integers(min_value=10**309) | st.integers(
    max_value=-(10**309))


def job_strategy(obj: Obj) -> st.SearchStrategy[Any]:
    """Job objects built with ``obj``: loose ones vary the structure, strict ones the leaves."""
    word = obj(word=odd_text, start=numbers, end=numbers)
    utterance = obj(text=odd_text, start=numbers, end=numbers, speaker=st.integers() | numbers,
                    words=st.lists(word, max_size=6))
    transcription = obj(
        full_transcript=odd_text, utterances=st.lists(utterance, max_size=5),
        languages=st.lists(odd_text, max_size=2),
        subtitles=st.lists(obj(format=st.sampled_from(["srt", "vtt"]), subtitles=odd_text),
                           max_size=2),
    )
    addon_error = obj(message=odd_text, exception=odd_text, status_code=st.integers())
    languages = st.lists(st.sampled_from(["fr", "de", "x" * 16]) | odd_text, max_size=2)
    translation_entry = obj(languages=languages, error=st.none() | addon_error,
                            full_transcript=odd_text, utterances=st.lists(utterance, max_size=3))
    return obj(
        id=odd_text, status=st.just("done"), completed_at=odd_text, request_id=odd_text,
        file=obj(filename=odd_text, audio_duration=numbers),
        request_params=obj(
            callback_url=odd_text, callback_config=obj(url=odd_text),
            diarization=st.booleans(), pii_redaction=st.booleans(),
            pii_redaction_config=obj(entity_types=st.lists(json_values, max_size=3),
                                     processed_text_type=odd_text),
            translation_config=obj(target_languages=st.lists(odd_text, max_size=2))),
        result=obj(
            metadata=obj(audio_duration=numbers),
            transcription=transcription,
            translation=obj(success=st.booleans(), error=addon_error,
                            results=st.lists(translation_entry, max_size=3)),
            summarization=obj(success=st.booleans(), results=json_values | odd_text),
            sentiment_analysis=obj(results=st.lists(
                obj(start=numbers, speaker=json_values, sentiment=json_values,
                    emotion=json_values, text=json_values), max_size=3)),
            named_entity_recognition=obj(results=st.lists(
                obj(entity_type=json_values, text=json_values, start=numbers), max_size=3)),
            audio_to_llm=obj(results=st.lists(
                obj(success=st.booleans(), error=addon_error,
                    results=obj(prompt=odd_text, response=json_values | odd_text)),
                max_size=2)),
        ),
    )


# Any JSON value, loosely job-shaped objects, and well-shaped jobs with odd leaves.
jobs = json_values | job_strategy(loose) | job_strategy(strict)


RENDERS: list[Callable[[Any], Any]] = [
    outputs.render_txt, outputs.render_json, outputs.render_srt, outputs.render_vtt,
    outputs.render_md, outputs.render_summary,
    lambda job: outputs.render_md(job, title="talk \udce9\n.wav"),
    lambda job: outputs.render_translations(job, FORMATS),
    lambda job: outputs.output_paths(Path("/inbox/talk"), FORMATS, job),
    lambda job: [f.describe() for f in outputs.addon_failures(job)],
]


def rendered_texts(value: Any) -> list[str]:
    """Every text inside one renderer's result (a str, a dict of str, a list of paths)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return list(value.values())
    return [str(v) for v in value]


@given(jobs)
def test_every_render_returns_utf8_text_or_raises_value_error(job: Any) -> None:
    """Any JSON-shaped job renders to text that encodes as UTF-8, or is a clear ValueError."""
    for render_one in RENDERS:
        try:
            result = render_one(job)
        except ValueError as exc:
            assert str(exc)
            continue
        for text in rendered_texts(result):
            text.encode("utf-8")  # raises if a lone surrogate slipped through


@given(jobs)
def test_json_output_is_lossless_valid_utf8(job: Any) -> None:
    """NAME.json is UTF-8 and parses back to the (scrubbed) job, lone surrogates included."""
    try:
        text = outputs.render_json(job)
    except ValueError:
        assert not isinstance(job, dict)
        return
    data = text.encode("utf-8")
    back = json.loads(data.decode("utf-8"))
    # Compared as ASCII JSON: NaN equals itself there, and an astral character equals the
    # surrogate pair it was split into.
    assert json.dumps(back) == json.dumps(outputs.scrub_job(job))


@given(jobs)
def test_write_outputs_writes_all_or_raises_value_error_and_leaves_no_temp(job: Any) -> None:
    """write_outputs writes every output as UTF-8, or raises ValueError having written none."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        try:
            written = write_outputs(folder / "talk \udce9", list(FORMATS), job)
        except ValueError:
            assert os.listdir(folder) == []
            return
        assert written
        for path in written:
            path.read_bytes().decode("utf-8")
        assert temp_files(folder) == []


def test_a_lone_surrogate_is_u_fffd_in_text_and_an_escape_in_json(tmp_path: Path) -> None:
    """A transcript cut mid-emoji: txt/srt/vtt/md show U+FFFD, NAME.json keeps \\ud83d."""
    job = copy.deepcopy(DONE_JOB)
    del job["result"]["transcription"]["subtitles"]
    job["result"]["transcription"]["utterances"][0]["text"] = "smile \ud83d"
    job["result"]["transcription"]["utterances"][0]["words"] = []
    written = write_outputs(tmp_path / "talk", list(FORMATS), job)
    by_name = {p.name: p.read_bytes().decode("utf-8") for p in written}
    for name in ("talk.txt", "talk.srt", "talk.vtt", "talk.md"):
        assert "smile \ufffd" in by_name[name], name
    assert '"smile \\ud83d"' in by_name["talk.json"]
    back = json.loads(by_name["talk.json"])
    assert back["result"]["transcription"]["utterances"][0]["text"] == "smile \ud83d"


@pytest.mark.parametrize("job", [[], "done", None, 3])
def test_a_job_that_is_not_an_object_is_a_value_error(tmp_path: Path, job: Any) -> None:
    """A JSON array, string, null or number is refused with a message that says so."""
    with pytest.raises(ValueError, match="not an object"):
        write_outputs(tmp_path / "talk", ["txt"], job)
    with pytest.raises(ValueError, match="not an object"):
        outputs.render_txt(job)
    assert list(tmp_path.iterdir()) == []


def test_huge_numbers_and_huge_text_render(tmp_path: Path) -> None:
    """Times like 1e308 or 10**400 are clamped and a 2 MB transcript still renders."""
    job = copy.deepcopy(DONE_JOB)
    del job["result"]["transcription"]["subtitles"]
    big = " ".join(["word"] * 400_000)
    job["result"]["transcription"]["utterances"] = [
        {"text": big, "start": -1e308, "end": 10**400, "speaker": 10**400},
        {"text": "x" * 100_000, "start": 10**400, "end": 1e308, "speaker": 1, "words": []},
    ]
    job["result"]["metadata"]["audio_duration"] = 10**400
    written = write_outputs(tmp_path / "talk", list(FORMATS), job)
    assert all(p.stat().st_size > 0 for p in written)


def test_deep_nesting_is_a_value_error() -> None:
    """A job nested deeper than JSON can be written is refused clearly, not a RecursionError."""
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(ValueError, match="nests too deeply"):
        outputs.render_json({"status": "done", "result": {}, "x": deep})


def test_a_malformed_callback_url_is_fully_redacted() -> None:
    """An echoed callback URL urlsplit cannot parse is redacted whole, not an error."""
    job = {**DONE_JOB, "request_params": {"callback_url": "http://[::1/secret-token"}}
    text = outputs.render_json(job)
    assert "secret-token" not in text
    assert json.loads(text)["request_params"]["callback_url"] == "[redacted]"
