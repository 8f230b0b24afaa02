"""Benchmark the local engine: speed (audio seconds per wall second), model load time, peak RSS.

Usage: python bench/bench_local.py [FILE ...] [--seconds 60] [--workers 1] [--cpu-threads 0]
       [--beam-size 5] [--cache DIR]
Without FILE it speaks a known English text with espeak-ng (repeated to about --seconds) and
also prints the word error rate. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

from watcherd.engines.local.model import ensure_model, local_engine_installed
from watcherd.engines.local.runner import LocalEngine

TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Please send the quarterly report to the finance team before Friday. "
    "We will meet again next week to review the results. "
    "Every morning the market opens with fresh bread, apples and warm coffee. "
)


def make_speech(folder: Path, seconds: float) -> tuple[Path, str]:
    """Speak TEXT with espeak-ng, repeated until the recording lasts about ``seconds``."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        sys.exit("espeak-ng is needed to make speech (apt-get install espeak-ng), or pass FILEs")
    once = folder / "once.wav"
    subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(once), TEXT],
                   check=True, capture_output=True, timeout=60)
    with wave.open(str(once), "rb") as reader:
        params = reader.getparams()
        frames = reader.readframes(reader.getnframes())
        one = reader.getnframes() / reader.getframerate()
    times = max(1, round(seconds / one))
    target = folder / "speech.wav"
    with wave.open(str(target), "wb") as writer:
        writer.setparams(params)
        for _ in range(times):
            writer.writeframes(frames)
    return target, TEXT * times


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance per reference word, ignoring case and punctuation."""
    ref = re.findall(r"[a-z0-9]+", reference.lower().replace("'", ""))
    hyp = re.findall(r"[a-z0-9]+", hypothesis.lower().replace("'", ""))
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i]
        for j, h in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / max(1, len(ref))


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident set size of a live process (Linux /proc), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def run(files: list[Path], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Load the engine once, transcribe each file, and collect the figures."""
    started = time.monotonic()
    model = ensure_model(args.cache)
    print(f"model folder      {model} (ready in {time.monotonic() - started:.2f} s)")
    engine = LocalEngine(model, workers=args.workers, cpu_threads=args.cpu_threads,
                         beam_size=args.beam_size)
    started = time.monotonic()
    await engine.start()
    print(f"model load        {engine.load_seconds or 0:.2f} s in the worker, "
          f"{time.monotonic() - started:.2f} s including process start")
    rows = []
    try:
        for path in files:
            started = time.monotonic()
            job = await engine.transcribe(path, {})
            wall = time.monotonic() - started
            audio = float(job["file"]["audio_duration"])
            rows.append({"path": path, "job": job, "wall": wall, "audio": audio})
            print(f"{path.name:<17} {audio:.1f} s of audio in {wall:.2f} s: "
                  f"{audio / wall:.1f}x real time")
        peaks = [peak_rss_mb(pid) for pid in engine.worker_pids()]
        known = [p for p in peaks if p is not None]
        if known:
            print(f"peak RSS          {max(known):.0f} MB per worker (VmHWM)")
    finally:
        await engine.close()
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    print(f"peak RSS (rusage) {children / scale:.0f} MB, largest finished child")
    return rows


def main() -> None:
    """Parse the arguments, make speech if no file was given, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cpu-threads", type=int, default=0)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    if not local_engine_installed():
        sys.exit("the local engine is not installed: pip install 'watcherd[local]'")
    with tempfile.TemporaryDirectory() as tmp:
        reference = None
        files = list(args.files)
        if not files:
            speech, reference = make_speech(Path(tmp), args.seconds)
            files = [speech]
        rows = asyncio.run(run(files, args))
    total_audio = sum(r["audio"] for r in rows)
    total_wall = sum(r["wall"] for r in rows)
    print(f"speed             {total_audio / total_wall:.2f} audio seconds per wall second")
    if reference is not None and rows:
        transcript = rows[0]["job"]["result"]["transcription"]["full_transcript"]
        print(f"word error rate   {word_error_rate(reference, transcript):.1%}")


if __name__ == "__main__":
    main()
