"""The Gladia pipeline step by step, plus its helpers: backoff schedules and local media checks.

Pipeline tests drive one journal row at a time through :class:`GladiaPipeline` against the
simulator over real HTTP, with a real journal and real files; each sets the journal up in the
state a crash or an earlier run would have left.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.sim import (
    GladiaSimulator,
    expected_transcript,
    make_mp3,
    make_sparse_wav,
    make_wav,
)
from watcherd import media
from watcherd.config import Secret
from watcherd.engines.gladia.client import GladiaClient
from watcherd.engines.gladia.pipeline import GladiaPipeline
from watcherd.errors import SourceError
from watcherd.identity import content_key, hash_file, options_json
from watcherd.journal import Journal, Source
from watcherd.outputs import TEMP_MARKER
from watcherd.retry import RetryPolicy, poll_delays, retry_delay

KEY = "sk-pipeline-test-key-7"
FAST = RetryPolicy(list_lag_grace=0.8, poll_start=0.05, poll_cap=0.2, retry_base=0.1, retry_cap=0.5)
T = TypeVar("T")


# -- backoff -----------------------------------------------------------------------------------


class TestBackoff:
    """Retry delays: exponential ceiling, full jitter, Retry-After as a floor."""

    def test_full_jitter_under_a_doubling_ceiling(self) -> None:
        """Delays spread over [0, base * 2^(n-1)], capped; small values do occur."""
        rng = random.Random(1)
        for attempts, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (10, 600.0), (500, 600.0)]:
            delays = [retry_delay(attempts, base=2.0, cap=600.0, rng=rng) for _ in range(400)]
            assert all(0.0 <= d <= ceiling for d in delays)
            assert min(delays) < ceiling * 0.1 and max(delays) > ceiling * 0.9

    def test_retry_after_is_a_floor(self) -> None:
        """A server's Retry-After is never shortened, and an absurd one is bounded to an hour."""
        rng = random.Random(2)
        assert all(retry_delay(1, retry_after=30.0, rng=rng) >= 30.0 for _ in range(50))
        assert retry_delay(1, retry_after=10**9, rng=rng) == 3600.0
        assert retry_delay(1, retry_after=0.0, base=1.0, rng=rng) <= 1.0

    def test_poll_schedule_grows_and_caps(self) -> None:
        """Poll waits grow by 1.5x from the start value and stay within 20% of the cap."""
        waits = [w for _, w in zip(range(30), poll_delays(start=1.0, cap=30.0,
                                                           rng=random.Random(3)), strict=False)]
        assert 0.8 <= waits[0] <= 1.2
        assert waits[5] > waits[0]
        assert all(w <= 36.0 for w in waits) and min(waits[-5:]) >= 24.0


# -- media -------------------------------------------------------------------------------------


class TestMediaChecks:
    """What is refused locally, before any upload, and what is left for Gladia to judge."""

    @pytest.mark.parametrize(("head", "what"), [
        (b"Hello, this is a transcript of nothing at all.\n" * 20, "text"),
        ("Réunion: ordre du jour, budget, équipe\n".encode() * 30, "text"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(200), "a PDF document"),
        (b"PK\x03\x04" + bytes(100), "a ZIP archive (or an office document)"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "a PNG image"),
        (b"\xff\xd8\xff\xe0" + bytes(100), "a JPEG image"),
    ])
    def test_plain_non_media_is_named(self, head: bytes, what: str) -> None:
        """Text, documents, archives and images are recognised and named."""
        assert media.not_media(head) == what

    @pytest.mark.parametrize("head", [
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        b"ID3\x04\x00\x00\x00\x00\x00\x21TIT2",
        b"\xff\xfb\x90\xc4" + bytes(60),
        b"fLaC\x00\x00\x00\x22" + bytes(40),
        b"\x00\x00\x00\x20ftypM4A " + bytes(40),
        bytes(range(256)),
        b"short",
    ])
    def test_possible_media_is_left_to_gladia(self, head: bytes) -> None:
        """Media signatures, random binary and too-short heads are not judged locally."""
        assert media.not_media(head) is None

    def test_limits_and_durations(self, tmp_path: Path) -> None:
        """Empty, over 1000 MB and over 135 minutes are refused; real recordings pass."""
        wav, mp3 = tmp_path / "a.wav", tmp_path / "b.mp3"
        make_wav(wav, seconds=1.5, salt="dur")
        make_mp3(mp3, seconds=2.0, salt="dur")
        assert media.audio_duration(wav) == pytest.approx(1.5, abs=0.01)
        assert media.audio_duration(mp3) == pytest.approx(2.0, abs=0.1)
        media.check_source(wav, wav.stat().st_size)
        media.check_source(mp3, mp3.stat().st_size)
        with pytest.raises(SourceError, match="empty"):
            media.check_source(wav, 0)
        with pytest.raises(SourceError, match="1000 MB"):
            media.check_source(wav, media.MAX_BYTES + 1)
        long = tmp_path / "long.wav"
        make_sparse_wav(long, 136 * 60 * 32_000 + 44)
        with pytest.raises(SourceError, match="136 minutes"):
            media.check_source(long, long.stat().st_size)
        exact = tmp_path / "exact.wav"
        make_sparse_wav(exact, 135 * 60 * 32_000 + 44)
        media.check_source(exact, exact.stat().st_size)
        text = tmp_path / "t.wav"
        text.write_text("not audio\n" * 100)
        with pytest.raises(SourceError, match="it holds text") as caught:
            media.check_source(text, text.stat().st_size)
        assert not caught.value.transient


# -- the pipeline --------------------------------------------------------------------------------


#: How this module's simulator runs (the shared ``sim`` fixture in conftest.py reads it).
SIM_OPTIONS = {"job_seconds": 0.1, "concurrency": 5}


class Bench:
    """A journal, a client and a pipeline for one test; sources made ready to drive."""

    def __init__(self, tmp_path: Path, sim: GladiaSimulator) -> None:
        self.sim = sim
        self.folder = tmp_path / "inbox"
        self.folder.mkdir(exist_ok=True)
        self.journal = Journal.open(tmp_path / "journal.db", exclusive=True)
        self.client = GladiaClient(sim.base_url, Secret(KEY))
        self.pipeline = GladiaPipeline(self.journal, self.client, retry=FAST)

    def settled(self, path: Path) -> Source:
        """Record ``path`` as seen, hashed and keyed, exactly as the worker leaves it."""
        digest, st = hash_file(path)
        [source] = self.journal.observe_many(
            [(str(path), str(self.folder), st, options_json({}))])
        return self.journal.transition(
            source, "pending", actor="test", sha256=digest,
            content_key=content_key(digest, options_json({})),
        )

    async def drive_until(self, source_id: int, states: set[str], *, timeout: float = 20.0
                          ) -> Source:
        """Drive the source again and again (as the worker would) until it reaches a state."""
        deadline = time.monotonic() + timeout
        while True:
            source = self.journal.get(source_id)
            if source.state in states:
                return source
            assert time.monotonic() < deadline, (source.state, source.last_error)
            if source.state == "waiting" and (source.next_attempt_at or 0) > time.time():
                await asyncio.sleep(0.05)
                continue
            await self.pipeline.drive(source_id)

    async def close(self) -> None:
        """Close the client and the journal."""
        await self.client.aclose()
        self.journal.close()


def _run(tmp_path: Path, sim: GladiaSimulator, scenario: Callable[[Bench], Awaitable[T]]) -> T:
    async def main() -> T:
        bench = Bench(tmp_path, sim)
        try:
            return await scenario(bench)
        finally:
            await bench.close()
    return asyncio.run(main())


def _txt(path: Path) -> str:
    return " ".join(path.with_suffix(".txt").read_text(encoding="utf-8").split())


def _metadata(source: Source) -> dict[str, Any]:
    return {"wf_key": source.content_key, "wf_file": Path(source.path).name}


class TestNeverPayTwice:
    """Every way the pipeline avoids a second job for the same content."""

    def test_job_created_late_is_still_adopted(self, tmp_path: Path,
                                               sim: GladiaSimulator) -> None:
        """An intent committed long ago, a job that appears at Gladia only now and lags in
        the list: the grace is counted from this process's first look, so it is adopted."""
        sim.list_lag_seconds = 0.5
        path = tmp_path / "inbox" / "late.wav"
        (tmp_path / "inbox").mkdir()
        data = make_wav(path, seconds=0.3, salt="late")

        async def scenario(bench: Bench) -> Source:
            source = bench.settled(path)
            upload = await bench.client.upload(path)
            source = bench.journal.transition(
                source, "submitting", actor="test", audio_url=upload.audio_url,
                submit_started_at=time.time() - 3600)
            # The request of the crashed process reaches Gladia only now.
            await bench.client.create({"audio_url": upload.audio_url,
                                       "custom_metadata": _metadata(source)})
            return await bench.drive_until(source.id, {"done", "failed"})

        done = _run(tmp_path, sim, scenario)
        assert done.state == "done", done.last_error
        assert len(sim.jobs()) == 1
        assert _txt(path) == expected_transcript(data)

    def test_no_job_after_the_grace_creates_one(self, tmp_path: Path,
                                                sim: GladiaSimulator) -> None:
        """An intent whose request never reached Gladia: after the grace, exactly one job."""
        path = tmp_path / "inbox" / "never.wav"
        (tmp_path / "inbox").mkdir()
        make_wav(path, seconds=0.3, salt="never")

        async def scenario(bench: Bench) -> tuple[Source, float]:
            source = bench.settled(path)
            source = bench.journal.transition(source, "submitting", actor="test",
                                              submit_started_at=time.time())
            started = time.monotonic()
            await bench.pipeline.drive(source.id)
            waiting = bench.journal.get(source.id)
            assert waiting.state == "waiting" and waiting.submit_started_at is not None
            assert "checking whether Gladia created the job" in (waiting.last_error or "")
            done = await bench.drive_until(source.id, {"done", "failed"})
            return done, time.monotonic() - started

        done, took = _run(tmp_path, sim, scenario)
        assert done.state == "done" and len(sim.jobs()) == 1
        assert took >= FAST.list_lag_grace

    def test_existing_job_is_reused_when_the_journal_forgot(self, tmp_path: Path,
                                                           sim: GladiaSimulator) -> None:
        """A fresh journal (lost, or the file deleted and dropped again) finds the job Gladia
        already has for this content and options instead of paying again."""
        path = tmp_path / "inbox" / "again.wav"
        (tmp_path / "inbox").mkdir()
        data = make_wav(path, seconds=0.3, salt="again")

        async def scenario(bench: Bench) -> Source:
            source = bench.settled(path)
            upload = await bench.client.upload(path)
            await bench.client.create({"audio_url": upload.audio_url,
                                       "custom_metadata": _metadata(source)})
            return await bench.drive_until(source.id, {"done", "failed"})

        done = _run(tmp_path, sim, scenario)
        assert done.state == "done" and len(sim.jobs()) == 1
        assert _txt(path) == expected_transcript(data)

    def test_errored_job_is_not_reused(self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """A job that ended in error for this content is not adopted: a new one is made."""
        path = tmp_path / "inbox" / "err.wav"
        (tmp_path / "inbox").mkdir()
        make_wav(path, seconds=0.3, salt="err")

        async def scenario(bench: Bench) -> Source:
            source = bench.settled(path)
            upload = await bench.client.upload(path)
            sim.fail_next_jobs(1, error_code=500)
            old = await bench.client.create({"audio_url": upload.audio_url,
                                             "custom_metadata": _metadata(source)})
            while (await bench.client.get(old.id))["status"] != "error":
                await asyncio.sleep(0.05)
            return await bench.drive_until(source.id, {"done", "failed"})

        done = _run(tmp_path, sim, scenario)
        assert done.state == "done"
        assert [j["status"] for j in sim.jobs()] == ["error", "done"]


class TestSourceLifecycle:
    """The source itself moving under the pipeline's feet."""

    def test_vanished_before_writing_is_gone_and_comes_back_free(
            self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """A source deleted while its job ran is gone, no output appears; dropped again, it
        gets the stored result without a new job."""
        path = tmp_path / "inbox" / "away.wav"
        (tmp_path / "inbox").mkdir()
        data = make_wav(path, seconds=0.3, salt="away")
        sim.job_seconds = 0.5

        async def scenario(bench: Bench) -> tuple[Source, Source]:
            source = bench.settled(path)
            drive = asyncio.ensure_future(bench.pipeline.drive(source.id))
            while not sim.jobs():
                await asyncio.sleep(0.02)
            path.unlink()
            await drive
            gone = bench.journal.get(source.id)
            path.write_bytes(data)
            again = bench.settled(path)
            return gone, await bench.drive_until(again.id, {"done", "failed"})

        gone, again = _run(tmp_path, sim, scenario)
        assert gone.state == "gone" and "disappeared" in (gone.last_error or "")
        assert again.state == "done" and len(sim.jobs()) == 1
        assert _txt(path) == expected_transcript(data)

    def test_crash_mid_write_leaves_no_temp_behind(self, tmp_path: Path,
                                                  sim: GladiaSimulator) -> None:
        """Temp files of this source's outputs left by a crash are removed once the outputs
        are written; another source's temp in the same folder is left alone."""
        folder = tmp_path / "inbox"
        folder.mkdir()
        path = folder / "temp.wav"
        make_wav(path, seconds=0.3, salt="temp")
        ours = folder / f".temp.txt{TEMP_MARKER}-0123456789ab"
        ours.write_text("half a transcr")
        theirs = folder / f".other.txt{TEMP_MARKER}-0123456789ab"
        theirs.write_text("someone else's")

        async def scenario(bench: Bench) -> Source:
            return await bench.drive_until(bench.settled(path).id, {"done", "failed"})

        assert _run(tmp_path, sim, scenario).state == "done"
        assert not ours.exists() and theirs.exists()

    def test_outputs_folder_unwritable_waits_then_finishes(self, tmp_path: Path,
                                                          sim: GladiaSimulator) -> None:
        """When the transcript cannot be written the source waits with that reason, keeping
        its job; once writable, the stored result is written with no new job."""
        folder = tmp_path / "inbox"
        folder.mkdir()
        path = folder / "ro.wav"
        data = make_wav(path, seconds=0.3, salt="ro")
        blocker = folder / "ro.txt"
        blocker.mkdir()
        (blocker / "keep").write_text("x")

        async def scenario(bench: Bench) -> tuple[Source, Source]:
            source = bench.settled(path)
            waiting = await bench.drive_until(source.id, {"waiting", "done", "failed"})
            (blocker / "keep").unlink()
            blocker.rmdir()
            return waiting, await bench.drive_until(source.id, {"done", "failed"})

        waiting, done = _run(tmp_path, sim, scenario)
        assert waiting.state == "waiting"
        assert "cannot write the transcript" in (waiting.last_error or "")
        assert done.state == "done" and len(sim.jobs()) == 1
        assert _txt(path) == expected_transcript(data)


class TestRetrySchedule:
    """Transient failures wait in the journal, on a schedule that survives a restart."""

    def test_rate_limited_create_waits_retry_after_without_lookup(
            self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """A 429 on create is certain not to have made a job: the source waits at least the
        Retry-After (stored in the journal), with no intent left needing a look-up."""
        path = tmp_path / "inbox" / "busy.wav"
        (tmp_path / "inbox").mkdir()
        make_wav(path, seconds=0.3, salt="busy")
        sim.faults.add("create", "status", status=429, retry_after=30)

        async def scenario(bench: Bench) -> tuple[Source, float]:
            source = bench.settled(path)
            before = time.time()
            await bench.pipeline.drive(source.id)
            return bench.journal.get(source.id), before

        waiting, before = _run(tmp_path, sim, scenario)
        assert waiting.state == "waiting" and waiting.attempts == 1
        assert waiting.submit_started_at is None and waiting.job_id is None
        assert waiting.audio_url is not None
        assert waiting.next_attempt_at is not None and waiting.next_attempt_at >= before + 30
        assert "429" in (waiting.last_error or "")
        assert sim.jobs() == []

    def test_server_error_on_create_keeps_the_intent(self, tmp_path: Path,
                                                     sim: GladiaSimulator) -> None:
        """A 5xx on create may hide a created job: the intent stays, so the next attempt looks
        the content key up first; still exactly one job in the end."""
        path = tmp_path / "inbox" / "five.wav"
        (tmp_path / "inbox").mkdir()
        make_wav(path, seconds=0.3, salt="five")
        sim.faults.add("create", "status", status=502)

        async def scenario(bench: Bench) -> tuple[Source, Source]:
            source = bench.settled(path)
            await bench.pipeline.drive(source.id)
            waiting = bench.journal.get(source.id)
            return waiting, await bench.drive_until(source.id, {"done", "failed"})

        waiting, done = _run(tmp_path, sim, scenario)
        assert waiting.state == "waiting" and waiting.submit_started_at is not None
        assert done.state == "done" and len(sim.jobs()) == 1


class TestWithinTheStep:
    """Failures that are harmless to repeat are retried at once, not after a step's backoff
    (issue 22: under the fault mix those waits were most of the makespan at short T)."""

    def test_rate_limited_create_with_a_short_retry_after_is_sent_again(
            self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """A 429 with Retry-After: 1 on create made no job: the same create goes again after
        1 s under the intent it holds, and one drive ends with the job's result."""
        path = tmp_path / "inbox" / "again.wav"
        (tmp_path / "inbox").mkdir()
        data = make_wav(path, seconds=0.3, salt="again")
        sim.faults.add("create", "status", status=429, retry_after=1)

        async def scenario(bench: Bench) -> Source:
            source = bench.settled(path)
            await bench.pipeline.drive(source.id)
            return bench.journal.get(source.id)

        done = _run(tmp_path, sim, scenario)
        assert done.state == "done" and done.attempts == 0
        creates = [r for r in sim.requests() if r.endpoint == "create"]
        assert [r.status for r in creates] == [429, 201]
        assert creates[1].time - creates[0].time >= 1.0
        assert set(sim.creates_per_content().values()) == {1}
        assert _txt(path) == expected_transcript(data)

    @pytest.mark.parametrize("fault", ["status", "reset"])
    def test_failed_upload_is_sent_again(self, tmp_path: Path, sim: GladiaSimulator,
                                         fault: str) -> None:
        """An upload answered 503 (or cut) made no job: it is sent again within the step."""
        path = tmp_path / "inbox" / "up.wav"
        (tmp_path / "inbox").mkdir()
        make_wav(path, seconds=0.3, salt=f"up-{fault}")
        sim.faults.add("upload", fault, status=503)  # type: ignore[arg-type]

        async def scenario(bench: Bench) -> Source:
            source = bench.settled(path)
            await bench.pipeline.drive(source.id)
            return bench.journal.get(source.id)

        done = _run(tmp_path, sim, scenario)
        assert done.state == "done"
        assert len([r for r in sim.requests() if r.endpoint == "upload"]) == 2
        assert len(sim.jobs()) == 1

    def test_lost_create_looks_again_soon(self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """A create answered 503 may have made a job and holds its place in the budget until
        the list settles it: the look-up comes within EVIDENCE_RELOOK, not after a backoff
        of up to retry_base (600 s here)."""
        from watcherd.engines.gladia.pipeline import EVIDENCE_RELOOK

        path = tmp_path / "inbox" / "lost.wav"
        (tmp_path / "inbox").mkdir()
        make_wav(path, seconds=0.3, salt="lost-soon")
        sim.faults.add("create", "status", status=503)

        async def scenario(bench: Bench) -> Source:
            bench.pipeline.retry = RetryPolicy(retry_base=600.0, retry_cap=3600.0)
            source = bench.settled(path)
            await bench.pipeline.drive(source.id)
            return bench.journal.get(source.id)

        waiting = _run(tmp_path, sim, scenario)
        assert waiting.state == "waiting" and waiting.submit_started_at is not None
        assert waiting.next_attempt_at is not None
        assert waiting.next_attempt_at <= time.time() + EVIDENCE_RELOOK

    def test_a_stored_result_frees_its_budget_place(self, tmp_path: Path,
                                                    sim: GladiaSimulator) -> None:
        """Once a job's result is stored, its place in the budget (plan + queue ahead) is
        free while the outputs are written: the journal still counts the source, so the
        budget is one more meanwhile, and back to the plan's once it is done."""
        path = tmp_path / "inbox" / "place.wav"
        (tmp_path / "inbox").mkdir()
        make_wav(path, seconds=0.3, salt="place")
        seen: list[tuple[int | None, int]] = []

        async def scenario(bench: Bench) -> Source:
            def outputs_for(source: Source) -> list[str]:
                # Asked for once the result is stored, before the outputs are written.
                seen.append((pipeline.max_in_flight,
                             bench.journal.count_in_flight(exclude=set())))
                return ["txt"]

            pipeline = GladiaPipeline(bench.journal, bench.client, retry=FAST, max_in_flight=2,
                                      queue_ahead=1, outputs_for=outputs_for)
            source = bench.settled(path)
            await pipeline.drive(source.id)
            assert pipeline.max_in_flight == 3
            return bench.journal.get(source.id)

        done = _run(tmp_path, sim, scenario)
        assert done.state == "done"
        assert seen == [(4, 1)]


class TestPollCap:
    """The wait between polls scales with the recording's length."""

    def test_short_memo_is_polled_often_long_recording_rarely(self) -> None:
        """A 20 s memo caps at 3 s, an hour at the 30 s maximum, unknown length at the max."""
        from watcherd.engines.gladia.polling import poll_cap_for

        timing = RetryPolicy(poll_start=1.0, poll_cap=30.0)
        assert poll_cap_for(20.0, timing) == 3.0
        assert poll_cap_for(120.0, timing) == 12.0
        assert poll_cap_for(3600.0, timing) == 30.0
        assert poll_cap_for(None, timing) == 30.0
