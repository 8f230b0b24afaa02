"""watcherd against Gladia's official Python SDK as users script it: same files, same simulator.

Usage: python bench/bench_sdk.py --sdk-python /work/bench-venv/bin/python
       [--files 12] [--concurrency 3] [--job-seconds 5] [--settle 2.0] [--sdk-interval 3.0]
       [--callback]
       (or set WATCHERD_SDK_PYTHON instead of --sdk-python)

Three clients transcribe the same N recordings, one after the other, against one simulator
that runs C jobs at once for T seconds each:
  watcherd      the real daemon, max_concurrent_jobs = C, files dropped into its folder;
  SDK loop      `for f in files: client.transcribe(f)` (gladiaio-sdk's one-call upload, create
                and poll), writing NAME.txt and NAME.json like watcherd does;
  SDK pool      the same call in a thread pool of C workers;
  watcherd+cb   (with --callback) the daemon again, on fresh copies, with its [callback]
                listener on, so the simulator tells it when each job ends.
The SDK polls at a fixed interval (transcribe(..., interval=3.0) by default), watcherd on a
growing schedule (about 1 s, then x1.5 up to 30 s). The SDK must never be installed into
watcherd's own environment: it runs in its own interpreter, as a subprocess of this script.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SDK_REQUIREMENT = "gladiaio-sdk==2.2.1"
INSTALL_HINT = f"""\
the SDK side needs its own Python with {SDK_REQUIREMENT} (never install it into watcherd's venv):
    python3 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install {SDK_REQUIREMENT} httpx
then run:
    python bench/bench_sdk.py --sdk-python /work/bench-venv/bin/python
(or export WATCHERD_SDK_PYTHON=/work/bench-venv/bin/python)"""


# -- the SDK side: runs in the SDK's interpreter, so it imports nothing of watcherd's ----------


def sdk_side(argv: list[str]) -> int:
    """Transcribe the files with gladiaio-sdk as a user's script would; print one JSON line."""
    parser = argparse.ArgumentParser(prog="bench_sdk.py --sdk-side")
    parser.add_argument("--mode", choices=("loop", "pool"), required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--interval", type=float, default=3.0)
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    # Imported by name: the SDK is not installed where mypy checks this file.
    sdk: Any = importlib.import_module("gladiaio_sdk")
    # As users configure it: the key and URL from GLADIA_API_KEY / GLADIA_API_URL.
    client = sdk.GladiaClient().prerecorded()

    def one(path: Path) -> float:
        result = client.transcribe(str(path), interval=args.interval)
        text = result.result.transcription.full_transcript
        path.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
        path.with_suffix(".json").write_text(json.dumps(result.to_dict()), encoding="utf-8")
        return time.monotonic() - started

    done: list[float] = []
    errors: list[str] = []
    started = time.monotonic()
    if args.mode == "loop":
        for path in args.files:
            try:
                done.append(one(path))
            except Exception as exc:  # a user's loop would log and go on; so do we
                errors.append(f"{path.name}: {exc}"[:300])
    else:
        with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
            futures = [pool.submit(one, path) for path in args.files]
            for future in futures:
                try:
                    done.append(future.result())
                except Exception as exc:
                    errors.append(str(exc)[:300])
    makespan = time.monotonic() - started
    print(json.dumps({"makespan": makespan, "per_file": done, "errors": errors}))
    return 0


# -- the benchmark: runs in watcherd's environment ----------------------------------------------


def sdk_python(given: str | None) -> str:
    """The SDK's interpreter, checked; exits with install instructions when it is missing."""
    python = given or os.environ.get("WATCHERD_SDK_PYTHON")
    if not python:
        sys.exit("no SDK interpreter given.\n" + INSTALL_HINT)
    check = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('gladiaio-sdk'))"],
        capture_output=True, text=True, timeout=60, check=False,
    ) if Path(python).exists() else None
    if check is None or check.returncode != 0:
        sys.exit(f"{python} cannot import gladiaio_sdk.\n" + INSTALL_HINT)
    version = check.stdout.strip()
    if version != SDK_REQUIREMENT.split("==")[1]:
        print(f"note: {python} has gladiaio-sdk {version}, the figures were made with "
              f"{SDK_REQUIREMENT}")
    return python


def run_sdk(python: str, sim_url: str, api_key: str, files: list[Path], *, mode: str,
            workers: int, interval: float) -> dict[str, Any]:
    """Run the SDK side in its own interpreter and return its figures."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLADIA_", "WATCHERD_"))}
    env.update({"GLADIA_API_URL": sim_url, "GLADIA_API_KEY": api_key})
    proc = subprocess.run(
        [python, str(Path(__file__).resolve()), "--sdk-side", "--mode", mode,
         "--workers", str(workers), "--interval", str(interval), *map(str, files)],
        capture_output=True, text=True, env=env, timeout=3600, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the SDK side failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    """Run watcherd, the SDK loop and the SDK pool on the same files; print the ratios."""
    if len(sys.argv) > 1 and sys.argv[1] == "--sdk-side":
        sys.exit(sdk_side(sys.argv[2:]))
    import shutil
    import tempfile

    import common

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sdk-python", default=None,
                        help="interpreter with gladiaio-sdk (default: $WATCHERD_SDK_PYTHON)")
    parser.add_argument("--files", type=int, default=12, help="N recordings (default 12)")
    parser.add_argument("--concurrency", type=int, default=3, help="C (default 3)")
    parser.add_argument("--job-seconds", type=float, default=5.0, help="T (default 5)")
    parser.add_argument("--settle", type=float, default=2.0, help="watcherd settle_seconds")
    parser.add_argument("--sdk-interval", type=float, default=3.0,
                        help="the SDK's poll interval (its default is 3.0 s)")
    parser.add_argument("--audio-seconds", type=float, default=None,
                        help="length of each recording (default 2.5 x T: Gladia's samples "
                             "take 40-50%% of the audio's length)")
    parser.add_argument("--callback", action="store_true",
                        help="also run watcherd with its [callback] listener on")
    args = parser.parse_args()
    if args.audio_seconds is None:
        args.audio_seconds = 2.5 * args.job_seconds
    python = sdk_python(args.sdk_python)
    common.stop_on_signals()
    common.print_machine()
    n, c, t = args.files, args.concurrency, args.job_seconds
    print(f"watcherd vs gladiaio-sdk: N={n} files of {args.audio_seconds:g} s, C={c}, T={t:g} s "
          f"per job; watcherd settle {args.settle:g} s; SDK polls every {args.sdk_interval:g} s "
          "(fixed)")
    runs: list[common.BatchRun] = []
    with tempfile.TemporaryDirectory(prefix="wd-bench-") as tmp, common.GladiaSimulator(
        api_key=common.API_KEY, job_seconds=t, concurrency=c
    ) as sim:
        root = Path(tmp)
        recordings = common.make_recordings(root / "recordings", n,
                                            seconds=args.audio_seconds, salt="sdk")
        runs.append(common.run_watcherd_batch(sim, recordings, root / "watcherd",
                                              concurrency=c, settle_seconds=args.settle))
        if args.callback:
            sim.wait_idle(timeout=600)
            # Fresh content: watcherd would rightly adopt the jobs of the first run.
            again = common.make_recordings(root / "recordings-cb", n,
                                           seconds=args.audio_seconds, salt="sdk-callback")
            with_callback = common.run_watcherd_batch(
                sim, again, root / "watcherd-cb", concurrency=c, settle_seconds=args.settle,
                extra_config=common.callback_config(),
            )
            with_callback.name = "watcherd+cb"
        for mode, workers, label in (("loop", 1, "SDK loop"), ("pool", c, f"SDK pool x{c}")):
            sim.wait_idle(timeout=600)
            folder = root / mode
            folder.mkdir()
            copies = [Path(shutil.copyfile(r, folder / r.name)) for r in recordings]
            before = len(sim.requests())
            figures = run_sdk(python, sim.base_url, common.API_KEY, copies, mode=mode,
                              workers=workers, interval=args.sdk_interval)
            requests = sim.requests()[before:]
            runs.append(common.BatchRun(
                name=label, makespan=figures["makespan"], per_file=figures["per_file"],
                gets=sum(1 for r in requests if r.endpoint == "get"), requests=len(requests),
                errors=len(figures["errors"]), notes=figures["errors"][:3],
            ))
    if args.callback:
        runs.insert(1, with_callback)
    ideal = n * t / c
    watcherd = runs[0]
    print(f"ideal makespan {ideal:.1f} s (N*T/C)")
    print(f"{'client':<14} {'makespan':>9} {'efficiency':>10} {'p50 file':>9} {'p95 file':>9} "
          f"{'GET/job':>8} {'vs watcherd':>12}")
    for run in runs:
        ratio = run.makespan / watcherd.makespan
        print(f"{run.name:<14} {run.makespan:>8.1f}s {run.efficiency(n, t, c):>10.2f} "
              f"{common.percentile(run.per_file, 50):>8.1f}s "
              f"{common.percentile(run.per_file, 95):>8.1f}s {run.gets / n:>8.1f} "
              f"{ratio:>11.2f}x")
        if run.errors:
            print(f"  {run.errors} errors: {run.notes}")
    for run in runs[1:]:
        print(f"{run.name} makespan / watcherd makespan = {run.makespan / watcherd.makespan:.2f}")
    if args.callback:
        print("(watcherd+cb: the same daemon with [callback] listen on; Gladia must then reach "
              "the listener through a public URL)")
    common.print_phases(watcherd.phases, t)


if __name__ == "__main__":
    main()
