"""The local engine, tuned, in a real daemon with the real bundled Whisper base: the VAD filter,
hotwords and the language pin as the worker passed them to faster-whisper
(``job["watcherd"]["decode"]``), and the workers' niceness read from /proc."""

from __future__ import annotations

import json
import math
import struct
import wave
from pathlib import Path

import pytest

from tests.daemon_harness import wait_until, write_config
from tests.local_daemon import events, running_local
from tests.speech import ENGLISH_TEXT, speak, word_error_rate
from watcherd.engines.local.model import local_engine_installed

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
