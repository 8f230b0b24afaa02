"""The local engine's decoding plan and job object (watcherd/engines/local/decoding.py): a
folder's Gladia options become Whisper's settings, a worker's reply becomes a Gladia-shaped job.
No model needed."""

from __future__ import annotations

from typing import Any

from watcherd.engines.local.decoding import DecodePlan, build_job, plan_for


def test_plan_pins_a_single_language() -> None:
    """One code in language_config.languages pins Whisper's language."""
    plan = plan_for({"language_config": {"languages": ["FR"]}})
    assert (plan.language, plan.languages, plan.unavailable) == ("fr", ("fr",), ())


def test_plan_detects_among_several_languages() -> None:
    """Several codes leave the language to detection, restricted to those codes."""
    plan = plan_for({"language_config": {"languages": ["en", "de"], "code_switching": False}})
    assert plan.language is None
    assert plan.languages == ("en", "de")


def test_plan_reports_gladia_only_options() -> None:
    """Diarization, PII redaction, sentiment, summaries and code switching are listed."""
    plan = plan_for({
        "diarization": True, "pii_redaction": True, "sentiment_analysis": True,
        "summarization": True, "subtitles": True, "sentences": False,
        "language_config": {"languages": [], "code_switching": True},
    })
    assert plan.unavailable == (
        "diarization", "summarization", "pii_redaction", "sentiment_analysis",
        "language_config.code_switching",
    )


def test_plan_translates_to_english_only() -> None:
    """English targets become Whisper's translate task; other targets are reported."""
    plan = plan_for({"translation": True,
                     "translation_config": {"target_languages": ["fr", "en", "de"]}})
    assert plan.translate_to_english
    assert plan.unavailable == ("translation to fr, de",)
    off = plan_for({"translation": False, "translation_config": {"target_languages": ["en"]}})
    assert not off.translate_to_english and off.unavailable == ()


def test_build_job_shapes_a_reply_like_a_gladia_job() -> None:
    """A worker reply becomes a done job whose utterances, words and blocks match Gladia's."""
    word = {"word": " Hi", "start": 0.5, "end": 0.8, "confidence": 0.9}
    ignored = "language_config.languages xx (not a Whisper language; detected instead)"
    reply: dict[str, Any] = {
        "language": "en", "duration": 2.0, "channels": 2,
        "segments": [
            {"start": 0.5, "end": 0.8, "text": " Hi ", "confidence": 0.9, "words": [word]},
            {"start": 1.0, "end": 1.0, "text": " ", "confidence": 0.1, "words": []},
        ],
        "translation": {"segments": [], "seconds": 0.25},
        "ignored": [ignored],
    }
    plan = DecodePlan(language=None, languages=("xx",), translate_to_english=True,
                      unavailable=("diarization",))
    job = build_job(options={"diarization": True, "custom_metadata": {"wf_key": "k"}},
                    filename="a.wav", reply=reply, plan=plan, created_at="c", completed_at="d",
                    transcription_time=1.23456)
    transcription = job["result"]["transcription"]
    assert transcription["utterances"] == [{
        "start": 0.5, "end": 0.8, "confidence": 0.9, "channel": 0, "words": [word],
        "text": "Hi", "language": "en",
    }]
    assert transcription["full_transcript"] == "Hi"
    assert job["file"]["number_of_channels"] == 2
    assert job["result"]["metadata"] == {"audio_duration": 2.0, "number_of_distinct_channels": 1,
                                         "billing_time": 0, "transcription_time": 1.235}
    assert job["result"]["translation"]["is_empty"] is True
    assert job["request_params"] == {"diarization": True}
    assert job["custom_metadata"] == {"wf_key": "k"}
    assert job["watcherd"]["unavailable_options"] == ["diarization", ignored]
