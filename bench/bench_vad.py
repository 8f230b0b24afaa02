"""The local engine on silence, music and speech, with the VAD filter on and off.

Usage: python bench/bench_vad.py [--seconds 60] [--cache DIR]

Files (16 kHz mono WAV, made here): digital silence; a quiet room (a faint 50 Hz hum and
noise at -50 dBFS); synthetic music (a chord progression of harmonic tones with a bass line
and noise-burst drums, no voice); and espeak-ng speech padded with 20 s of the quiet room on
each side. Each goes through watcherd's TranscriberPool (one worker, Whisper base int8, beam
5) with ``[local] vad = false`` (what watcherd did before) and ``true`` (the default now).
Printed: the words each transcript holds (none is right for silence and music), the word
error rate on the speech, and the wall time. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
import wave
from pathlib import Path

import common  # noqa: F401  (puts the checkout on sys.path for tests.speech)
import numpy as np

from tests.speech import ENGLISH_TEXT, speak, word_error_rate, words
from watcherd.engines.local.decoding import Tuning
from watcherd.engines.local.model import ensure_model, local_engine_installed
from watcherd.engines.local.runner import TranscriberPool

RATE = 16_000


def write(path: Path, samples: np.ndarray) -> Path:
    """Float samples in [-1, 1] as a 16-bit WAV."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(RATE)
        writer.writeframes(pcm.tobytes())
    return path


def room(seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return 0.003 * np.sin(2 * math.pi * 50 * t) + 0.003 * rng.standard_normal(t.size)


def music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Two bars a second apart of I-V-vi-IV chords, a bass, and drums; no voice."""
    out = np.zeros(int(seconds * RATE))
    chords = [(261.6, 329.6, 392.0), (196.0, 246.9, 392.0), (220.0, 261.6, 329.6),
              (174.6, 220.0, 349.2)]
    beat = RATE // 2
    for index, start in enumerate(range(0, out.size - 2 * beat, 2 * beat)):
        t = np.arange(2 * beat) / RATE
        envelope = np.exp(-1.5 * t)
        chord = chords[(index // 2) % len(chords)]
        note = sum(sum(np.sin(2 * math.pi * f * h * t) / h for h in (1, 2, 3, 4))
                   for f in chord) / 8
        bass = np.sin(2 * math.pi * chord[0] / 2 * t)
        out[start:start + 2 * beat] += 0.35 * envelope * note + 0.25 * bass * envelope
        for hit in (0, beat):
            burst = rng.standard_normal(beat // 8) * np.exp(-np.arange(beat // 8) / 200)
            out[start + hit:start + hit + burst.size] += 0.3 * burst
    return out / max(1.0, float(np.abs(out).max()))


def corpus(folder: Path, seconds: float) -> dict[str, Path]:
    rng = np.random.default_rng(22)
    spoken = speak(ENGLISH_TEXT, folder / "espeak.wav", words_per_minute=150)
    with wave.open(str(spoken), "rb") as reader:
        rate = reader.getframerate()
        voice = np.frombuffer(reader.readframes(reader.getnframes()), "<i2") / 32768.0
    voice = np.interp(np.arange(0, voice.size, rate / RATE), np.arange(voice.size), voice)
    return {
        "digital silence": write(folder / "zeros.wav", np.zeros(int(seconds * RATE))),
        "quiet room": write(folder / "room.wav", room(seconds, rng)),
        "music": write(folder / "music.wav", music(seconds, rng)),
        "speech in a quiet room": write(folder / "speech.wav", np.concatenate(
            [room(20, rng), voice + room(voice.size / RATE, rng), room(20, rng)])),
    }


async def transcribe(model: Path, files: dict[str, Path], vad: bool
                     ) -> dict[str, tuple[str, float]]:
    engine = TranscriberPool(model, workers=1, beam_size=5, tuning=Tuning(vad=vad))
    out = {}
    try:
        await engine.start()
        for name, path in files.items():
            started = time.monotonic()
            job = await engine.transcribe(path, {})
            out[name] = (job["result"]["transcription"]["full_transcript"],
                         time.monotonic() - started)
    finally:
        await engine.close()
    return out


def main() -> None:
    """Make the files, transcribe each with the VAD off then on, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    if not local_engine_installed():
        sys.exit("the local engine is not installed: pip install 'watcherd[local]'")
    model = ensure_model(args.cache)
    with tempfile.TemporaryDirectory(prefix="wd-bench-vad-") as tmp:
        files = corpus(Path(tmp), args.seconds)
        results = {vad: asyncio.run(transcribe(model, files, vad)) for vad in (False, True)}
    print("| file | VAD | words | WER | wall s | transcript (start) |")
    print("|---|---|---|---|---|---|")
    for name in files:
        for vad in (False, True):
            text, seconds = results[vad][name]
            wer = (f"{word_error_rate(ENGLISH_TEXT, text):.1%}" if name.startswith("speech")
                   else "-")
            shown = text[:70].replace("|", "/") + ("..." if len(text) > 70 else "")
            print(f"| {name} | {'on' if vad else 'off'} | {len(words(text))} | {wer} | "
                  f"{seconds:.2f} | {shown or '(empty)'} |")


if __name__ == "__main__":
    main()
