"""Test helpers for real speech: speak known text with espeak-ng and score transcripts."""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from pathlib import Path

ENGLISH_TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Please send the quarterly report to the finance team before Friday. "
    "We will meet again next week to review the results."
)
FRENCH_TEXT = (
    "Bonjour à tous. Je voudrais un café, s'il vous plaît. "
    "Il fait très beau aujourd'hui, nous allons nous promener dans le parc."
)
ESPEAK_MISSING = (
    "espeak-ng is needed to make test speech: apt-get install -y espeak-ng "
    "(brew install espeak-ng on macOS)"
)


def speak(text: str, path: Path, *, voice: str = "en-us", words_per_minute: int = 150) -> Path:
    """Write ``text`` spoken by espeak-ng to the WAV file ``path``."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError(ESPEAK_MISSING)
    subprocess.run(
        [espeak, "-v", voice, "-s", str(words_per_minute), "-w", str(path), text],
        check=True, timeout=60, capture_output=True,
    )
    return path


def repeat_wav(source: Path, target: Path, times: int) -> Path:
    """Write ``source`` played ``times`` times in a row to ``target`` (a longer recording)."""
    with wave.open(str(source), "rb") as reader:
        params = reader.getparams()
        frames = reader.readframes(reader.getnframes())
    with wave.open(str(target), "wb") as writer:
        writer.setparams(params)
        for _ in range(times):
            writer.writeframes(frames)
    return target


def wav_seconds(path: Path) -> float:
    """The duration of a WAV file in seconds."""
    with wave.open(str(path), "rb") as reader:
        return reader.getnframes() / reader.getframerate()


def words(text: str) -> list[str]:
    """Lowercase words without punctuation: the units the word error rate counts."""
    # Apostrophes join rather than split ("don't" is one word), typographic ones included.
    text = re.sub("['\u2019]", "", text.lower())
    return re.findall(r"[a-z0-9àâçéèêëîïôûùüÿœæ]+", text)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance from ``hypothesis`` to ``reference``, per reference word."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i]
        for j, hyp_word in enumerate(hyp, start=1):
            current.append(min(
                previous[j] + 1,  # a reference word was dropped
                current[j - 1] + 1,  # a word was inserted
                previous[j - 1] + (ref_word != hyp_word),  # kept or substituted
            ))
        previous = current
    return previous[-1] / len(ref)
