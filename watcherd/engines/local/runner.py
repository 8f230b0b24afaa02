"""The local engine: Whisper base through faster-whisper, in worker processes, on the CPU.

Each worker is a separate process (multiprocessing "spawn": a fresh interpreter that inherits
no journal lock and no threads) that loads the model once and then transcribes one file at a
time. The daemon's event loop only waits on pipes, so it stays responsive and SIGTERM stays
fast; a worker that dies is reported as a transient error and restarted on the next call.

How many workers and how many threads each is chosen from the CPUs this process may use
(:func:`auto_layout`), so one file gets every core it can use and several files keep every
core busy without more threads than cores.

Results come back in the job shape of ``GET /v2/pre-recorded/{id}`` (docs/gladia-contract.md)
so the same output writers serve both engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from watcherd import media, roots
from watcherd.engines.local import model as local_model
from watcherd.engines.local.decoding import Tuning, build_job, iso_now, plan_for
from watcherd.engines.local.model import ModelError, ModelSpec
from watcherd.errors import SourceError, WatcherdError

log = structlog.get_logger("watcherd.engines.local.runner")

_SAMPLE_RATE = 16_000
# Loading base takes about a second; a busy machine or a cold disk may need far longer.
_READY_TIMEOUT = 300.0
_STOP_GRACE = 1.0
# A worker that takes this long is hung, not slow: base runs several times faster than real
# time on two cores, so three times the recording's length leaves a wide margin.
_MIN_TIME_LIMIT = 900.0
_TIME_LIMIT_FACTOR = 3.0
# Separate processes scale with the cores almost linearly; OpenMP threads inside one process
# do not (base's beam-search steps are small, and a thread descheduled by any other program
# stalls its siblings at every barrier: on a shared 2-core machine 2 threads ran no faster
# than 1). So cores go to workers first, one thread each, up to this many workers; past it
# (memory: ~350 MB per worker) the threads per worker grow, to at most MAX_AUTO_THREADS.
_AUTO_WORKERS = 4
MAX_AUTO_THREADS = 4
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
# Long recordings go through faster-whisper's BatchedInferencePipeline: it cuts the audio at
# pauses (VAD) into pieces of up to 30 s and decodes BATCH_SIZE of them together. On a 6 min
# recording with one thread it took 19-20 s instead of 27 s, with the same words (the
# differences are digits written for numbers, "12" for "twelve"), and cannot loop on its own
# output across pieces. The price is memory (the batch's beams) and no gain under 4 pieces,
# so only recordings of at least BATCH_SIZE x 30 s use it. bench/RESULTS.md has the figures.
BATCH_SIZE = 4
BATCH_SECONDS: float | None = BATCH_SIZE * 30.0



class LocalEngineError(WatcherdError):
    """The local engine could not transcribe a file.

    ``transient`` is true when the same file may succeed on another try (the worker process
    died and is restarted); false when the file itself is the problem (it cannot be decoded).
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


# -- how many processes, how many threads ---------------------------------------------


def available_cpus(cpu_max: Path = _CGROUP_CPU_MAX) -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1  # no affinity call on this platform (macOS)
    try:
        quota, period = cpu_max.read_text(encoding="ascii").split()[:2]
        if quota != "max" and int(period) > 0:
            # A container limited to 1.5 CPUs gets 2 threads: a partial CPU still runs one.
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to honour
    return max(1, cpus)


def auto_layout(cpus: int, *, workers: int = 0, cpu_threads: int = 0) -> tuple[int, int]:
    """(workers, threads per worker) for ``cpus`` CPUs; a 0 argument is chosen, others kept.

    Both chosen: threads = clamp(cpus // 4, 1, 4) and workers = cpus // threads (2 CPUs:
    2 x 1, 4: 4 x 1, 8: 4 x 2, 16: 4 x 4, 32: 8 x 4), so workers x threads never exceeds
    the CPUs (OpenMP threads that outnumber cores spin against each other). One given: the
    other fills the CPUs (at least 1).
    """
    cpus = max(1, cpus)
    if workers > 0 and cpu_threads > 0:
        return workers, cpu_threads
    if workers > 0:
        return workers, max(1, cpus // workers)
    threads = (cpu_threads if cpu_threads > 0
               else min(MAX_AUTO_THREADS, max(1, cpus // _AUTO_WORKERS)))
    return max(1, cpus // threads), threads


# -- the worker process ------------------------------------------------------------------


class _Refused(Exception):
    """The file itself cannot be transcribed (permanent)."""


class _Missing(Exception):
    """The file vanished before the worker could read it."""


def _exit_with_parent() -> None:
    """Exit when the daemon dies, even by SIGKILL, instead of transcribing for nobody."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="watcherd-parent-watch", daemon=True).start()


def _thread_lock_for_tqdm() -> None:
    """Give tqdm (faster-whisper's batched pipeline makes a bar) a thread lock.

    Its default is a multiprocessing lock: a named semaphore registered with the resource
    tracker, which a worker that is killed (stop, a second Ctrl-C, the daemon gone) never
    unregisters, so the tracker warns "leaked semaphore objects" on the user's terminal.
    The worker has one thread that draws nothing: a thread lock is all it needs.
    """
    with contextlib.suppress(ImportError):
        importlib.import_module("tqdm").tqdm.set_lock(threading.RLock())


def _r(value: Any) -> float:
    number = float(value)
    return round(number, 3) if math.isfinite(number) else 0.0


def _segments(segments: Any, report: Callable[[float], None] | None = None,
              duration: float | None = None) -> list[dict[str, Any]]:
    """Plain, picklable segments; iterating is what runs the model.

    ``report`` gets the share of the audio done after each segment (faster-whisper yields
    segments as it goes), for the status page's progress bar.
    """
    out = []
    for segment in segments:
        if report is not None and duration:
            report(min(1.0, max(0.0, float(segment.end) / duration)))
        words: list[dict[str, Any]] = [
            {"word": str(w.word), "start": _r(w.start), "end": max(_r(w.start), _r(w.end)),
             "confidence": _r(w.probability)}
            for w in (segment.words or ())
        ]
        if words:
            confidence = sum(float(w["confidence"]) for w in words) / len(words)
        else:
            confidence = math.exp(min(0.0, float(segment.avg_logprob)))
        out.append({
            "start": _r(segment.start), "end": max(_r(segment.start), _r(segment.end)),
            "text": str(segment.text), "confidence": _r(confidence), "words": words,
        })
    return out


def _open_place(request: Mapping[str, Any]) -> BinaryIO:
    """The source as a file object, opened beneath its watch root without following a link.

    The parent resolved the path (:mod:`watcherd.roots`) and sends its components; this
    process opens them again with ``O_NOFOLLOW`` on every folder, so a folder swapped for a
    link in between is refused, not followed.
    """
    top, *parts = request["place"]
    try:
        fd = roots.Place(str(top), tuple(str(p) for p in parts)).open(os.O_RDONLY)
    except roots.LinkOnPath:
        raise _Missing(roots.SWAPPED) from None
    except FileNotFoundError as exc:
        raise _Missing(str(exc)) from None
    except PermissionError:
        raise _Refused(media.PERMISSION_DENIED) from None
    return os.fdopen(fd, "rb")


def _channels(source: BinaryIO) -> int:
    try:
        av = importlib.import_module("av")
        source.seek(0)
        with av.open(source) as container:
            streams = container.streams.audio
            return int(streams[0].channels) if streams else 1
    except Exception:
        return 1  # only informative; decoding already proved the file is audio


def _audio_streams(source: BinaryIO) -> int | None:
    """How many audio streams the container holds: 0 when it is no container at all (text,
    an image), None when that cannot be told (the decoder then has the last word)."""
    av = importlib.import_module("av")
    try:
        source.seek(0)
        with av.open(source) as container:
            return len(container.streams.audio)
    except av.error.InvalidDataError:
        return 0  # no format FFmpeg knows: not a recording at all
    except Exception:
        return None
    finally:
        with contextlib.suppress(OSError, ValueError):
            source.seek(0)


def _decode(source: BinaryIO) -> Any:
    audio_module = importlib.import_module("faster_whisper.audio")
    try:
        if _audio_streams(source) == 0:
            raise _Refused(media.not_audio("no audio stream found"))
        audio = audio_module.decode_audio(source, sampling_rate=_SAMPLE_RATE)
    except FileNotFoundError as exc:
        raise _Missing(str(exc)) from None
    except PermissionError:
        raise _Refused(media.PERMISSION_DENIED) from None
    except (MemoryError, _Refused):
        raise
    except Exception as exc:
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise _Refused(f"it cannot be decoded as audio ({detail}): the recording is probably "
                       f"damaged; {media.REPLACE_IT}") from None
    if getattr(audio, "size", 0) == 0:
        raise _Refused(f"it holds no audio to transcribe (an empty audio stream); "
                       f"{media.REPLACE_IT}")
    return audio


@dataclass(frozen=True)
class _Settings:
    """What every transcription in a worker shares."""

    beam_size: int
    batch_seconds: float | None
    batch_size: int
    vad: bool = True


def _run(model: Any, request: Mapping[str, Any], settings: _Settings,
         batched: Any = None, report: Callable[[float], None] | None = None) -> dict[str, Any]:
    with _open_place(request) as source:
        audio = _decode(source)
        channels = _channels(source)
    ignored: list[str] = []
    supported = set(model.supported_languages)
    language = request.get("language")
    allowed = [code for code in request.get("languages", ()) if code in supported]
    ignored += [
        f"language_config.languages {code} (not a Whisper language; detected instead)"
        for code in request.get("languages", ()) if code not in supported
    ]
    if language is not None and language not in supported:
        if language not in request.get("languages", ()):
            # [local] language (a folder's own codes were reported just above).
            ignored.append(f"[local] language {language} (not a Whisper language; "
                           "detected instead)")
        language = None
    if language is None and len(allowed) > 1:
        # Whisper cannot be told "one of these": detect, then keep the likeliest allowed one.
        _, _, probabilities = model.detect_language(audio, vad_filter=settings.vad)
        ranked = [code for code, _ in sorted(probabilities, key=lambda p: -p[1])]
        language = next((code for code in ranked if code in allowed), allowed[0])
    elif language is None and len(allowed) == 1:
        language = allowed[0]
    hotwords = ", ".join(request.get("hotwords") or ()) or None
    common: dict[str, Any] = {"beam_size": settings.beam_size, "word_timestamps": True,
                              "vad_filter": settings.vad, "hotwords": hotwords}
    runner = model
    # The batched pipeline cuts the audio where the VAD finds pauses: without it, it cannot.
    if (batched is not None and settings.vad and settings.batch_seconds is not None
            and audio.size >= settings.batch_seconds * _SAMPLE_RATE):
        runner = batched
        common["batch_size"] = settings.batch_size
    segments, info = runner.transcribe(audio, language=language, task="transcribe", **common)
    transcribed = _segments(segments, report, float(info.duration))
    translation = None
    if request.get("translate"):
        started = time.monotonic()
        if info.language == "en":
            translated = transcribed  # already English: a second pass would repeat the first
        else:
            pieces, _ = runner.transcribe(audio, language=info.language, task="translate",
                                          **common)
            translated = _segments(pieces)
        translation = {"segments": translated, "seconds": time.monotonic() - started}
    return {
        "language": str(info.language),
        "language_probability": _r(info.language_probability),
        "duration": _r(info.duration),
        "channels": channels,
        "segments": transcribed,
        "translation": translation,
        "ignored": ignored,
        "batched": runner is batched,
        "decode": {"language": language, **common,
                   "pipeline": "batched" if runner is batched else "sequential"},
    }


def lower_priority(nice: int) -> None:
    """Run this process at niceness ``nice``, never above the priority it already has.

    Called first thing in a worker, before any thread exists: on Linux niceness belongs to
    each thread, and threads (CTranslate2's, onnxruntime's) inherit it when they start.
    """
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        with contextlib.suppress(OSError):  # a sandbox may forbid it: run at normal priority
            os.setpriority(os.PRIO_PROCESS, 0, nice)


def _worker_main(
    conn: multiprocessing.connection.Connection, model_path: str | ModelSpec, cpu_threads: int,
    beam_size: int, batch_seconds: float | None = None, batch_size: int = BATCH_SIZE,
    tuning: Tuning | None = None,
) -> None:
    """The worker process: load the model once, then answer transcribe requests.

    ``model_path``: a model folder, or a :class:`ModelSpec` (the bundled model is read from
    its package files; a device and compute type). ``tuning``: the VAD filter and niceness.
    """
    tuning = tuning or Tuning()
    lower_priority(tuning.nice)
    # Ctrl-C reaches the whole process group; the daemon decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Belt and braces: the model is loaded by path, but no library may ever reach a hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    _exit_with_parent()
    _thread_lock_for_tqdm()
    started = time.monotonic()
    try:
        spec = model_path if isinstance(model_path, ModelSpec) else ModelSpec(
            label=model_path, folder=model_path)
        model = local_model.load_whisper(spec, cpu_threads=cpu_threads)
        faster_whisper = importlib.import_module("faster_whisper")
        batched = (faster_whisper.BatchedInferencePipeline(model)
                   if batch_seconds is not None else None)
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", time.monotonic() - started))
    settings = _Settings(beam_size, batch_seconds, batch_size, vad=tuning.vad)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] != "transcribe":
            return
        def report(fraction: float, last: list[float] = [0.0]) -> None:  # noqa: B006
            # Only forward, in steps of 1%: at most a hundred small messages a file. Not
            # throttled by time: Whisper yields a 30 s window's segments in one burst, and
            # the burst's last (furthest) report is the one worth showing until the next.
            if fraction - last[0] >= 0.01:
                last[0] = fraction
                with contextlib.suppress(OSError):
                    conn.send(("progress", fraction))

        try:
            reply: tuple[str, Any] = ("done", _run(model, message[1], settings, batched, report))
        except _Refused as exc:
            reply = ("refused", str(exc))
        except _Missing as exc:
            reply = ("missing", str(exc))
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except OSError:
            return


# -- the daemon's side -------------------------------------------------------------------


async def _readable(fd: int, timeout: float | None) -> bool:
    """Wait until ``fd`` is readable (data, EOF or process exit); False on timeout."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, timeout)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with code {code}"


class _TranscriberProcess:
    """One worker process and its pipe, as seen from the daemon."""

    def __init__(self, ctx: SpawnContext, model: ModelSpec, cpu_threads: int,
                 beam_size: int, batch_seconds: float | None, tuning: Tuning) -> None:
        self._ctx = ctx
        self._label = model.label
        self._args = (model, cpu_threads, beam_size, batch_seconds, BATCH_SIZE, tuning)
        self.process: SpawnProcess | None = None
        self.conn: multiprocessing.connection.Connection | None = None
        self.load_seconds: float | None = None
        self.busy = False
        # Killed processes not yet reaped; kept so none lingers as a zombie.
        self._dying: list[SpawnProcess] = []

    @property
    def alive(self) -> bool:
        return self.process is not None and self.conn is not None and self.process.is_alive()

    async def spawn(self) -> None:
        """Start the process and wait until it has loaded the model."""
        self.discard()
        await self.reap_dying(2.0)
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main, args=(child_conn, *self._args),
            name="watcherd-local-engine", daemon=True,
        )
        process.start()
        # The child holds its own copy; closing ours lets its death show up as EOF here.
        child_conn.close()
        self.process, self.conn = process, parent_conn
        try:
            if not await _readable(parent_conn.fileno(), _READY_TIMEOUT):
                raise ModelError(
                    f"the local engine did not load its model within {_READY_TIMEOUT:.0f} s; "
                    "the machine may be overloaded"
                )
            kind, value = parent_conn.recv()
        except (EOFError, OSError):
            await self._reap(1.0)
            code = None if self.process is None else self.process.exitcode
            self.discard()
            raise ModelError(
                f"the local engine's worker process {_describe_exit(code)} while loading "
                f"the model {self._label}"
            ) from None
        except BaseException:
            self.discard()
            raise
        if kind != "ready":
            self.discard()
            raise ModelError(f"the local engine could not load its model: {value}")
        self.load_seconds = float(value)
        log.info("local_engine_ready", pid=process.pid, load_seconds=round(self.load_seconds, 2))

    async def call(self, request: Mapping[str, Any], *, time_limit: float | None,
                   on_progress: Callable[[float], None] | None = None) -> tuple[str, Any]:
        """Send one request and wait for its reply; a dead or hung worker is a transient error.

        Progress messages on the way are handed to ``on_progress``; the time limit is for the
        whole file, not reset by them.
        """
        assert self.conn is not None and self.process is not None
        self.busy = True
        deadline = None if time_limit is None else time.monotonic() + time_limit
        try:
            self.conn.send(("transcribe", dict(request)))
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not await _readable(self.conn.fileno(), left):
                    self.discard()
                    raise LocalEngineError(
                        f"the local engine took longer than {time_limit:.0f} s on this file; "
                        "its worker process was stopped and the file is tried again",
                        transient=True,
                    )
                reply: tuple[str, Any] = self.conn.recv()
                if reply[0] != "progress":
                    return reply
                if on_progress is not None:
                    with contextlib.suppress(Exception):  # a display, never the file's fault
                        on_progress(float(reply[1]))
        except (EOFError, OSError):
            await self._reap(2.0)
            code = None if self.process is None else self.process.exitcode
            self.discard()
            raise LocalEngineError(
                f"the local engine's worker process {_describe_exit(code)} while transcribing; "
                "it is restarted and the file is tried again",
                transient=True,
            ) from None
        except BaseException:
            # Cancelled (the daemon is stopping): the worker is mid-file and cannot be told
            # to drop it, so end it now; the journal re-runs the file later.
            self.discard()
            raise
        finally:
            self.busy = False

    async def _reap(self, timeout: float) -> None:
        if self.process is not None:
            await _reap_process(self.process, timeout)

    async def reap_dying(self, timeout: float) -> None:
        """Collect the exit status of every process this worker killed."""
        for process in self._dying:
            await _reap_process(process, timeout)
        self._dying = [p for p in self._dying if p.exitcode is None]

    def discard(self) -> None:
        """Kill the process at once (if alive) and forget it."""
        process, conn = self.process, self.conn
        self.process, self.conn = None, None
        if process is not None:
            with contextlib.suppress(ValueError, OSError):
                if process.exitcode is None:
                    process.kill()
                    self._dying.append(process)
        if conn is not None:
            conn.close()

    async def stop(self, grace: float) -> None:
        """Ask the process to exit, then terminate it, then kill it."""
        process, conn = self.process, self.conn
        if process is None or conn is None:
            await self.reap_dying(2.0)
            return
        if self.busy:
            process.kill()  # its caller sees the EOF and discards it
            return
        with contextlib.suppress(OSError):
            conn.send(("stop",))
        await self._reap(grace)
        if process.exitcode is None:
            process.terminate()
            await self._reap(2.0)
        self.discard()
        await self.reap_dying(2.0)


async def _reap_process(process: SpawnProcess, timeout: float) -> None:
    """Wait (without blocking the loop) until ``process`` has exited and been reaped."""
    if process.exitcode is not None:
        return
    deadline = time.monotonic() + timeout
    with contextlib.suppress(ValueError, OSError):
        await _readable(process.sentinel, timeout)
    # The pipe closes while the kernel tears the process down, a moment before it can be
    # reaped: poll briefly so the exit code (and signal) can be reported.
    while process.exitcode is None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


class TranscriberPool:
    """The local engine's process pool: transcribes files with Whisper in worker processes,
    one file per process at a time."""

    def __init__(self, model: Path | ModelSpec, *, workers: int = 0, cpu_threads: int = 0,
                 beam_size: int = 5, cpus: int | None = None,
                 batch_seconds: float | None = BATCH_SECONDS,
                 tuning: Tuning | None = None) -> None:
        """``workers`` / ``cpu_threads`` 0 means chosen from ``cpus`` (default: this machine's).

        ``model``: a :class:`ModelSpec` (checked by whoever made it), or the folder of the
        joined bundled model (checked against its pinned hashes at start).
        """
        if workers < 0 or cpu_threads < 0:
            raise ValueError("workers and cpu_threads must be 0 (automatic) or more")
        # A bare folder is the bundled model joined by ensure_model: verified at start.
        self.model_path = model if isinstance(model, Path) else None
        spec = model if isinstance(model, ModelSpec) else ModelSpec(
            label=str(model), folder=str(model))
        self.model = spec
        self.workers, self.cpu_threads = auto_layout(
            available_cpus() if cpus is None else cpus, workers=workers, cpu_threads=cpu_threads
        )
        self.beam_size = beam_size
        ctx = multiprocessing.get_context("spawn")
        self.batch_seconds = batch_seconds
        self.tuning = tuning or Tuning()
        self._processes = [
            _TranscriberProcess(ctx, spec, self.cpu_threads, beam_size, batch_seconds,
                                self.tuning)
            for _ in range(self.workers)
        ]
        self._idle: asyncio.Queue[_TranscriberProcess] | None = None
        self._verified = False
        self._closed = False
        self.min_time_limit = _MIN_TIME_LIMIT
        self.time_limit_factor = _TIME_LIMIT_FACTOR

    @property
    def load_seconds(self) -> float | None:
        """How long the slowest worker took to load the model the last time it started."""
        times = [w.load_seconds for w in self._processes if w.load_seconds is not None]
        return max(times) if times else None

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for diagnostics, benchmarks and tests)."""
        return [w.process.pid for w in self._processes
                if w.alive and w.process is not None and w.process.pid is not None]

    def busy(self) -> int:
        """How many workers are transcribing a file right now."""
        return sum(1 for w in self._processes if w.busy)

    def _pool(self) -> asyncio.Queue[_TranscriberProcess]:
        if self._idle is None:
            self._idle = asyncio.Queue()
            for process in self._processes:
                self._idle.put_nowait(process)
        return self._idle

    async def _verify(self) -> None:
        if not self._verified and self.model_path is not None:
            await asyncio.to_thread(local_model.verify, self.model_path)
            self._verified = True

    async def start(self) -> None:
        """Verify the model folder, spawn the workers and wait until each has loaded it."""
        if self._closed:
            raise LocalEngineError("the local engine is shut down", transient=True)
        await self._verify()
        self._pool()
        await asyncio.gather(*(w.spawn() for w in self._processes if not w.alive))

    async def transcribe(self, path: Path, options: Mapping[str, Any], *,
                         on_progress: Callable[[float], None] | None = None,
                         on_start: Callable[[float | None], None] | None = None,
                         ) -> dict[str, Any]:
        """Transcribe one file; returns a done job dict in Gladia's shape (see module doc).

        ``on_start`` is told the recording's length (None: unknown) when a worker process
        takes the file; ``on_progress`` gets the share of the audio done as the worker goes.
        """
        if self._closed:
            raise LocalEngineError("the local engine is shut down", transient=True)
        plan = plan_for(options, self.tuning)
        # Resolved here, against this process's watch roots (a link out is refused); the
        # worker process opens the components again without following links.
        place = await asyncio.to_thread(roots.current().locate, path)
        await self._verify()
        pool = self._pool()
        process = await pool.get()
        try:
            if not process.alive:
                await process.spawn()
            seconds = await asyncio.to_thread(media.audio_duration, path)
            time_limit = self._time_limit(seconds)
            created_at = iso_now()
            started = time.monotonic()
            if on_start is not None:
                on_start(seconds)
            kind, value = await process.call({
                "path": str(path),
                "place": [place.top, *place.parts],
                "language": plan.language,
                "languages": list(plan.languages),
                "translate": plan.translate_to_english,
                "hotwords": list(plan.hotwords),
            }, time_limit=time_limit, on_progress=on_progress)
        finally:
            pool.put_nowait(process)
        if kind == "refused":
            # The reason is about the file, shown beside its path: the name is not repeated.
            raise LocalEngineError(str(value), transient=False)
        if kind == "missing":
            raise SourceError("disappeared before it was transcribed", transient=True)
        if kind != "done":
            raise LocalEngineError(f"the local engine failed on {path.name}: {value}",
                                   transient=True)
        return build_job(
            options=options, filename=path.name, reply=value, plan=plan,
            created_at=created_at, completed_at=iso_now(),
            transcription_time=time.monotonic() - started, model=self.model.shown_name,
        )

    def _time_limit(self, seconds: float | None) -> float | None:
        """How long a file of ``seconds`` may take before its worker counts as hung (None:
        no limit)."""
        if seconds is None:
            return None  # unknown length: only a worker's death ends the wait
        return max(self.min_time_limit, seconds * self.time_limit_factor)

    async def close(self) -> None:
        """Stop every worker: a short grace to exit, then terminate, then kill."""
        self._closed = True
        await asyncio.gather(*(w.stop(_STOP_GRACE) for w in self._processes))
