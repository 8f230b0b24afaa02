"""The local engine and its pipeline: real Whisper base on real espeak-ng speech."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.paths import REPO as ROOT
from tests.speech import (
    ENGLISH_TEXT,
    FRENCH_TEXT,
    repeat_wav,
    speak,
    wav_seconds,
    word_error_rate,
    words,
)
from watcherd import outputs
from watcherd.config import parse_config
from watcherd.engines.local.model import ensure_model, local_engine_installed
from watcherd.engines.local.pipeline import LocalPipeline
from watcherd.engines.local.runner import (
    BATCH_SECONDS,
    BATCH_SIZE,
    MAX_AUTO_THREADS,
    LocalEngineError,
    TranscriberPool,
    auto_layout,
    available_cpus,
)
from watcherd.errors import ConfigError, SourceError
from watcherd.identity import content_key, hash_file, options_json
from watcherd.journal import FileStat, Journal, Source

T = TypeVar("T")
NOT_INSTALLED = "the local extra is not installed: pip install -e '.[local]'"
needs_model = pytest.mark.skipif(not local_engine_installed(), reason=NOT_INSTALLED)


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        time.sleep(0.02)


async def async_wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Like :func:`wait_for`, without blocking the event loop."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        await asyncio.sleep(0.02)


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer exists (exited and reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def with_engine(model: Path, work: Callable[[TranscriberPool], Awaitable[T]]) -> T:
    """Run ``work`` with a started one-worker engine, always closing it."""
    # One worker whatever the machine: these tests follow a single worker process.
    engine = TranscriberPool(model, workers=1)
    try:
        await engine.start()
        return await work(engine)
    finally:
        await engine.close()


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The verified model folder, joined once for this module."""
    if not local_engine_installed():
        pytest.skip(NOT_INSTALLED)
    return ensure_model(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of espeak-ng recordings: English (~11 s), French, and English six times over."""
    folder = tmp_path_factory.mktemp("speech")
    speak(ENGLISH_TEXT, folder / "english.wav")
    speak(FRENCH_TEXT, folder / "french.wav", voice="fr", words_per_minute=140)
    repeat_wav(folder / "english.wav", folder / "long.wav", 6)
    return folder


@pytest.fixture(scope="module")
def english_job(model: Path, speech_dir: Path) -> dict[str, Any]:
    """The local engine's job for the English recording, with custom metadata to echo."""
    options = {"custom_metadata": {"wf_key": "k1", "team": "qa"}}

    async def work(engine: TranscriberPool) -> dict[str, Any]:
        return await engine.transcribe(speech_dir / "english.wav", options)

    return asyncio.run(with_engine(model, work))


# -- workers x threads from the machine (no model needed) --------------------------------


@pytest.mark.parametrize(
    ("cpus", "expected"),
    [(1, (1, 1)), (2, (2, 1)), (4, (4, 1)), (7, (7, 1)), (8, (4, 2)), (12, (4, 3)),
     (16, (4, 4)), (32, (8, 4)), (64, (16, 4))],
)
def test_auto_layout_fills_the_cpus_processes_first(cpus: int, expected: tuple[int, int]
                                                    ) -> None:
    """Both automatic: one thread per worker up to 4 workers, then threads grow to 4."""
    assert auto_layout(cpus) == expected


def test_auto_layout_keeps_what_is_set_and_fills_the_rest() -> None:
    """A set workers or cpu_threads is kept; the other fills the CPUs, never below 1."""
    assert auto_layout(8, workers=1) == (1, 8)
    assert auto_layout(8, cpu_threads=8) == (1, 8)
    assert auto_layout(8, cpu_threads=3) == (2, 3)
    assert auto_layout(2, workers=4) == (4, 1)
    assert auto_layout(2, cpu_threads=6) == (1, 6)
    assert auto_layout(2, workers=3, cpu_threads=5) == (3, 5)


@given(cpus=st.integers(1, 4096), workers=st.integers(0, 256), threads=st.integers(0, 256))
def test_auto_layout_property(cpus: int, workers: int, threads: int) -> None:
    """Always >= 1 each; set values kept; all automatic never oversubscribes and leaves
    fewer idle CPUs than one worker's threads."""
    got_workers, got_threads = auto_layout(cpus, workers=workers, cpu_threads=threads)
    assert got_workers >= 1 and got_threads >= 1
    if workers:
        assert got_workers == workers
    if threads:
        assert got_threads == threads
    if workers and not threads:
        assert got_threads == max(1, cpus // workers)
    if not workers and not threads:
        assert got_threads <= MAX_AUTO_THREADS
        assert got_workers * got_threads <= cpus < (got_workers + 1) * got_threads
    if not workers and threads and threads <= cpus:
        assert got_workers * got_threads <= cpus


def test_available_cpus_honours_affinity_and_a_cgroup_quota(tmp_path: Path) -> None:
    """The affinity mask counts; a cgroup v2 quota lowers it (rounded up); no quota or an
    unreadable file leaves it."""
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    assert available_cpus(cpu_max) == affinity  # no such file
    cpu_max.write_text("max 100000\n")
    assert available_cpus(cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")
    assert available_cpus(cpu_max) == 1
    cpu_max.write_text(f"{affinity * 100000 + 1} 100000\n")
    assert available_cpus(cpu_max) == affinity
    cpu_max.write_text("garbage\n")
    assert available_cpus(cpu_max) == affinity


@given(text=st.text(max_size=40))
def test_available_cpus_property_any_cpu_max_text(tmp_path_factory: pytest.TempPathFactory,
                                                  text: str) -> None:
    """Whatever the cgroup file holds, the answer is between 1 and the affinity count."""
    cpu_max = tmp_path_factory.mktemp("cg") / "cpu.max"
    cpu_max.write_text(text, encoding="utf-8")
    assert 1 <= available_cpus(cpu_max) <= len(os.sched_getaffinity(0))


@given(quota=st.integers(1, 10**9), period=st.integers(1, 10**7))
def test_available_cpus_property_quota(tmp_path_factory: pytest.TempPathFactory, quota: int,
                                       period: int) -> None:
    """A numeric quota gives ceil(quota / period), capped by the affinity mask, at least 1."""
    cpu_max = tmp_path_factory.mktemp("cg") / "cpu.max"
    cpu_max.write_text(f"{quota} {period}\n", encoding="ascii")
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(cpu_max) == max(1, min(affinity, -(-quota // period)))


def test_engine_resolves_its_layout_without_starting(tmp_path: Path) -> None:
    """TranscriberPool's 0 = automatic is resolved at construction: workers is what the daemon
    uses as its concurrency; nothing is spawned until start."""
    engine = TranscriberPool(tmp_path, cpus=8)
    assert (engine.workers, engine.cpu_threads) == (4, 2)
    assert engine.worker_pids() == []
    assert (TranscriberPool(tmp_path, workers=1, cpus=8).cpu_threads) == 8
    default = TranscriberPool(tmp_path)
    assert (default.workers, default.cpu_threads) == auto_layout(available_cpus())
    with pytest.raises(ValueError, match="automatic"):
        TranscriberPool(tmp_path, workers=-1)


def test_local_config_is_automatic_by_default_and_overridable() -> None:
    """[local] workers / cpu_threads default to "auto" (0); numbers are kept; 0 threads is
    still automatic; anything else is refused with what is expected."""
    assert (parse_config({}, source=None, env={}).local.workers,
            parse_config({}, source=None, env={}).local.cpu_threads) == (0, 0)
    auto = parse_config({"local": {"workers": "auto", "cpu_threads": "auto"}},
                        source=None, env={})
    assert (auto.local.workers, auto.local.cpu_threads) == (0, 0)
    set_ = parse_config({"local": {"workers": 3, "cpu_threads": 0}}, source=None, env={})
    assert (set_.local.workers, set_.local.cpu_threads) == (3, 0)
    with pytest.raises(ConfigError, match=re.escape('local.workers: expected "auto" or an '
                                                    "integer >= 1")):
        parse_config({"local": {"workers": 0}}, source=None, env={})


@given(value=st.one_of(st.text(max_size=12).filter(lambda t: t != "auto"),
                       st.integers(max_value=-1), st.booleans(), st.floats(),
                       st.lists(st.integers(), max_size=2)))
def test_local_config_property_bad_counts_refused(value: object) -> None:
    """Any workers / cpu_threads that is neither "auto" nor a whole number in range is
    refused, naming the key and what it accepts."""
    for key in ("workers", "cpu_threads"):
        with pytest.raises(ConfigError, match=re.escape(f'local.{key}: expected "auto" or')):
            parse_config({"local": {key: value}}, source=None, env={})


@given(workers=st.integers(1, 10**6), threads=st.integers(0, 10**6))
def test_local_config_property_counts_kept(workers: int, threads: int) -> None:
    """Whole numbers in range are kept as given."""
    config = parse_config({"local": {"workers": workers, "cpu_threads": threads}},
                          source=None, env={})
    assert (config.local.workers, config.local.cpu_threads) == (workers, threads)


def test_word_error_rate_counts_word_edits() -> None:
    """The WER helper ignores case and punctuation and counts each edit once."""
    assert word_error_rate("The cat, sat.", "the cat sat") == 0.0
    assert word_error_rate("a b c d", "a x c") == 0.5
    assert words("Don't stop!") == ["dont", "stop"]


# -- the engine on real speech -----------------------------------------------------------


@needs_model
def test_known_speech_is_transcribed_with_low_word_error_rate(english_job: dict[str, Any]
                                                              ) -> None:
    """Whisper base gets under 25% WER on espeak-ng's reading of a known text."""
    transcript = english_job["result"]["transcription"]["full_transcript"]
    assert word_error_rate(ENGLISH_TEXT, transcript) < 0.25, transcript
    assert english_job["result"]["transcription"]["languages"] == ["en"]


@needs_model
def test_local_job_renders_srt_with_increasing_timestamps(english_job: dict[str, Any]) -> None:
    """The job goes through the shared SRT writer: numbered cues, each later than the last."""
    srt = outputs.render_srt(english_job)
    blocks = [b for b in srt.strip().split("\n\n") if b]
    assert len(blocks) >= 2
    stamp = r"(\d\d):(\d\d):(\d\d),(\d\d\d)"
    previous_end = -1
    for number, block in enumerate(blocks, start=1):
        lines = block.split("\n")
        assert lines[0] == str(number)
        match = re.fullmatch(f"{stamp} --> {stamp}", lines[1])
        assert match is not None, lines[1]
        h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(g) for g in match.groups())
        start = ((h1 * 60 + m1) * 60 + s1) * 1000 + ms1
        end = ((h2 * 60 + m2) * 60 + s2) * 1000 + ms2
        assert previous_end <= start < end
        assert lines[2].strip()
        previous_end = end
    assert outputs.render_vtt(english_job).startswith("WEBVTT\n\n")
    assert outputs.render_txt(english_job).count("\n") == len(
        english_job["result"]["transcription"]["utterances"])


@needs_model
def test_local_job_has_the_gladia_job_shape(english_job: dict[str, Any], speech_dir: Path
                                            ) -> None:
    """Top-level fields, file, metadata and word timings look like GET /v2/pre-recorded/{id}."""
    job = english_job
    assert job["id"].startswith("local-") and job["request_id"].startswith("local-")
    assert (job["version"], job["kind"], job["status"], job["engine"]) == (
        2, "pre-recorded", "done", "local")
    assert job["error_code"] is None and job["post_session_metadata"] == {}
    for key in ("created_at", "completed_at"):
        assert job[key].endswith("Z")
        datetime.fromisoformat(job[key].replace("Z", "+00:00"))
    assert job["custom_metadata"] == {"wf_key": "k1", "team": "qa"}
    assert "custom_metadata" not in job["request_params"]
    duration = wav_seconds(speech_dir / "english.wav")
    assert job["file"]["filename"] == "english.wav" and job["file"]["source"] is None
    assert abs(job["file"]["audio_duration"] - duration) < 0.1
    assert job["result"]["metadata"]["billing_time"] == 0
    assert {k: v for k, v in job["watcherd"].items() if k not in ("decode", "model")} == {
        "unavailable_options": [], "batched": False}
    assert isinstance(job["watcherd"]["model"], str) and job["watcherd"]["model"]
    assert job["watcherd"]["decode"]["pipeline"] == "sequential"
    for utterance in job["result"]["transcription"]["utterances"]:
        assert utterance["channel"] == 0 and utterance["language"] == "en"
        assert 0 <= utterance["start"] <= utterance["end"] <= duration + 0.5
        assert 0 <= utterance["confidence"] <= 1
        for word in utterance["words"]:
            assert utterance["start"] - 0.01 <= word["start"] <= word["end"]
            assert word["end"] <= utterance["end"] + 0.01
    json.dumps(job)  # stored and written as JSON


@needs_model
def test_unavailable_options_are_listed_and_the_transcript_still_written(
    model: Path, speech_dir: Path, tmp_path: Path
) -> None:
    """Gladia-only options are named in the job; the transcript and subtitles are written."""
    options = {"diarization": True, "pii_redaction": True, "translation": True,
               "translation_config": {"target_languages": ["de"]}}

    async def work(engine: TranscriberPool) -> dict[str, Any]:
        return await engine.transcribe(speech_dir / "english.wav", options)

    job = asyncio.run(with_engine(model, work))
    assert job["watcherd"]["unavailable_options"] == [
        "diarization", "pii_redaction", "translation to de"]
    assert "translation" not in job["result"]
    written = outputs.write_outputs(tmp_path / "talk", ["txt", "srt"], job)
    assert [p.name for p in written] == ["talk.txt", "talk.srt"]
    assert word_error_rate(ENGLISH_TEXT, (tmp_path / "talk.txt").read_text()) < 0.25


@needs_model
def test_long_recording_goes_through_the_batched_pipeline(model: Path, speech_dir: Path
                                                          ) -> None:
    """At or above batch_seconds the batched pipeline transcribes, with a low WER and word
    times in order inside the recording; below it, the sequential one."""
    assert BATCH_SECONDS is not None and BATCH_SECONDS >= BATCH_SIZE * 30.0
    long = speech_dir / "long.wav"

    async def work(engine: TranscriberPool) -> tuple[dict[str, Any], dict[str, Any]]:
        return (await engine.transcribe(long, {}),
                await engine.transcribe(speech_dir / "english.wav", {}))

    engine = TranscriberPool(model, workers=1, batch_seconds=wav_seconds(long) - 1.0)
    try:
        batched, short = asyncio.run(_started(engine, work))
    finally:
        asyncio.run(engine.close())
    assert batched["watcherd"]["batched"] is True and short["watcherd"]["batched"] is False
    transcript = batched["result"]["transcription"]["full_transcript"]
    assert word_error_rate(" ".join([ENGLISH_TEXT] * 6), transcript) < 0.2, transcript
    starts = [w["start"] for u in batched["result"]["transcription"]["utterances"]
              for w in u["words"]]
    assert len(starts) > 50 and starts == sorted(starts)
    assert starts[0] >= 0.0 and starts[-1] <= wav_seconds(long)


async def _started(engine: TranscriberPool, work: Callable[[TranscriberPool], Awaitable[T]]) -> T:
    """Start ``engine`` and run ``work`` with it (the caller closes it)."""
    await engine.start()
    return await work(engine)


def test_pinned_language_and_english_translation(model: Path, speech_dir: Path) -> None:
    """French speech with translation to English gives a French transcript plus an en block."""
    options = {"language_config": {"languages": ["fr"]}, "translation": True,
               "translation_config": {"target_languages": ["en"]}}

    async def work(engine: TranscriberPool) -> dict[str, Any]:
        return await engine.transcribe(speech_dir / "french.wav", options)

    job = asyncio.run(with_engine(model, work))
    transcription = job["result"]["transcription"]
    assert transcription["languages"] == ["fr"]
    assert word_error_rate(FRENCH_TEXT, transcription["full_transcript"]) < 0.5
    block = job["result"]["translation"]
    assert block["success"] is True and block["error"] is None
    [english] = block["results"]
    assert english["languages"] == ["en"]
    assert {"coffee", "park", "hello", "everyone"} & set(words(english["full_transcript"]))
    assert outputs.output_paths(Path("/x/talk"), ["txt"], job) == [
        Path("/x/talk.txt"), Path("/x/talk.en.txt")]


@needs_model
def test_undecodable_file_is_permanent_and_the_worker_survives(
    model: Path, speech_dir: Path, tmp_path: Path
) -> None:
    """A file that is not audio is a permanent error that says so; the next file still works."""
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF" + os.urandom(4000))

    async def work(engine: TranscriberPool) -> tuple[LocalEngineError, list[int], dict[str, Any],
                                                 list[int]]:
        pids = engine.worker_pids()
        with pytest.raises(LocalEngineError) as caught:
            await engine.transcribe(bad, {})
        job = await engine.transcribe(speech_dir / "english.wav", {})
        return caught.value, pids, job, engine.worker_pids()

    error, pids_before, job, pids_after = asyncio.run(with_engine(model, work))
    assert error.transient is False
    assert "not an audio or video file" in error.message and "replace it" in error.message
    assert "watcherd retry" not in error.message
    assert pids_before == pids_after
    assert job["result"]["transcription"]["full_transcript"]


@needs_model
def test_missing_file_is_a_transient_source_error(model: Path, tmp_path: Path) -> None:
    """A source that vanished before the worker read it is a SourceError, to settle again."""

    async def work(engine: TranscriberPool) -> None:
        await engine.transcribe(tmp_path / "vanished.wav", {})

    with pytest.raises(SourceError) as caught:
        asyncio.run(with_engine(model, work))
    assert caught.value.transient


@needs_model
def test_killed_worker_is_transient_and_restarted(model: Path, speech_dir: Path) -> None:
    """SIGKILL on the worker mid-file gives a transient error; the next call gets a new worker."""

    async def work(engine: TranscriberPool) -> tuple[LocalEngineError, int, dict[str, Any], int]:
        [pid] = engine.worker_pids()
        task = asyncio.ensure_future(engine.transcribe(speech_dir / "long.wav", {}))
        await async_wait_for(lambda: engine.busy() == 1)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(LocalEngineError) as caught:
            await task
        job = await engine.transcribe(speech_dir / "english.wav", {})
        [new_pid] = engine.worker_pids()
        return caught.value, pid, job, new_pid

    error, old_pid, job, new_pid = asyncio.run(with_engine(model, work))
    assert error.transient is True
    assert "SIGKILL" in error.message
    assert new_pid != old_pid
    assert process_gone(old_pid)
    assert word_error_rate(ENGLISH_TEXT, job["result"]["transcription"]["full_transcript"]) < 0.25


@needs_model
def test_worker_over_its_time_limit_is_stopped_and_replaced(model: Path, speech_dir: Path
                                                           ) -> None:
    """A worker still busy past the file's time limit counts as hung: ended, error, restart."""

    async def work(engine: TranscriberPool) -> tuple[LocalEngineError, int, dict[str, Any], int]:
        [pid] = engine.worker_pids()
        # Far below what any machine needs for a 68 s recording, so the limit always trips.
        engine.min_time_limit, engine.time_limit_factor = 0.0, 0.001
        with pytest.raises(LocalEngineError) as caught:
            await engine.transcribe(speech_dir / "long.wav", {})
        engine.min_time_limit, engine.time_limit_factor = 900.0, 3.0
        job = await engine.transcribe(speech_dir / "english.wav", {})
        [new_pid] = engine.worker_pids()
        return caught.value, pid, job, new_pid

    error, old_pid, job, new_pid = asyncio.run(with_engine(model, work))
    assert error.transient and "took longer than" in error.message
    assert new_pid != old_pid
    wait_for(lambda: process_gone(old_pid))
    assert job["result"]["transcription"]["full_transcript"]


@needs_model
def test_close_ends_a_worker_that_is_mid_file(model: Path, speech_dir: Path) -> None:
    """close() does not wait for a long file: the worker is ended and its caller told."""

    async def work() -> tuple[int, BaseException | None]:
        engine = TranscriberPool(model, workers=1)
        await engine.start()
        [pid] = engine.worker_pids()
        task = asyncio.ensure_future(engine.transcribe(speech_dir / "long.wav", {}))
        await async_wait_for(lambda: engine.busy() == 1)
        await engine.close()
        done, _ = await asyncio.wait({task}, timeout=30)
        assert done, "the caller was left waiting after close()"
        return pid, task.exception()

    pid, error = asyncio.run(work())
    assert isinstance(error, LocalEngineError) and error.transient
    wait_for(lambda: process_gone(pid))


@needs_model
def test_engine_refuses_an_altered_model_before_loading(model: Path, tmp_path: Path) -> None:
    """start() verifies the folder first: a tampered file is a ModelError, no worker starts."""
    from watcherd.engines.local.model import MODEL_FILES, ModelError

    copy = tmp_path / "model"
    copy.mkdir()
    for name in MODEL_FILES:
        if name == "model.bin":
            (copy / name).symlink_to(model / name)
        else:
            (copy / name).write_bytes((model / name).read_bytes())
    data = bytearray((copy / "config.json").read_bytes())
    data[10] ^= 0xFF
    (copy / "config.json").write_bytes(bytes(data))
    engine = TranscriberPool(copy)
    with pytest.raises(ModelError, match="does not match its pinned SHA-256"):
        asyncio.run(engine.start())
    assert engine.worker_pids() == []


# -- no network ----------------------------------------------------------------------------

_SITECUSTOMIZE = '''
"""Test guard: record and refuse every attempt to reach the network, in every process."""
import os
import socket
import sys

_LOG = os.environ["WATCHERD_NET_LOG"]


def _note(line):
    with open(_LOG, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()} {line}\\n")


_note("loaded")


def _guard(event, args):
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock = args[0]
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            _note(f"blocked {event} {args[1]!r}")
            raise RuntimeError(f"network access refused by the test: {event}")
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        _note(f"blocked {event} {args[0]!r}")
        raise RuntimeError(f"network access refused by the test: {event}")


sys.addaudithook(_guard)
'''

_OFFLINE_SCRIPT = '''
import asyncio
import json
import socket
import sys
from pathlib import Path

from watcherd.engines.local.runner import TranscriberPool
from watcherd.engines.local.model import ensure_model


async def main(cache, audio):
    engine = TranscriberPool(ensure_model(Path(cache)))
    try:
        await engine.start()
        job = await engine.transcribe(Path(audio), {})
        return job, engine.worker_pids()
    finally:
        await engine.close()


if __name__ == "__main__":
    job, pids = asyncio.run(main(sys.argv[1], sys.argv[2]))
    probe_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe_socket.settimeout(2)
    try:
        probe_socket.connect(("127.0.0.1", 9))
        probe = "connected"
    except RuntimeError as exc:
        probe = str(exc)
    except OSError as exc:
        probe = f"unguarded: {exc}"
    finally:
        probe_socket.close()
    print(json.dumps({"transcript": job["result"]["transcription"]["full_transcript"],
                      "worker_pids": pids, "probe": probe}))
'''


@needs_model
def test_model_build_and_transcription_never_touch_the_network(
    speech_dir: Path, tmp_path: Path
) -> None:
    """Join, load and transcribe with every network path poisoned and sockets audited."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(textwrap.dedent(_SITECUSTOMIZE))
    script = tmp_path / "offline.py"
    script.write_text(textwrap.dedent(_OFFLINE_SCRIPT))
    net_log = tmp_path / "net.log"
    poison = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(guard), str(ROOT)]),
        "WATCHERD_NET_LOG": str(net_log),
        "HF_HUB_OFFLINE": "1",
        "HF_ENDPOINT": poison,
        "HTTPS_PROXY": poison, "HTTP_PROXY": poison, "ALL_PROXY": poison,
        "https_proxy": poison, "http_proxy": poison, "all_proxy": poison,
        "NO_PROXY": "", "no_proxy": "",
    }
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "cache"), str(speech_dir / "english.wav")],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert word_error_rate(ENGLISH_TEXT, report["transcript"]) < 0.25
    # The guard itself works (the probe was refused) and ran in the worker process too.
    assert "network access refused" in report["probe"]
    lines = net_log.read_text().splitlines()
    loaded = {line.split()[0] for line in lines if line.endswith(" loaded")}
    assert {str(pid) for pid in report["worker_pids"]} <= loaded and len(loaded) >= 2
    blocked = [line for line in lines if " blocked " in line]
    assert blocked == [f"{done_pid(lines)} blocked socket.connect ('127.0.0.1', 9)"], blocked


def done_pid(lines: list[str]) -> str:
    """The pid of the first process that loaded the guard: the test's script itself."""
    return lines[0].split()[0]


# -- the pipeline ---------------------------------------------------------------------------


def settled_source(journal: Journal, path: Path, options: Mapping[str, Any] | None = None
                   ) -> Source:
    """Record ``path`` as the watcher and the worker would: seen, hashed, ready to drive."""
    opts = options_json(options or {})
    [source] = journal.observe_many(
        [(str(path), str(path.parent), FileStat.of(path.stat()), opts)])
    digest, st = hash_file(path)
    return journal.transition(
        source, "pending", actor="test", reason="settled and hashed", sha256=digest,
        content_key=content_key(digest, opts), size=st.size, mtime_ns=st.mtime_ns,
    )


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    """A real journal in a temporary folder (closed by the fixture)."""
    opened = Journal.open(tmp_path / "state" / "journal.db")
    yield opened
    opened.close()


@pytest.fixture
def inbox(tmp_path: Path, speech_dir: Path) -> Path:
    """A watched folder holding a copy of the English recording as talk.wav."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "talk.wav").write_bytes((speech_dir / "english.wav").read_bytes())
    return folder


class BrokenEngine(TranscriberPool):
    """An engine whose worker always dies: every call is a transient failure."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent"))
        self.calls = 0

    async def transcribe(self, path: Path, options: Mapping[str, Any], *,
                         on_progress: Callable[[float], None] | None = None,
                         on_start: Callable[[float | None], None] | None = None,
                         ) -> dict[str, Any]:
        """Fail like a worker killed mid-file."""
        self.calls += 1
        raise LocalEngineError("the local engine's worker process was killed by SIGKILL",
                               transient=True)


@needs_model
def test_pipeline_drives_a_source_to_done_with_outputs(
    model: Path, journal: Journal, inbox: Path
) -> None:
    """transcribing is committed first, then the result is stored and the outputs written."""
    source = settled_source(journal, inbox / "talk.wav", {"diarization": True})

    async def work(engine: TranscriberPool) -> None:
        pipeline = LocalPipeline(journal, engine)
        pipeline.outputs_for = lambda s: ("txt", "srt", "json")
        await pipeline.drive(source.id)

    asyncio.run(with_engine(model, work))
    done = journal.get(source.id)
    assert (done.state, done.engine, done.last_error) == ("done", "local", None)
    assert done.job_id is not None and done.job_id.startswith("local-")
    states = [e["to_state"] for e in journal.events(source.id)]
    assert states[-2:] == ["transcribing", "done"]
    assert word_error_rate(ENGLISH_TEXT, (inbox / "talk.txt").read_text()) < 0.25
    assert (inbox / "talk.srt").read_text().startswith("1\n")
    written = json.loads((inbox / "talk.json").read_text())
    assert written["id"] == done.job_id
    assert written["custom_metadata"] == {"wf_key": source.content_key, "wf_file": "talk.wav"}
    assert written["watcherd"]["unavailable_options"] == ["diarization"]
    assert source.content_key is not None
    assert journal.result_for(source.content_key) == written


@needs_model
def test_pipeline_reruns_a_source_left_transcribing_by_a_crash(
    model: Path, journal: Journal, inbox: Path
) -> None:
    """A source found in "transcribing" after a restart is due and is transcribed again."""
    source = settled_source(journal, inbox / "talk.wav")
    journal.transition(source, "transcribing", actor="worker", reason="before the crash")
    assert [s.id for s in journal.due(time.time())] == [source.id]

    async def work(engine: TranscriberPool) -> None:
        await LocalPipeline(journal, engine).drive(source.id)

    asyncio.run(with_engine(model, work))
    assert journal.get(source.id).state == "done"
    assert (inbox / "talk.txt").is_file() and (inbox / "talk.json").is_file()


def test_pipeline_uses_a_stored_result_without_the_engine(
    journal: Journal, tmp_path: Path
) -> None:
    """Content already transcribed is written from the journal; the engine is not called."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.wav").write_bytes(b"same bytes")
    (folder / "b.wav").write_bytes(b"same bytes")
    first = settled_source(journal, folder / "a.wav")
    journal.store_result(first, stored_job("hello"))
    second = settled_source(journal, folder / "b.wav")
    engine = BrokenEngine()
    asyncio.run(LocalPipeline(journal, engine).drive(second.id))
    assert engine.calls == 0
    assert journal.get(second.id).state == "done"
    assert (folder / "b.txt").read_text() == "hello\n"


def test_pipeline_retries_transient_failures_then_fails(journal: Journal, tmp_path: Path
                                                        ) -> None:
    """A dying worker means waiting with backoff, then failed once the retry budget is spent."""
    path = tmp_path / "talk.wav"
    path.write_bytes(b"not important")
    source = settled_source(journal, path)
    engine = BrokenEngine()
    pipeline = LocalPipeline(journal, engine, retry_budget=3)
    seen = []
    for _ in range(3):
        before = time.time()
        asyncio.run(pipeline.drive(source.id))
        current = journal.get(source.id)
        seen.append((current.state, current.attempts))
        if current.state == "waiting":
            assert current.next_attempt_at is not None and current.next_attempt_at > before
            assert current.last_error is not None and "SIGKILL" in current.last_error
    assert seen == [("waiting", 1), ("waiting", 2), ("failed", 3)]
    failed = journal.get(source.id)
    assert failed.last_error is not None
    assert "failed 3 times" in failed.last_error and "watcherd retry" in failed.last_error
    assert engine.calls == 3


@needs_model
def test_pipeline_fails_an_undecodable_source_with_the_reason(
    model: Path, journal: Journal, tmp_path: Path
) -> None:
    """A file that is not audio ends failed, with a message a person can act on."""
    path = tmp_path / "notes.wav"
    path.write_bytes(b"RIFF" + os.urandom(2000))
    source = settled_source(journal, path)

    async def work(engine: TranscriberPool) -> None:
        await LocalPipeline(journal, engine).drive(source.id)

    asyncio.run(with_engine(model, work))
    failed = journal.get(source.id)
    assert failed.state == "failed"
    assert failed.last_error is not None and "not an audio or video file" in failed.last_error


def test_pipeline_marks_a_vanished_source_gone(journal: Journal, tmp_path: Path) -> None:
    """A source deleted before its turn is gone, and the engine is never called."""
    path = tmp_path / "talk.wav"
    path.write_bytes(b"bytes")
    source = settled_source(journal, path)
    path.unlink()
    engine = BrokenEngine()
    asyncio.run(LocalPipeline(journal, engine).drive(source.id))
    assert journal.get(source.id).state == "gone"
    assert engine.calls == 0


@needs_model
def test_pipeline_interrupted_by_shutdown_is_left_resumable(
    model: Path, journal: Journal, tmp_path: Path, speech_dir: Path
) -> None:
    """Cancelling a drive mid-file ends the worker and puts the source back in the queue."""
    path = tmp_path / "long.wav"
    path.write_bytes((speech_dir / "long.wav").read_bytes())
    source = settled_source(journal, path)

    async def work(engine: TranscriberPool) -> int:
        [pid] = engine.worker_pids()
        task = asyncio.ensure_future(LocalPipeline(journal, engine).drive(source.id))
        await async_wait_for(lambda: engine.busy() == 1)
        assert journal.get(source.id).state == "transcribing"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pid

    pid = asyncio.run(with_engine(model, work))
    wait_for(lambda: process_gone(pid))
    current = journal.get(source.id)
    assert current.state == "pending" and current.attempts == 0
    assert [s.id for s in journal.due(time.time())] == [source.id]


def stored_job(text: str) -> dict[str, Any]:
    """A minimal done job, as a previous local run would have stored it."""
    return {"id": "local-1", "status": "done", "result": {"transcription": {
        "full_transcript": text, "utterances": [
            {"start": 0.0, "end": 1.0, "text": text, "words": []}]}}}


def test_pipeline_waits_when_outputs_cannot_be_written(journal: Journal, tmp_path: Path
                                                       ) -> None:
    """An unwritable output means waiting; the next attempt writes it from the stored result."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "talk.wav").write_bytes(b"recording")
    source = settled_source(journal, folder / "talk.wav")
    journal.store_result(source, stored_job("hello"))
    (folder / "talk.txt").mkdir()  # a folder where the transcript must go: the write fails
    engine = BrokenEngine()
    pipeline = LocalPipeline(journal, engine)
    asyncio.run(pipeline.drive(source.id))
    waiting = journal.get(source.id)
    assert (waiting.state, waiting.attempts) == ("waiting", 1)
    assert waiting.last_error is not None
    assert waiting.last_error.startswith("cannot write the transcript next to the source")
    (folder / "talk.txt").rmdir()
    asyncio.run(pipeline.drive(source.id))
    assert journal.get(source.id).state == "done"
    assert (folder / "talk.txt").read_text() == "hello\n"
    assert engine.calls == 0


class ChangingEngine(TranscriberPool):
    """An engine during whose run the source file is rewritten."""

    def __init__(self) -> None:
        super().__init__(Path("/nonexistent"))

    async def transcribe(self, path: Path, options: Mapping[str, Any], *,
                         on_progress: Callable[[float], None] | None = None,
                         on_start: Callable[[float | None], None] | None = None,
                         ) -> dict[str, Any]:
        """Append to the source while 'transcribing' it, then return a result."""
        with path.open("ab") as f:
            f.write(b" and more")
        return stored_job("stale")


def test_pipeline_settles_again_a_source_changed_during_transcription(
    journal: Journal, tmp_path: Path
) -> None:
    """A result for content that changed meanwhile is dropped; the file is settled again."""
    path = tmp_path / "talk.wav"
    path.write_bytes(b"recording")
    source = settled_source(journal, path)
    asyncio.run(LocalPipeline(journal, ChangingEngine()).drive(source.id))
    current = journal.get(source.id)
    assert (current.state, current.content_key, current.sha256) == ("pending", None, None)
    assert source.content_key is not None
    assert journal.result_for(source.content_key) is None
    assert not (tmp_path / "talk.txt").exists()
