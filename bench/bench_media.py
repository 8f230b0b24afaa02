"""Videos send only their audio: upload bytes against the source, and a large video end to end.

Usage: python bench/bench_media.py [--minutes 10] [--large-minutes 60] [--large-mb 1536]
       [--skip-large]

It makes meeting-like videos with PyAV (tests/video.py): a 160x120 MJPEG picture repeated at
25 fps, each frame padded so the video runs at the bitrate of a 1080p meeting recording
(3.4 Mb/s by default: 1.5 GB an hour), and a speech track (espeak-ng paragraphs in turn) in
AAC or, for the second case, PCM. For each it prints

- the audio track watcherd writes (``audioonly.plan`` + ``extract``, timed in this process):
  copied (AAC into M4A) or encoded (PCM into Opus 16 kHz mono), its bytes against the
  source's;
- the real daemon against the simulator: the bytes the simulator received, what its
  container held, and the time from the drop to the transcript.

The large video (``--large-mb`` over ``--large-minutes``) is dropped twice: with
``[gladia] upload = "original"`` (what watcherd did before: refused, over 1000 MB) and with the
default ``"audio"`` (transcribed). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

from tests.speech import speak
from tests.video import make_video, wav_samples
from watcherd.engines.gladia import audioonly

FPS = 25
TEXT = (
    "Good morning everyone, thank you for joining the weekly planning meeting. "
    "First, the quarterly report is almost ready and will be sent to the finance team "
    "before Friday. Second, the new office on the third floor opens next month. "
    "Please bring your own figures for the last three months to the review next week."
)


def speech(folder: Path) -> tuple[Any, int]:
    """About 20 s of espeak-ng speech as float32 samples, looped by the video maker."""
    wav = speak(TEXT, folder / "speech.wav")
    return wav_samples(wav)


def video(path: Path, minutes: float, mb: float | None, mbps: float, audio: tuple[Any, int],
          codec: str) -> tuple[Path, float]:
    """Write the video; returns it and the seconds it took to make."""
    seconds = minutes * 60
    bits = mb * 1024 * 1024 * 8 / seconds if mb is not None else mbps * 1e6
    started = time.monotonic()
    # A 160x120 picture of noise is ~11 KB as a JPEG: every frame is padded to the bitrate.
    make_video(path, seconds=seconds, audio=audio[0], audio_rate=audio[1], audio_codec=codec,
               fps=FPS, frame_bytes=int(bits / 8 / FPS), size=(160, 120))
    return path, time.monotonic() - started


def track_figures(path: Path, spool: Path) -> dict[str, Any]:
    """Plan and write the audio track as the daemon would; its size and the time taken."""
    size = path.stat().st_size
    started = time.monotonic()
    plan = audioonly.plan(path, size)
    assert plan is not None
    track = audioonly.extract(path, plan, spool)
    seconds = time.monotonic() - started
    track.close()
    return {"source": size, "track": track.size, "seconds": seconds, "copied": plan.copy,
            "codec": plan.codec, "suffix": plan.suffix}


def daemon_run(root: Path, sources: list[Path], upload: str) -> list[dict[str, Any]]:
    """Drop ``sources`` into a fresh daemon's inbox; each one's outcome and upload."""
    with common.GladiaSimulator(api_key=common.API_KEY, job_seconds=1.0, concurrency=3) as sim:
        work = root / f"run-{upload}-{time.monotonic_ns()}"
        inbox = work / "inbox"
        inbox.mkdir(parents=True)
        config = common.write_config(
            work / "config.toml", api_url=sim.base_url, journal=work / "state" / "journal.db",
            watches=[inbox])
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace("[gladia]\n", f'[gladia]\nupload = "{upload}"\n', 1),
                          encoding="utf-8")
        out: list[dict[str, Any]] = []
        with common.Daemon(config, work) as daemon:
            daemon.wait_ready()
            for source in sources:
                dropped = inbox / source.name
                source.rename(dropped)  # the same file system: the drop is instant
                dropped_at = time.monotonic()
                row = common.wait_until(lambda d=dropped: _final(config, d),  # type: ignore[misc]
                                        timeout=3600, interval=0.2, message=source.name)
                ended = time.monotonic() - dropped_at
                uploads = [u for u in sim.uploads()
                           if Path(str(u["filename"])).stem == dropped.stem]
                out.append({"name": source.name, "state": row["state"], "error": row["error"],
                            "seconds": ended, "uploads": uploads,
                            "spool_left": sorted(p.name for p in (work / "state").iterdir()
                                                 if p.name.startswith(".upload"))})
                dropped.rename(source)  # back, for the next run
            problems = daemon.problems()
        if problems:
            print(f"  daemon problems: {problems[:3]}")
        return out


def _final(config: Path, path: Path) -> dict[str, Any] | None:
    done = subprocess.run(
        [sys.executable, "-m", "watcherd", "status", "--json", "--config", str(config),
         str(path)], capture_output=True, text=True, check=False, cwd=common.REPO)
    if done.returncode != 0:
        return None
    import json

    rows = json.loads(done.stdout)
    row = rows[0] if rows else None
    return row if row and row["state"] in ("done", "failed") else None


def mb(size: float) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def main() -> None:
    """Make the videos, measure the tracks, run the daemon, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--mbps", type=float, default=3.4, help="video bitrate, Mb/s")
    parser.add_argument("--large-minutes", type=float, default=60.0)
    parser.add_argument("--large-mb", type=float, default=1536.0)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    common.stop_on_signals()
    common.print_machine()
    if audioonly.load_av() is None:
        sys.exit("PyAV is not importable: pip install -e '.[media]'")
    with tempfile.TemporaryDirectory(prefix="wd-bench-media-") as tmp:
        root = Path(tmp)
        audio = speech(root)
        made = root / "made"
        made.mkdir()
        print(f"\n## Upload bytes: {args.minutes:g} min videos, {args.mbps:g} Mb/s of video, "
              "one speech track")
        print("| source | made in | source bytes | track | written in | track bytes | "
              "track / source | simulator got | its streams | drop -> transcript |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        cases = [("meeting-aac.mp4", "aac"), ("meeting-pcm.mkv", "pcm_s16le")]
        for name, codec in cases:
            path, made_in = video(made / name, args.minutes, None, args.mbps, audio, codec)
            figures = track_figures(path, root / "spool")
            [run] = daemon_run(root, [path], "audio")
            [upload] = run["uploads"] or [{}]
            how = f"{'copied' if figures['copied'] else 'Opus'} ({figures['codec']})"
            print(f"| {name} | {made_in:.1f} s | {mb(figures['source'])} | {how} | "
                  f"{figures['seconds']:.2f} s | {mb(figures['track'])} | "
                  f"{figures['track'] / figures['source']:.2%} | "
                  f"{mb(float(upload.get('size', 0)))} | {upload.get('streams')} | "
                  f"{run['seconds']:.1f} s ({run['state']}) |", flush=True)
            path.unlink()
        if args.skip_large:
            return
        print(f"\n## A large video: {args.large_mb:g} MB, {args.large_minutes:g} min, AAC speech")
        path, made_in = video(made / "all-hands.mp4", args.large_minutes, args.large_mb, 0,
                              audio, "aac")
        size = path.stat().st_size
        sha = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(8 << 20):
                sha.update(chunk)
        print(f"made in {made_in:.1f} s: {mb(size)} ({size} bytes)")
        figures = track_figures(path, root / "spool")
        print(f"track written in {figures['seconds']:.2f} s: {mb(figures['track'])} "
              f"({figures['track'] / size:.2%} of the source)")
        print("| upload | state | reason | simulator got | drop -> end | temp files left |")
        print("|---|---|---|---|---|---|")
        for upload_mode in ("original", "audio"):
            [run] = daemon_run(root, [path], upload_mode)
            got = ", ".join(f"{mb(float(u['size']))} {u['streams']}" for u in run["uploads"])
            print(f"| {upload_mode} | {run['state']} | {run['error'] or '-'} | {got or '-'} | "
                  f"{run['seconds']:.1f} s | {run['spool_left'] or 'none'} |", flush=True)
        shutil.rmtree(made, ignore_errors=True)


if __name__ == "__main__":
    main()
