"""Add-ons and result delivery, in-process against the simulator over real HTTP.

The worker, the Gladia pipeline, the journal and (where callbacks are on) the listener all run
for real; the simulator computes every transcript, translation and summary deterministically
from the uploaded bytes, so outputs are checked against independently predicted text.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

import tests.sim.jobs as sim_jobs
import tests.sim.server as sim_server
from tests.daemon_harness import toml_value
from tests.sim import (
    GladiaSimulator,
    expected_transcript,
    make_wav,
    redact,
    script_for_sha,
    translate_words,
)
from watcherd.config import (
    CallbackConfig,
    Config,
    Secret,
    WebhookConfig,
    load_config,
)
from watcherd.engines import EngineContext
from watcherd.engines.gladia import GladiaEngine
from watcherd.engines.gladia.listener import (
    Listener,
    load_or_create_token,
    token_path,
)
from watcherd.engines.gladia.pipeline import GladiaPipeline
from watcherd.engines.gladia.webhooks import decode_secret, sign
from watcherd.folders import Folders
from watcherd.health import ApiHealth
from watcherd.journal import Journal
from watcherd.retry import RetryPolicy
from watcherd.worker import EngineRoutes, Worker

KEY = "sk-addons-test-key-1234"
FAST = RetryPolicy(list_lag_grace=1.0, poll_start=0.05, poll_cap=0.3, retry_base=0.1, retry_cap=1.0)
# For tests that count GETs: the safety-net poll (30x poll_start) then never fires on its own.
SLOW_POLL = replace(FAST, poll_start=1.0, poll_cap=3.0)
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
T = TypeVar("T")


#: How this module's simulator runs (the shared ``sim`` fixture in conftest.py reads it).
SIM_OPTIONS = {"job_seconds": 0.2, "concurrency": 10}


@dataclass
class Session:
    """A running worker with its journal, pipeline and (maybe) listener."""

    journal: Journal
    pipeline: GladiaPipeline
    worker: Worker
    listener: Listener | None


def write_config(tmp_path: Path, sim: GladiaSimulator, body: str, *,
                 outputs: tuple[str, ...] = ("txt", "json")) -> Path:
    """A real TOML config naming the simulator, a journal in tmp_path, and ``body``."""
    path = tmp_path / "config.toml"
    path.write_text(
        f"[gladia]\napi_key = {toml_value(KEY)}\napi_url = {toml_value(sim.base_url)}\n"
        f"max_concurrent_jobs = 5\n[journal]\npath = {toml_value(tmp_path / 'journal.db')}\n"
        f"[defaults]\nsettle_seconds = 0.05\noutputs = {toml_value(list(outputs))}\n" + body,
        encoding="utf-8")
    return path


def simple_config(tmp_path: Path, sim: GladiaSimulator, *, options: str = "",
                  outputs: tuple[str, ...] = ("txt", "json"), extra: str = "") -> Config:
    """One watch on tmp_path/inbox with ``options`` as its [defaults.options]."""
    (tmp_path / "inbox").mkdir(exist_ok=True)
    body = (f"[defaults.options]\n{options}\n" if options else "") + extra
    body += f"\n[[watch]]\npath = {toml_value(tmp_path / 'inbox')}\n"
    return load_config(write_config(tmp_path, sim, body, outputs=outputs), env={})


@asynccontextmanager
async def session(config: Config, *, retry: RetryPolicy = FAST) -> AsyncIterator[Session]:
    """Worker + pipeline (+ listener when [callback] is set), stopped and closed afterwards."""
    journal = Journal.open(config.journal_path, exclusive=True)
    assert config.gladia.api_key is not None
    folders = Folders(config.watches)
    engine = await GladiaEngine.open(EngineContext(
        config=config, journal=journal, health=ApiHealth(journal), retry=retry,
        outputs_for=folders.outputs_for))
    pipeline, listener = engine.gladia_pipeline, engine.listener
    worker = Worker(config, journal,
                    EngineRoutes.single(pipeline, config.gladia.max_concurrent_jobs),
                    folders=folders)
    stop = asyncio.Event()
    runner = asyncio.ensure_future(worker.run(stop))
    try:
        yield Session(journal, pipeline, worker, listener)
    finally:
        stop.set()
        await runner
        await engine.close()
        journal.close()


async def until(condition: Callable[[], T], *, timeout: float = 20.0, what: str = "it") -> T:
    """Poll ``condition`` on the loop until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def run(coro: Callable[[], Awaitable[T]]) -> T:
    """Run one async test body, bounded in time."""
    async def bounded() -> T:
        async with asyncio.timeout(60):
            return await coro()
    return asyncio.run(bounded())


def states(journal: Journal) -> list[str]:
    """Every source's state, oldest first."""
    return [s.state for s in journal.all()]


def job_id_of(journal: Journal) -> str:
    """The job id of the first source, or "" while it has none."""
    sources = journal.all()
    return (sources[0].job_id or "") if sources else ""


def gets_of(sim: GladiaSimulator, job_id: str) -> int:
    """How many GET /v2/pre-recorded/{id} the simulator answered for this job."""
    return sum(1 for r in sim.requests() if r.endpoint == "get" and r.path.endswith(job_id))


def script(data: bytes) -> list[list[str]]:
    """The simulator's utterances (word lists) for these bytes."""
    return script_for_sha(hashlib.sha256(data).hexdigest())


def pick_data(folder: Path, name: str, accept: Callable[[bytes], bool]) -> tuple[Path, bytes]:
    """Write a WAV whose simulated script satisfies ``accept`` (tries a few salts)."""
    for salt in range(200):
        path = folder / name
        data = make_wav(path, seconds=0.4, salt=f"{name}-{salt}")
        if accept(data):
            return path, data
    raise AssertionError("no salt gave the wanted script")


def has_entity(data: bytes) -> bool:
    """True when the simulated speech names a person or place (NER and PII have work)."""
    return any(w.rstrip(".?!,") in sim_jobs.ENTITIES for u in script(data) for w in u)


# -- add-on outputs --------------------------------------------------------------------------


ADDONS = """
diarization = true
translation = true
translation_config = { target_languages = ["fr"] }
subtitles = true
subtitles_config = { formats = ["srt", "vtt"] }
summarization = true
sentiment_analysis = true
named_entity_recognition = true
"""


def test_diarized_translated_summarised_outputs(tmp_path: Path, sim: GladiaSimulator) -> None:
    """Speaker-labelled txt, NAME.fr.txt/.srt, NAME.summary.md and NAME.md hold what Gladia
    returned: the text is predicted from the audio, not read back from the result."""
    config = simple_config(tmp_path, sim, options=ADDONS, outputs=("txt", "json", "srt", "md"))
    path, data = pick_data(tmp_path / "inbox", "meeting.wav", has_entity)
    utterances = script(data)

    async def body() -> None:
        async with session(config) as s:
            s.worker.hint(path)
            await until(lambda: states(s.journal) == ["done"], what="done")
    run(body)

    folder = path.parent
    assert (folder / "meeting.txt").read_text(encoding="utf-8") == "".join(
        f"Speaker {i % 2 + 1}: {' '.join(words)}\n" for i, words in enumerate(utterances))
    assert (folder / "meeting.fr.txt").read_text(encoding="utf-8") == "".join(
        f"Speaker {i % 2 + 1}: {' '.join(translate_words(words, 'fr'))}\n"
        for i, words in enumerate(utterances))
    srt = (folder / "meeting.fr.srt").read_text(encoding="utf-8")
    assert " ".join(translate_words(utterances[0], "fr")) in srt
    assert not (folder / "meeting.fr.vtt").exists()  # vtt is not among this watch's outputs
    summary = "The speakers discuss: " + " ".join(" ".join(u) for u in utterances)
    assert (folder / "meeting.summary.md").read_text(encoding="utf-8") == (
        f"# Summary of meeting.wav\n\n{summary}\n")

    report = (folder / "meeting.md").read_text(encoding="utf-8")
    assert report.startswith("---\ntitle: meeting.wav\n")  # front matter, then the report
    assert "\n---\n\n# meeting.wav\n" in report
    assert f"## Summary\n\n{summary}\n" in report
    assert f"**[00:00] Speaker 1:** {' '.join(utterances[0])}\n" in report
    assert f"### fr\n\n**[00:00] Speaker 1:** {' '.join(translate_words(utterances[0], 'fr'))}" \
        in report
    job = json.loads((folder / "meeting.json").read_text(encoding="utf-8"))
    sentiment_rows = [line for line in report.split("## Sentiment\n\n", 1)[1].split("\n\n")[0]
                      .splitlines()[2:]]
    assert len(sentiment_rows) == len(utterances)
    for row, item in zip(sentiment_rows, job["result"]["sentiment_analysis"]["results"],
                         strict=True):
        assert f"| {item['sentiment']} | {item['emotion']} | {item['text']} |" in row
    entities = job["result"]["named_entity_recognition"]["results"]
    assert entities
    for entity in entities:
        assert f"| {entity['entity_type'].replace('_', chr(92) + '_')} | {entity['text']} |" \
            in report
    assert "## Notes" not in report


def test_pii_redaction_reaches_every_output(tmp_path: Path, sim: GladiaSimulator) -> None:
    """With pii_redaction, Gladia's redacted transcript is what txt and md show; md says so."""
    options = ('pii_redaction = true\n'
               'pii_redaction_config = { entity_types = ["GDPR"], processed_text_type = "MARKER" }')
    config = simple_config(tmp_path, sim, options=options, outputs=("txt", "md"))
    path, data = pick_data(tmp_path / "inbox", "call.wav", has_entity)
    pii = {"pii_redaction": True, "pii_redaction_config": {"processed_text_type": "MARKER"}}

    async def body() -> None:
        async with session(config) as s:
            s.worker.hint(path)
            await until(lambda: states(s.journal) == ["done"], what="done")
    run(body)

    txt = (tmp_path / "inbox" / "call.txt").read_text(encoding="utf-8")
    assert " ".join(txt.split()) == expected_transcript(data, options=pii)
    assert " ".join(txt.split()) != expected_transcript(data)
    report = (tmp_path / "inbox" / "call.md").read_text(encoding="utf-8")
    assert "redacted by Gladia in this transcript and every output (GDPR; shown as MARKER)" \
        in report
    redacted_first = " ".join(redact(script(data)[0]))
    assert redacted_first.replace("[", "\\[").replace("]", "\\]") in report


def test_audio_to_llm_answers_in_the_report(tmp_path: Path, sim: GladiaSimulator) -> None:
    """Each audio_to_llm prompt appears in NAME.md with Gladia's answer under it."""
    options = 'audio_to_llm = true\naudio_to_llm_config = { prompts = ["Who is speaking?"] }'
    config = simple_config(tmp_path, sim, options=options, outputs=("md",))
    path = tmp_path / "inbox" / "q.wav"
    data = make_wav(path, seconds=0.4, salt="llm")

    async def body() -> None:
        async with session(config) as s:
            s.worker.hint(path)
            await until(lambda: states(s.journal) == ["done"], what="done")
    run(body)
    report = (tmp_path / "inbox" / "q.md").read_text(encoding="utf-8")
    answer = f"Answer to 'Who is speaking?': {' '.join(script(data)[0])}"
    assert f"## Answers\n\n### Who is speaking?\n\n{answer}\n" in report


def test_failed_addon_is_noted_and_the_transcript_still_written(
    tmp_path: Path, sim: GladiaSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A summarization block with success:false: the job is done, txt is written, no summary
    file, and NAME.md has a line saying the add-on failed and why."""
    real_build = sim_jobs.build_result

    def with_failed_summary(*args: Any, **kwargs: Any) -> dict[str, Any]:
        result = real_build(*args, **kwargs)
        result["summarization"] = {
            "success": False, "is_empty": True, "exec_time": 0.4, "results": None,
            "error": {"status_code": 500, "exception": "SummaryError",
                      "message": "Summary model unavailable"}}
        return result

    # The server calls build_result through its own module globals: patch it there.
    monkeypatch.setattr(sim_server, "build_result", with_failed_summary)
    config = simple_config(tmp_path, sim, options="summarization = true",
                           outputs=("txt", "md"))
    path = tmp_path / "inbox" / "talk.wav"
    data = make_wav(path, seconds=0.4, salt="failed-summary")

    async def body() -> None:
        async with session(config) as s:
            s.worker.hint(path)
            await until(lambda: states(s.journal) == ["done"], what="done")
    run(body)
    folder = tmp_path / "inbox"
    assert " ".join((folder / "talk.txt").read_text(encoding="utf-8").split()) == (
        expected_transcript(data))
    assert not (folder / "talk.summary.md").exists()
    assert ("## Notes\n\n- the summarization add-on failed: Summary model unavailable "
            "(SummaryError, status 500); the transcript is complete.\n") in (
        folder / "talk.md").read_text(encoding="utf-8")


# -- options: inheritance reaches Gladia; changes do not re-transcribe -----------------------


def test_inherited_unset_and_own_options_are_what_gladia_receives(
    tmp_path: Path, sim: GladiaSimulator
) -> None:
    """Each folder's job carries defaults merged with its own options, minus what it unsets,
    and the user's custom_metadata beside watcherd's own keys."""
    inbox, interviews = tmp_path / "inbox", tmp_path / "interviews"
    inbox.mkdir()
    interviews.mkdir()
    body = f"""
[defaults.options]
language_config = {{ languages = ["en"], code_switching = true }}
summarization = true
custom_metadata = {{ team = "research" }}

[[watch]]
path = {toml_value(inbox)}

[[watch]]
path = {toml_value(interviews)}
[watch.options]
unset = ["summarization", "language_config.code_switching"]
diarization = true
translation = true
translation_config = {{ target_languages = ["fr"] }}
"""
    config = load_config(write_config(tmp_path, sim, body), env={})
    make_wav(inbox / "a.wav", seconds=0.3, salt="inherit-a")
    make_wav(interviews / "b.wav", seconds=0.3, salt="inherit-b")

    async def run_it() -> None:
        async with session(config) as s:
            s.worker.hint(inbox / "a.wav")
            s.worker.hint(interviews / "b.wav")
            await until(lambda: states(s.journal) == ["done", "done"], what="both done")
    run(run_it)

    jobs = {job["custom_metadata"]["wf_file"]: job for job in sim.jobs()}
    # request_params also says which model ran (the default here): not sent by watcherd.
    sent = ("audio_url", "model")
    params_a = {k: v for k, v in jobs["a.wav"]["request_params"].items() if k not in sent}
    params_b = {k: v for k, v in jobs["b.wav"]["request_params"].items() if k not in sent}
    assert params_a == {"language_config": {"languages": ["en"], "code_switching": True},
                        "summarization": True}
    assert params_b == {"language_config": {"languages": ["en"]}, "diarization": True,
                        "translation": True, "translation_config": {"target_languages": ["fr"]}}
    for job in jobs.values():
        assert job["custom_metadata"]["team"] == "research"
        assert job["custom_metadata"]["wf_key"].startswith("wf2-")
    assert (interviews / "b.fr.txt").exists() and not (inbox / "a.fr.txt").exists()


def test_changed_options_do_not_retranscribe_done_files(tmp_path: Path,
                                                        sim: GladiaSimulator) -> None:
    """After a folder's options change, a file already done stays done: no new job, no rewrite;
    a new file in that folder gets the new options."""
    first = simple_config(tmp_path, sim)
    inbox = tmp_path / "inbox"
    old = inbox / "old.wav"
    make_wav(old, seconds=0.3, salt="old-file")

    async def before() -> None:
        async with session(first) as s:
            s.worker.hint(old)
            await until(lambda: states(s.journal) == ["done"], what="done")
    run(before)
    written = (inbox / "old.txt").stat().st_mtime_ns

    changed = simple_config(tmp_path, sim, options="diarization = true")
    new = inbox / "new.wav"
    make_wav(new, seconds=0.3, salt="new-file")

    async def after() -> None:
        async with session(changed) as s:
            s.worker.hint(old)
            s.worker.hint(new)
            await until(lambda: states(s.journal) == ["done", "done"], what="new file done")
    run(after)
    assert len(sim.jobs()) == 2
    assert [job["custom_metadata"]["wf_file"] for job in sim.jobs()] == ["old.wav", "new.wav"]
    assert sim.jobs()[1]["request_params"].get("diarization") is True
    assert (inbox / "old.txt").stat().st_mtime_ns == written
    assert (inbox / "new.txt").read_text(encoding="utf-8").startswith("Speaker 1: ")


def test_invalid_options_stop_the_daemon_before_any_upload(tmp_path: Path,
                                                           sim: GladiaSimulator) -> None:
    """translation = true without targets in one folder: `watcherd run` exits 2 naming the
    folder and the field, and Gladia never hears a thing."""
    inbox = tmp_path / "interviews"
    inbox.mkdir()
    make_wav(inbox / "x.wav", seconds=0.3, salt="never-sent")
    path = write_config(tmp_path, sim,
                        f"[[watch]]\npath = {toml_value(inbox)}\n[watch.options]\n"
                        "translation = true\n")
    result = subprocess.run([sys.executable, "-m", "watcherd", "run", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "watch[1].options.translation" in result.stderr
    assert f"(in the watch of {inbox})" in result.stderr
    assert sim.requests() == []


# -- callbacks and webhooks ------------------------------------------------------------------


def with_listener(config: Config, *, webhook: bool = False) -> Config:
    """``config`` with the listener on 127.0.0.1 (ephemeral port), and maybe webhooks."""
    return replace(config, callback=CallbackConfig(address=("127.0.0.1", 0)),
                   webhook=WebhookConfig(Secret(WHSEC)) if webhook else None)


def test_callback_from_gladia_finishes_the_file(tmp_path: Path, sim: GladiaSimulator) -> None:
    """The job carries the tokened callback URL; Gladia's callback reaches the listener, which
    makes the pipeline GET the job at once: one GET in all (a job just created is not polled
    while its callback is expected); the slowed safety-net poll would not come for 30 s."""
    sim.job_seconds = 1.0
    config = with_listener(simple_config(tmp_path, sim))
    path = tmp_path / "inbox" / "cb.wav"
    data = make_wav(path, seconds=0.3, salt="callback")

    async def body() -> None:
        async with session(config, retry=SLOW_POLL) as s:
            assert s.listener is not None
            assert s.pipeline.retry.poll_start == SLOW_POLL.poll_start * 30
            s.worker.hint(path)
            await until(lambda: states(s.journal) == ["done"], what="done via callback")
            assert s.listener.stats["accepted"] == 1
    run(body)
    (job,) = sim.jobs()
    token = load_or_create_token(token_path(config.journal_path)).reveal()
    sent = job["request_params"]["callback_config"]
    assert sent["method"] == "POST" and sent["url"].endswith(f"/callback/{token}")
    (delivery,) = sim.callbacks()
    assert (delivery["status"], delivery["event"]) == (200, "transcription.success")
    assert gets_of(sim, job["id"]) == 1
    assert " ".join((path.with_suffix(".txt")).read_text(encoding="utf-8").split()) == (
        expected_transcript(data))
    assert token not in path.with_suffix(".json").read_text(encoding="utf-8")


def test_error_callback_fails_the_file_at_once(tmp_path: Path, sim: GladiaSimulator) -> None:
    """A transcription.error callback wakes the poll too; the GET shows the error (422)."""
    sim.job_seconds = 1.0
    sim.fail_next_jobs(1, error_code=422)
    config = with_listener(simple_config(tmp_path, sim))
    path = tmp_path / "inbox" / "bad.wav"
    make_wav(path, seconds=0.3, salt="error-callback")

    async def body() -> None:
        async with session(config, retry=SLOW_POLL) as s:
            s.worker.hint(path)
            await until(lambda: states(s.journal) == ["failed"], what="failed")
    run(body)
    (delivery,) = sim.callbacks()
    assert (delivery["status"], delivery["event"]) == (200, "transcription.error")
    assert gets_of(sim, sim.jobs()[0]["id"]) == 1


def test_forged_callbacks_and_webhooks_do_not_wake_the_job(tmp_path: Path,
                                                           sim: GladiaSimulator) -> None:
    """While a job runs, forged requests naming it (bad token, bad signature, stale replay)
    cause no GET: the job still costs exactly one, after Gladia's real callback."""
    sim.job_seconds = 1.5
    config = with_listener(simple_config(tmp_path, sim), webhook=True)
    path = tmp_path / "inbox" / "long.wav"
    make_wav(path, seconds=0.3, salt="forged")

    async def body() -> None:
        async with session(config, retry=SLOW_POLL) as s:
            assert s.listener is not None
            s.worker.hint(path)
            job_id = await until(lambda: job_id_of(s.journal), what="job created")
            await until(lambda: states(s.journal) == ["submitted"], what="awaiting the job")
            host, port = s.listener.address
            base = f"http://{host}:{port}"
            hook = json.dumps({"event": "transcription.success",
                               "payload": {"id": job_id}}).encode()
            stale = int(time.time()) - 600
            key = decode_secret(Secret(WHSEC))
            async with httpx.AsyncClient() as client:
                forged = [
                    await client.post(f"{base}/callback/not-the-token",
                                      json={"id": job_id, "event": "transcription.success"}),
                    await client.post(f"{base}/webhook", content=hook, headers={
                        "webhook-id": "msg_forged", "webhook-timestamp": str(int(time.time())),
                        "webhook-signature": "v1,Zm9yZ2Vk"}),
                    await client.post(f"{base}/webhook", content=hook, headers={
                        "webhook-id": "msg_old", "webhook-timestamp": str(stale),
                        "webhook-signature": sign(key, "msg_old", stale, hook)}),
                ]
            assert [r.status_code for r in forged] == [404, 401, 401]
            assert gets_of(sim, job_id) == 0
            await until(lambda: states(s.journal) == ["done"], what="done")
    run(body)
    assert gets_of(sim, sim.jobs()[0]["id"]) == 1


def test_signed_webhook_alone_finishes_the_file(tmp_path: Path, sim: GladiaSimulator) -> None:
    """With only dashboard webhooks (no per-job callback), a signed transcription.success
    webhook makes the pipeline GET the job (once) and finish it."""
    config = with_listener(simple_config(tmp_path, sim), webhook=True)
    path = tmp_path / "inbox" / "hook.wav"
    make_wav(path, seconds=0.3, salt="webhook")

    async def body() -> None:
        async with session(config, retry=SLOW_POLL) as s:
            assert s.listener is not None
            s.pipeline.create_extras = lambda source: {}  # as if only the dashboard calls us
            s.worker.hint(path)
            job_id = await until(lambda: job_id_of(s.journal), what="job created")
            await until(lambda: sim.jobs()[0]["status"] == "done", what="job done at Gladia")
            await until(lambda: states(s.journal) == ["submitted"], what="awaiting the job")
            hook = json.dumps({"event": "transcription.success",
                               "payload": {"id": job_id}}).encode()
            now = int(time.time())
            host, port = s.listener.address
            async with httpx.AsyncClient() as client:
                answer = await client.post(f"http://{host}:{port}/webhook", content=hook, headers={
                    "svix-id": "msg_real", "svix-timestamp": str(now),
                    "svix-signature": sign(decode_secret(Secret(WHSEC)), "msg_real", now, hook)})
            assert answer.json() == {"status": "accepted"}
            await until(lambda: states(s.journal) == ["done"], what="done via webhook")
    run(body)
    assert sim.callbacks() == []
    assert gets_of(sim, sim.jobs()[0]["id"]) == 1


def test_polling_still_finishes_a_job_whose_callback_is_lost(tmp_path: Path,
                                                            sim: GladiaSimulator) -> None:
    """The listener goes away before Gladia calls: the callback fails, the slow safety-net poll
    still brings the result in."""
    config = with_listener(simple_config(tmp_path, sim))
    path = tmp_path / "inbox" / "lost.wav"
    data = make_wav(path, seconds=0.3, salt="lost-callback")

    async def body() -> None:
        async with session(config) as s:
            assert s.listener is not None
            sim.job_seconds = 1.0
            await s.listener.close()
            s.worker.hint(path)
            await until(lambda: states(s.journal) == ["done"], what="done by polling")
    run(body)
    (delivery,) = sim.callbacks()
    assert delivery["status"] is None and delivery["error"]
    assert " ".join(path.with_suffix(".txt").read_text(encoding="utf-8").split()) == (
        expected_transcript(data))
