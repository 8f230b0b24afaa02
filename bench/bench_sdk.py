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
import contextlib
import importlib
import json
import os
import statistics
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


def _median_run(runs: list[Any]) -> Any:
    """The run with the median makespan (the lower middle one for an even count)."""
    finite = sorted((r for r in runs if r.makespan == r.makespan), key=lambda r: r.makespan)
    if not finite:
        return runs[0]
    return finite[(len(finite) - 1) // 2]


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
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of every client (fresh content each round); medians "
                             "are printed")
    parser.add_argument("--no-loop", action="store_true",
                        help="skip the sequential SDK loop (N*T long; not a contender)")
    parser.add_argument("--loop-once", action="store_true",
                        help="run the SDK loop in the first round only")
    parser.add_argument("--warm", action="store_true",
                        help="also run watcherd on a journal that has learnt 5 job times "
                             "(a daemon that ran before); the plain run starts cold")
    parser.add_argument("--faults", action="store_true",
                        help="also run watcherd under issue 12's fault mix: 15%% 503, 10%% 429 "
                             "(Retry-After: 1), 5%% resets, 10%% lost create responses")
    parser.add_argument("--sdk-faults", action="store_true",
                        help="with --faults: the SDK pool under the same fault mix too")
    parser.add_argument("--list-lag-grace", type=float, default=None,
                        help="what-if for the fault runs: watcherd's grace for Gladia's list "
                             "to show a maybe-created job (production 15 s), through the test "
                             "[retry] list_lag_seconds")
    parser.add_argument("--seed", type=int, default=12, help="the fault draws' seed")
    parser.add_argument("--fault-rounds", type=int, default=None,
                        help="with --faults: only the first K rounds run the fault mix")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this folder and keep it (daemon logs, journals)")
    parser.add_argument("--json", type=Path, default=None,
                        help="append every run's figures to this JSON-lines file")
    args = parser.parse_args()
    if args.audio_seconds is None:
        args.audio_seconds = 2.5 * args.job_seconds
    python = sdk_python(args.sdk_python)
    common.stop_on_signals()
    common.print_machine()
    load = common.machine()["load"]
    n, c, t = args.files, args.concurrency, args.job_seconds
    print(f"watcherd vs gladiaio-sdk: N={n} files of {args.audio_seconds:g} s, C={c}, T={t:g} s "
          f"per job; watcherd settle {args.settle:g} s; SDK polls every {args.sdk_interval:g} s "
          f"(fixed); {args.repeat} round(s)", flush=True)
    results: dict[str, list[common.BatchRun]] = {}
    fault_notes: dict[str, list[common.FaultWait]] = {}
    fault_counts: dict[str, dict[str, int]] = {}
    timeout = 600 + 20 * n * t / c

    def keep(run: common.BatchRun) -> None:
        results.setdefault(run.name, []).append(run)
        done = run.done if run.done >= 0 else n
        print(f"  {run.name:<18} makespan {run.makespan:7.1f} s  done {done}/{n}"
              f"  GET/job {run.gets / n:4.1f}  errors {run.errors}  duplicates {run.duplicates}",
              flush=True)
        polls = None
        if run.started:  # a watcherd run: how soon its jobs were seen, its slots' hand-offs
            polls = common.poll_figures(sim, run.started, c)
            common.print_poll_figures(polls)
        if args.json is not None:
            with args.json.open("a", encoding="utf-8") as out:
                out.write(json.dumps({
                    "client": run.name, "T": t, "N": n, "C": c, "audio": args.audio_seconds,
                    "makespan": run.makespan, "gets": run.gets, "requests": run.requests,
                    "done": run.done, "errors": run.errors, "phases": run.phases,
                    "from_first_upload": run.settled, "read_waits": run.read_waits,
                    "per_file": run.per_file, "load": load, "cpu": run.cpu,
                    "duplicates": run.duplicates,
                    "late": polls.late if polls else None,
                    "handoff": polls.handoff if polls else None,
                    "starved": polls.starved if polls else None,
                }) + "\n")

    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = str(args.keep)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="wd-bench-"))
        sim = stack.enter_context(common.GladiaSimulator(api_key=common.API_KEY, job_seconds=t,
                                                         concurrency=c))
        root = Path(tmp)
        for round_ in range(args.repeat):
            print(f"round {round_ + 1}/{args.repeat}", flush=True)
            here = root / f"r{round_}"

            def fresh(label: str, here: Path = here, round_: int = round_) -> list[Path]:
                # Fresh content per run: watcherd would rightly adopt an earlier run's jobs.
                return common.make_recordings(here / f"rec-{label}", n,
                                              seconds=args.audio_seconds,
                                              salt=f"sdk:{round_}:{label}")

            recordings = fresh("plain")
            sim.wait_idle(timeout=600)
            keep(common.run_watcherd_batch(sim, recordings, here / "watcherd", concurrency=c,
                                           settle_seconds=args.settle))
            if args.warm:
                sim.wait_idle(timeout=600)
                run = common.run_watcherd_batch(
                    sim, fresh("warm"), here / "watcherd-warm", concurrency=c,
                    settle_seconds=args.settle, seed_times=(t, args.audio_seconds))
                run.name = "watcherd warm"
                keep(run)
            if args.callback:
                sim.wait_idle(timeout=600)
                run = common.run_watcherd_batch(
                    sim, fresh("cb"), here / "watcherd-cb", concurrency=c,
                    settle_seconds=args.settle, extra_config=common.callback_config())
                run.name = "watcherd+cb"
                keep(run)
            fault_extra = ("" if args.list_lag_grace is None else
                           common.retry_config(list_lag_seconds=args.list_lag_grace))
            fault_round = args.fault_rounds is None or round_ < args.fault_rounds
            if args.faults and fault_round:
                for label, seed_times in (("faults", None),
                                          ("faults warm", (t, args.audio_seconds))):
                    if seed_times is not None and not args.warm:
                        continue
                    sim.wait_idle(timeout=600)
                    plan = common.RandomFaults(seed=args.seed + round_)
                    sim.faults = plan
                    try:
                        run = common.run_watcherd_batch(
                            sim, fresh(label.replace(" ", "-")), here / f"watcherd-{label}",
                            concurrency=c, settle_seconds=args.settle, timeout=timeout,
                            tolerate_timeout=True, seed_times=seed_times,
                            extra_config=fault_extra)
                    finally:
                        sim.faults = common.FaultPlan()
                    run.name = f"watcherd {label}"
                    fault_notes.setdefault(run.name, []).extend(
                        common.fault_waits(plan.ledger, since=run.started))
                    counts = fault_counts.setdefault(run.name, {})
                    for key, value in plan.counts().items():
                        counts[key] = counts.get(key, 0) + value
                    keep(run)
            modes = [] if args.no_loop or (args.loop_once and round_ > 0) else [
                ("loop", 1, "SDK loop", False)]
            modes.append(("pool", c, f"SDK pool x{c}", False))
            if args.faults and args.sdk_faults and fault_round:
                modes.append(("pool", c, f"SDK pool x{c} faults", True))
            for mode, workers, label, faulty in modes:
                sim.wait_idle(timeout=600)
                folder = here / label.replace(" ", "-")
                folder.mkdir(parents=True)
                copies = [Path(shutil.copyfile(r, folder / r.name)) for r in recordings]
                before = len(sim.requests())
                creates_before = sim.creates_per_content()
                if faulty:
                    sim.faults = common.RandomFaults(seed=args.seed + round_)
                try:
                    figures = run_sdk(python, sim.base_url, common.API_KEY, copies, mode=mode,
                                      workers=workers, interval=args.sdk_interval)
                finally:
                    sim.faults = common.FaultPlan()
                requests = sim.requests()[before:]
                keep(common.BatchRun(
                    name=label, makespan=figures["makespan"], per_file=figures["per_file"],
                    gets=sum(1 for r in requests if r.endpoint == "get"),
                    requests=len(requests), errors=len(figures["errors"]),
                    notes=figures["errors"][:3], done=len(figures["per_file"]),
                    duplicates=common.duplicate_jobs(creates_before, sim.creates_per_content()),
                ))
    ideal = n * t / c
    medians = {name: _median_run(runs) for name, runs in results.items()}
    watcherd = medians["watcherd"]
    print(f"\nideal makespan {ideal:.1f} s (N*T/C); medians over {args.repeat} round(s); "
          f"load average at start {load}")
    print(f"{'client':<22} {'makespan':>9} {'runs':>24} {'efficiency':>10} {'from upload':>11} "
          f"{'p50 file':>9} {'GET/job':>8} {'vs watcherd':>12}")
    for name, run in medians.items():
        every = ", ".join(f"{r.makespan:.1f}" for r in results[name])
        gets = statistics.median(r.gets for r in results[name]) / n
        print(f"{name:<22} {run.makespan:>8.1f}s {every:>24} "
              f"{run.efficiency(n, t, c):>10.2f} {ideal / run.settled:>11.2f} "
              f"{common.percentile(run.per_file, 50):>8.1f}s "
              f"{gets:>8.1f} {run.makespan / watcherd.makespan:>11.2f}x")
        for r in results[name]:
            if r.errors or 0 <= r.done < n:
                print(f"  {r.errors} errors, {r.done if r.done >= 0 else n}/{n} done: {r.notes}")
    for name, runs in results.items():
        planned = [w for r in runs for w in r.read_waits]
        if planned:
            print(f"{name}: the daemon's planned waits after {len(planned)} failed reads "
                  f"(its log's retry_in): max {max(planned):.2f} s, p50 "
                  f"{common.percentile(planned, 50):.2f} s")
    for name, waits in fault_notes.items():
        over = [w for w in waits if w.wait > w.allowed]
        longest = max(waits, key=lambda w: w.wait, default=None)
        print(f"{name}: faults drawn {fault_counts.get(name)}; {len(waits)} failed reads "
              f"asked again, longest wait {longest.wait if longest else float('nan'):.2f} s "
              f"({longest.endpoint if longest else '-'} after {longest.fault if longest else '-'})"
              f", {len(over)} over max(Retry-After, 10 s)")
        by_kind: dict[str, list[float]] = {}
        for w in waits:
            by_kind.setdefault(f"{w.endpoint}/{w.fault}", []).append(w.wait)
        for kind, values in sorted(by_kind.items()):
            print(f"  {kind:<12} n={len(values):<4} p50 {common.percentile(values, 50):5.2f} s "
                  f"p95 {common.percentile(values, 95):5.2f} s max {max(values):5.2f} s")
    common.print_phases(watcherd.phases, t)


if __name__ == "__main__":
    main()
