"""The local engine, tuned: the VAD filter, hotwords, a language pin and the workers' niceness.

The options are checked where they take effect: in the job the worker process built from
what it actually passed to faster-whisper (``job["watcherd"]["decode"]``), and in the
worker's own /proc entry for its niceness; the model is the real bundled Whisper base.
"""

from __future__ import annotations

import json
import math
import re
import struct
import wave
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.daemon_harness import wait_until, write_config
from tests.local_daemon import events, running_local
from tests.speech import ENGLISH_TEXT, speak, word_error_rate
from watcherd.config import parse_config
from watcherd.engines.local.model import local_engine_installed
from watcherd.engines.local.runner import Tuning, plan_for
from watcherd.errors import ConfigError

needs_model = pytest.mark.skipif(not local_engine_installed(),
                                 reason="the local extra is not installed")


def write_silence(path: Path, seconds: float, *, noise: int = 40) -> Path:
    """``seconds`` of near silence (a faint hum, as a room recording has), 16 kHz mono."""
    rate = 16_000
    frames = b"".join(
        struct.pack("<h", int(noise * math.sin(2 * math.pi * 50 * i / rate)))
        for i in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(frames)
    return path


def niceness(pid: int, thread: str | None = None) -> int:
    """The niceness /proc reports for process ``pid`` (or one of its threads)."""
    where = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(where).read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return int(fields[16])  # field 19 of stat(5); fields[0] is field 3 (the state)


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
    ({"nice": -1}, "local.nice: expected an integer >= 0"),
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


# -- the real model, in a real daemon ----------------------------------------------------


@needs_model
def test_local_tuning_reaches_faster_whisper_and_the_workers_run_nice(tmp_path: Path) -> None:
    """A daemon with [local] hotwords, language and nice, on a folder with custom_vocabulary:

    - the worker process runs (every thread of it) at the configured niceness;
    - silence gives an empty transcript (the VAD filter is on by default);
    - speech is transcribed, and the job says what the worker passed to faster-whisper: the
      VAD filter, the language pin and the hotwords ([local] first, then the folder's).
    """
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(
        tmp_path / "config.toml", api_url=None, api_key=None, journal=tmp_path / "journal.db",
        watches=[inbox], settle_seconds=0.1, outputs=("txt", "json"),
        options={"custom_vocabulary": True,
                 "custom_vocabulary_config": {"vocabulary": ["Quillfeather"]}},
        extra=('\n[engine]\nname = "local"\n\n[local]\nworkers = 1\nbeam_size = 2\n'
               'hotwords = ["Gladia"]\nlanguage = "en"\nnice = 7\n'),
    )
    speech = speak(ENGLISH_TEXT, tmp_path / "speech.wav")
    with running_local(tmp_path, config) as daemon:
        [ready] = events(daemon, "local_engine_ready")
        pid = int(ready["pid"])
        threads = [t.name for t in Path(f"/proc/{pid}/task").iterdir()]
        assert len(threads) > 1  # the model's threads exist: they must be nice too
        # Never above the daemon's own priority (a test runner may itself run niced).
        assert daemon.proc is not None
        expected = max(7, niceness(daemon.proc.pid))
        assert {niceness(pid, t) for t in threads} == {expected}

        silent = write_silence(inbox / "silence.wav", 20.0)
        spoken = inbox / "memo.wav"
        spoken.write_bytes(speech.read_bytes())
        for done in (silent, spoken):
            json_out = done.with_suffix(".json")
            wait_until(json_out.exists, timeout=240, message=f"transcript of {done.name}")
    quiet = json.loads(silent.with_suffix(".json").read_text(encoding="utf-8"))
    assert quiet["result"]["transcription"]["utterances"] == []
    assert silent.with_suffix(".txt").read_text(encoding="utf-8").strip() == ""
    job = json.loads(spoken.with_suffix(".json").read_text(encoding="utf-8"))
    decode = job["watcherd"]["decode"]
    assert decode["vad_filter"] is True
    assert decode["language"] == "en"
    assert decode["hotwords"] == "Gladia, Quillfeather"
    assert decode["beam_size"] == 2
    assert "custom_vocabulary" not in job["watcherd"]["unavailable_options"]
    text = job["result"]["transcription"]["full_transcript"]
    assert word_error_rate(ENGLISH_TEXT, text) < 0.25, text


@needs_model
def test_local_vad_off_is_passed_as_off(tmp_path: Path) -> None:
    """``vad = false`` reaches faster-whisper as vad_filter=False (and niceness 0 leaves the
    workers at the daemon's own priority)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = write_config(
        tmp_path / "config.toml", api_url=None, api_key=None, journal=tmp_path / "journal.db",
        watches=[inbox], settle_seconds=0.1, outputs=("json",),
        extra='\n[engine]\nname = "local"\n\n[local]\nworkers = 1\nvad = false\nnice = 0\n',
    )
    with running_local(tmp_path, config) as daemon:
        [ready] = events(daemon, "local_engine_ready")
        assert daemon.proc is not None
        assert niceness(int(ready["pid"])) == niceness(daemon.proc.pid)
        memo = inbox / "memo.wav"
        speak("Hello there.", memo)
        wait_until(lambda: memo.with_suffix(".json").exists(), timeout=240,
                   message="transcript")
    job = json.loads(memo.with_suffix(".json").read_text(encoding="utf-8"))
    assert job["watcherd"]["decode"]["vad_filter"] is False
    assert job["watcherd"]["decode"]["hotwords"] is None
