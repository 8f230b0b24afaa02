"""Benchmark the local engine against plain faster-whisper on the same files, in one run.

Usage: python bench/bench_local.py [--long-seconds 400] [--shorts 8] [--repeat 1]
       [--batch-size 8] [--no-cli] [--no-batched] [--cache DIR]

It speaks known English text with espeak-ng: one long recording (the paragraphs below, read
in turn until it lasts --long-seconds) and --shorts short ones (one paragraph each, 15-30 s).
Every scenario uses the same model folder and the same settings: int8 on the CPU, beam 5,
the VAD filter as --vad says (on: watcherd's default), workers at niceness --nice,
word timestamps, the language detected. Each scenario is measured for

- plain: ``WhisperModel(path).transcribe()`` in a process pool of W processes with T threads
  each (W=1 is the sequential baseline), the segments consumed as text;
- engine: watcherd's :class:`TranscriberPool` with the same W workers and T threads (what
  ``[local] workers`` / ``cpu_threads`` give), including its IPC and job building;
- cli: the real ``watcherd transcribe`` subprocess with ``[engine] name = "local"``, cold
  (interpreter, journal, model load, hashing and outputs included), against the plain pool's
  cold time (interpreter, import and model load included).

Printed per scenario: wall time of the transcriptions, real-time factor (audio seconds per
wall second), overhead against plain, CPU utilisation (CPU seconds of every process involved
/ (wall x cores)) and the word error rate against the spoken text. With --repeat R the
scenarios run R times interleaved and the fastest run of each is kept (the machine is
shared; the minimum is the least disturbed). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from watcherd.engines.local.decoding import Tuning
from watcherd.engines.local.model import ensure_model, local_engine_installed
from watcherd.engines.local.runner import (
    BATCH_SECONDS,
    BATCH_SIZE,
    TranscriberPool,
    auto_layout,
    lower_priority,
)

# Distinct paragraphs, so no file is a loop of one sentence (Whisper treats repeats oddly).
PARAGRAPHS = (
    "The quick brown fox jumps over the lazy dog. Please send the quarterly report to the "
    "finance team before Friday. We will meet again next week to review the results, and "
    "every department should bring its own figures for the last three months.",
    "Every morning the market opens with fresh bread, apples and warm coffee. The baker "
    "arrives before sunrise, and by seven o'clock there is already a long line of people "
    "waiting in the cold street for the first loaves of the day.",
    "The train to the north leaves from platform nine at half past eight. Passengers are "
    "asked to keep their tickets ready and to stand behind the yellow line until the doors "
    "open. The journey takes about four hours with two short stops.",
    "Our new office is on the third floor of the old library building. There is a small "
    "kitchen near the stairs, a meeting room with a large window, and enough desks for "
    "twelve people. Parking is available behind the building after six.",
    "The weather tomorrow will be cloudy in the morning with a chance of light rain in the "
    "afternoon. Temperatures will reach fifteen degrees near the coast and a little less in "
    "the hills. The weekend should be dry and sunny.",
    "To reset your password, open the settings page and choose the security tab. Enter your "
    "old password once and the new one twice, then press save. You will receive an email "
    "to confirm the change within a few minutes.",
    "The museum has moved its collection of old maps to the east wing. Visitors can see "
    "charts of the river from three hundred years ago, drawings of the first bridges, and "
    "a model of the harbour as it looked before the great fire.",
    "Thank you all for coming to the annual meeting. This year we planted two thousand "
    "trees, opened a second garden by the school, and trained forty new volunteers. Next "
    "year we hope to double the number of community events.",
)
PAUSE_SECONDS = 0.6


# -- speech -----------------------------------------------------------------------------


def speak(text: str, path: Path) -> Path:
    """Write ``text`` spoken by espeak-ng (US English, 150 words a minute) to ``path``."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        sys.exit("espeak-ng is needed to make speech: apt-get install espeak-ng")
    subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(path), text],
                   check=True, capture_output=True, timeout=120)
    return path


def concatenate(parts: Sequence[Path], target: Path, pause: float) -> Path:
    """Write the WAV files ``parts`` one after the other, ``pause`` seconds of silence apart."""
    with wave.open(str(parts[0]), "rb") as first:
        params = first.getparams()
    silence = b"\0" * (int(params.framerate * pause) * params.sampwidth * params.nchannels)
    with wave.open(str(target), "wb") as writer:
        writer.setparams(params)
        for part in parts:
            with wave.open(str(part), "rb") as reader:
                writer.writeframes(reader.readframes(reader.getnframes()))
            writer.writeframes(silence)
    return target


def wav_seconds(path: Path) -> float:
    """The length of a WAV file in seconds."""
    with wave.open(str(path), "rb") as reader:
        return reader.getnframes() / reader.getframerate()


@dataclass(frozen=True)
class Corpus:
    """The recordings and what was said in each."""

    long: Path
    long_text: str
    shorts: tuple[Path, ...]
    short_texts: tuple[str, ...]


def make_corpus(folder: Path, long_seconds: float, shorts: int) -> Corpus:
    """Speak every paragraph once, then build the short files and the long one from them."""
    spoken = [speak(text, folder / f"p{i}.wav") for i, text in enumerate(PARAGRAPHS)]
    count = len(spoken)
    # Every other short file holds two paragraphs: about 15 s and 30 s, alternating.
    picks = [[i % count] if i % 2 == 0 else [i % count, (i + 1) % count] for i in range(shorts)]
    short_files = [concatenate([spoken[j] for j in pick], folder / f"short{i}.wav",
                               PAUSE_SECONDS) for i, pick in enumerate(picks)]
    cycle = sum(wav_seconds(p) + PAUSE_SECONDS for p in spoken)
    rounds = max(1, math.ceil(long_seconds / cycle))
    long = concatenate(spoken * rounds, folder / "long.wav", PAUSE_SECONDS)
    return Corpus(
        long=long, long_text=" ".join(PARAGRAPHS * rounds), shorts=tuple(short_files),
        short_texts=tuple(" ".join(PARAGRAPHS[j] for j in pick) for pick in picks),
    )


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance per reference word, ignoring case and punctuation."""
    ref = re.findall(r"[a-z0-9]+", re.sub("['\u2019]", "", reference.lower()))
    hyp = re.findall(r"[a-z0-9]+", re.sub("['\u2019]", "", hypothesis.lower()))
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i]
        for j, h in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / max(1, len(ref))


# -- CPU accounting ---------------------------------------------------------------------


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of a live process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident set size of a live process (Linux /proc), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


# -- plain faster-whisper ---------------------------------------------------------------


_PLAIN: dict[str, Any] = {}


def _plain_init(model_path: str, threads: int, batched: bool, vad: bool = True,
                nice: int = 0) -> None:
    """Pool initializer: load the model once per process, as any faster-whisper user would
    (at the same niceness as watcherd's workers, before any thread starts)."""
    lower_priority(nice)
    _PLAIN["vad"] = vad
    faster_whisper = importlib.import_module("faster_whisper")
    model = faster_whisper.WhisperModel(model_path, device="cpu", compute_type="int8",
                                        cpu_threads=threads)
    _PLAIN["model"] = faster_whisper.BatchedInferencePipeline(model) if batched else model


def _plain_transcribe(path: str, batch_size: int) -> dict[str, Any]:
    """Transcribe one file with plain faster-whisper; the text and where the time went."""
    model = _PLAIN["model"]
    started, cpu = time.monotonic(), time.process_time()
    extra = {"batch_size": batch_size} if batch_size else {}
    segments, info = model.transcribe(path, beam_size=5, word_timestamps=True,
                                      vad_filter=_PLAIN["vad"], **extra)
    text = " ".join(s.text.strip() for s in segments)
    return {"text": text, "audio": info.duration, "start": started, "end": time.monotonic(),
            "cpu": time.process_time() - cpu}


@dataclass
class Run:
    """One scenario's figures."""

    wall: float
    audio: float
    cpu: float
    texts: list[str]
    cold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_plain(model: Path, files: Sequence[Path], workers: int, threads: int,
              batch_size: int = 0, tuning: Tuning | None = None) -> Run:
    """Plain faster-whisper over ``files`` in ``workers`` processes of ``threads`` threads."""
    created = time.monotonic()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_plain_init,
                             initargs=(str(model), threads, batch_size > 0,
                                       (tuning or Tuning()).vad,
                                       (tuning or Tuning()).nice)) as pool:
        results = list(pool.map(_plain_transcribe, [str(f) for f in files],
                                [batch_size] * len(files)))
    done = time.monotonic()
    first, last = min(r["start"] for r in results), max(r["end"] for r in results)
    return Run(wall=last - first, audio=sum(r["audio"] for r in results),
               cpu=sum(r["cpu"] for r in results), texts=[r["text"] for r in results],
               cold=done - created)


# -- watcherd ---------------------------------------------------------------------------


async def _engine(model: Path, files: Sequence[Path], workers: int, threads: int,
                  batched: bool | None, tuning: Tuning | None = None) -> Run:
    created = time.monotonic()
    # None keeps the engine's own rule; True batches every file; False never batches.
    batch_seconds = BATCH_SECONDS if batched is None else (0.0 if batched else None)
    engine = TranscriberPool(model, workers=workers, cpu_threads=threads, beam_size=5,
                             batch_seconds=batch_seconds, tuning=tuning)
    try:
        await engine.start()
        pids = engine.worker_pids()
        before = sum(cpu_seconds(p) for p in pids) + time.process_time()
        started = time.monotonic()
        jobs = await asyncio.gather(*(engine.transcribe(f, {}) for f in files))
        wall = time.monotonic() - started
        cpu = sum(cpu_seconds(p) for p in pids) + time.process_time() - before
        peaks = [p for p in (peak_rss_mb(pid) for pid in pids) if p is not None]
    finally:
        await engine.close()
    return Run(
        wall=wall, audio=sum(float(j["file"]["audio_duration"]) for j in jobs), cpu=cpu,
        texts=[j["result"]["transcription"]["full_transcript"] for j in jobs],
        cold=wall + (started - created),
        extra={"load": engine.load_seconds, "rss": max(peaks) if peaks else None},
    )


def run_engine(model: Path, files: Sequence[Path], workers: int, threads: int,
               batched: bool | None = None, tuning: Tuning | None = None) -> Run:
    """watcherd's TranscriberPool over ``files`` with ``workers`` x ``threads`` (0: automatic)."""
    return asyncio.run(_engine(model, files, workers, threads, batched, tuning))


def run_cli(files: Sequence[Path], workers: int, threads: int, cache: Path | None,
            folder: Path, tuning: Tuning | None = None) -> Run:
    """The real ``watcherd transcribe`` subprocess on copies of ``files``; cold wall time."""
    inbox = folder / f"cli-{time.monotonic_ns()}"
    inbox.mkdir()
    copies = [Path(shutil.copy(f, inbox / f.name)) for f in files]
    config = inbox / "config.toml"
    layout = {key: str(value) if value else '"auto"'
              for key, value in (("workers", workers), ("cpu_threads", threads))}
    config.write_text(
        f'[engine]\nname = "local"\n[local]\nworkers = {layout["workers"]}\n'
        f'cpu_threads = {layout["cpu_threads"]}\n'
        f"vad = {str((tuning or Tuning()).vad).lower()}\nnice = {(tuning or Tuning()).nice}\n"
        f'[journal]\npath = "{inbox / "journal.db"}"\n[log]\nformat = "json"\n'
    )
    env = dict(os.environ, GLADIA_API_KEY="")
    env.pop("GLADIA_API_KEY")
    if cache is not None:
        env["XDG_CACHE_HOME"] = str(cache)
    started = time.monotonic()
    before = os.times()
    done = subprocess.run(
        [sys.executable, "-m", "watcherd", "transcribe", *map(str, copies),
         "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=7200, check=False,
    )
    wall = time.monotonic() - started
    after = os.times()
    if done.returncode != 0:
        sys.exit(f"watcherd transcribe failed ({done.returncode}): {done.stderr[-2000:]}")
    texts = []
    for copy in copies:
        job = json.loads(copy.with_suffix(".json").read_text())
        texts.append(job["result"]["transcription"]["full_transcript"])
    cpu = (after.children_user - before.children_user
           + after.children_system - before.children_system)
    return Run(wall=wall, audio=sum(wav_seconds(f) for f in files), cpu=cpu, texts=texts,
               cold=wall)


# -- the table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One line of the table: what runs, on which files, with which layout."""

    name: str
    kind: str  # plain | engine | cli
    files: str  # long | shorts
    workers: int
    threads: int
    batch: int = 0  # plain: batch size of BatchedInferencePipeline (0: not batched)
    batched: bool | None = None  # engine: None its own rule, else always / never batched
    baseline: str | None = None  # the plain scenario this one is compared with


def scenarios(n: int, batch_size: int, cli: bool, batched: bool) -> list[Scenario]:
    """The comparisons: the long file and the short files, plain then watcherd, same layout."""
    workers, threads = auto_layout(n)
    auto = f"{workers} x {threads}"

    def plain(files: str, w: int, t: int, batch: int = 0) -> Scenario:
        label = f"batched {batch}, " if batch else f"{w} proc x "
        where = "long" if files == "long" else "shorts"
        return Scenario(f"{files:<5} plain  {label}{t} thr", "plain", where, w, t, batch=batch)

    out: list[Scenario] = []

    def add(scenario: Scenario) -> str:
        if scenario.name not in {s.name for s in out}:
            out.append(scenario)
        return scenario.name

    # One long file: a process pool of one, with all the threads or with the auto threads.
    long_all = add(plain("long", 1, n))
    long_auto = add(plain("long", 1, threads))
    add(Scenario(f"long  engine 1 worker x {n} thr", "engine", "long", 1, n, batched=False,
                 baseline=long_all))
    add(Scenario(f"long  engine auto ({auto})", "engine", "long", 0, 0, baseline=long_auto))
    if batched:
        long_batched = add(replace(plain("long", 1, threads, batch_size), baseline=long_auto))
        add(Scenario(f"long  engine batched {batch_size}, {threads} thr", "engine", "long", 1,
                     threads, batched=True, baseline=long_batched))
    # Several short files: one process with all the threads, one process per core, the auto.
    short_all = add(plain("short", 1, n))
    short_auto = add(plain("short", workers, threads))
    add(plain("short", n, 1))
    add(Scenario(f"short engine 1 worker x {n} thr", "engine", "shorts", 1, n,
                 batched=False, baseline=short_all))
    add(Scenario(f"short engine auto ({auto})", "engine", "shorts", 0, 0,
                 baseline=short_auto))
    if cli:
        # The same pipeline as the engine's own choice for this file: batched when it is.
        add(Scenario(f"long  cli auto ({auto}, cold)", "cli", "long", 0, 0,
                     baseline=long_batched if batched else long_auto))
        add(Scenario(f"short cli auto ({auto}, cold)", "cli", "shorts", 0, 0,
                     baseline=short_auto))
    return out


def measure(scenario: Scenario, model: Path, corpus: Corpus, args: argparse.Namespace,
            folder: Path) -> Run:
    """Run one scenario once."""
    files = [corpus.long] if scenario.files == "long" else list(corpus.shorts)
    tuning = Tuning(vad=args.vad == "on", nice=args.nice)
    if scenario.kind == "plain":
        return run_plain(model, files, scenario.workers, scenario.threads, scenario.batch,
                         tuning)
    if scenario.kind == "engine":
        return run_engine(model, files, scenario.workers, scenario.threads,
                          scenario.batched, tuning)
    return run_cli(files, scenario.workers, scenario.threads, args.cache, folder, tuning)


def main() -> None:
    """Make the speech, run every scenario (interleaved, --repeat times), print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--long-seconds", type=float, default=400.0)
    parser.add_argument("--shorts", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--no-cli", action="store_true")
    parser.add_argument("--no-batched", action="store_true")
    parser.add_argument("--only", default="", help="run only scenarios whose name has this")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--vad", choices=("on", "off"), default="on",
                        help="faster-whisper's VAD filter, on both sides (watcherd's default: on)")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness of every worker, on both sides (watcherd's default 10; 0 "
                        "here so that neither side yields to other programs)")
    args = parser.parse_args()
    if args.vad == "off" and not args.no_batched:
        # The batched pipeline cuts the audio where the VAD finds pauses: it needs it.
        args.no_batched = True
    if not local_engine_installed():
        sys.exit("the local engine is not installed: pip install 'watcherd[local]'")
    n = cores()
    model = ensure_model(args.cache)
    chosen = [s for s in scenarios(n, args.batch_size, not args.no_cli, not args.no_batched)
              if args.only in s.name]
    print(f"cores {n} (sched_getaffinity), load average {os.getloadavg()[0]:.2f}, "
          f"auto layout (workers, threads) {auto_layout(n)}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        corpus = make_corpus(folder, args.long_seconds, args.shorts)
        print(f"long file {wav_seconds(corpus.long):.0f} s; {len(corpus.shorts)} short files "
              f"{min(map(wav_seconds, corpus.shorts)):.0f}-"
              f"{max(map(wav_seconds, corpus.shorts)):.0f} s "
              f"({sum(map(wav_seconds, corpus.shorts)):.0f} s in all)")
        best: dict[str, Run] = {}
        for attempt in range(args.repeat):
            for scenario in chosen:
                run = measure(scenario, model, corpus, args, folder)
                print(f"  [{attempt + 1}] {scenario.name:<30} {run.wall:7.2f} s "
                      f"(cold {run.cold or 0:.2f} s)", flush=True)
                if scenario.name not in best or run.wall < best[scenario.name].wall:
                    best[scenario.name] = run
    print()
    print("| scenario | wall s | RTF (audio s / wall s) | overhead vs plain | cold wall s | "
          "cold overhead | CPU util | WER |")
    print("|---|---|---|---|---|---|---|---|")
    for scenario in chosen:
        run = best[scenario.name]
        reference = ([corpus.long_text] if scenario.files == "long"
                     else list(corpus.short_texts))
        wer = word_error_rate(" ".join(reference), " ".join(run.texts))
        base = best.get(scenario.baseline or "")
        overhead = cold_overhead = "-"
        if base is not None and scenario.kind != "cli":
            overhead = f"{(run.wall / base.wall - 1) * 100:+.1f}%"
        if base is not None and base.cold and run.cold:
            cold_overhead = f"{(run.cold / base.cold - 1) * 100:+.1f}%"
        wall = "-" if scenario.kind == "cli" else f"{run.wall:.2f}"
        rtf = run.audio / (run.cold if scenario.kind == "cli" and run.cold else run.wall)
        util = run.cpu / ((run.cold if scenario.kind == "cli" and run.cold else run.wall) * n)
        print(f"| {scenario.name} | {wall} | {rtf:.2f} | {overhead} | {run.cold or 0:.2f} | "
              f"{cold_overhead} | {util:.0%} | {wer:.1%} |")
        if run.extra.get("rss"):
            print(f"|   (model load {run.extra['load']:.2f} s in the worker, peak RSS "
                  f"{run.extra['rss']:.0f} MB per worker) | | | | | | | |")


if __name__ == "__main__":
    main()
