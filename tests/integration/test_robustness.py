"""One bad file or one odd answer stays with its source: the worker in-process, real journal,
real simulator over HTTP, real folders; file system faults injected by :mod:`tests.faultfs`."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.faultfs import STEPS, FaultFS, Step
from tests.sim import GladiaSimulator, make_wav
from watcherd import identity
from watcherd.config import Config, GladiaConfig, Secret, WatchConfig
from watcherd.engines.gladia.client import GladiaClient
from watcherd.engines.gladia.pipeline import GladiaPipeline
from watcherd.folders import Folders
from watcherd.fserrors import classify
from watcherd.journal import Journal, Source
from watcherd.retry import RetryPolicy
from watcherd.worker import EngineRoutes, Worker
from watcherd.worker import settling as settling_module

KEY = "sk-robustness-test-key-7"
FAST = RetryPolicy(list_lag_grace=1.0, poll_start=0.05, poll_cap=0.3, retry_base=0.05,
                   retry_cap=0.4)


#: How this module's simulator runs (the shared ``sim`` fixture in conftest.py reads it).
SIM_OPTIONS = {"job_seconds": 0.1, "concurrency": 10}


def _config(tmp_path: Path, sim: GladiaSimulator, *watches: WatchConfig) -> Config:
    if not watches:
        inbox = tmp_path / "inbox"
        inbox.mkdir(exist_ok=True)
        watches = (WatchConfig(path=inbox, settle_seconds=0.05, outputs=("txt", "json")),)
    return Config(
        source=None,
        gladia=GladiaConfig(api_key=Secret(KEY), api_url=sim.base_url, max_concurrent_jobs=3),
        engine="auto", local_model="base", journal_path=tmp_path / "journal.db",
        log_format="json", log_level="info", watches=watches,
    )


@dataclass
class Rig:
    """A worker with a Gladia pipeline, run step by step from a test."""

    config: Config
    journal: Journal
    worker: Worker
    pipeline: GladiaPipeline
    client: GladiaClient
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Future[None] | None = None

    def source(self, path: Path) -> Source | None:
        """The journal's row for ``path``."""
        return self.journal.by_path(str(path))

    async def until(self, check: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait for ``check()`` with a deadline; show the journal if it never holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check():
            if self.runner is not None and self.runner.done():
                self.runner.result()
            assert loop.time() < deadline, "timed out: " + json.dumps(
                [(repr(s.path), s.state, s.last_error) for s in self.journal.all()])
            await asyncio.sleep(0.02)

    def state(self, path: Path) -> str | None:
        """The journal state of ``path``, or None when it has no row."""
        row = self.source(path)
        return None if row is None else row.state


async def _start(config: Config, *, pipeline_wrap: Callable[[GladiaPipeline], Any] | None = None,
                 file_timeout: float = 60.0) -> Rig:
    journal = Journal.open(config.journal_path, exclusive=True)
    assert config.gladia.api_key is not None
    client = GladiaClient(config.gladia.api_url, config.gladia.api_key)
    folders = Folders(config.watches)
    pipeline = GladiaPipeline(journal, client, retry=FAST, outputs_for=folders.outputs_for)
    driven = pipeline_wrap(pipeline) if pipeline_wrap is not None else pipeline
    worker = Worker(config, journal,
                    EngineRoutes.single(driven, config.gladia.max_concurrent_jobs), retry=FAST,
                    file_timeout=file_timeout, folders=folders)
    rig = Rig(config, journal, worker, pipeline, client)
    rig.runner = asyncio.ensure_future(worker.run(rig.stop))
    return rig


async def _close(rig: Rig) -> None:
    rig.stop.set()
    assert rig.runner is not None
    await rig.runner
    await rig.client.aclose()
    rig.journal.close()


def _drop(folder: Path, name: str | bytes, salt: str) -> Path:
    raw = name if isinstance(name, bytes) else name.encode()
    path = Path(os.fsdecode(os.path.join(os.fsencode(folder), raw)))
    make_wav(path, seconds=0.2, salt=salt)
    return path


class _Faulty:
    """Wraps a real pipeline; sources whose name contains ``marker`` misbehave as told."""

    def __init__(self, inner: GladiaPipeline, marker: str, how: str) -> None:
        self.inner = inner
        self.marker = marker
        self.how = how
        self.calls = 0
        self.remote_jobs = inner.remote_jobs

    async def drive(self, source_id: int) -> None:
        """Raise, or return without recording anything, for the marked source only."""
        source = self.inner.journal.get(source_id)
        if self.marker in Path(source.path).name:
            self.calls += 1
            if self.how == "raise":
                raise KeyError("a bug nobody foresaw")
            return
        await self.inner.drive(source_id)


class TestFaultBoundary:
    """An attempt that raises or records nothing stays with its source and never spins."""

    @pytest.mark.parametrize("how", ["raise", "silent"])
    def test_misbehaving_source_fails_after_budget_others_finish(
        self, tmp_path: Path, sim: GladiaSimulator, how: str
    ) -> None:
        """The bad source is retried with backoff, then failed with the reason; others done."""
        config = _config(tmp_path, sim)
        inbox = config.watches[0].path
        faulty: list[_Faulty] = []

        def wrap(p: GladiaPipeline) -> _Faulty:
            faulty.append(_Faulty(p, "bad", how))
            return faulty[0]

        async def go() -> None:
            rig = await _start(config, pipeline_wrap=wrap)
            try:
                bad = _drop(inbox, "bad.wav", "b")
                good = [_drop(inbox, f"good{i}.wav", str(i)) for i in range(3)]
                for path in [bad, *good]:
                    rig.worker.hint(path)
                await rig.until(lambda: rig.state(bad) == "failed"
                                and all(rig.state(g) == "done" for g in good))
                row = rig.source(bad)
                assert row is not None and row.last_error is not None
                expected = "KeyError" if how == "raise" else "without recording an outcome"
                assert expected in row.last_error
                assert "watcherd retry" in row.last_error
                # Exactly the budget of attempts: no re-dispatch in the same tick, no spinning.
                assert faulty[0].calls == FAST.unexpected_budget
            finally:
                await _close(rig)

        asyncio.run(go())


class TestNames:
    """Any name the file system allows is transcribed, journaled and written next to itself."""

    NAMES: Sequence[bytes] = (
        b"caf\xe9 latin-1.wav",          # not UTF-8
        b"line\nbreak.wav",
        b"tab\tand \x1b[31mescape.wav",
        b'colon: "quoted" \'single\'.wav',
        "日本語の会議.wav".encode(),
        b"\xff\xfe odd bytes \x80.wav",
    )

    def test_odd_names_end_to_end(self, tmp_path: Path, sim: GladiaSimulator) -> None:
        """Each odd name gets its transcript under the same raw stem; the journal round-trips."""
        config = _config(tmp_path, sim)
        inbox = config.watches[0].path

        async def go() -> None:
            rig = await _start(config)
            try:
                paths = [_drop(inbox, name, str(i)) for i, name in enumerate(self.NAMES)]
                for path in paths:
                    rig.worker.hint(path)
                await rig.until(lambda: all(rig.state(p) == "done" for p in paths))
                for path in paths:
                    row = rig.source(path)
                    assert row is not None and os.fsencode(row.path) == os.fsencode(path)
                    stem = os.fsencode(path)[: -len(b".wav")]
                    assert os.path.exists(stem + b".txt"), path
                    assert os.path.exists(stem + b".json"), path
            finally:
                await _close(rig)

        asyncio.run(go())


class TestFileKinds:
    """FIFOs and sockets are never opened: they show as ignored with a reason."""

    def test_fifo_and_socket_ignored_others_finish(self, tmp_path: Path,
                                                   sim: GladiaSimulator) -> None:
        """A FIFO named like audio would block a reader for ever; it is recorded, not read."""
        import socket

        config = _config(tmp_path, sim)
        inbox = config.watches[0].path
        fifo = inbox / "pipe.wav"
        os.mkfifo(fifo)
        sock_path = inbox / "s.mp3"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(sock_path))

        async def go() -> None:
            rig = await _start(config)
            try:
                good = _drop(inbox, "good.wav", "g")
                for path in (fifo, sock_path, good):
                    rig.worker.hint(path)
                await rig.until(lambda: rig.state(good) == "done"
                                and rig.state(fifo) == "failed"
                                and rig.state(sock_path) == "failed")
                fifo_row, sock_row = rig.source(fifo), rig.source(sock_path)
                assert fifo_row is not None and "named pipe" in (fifo_row.last_error or "")
                assert sock_row is not None and "socket" in (sock_row.last_error or "")
            finally:
                await _close(rig)

        try:
            asyncio.run(go())
        finally:
            sock.close()


class TestApiAnswers:
    """A 403, an odd job object or an unusable body fails one file, never the others."""

    def test_403_on_create_fails_that_folder_only(self, tmp_path: Path,
                                                  sim: GladiaSimulator) -> None:
        """A folder asking for a feature the plan lacks fails with Gladia's words; no pause."""
        sim.forbidden_features = frozenset({"diarization"})
        plain, fancy = tmp_path / "plain", tmp_path / "fancy"
        plain.mkdir()
        fancy.mkdir()
        config = _config(
            tmp_path, sim,
            WatchConfig(path=plain, settle_seconds=0.05, outputs=("txt",)),
            WatchConfig(path=fancy, settle_seconds=0.05, outputs=("txt",),
                        options={"diarization": True}),
        )

        async def go() -> None:
            rig = await _start(config)
            try:
                refused = _drop(fancy, "meeting.wav", "f")
                fine = [_drop(plain, f"memo{i}.wav", str(i)) for i in range(3)]
                for path in [refused, *fine]:
                    rig.worker.hint(path)
                await rig.until(lambda: rig.state(refused) == "failed"
                                and all(rig.state(p) == "done" for p in fine))
                row = rig.source(refused)
                assert row is not None and "plan does not include diarization" in (
                    row.last_error or "")
                assert rig.worker.auth_problem is None
            finally:
                await _close(rig)

        asyncio.run(go())

    def test_lone_surrogate_in_transcript_is_stored_and_written(
        self, tmp_path: Path, sim: GladiaSimulator
    ) -> None:
        """A transcript cut mid-emoji is stored losslessly; the text output replaces it."""

        def cut(job: dict[str, Any]) -> dict[str, Any]:
            job["result"]["transcription"]["full_transcript"] += " \ud83d"
            for u in job["result"]["transcription"]["utterances"]:
                u["text"] += " \ud83d"
            return job

        sim.job_transform = cut
        config = _config(tmp_path, sim)
        inbox = config.watches[0].path

        async def go() -> None:
            rig = await _start(config)
            try:
                path = _drop(inbox, "emoji.wav", "e")
                rig.worker.hint(path)
                await rig.until(lambda: rig.state(path) == "done")
                row = rig.source(path)
                assert row is not None and row.content_key is not None
                stored = rig.journal.result_for(row.content_key)
                assert stored is not None
                assert "\ud83d" in stored["result"]["transcription"]["full_transcript"]
                text = (inbox / "emoji.txt").read_bytes().decode("utf-8")
                assert "\ud83d" not in text
            finally:
                await _close(rig)
            gets = [r for r in sim.requests() if r.endpoint == "get"]
            assert len(gets) < 20, "the job was fetched in a loop"

        asyncio.run(go())

    def test_non_json_200_fails_after_budget(self, tmp_path: Path,
                                             sim: GladiaSimulator) -> None:
        """A 200 whose body is not JSON is retried a few times, then fails that file."""
        sim.job_transform = lambda job: b"<html>maintenance</html>"
        config = _config(tmp_path, sim)
        inbox = config.watches[0].path

        async def go() -> None:
            rig = await _start(config)
            try:
                path = _drop(inbox, "odd.wav", "o")
                rig.worker.hint(path)
                await rig.until(lambda: rig.state(path) == "failed")
                row = rig.source(path)
                assert row is not None and "not JSON" in (row.last_error or "")
            finally:
                await _close(rig)
            gets = [r for r in sim.requests() if r.endpoint == "get"]
            assert len(gets) < 20, "the job was fetched in a loop"

        asyncio.run(go())


# -- file system faults at each step ----------------------------------------------------------

ERRNOS = (errno.EIO, errno.ESTALE, errno.EMFILE, errno.ENOSPC, errno.EROFS, errno.EACCES,
          errno.ENAMETOOLONG, errno.ELOOP)


def _expected(step: Step, code: int) -> str:
    """What a file ends as when ``code`` hits it at ``step``: "recovers" or "fails"."""
    kind = classify(OSError(code, "x")).kind
    if step == "write":
        return "fails" if kind == "permanent" else "recovers"
    return "recovers" if kind in ("transient", "space") else "fails"


class TestFileSystemFaults:
    """Each errno at each step: the file ends where the classification says; others finish."""

    @pytest.mark.parametrize("step", STEPS)
    @pytest.mark.parametrize("code", ERRNOS, ids=lambda c: errno.errorcode[c])
    def test_errno_at_step(self, tmp_path: Path, sim: GladiaSimulator,
                           monkeypatch: pytest.MonkeyPatch, step: Step, code: int) -> None:
        """Retryable errors wait and recover once the fault clears; the rest fail with why."""
        config = _config(tmp_path, sim)
        inbox = config.watches[0].path
        expected = _expected(step, code)

        async def go() -> None:
            rig = await _start(config)
            try:
                bad = _drop(inbox, "faulty.wav", "x")
                good = _drop(inbox, "fine.wav", "y")
                fs = FaultFS(monkeypatch, "faulty", step, code)
                rig.worker.hint(bad)
                rig.worker.hint(good)
                await rig.until(lambda: rig.state(good) == "done")
                if expected == "fails":
                    await rig.until(lambda: rig.state(bad) == "failed")
                    row = rig.source(bad)
                    assert row is not None and row.last_error
                    assert fs.hits <= max(FAST.read_error_budget, FAST.file_error_budget) + 2
                    return
                await rig.until(lambda: fs.hits > 0)
                assert rig.state(bad) != "failed"
                fs.stop()
                rig.worker.hint(bad)
                await rig.until(lambda: rig.state(bad) == "done")
            finally:
                await _close(rig)

        asyncio.run(go())

    def test_persistent_eio_fails_after_budget(self, tmp_path: Path, sim: GladiaSimulator,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        """A file that never reads is failed after the budget, not re-read in a tight loop."""
        config = _config(tmp_path, sim)
        inbox = config.watches[0].path

        async def go() -> None:
            rig = await _start(config)
            try:
                bad = _drop(inbox, "faulty.wav", "x")
                fs = FaultFS(monkeypatch, "faulty", "read", errno.EIO)
                rig.worker.hint(bad)
                await rig.until(lambda: rig.state(bad) == "failed")
                row = rig.source(bad)
                assert row is not None and "Input/output error" in (row.last_error or "")
                assert fs.hits == FAST.read_error_budget
            finally:
                await _close(rig)

        asyncio.run(go())

    def test_done_file_briefly_unreadable_stays_done(
        self, tmp_path: Path, sim: GladiaSimulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An EIO on a finished file (a share hiccup) never turns it failed."""
        config = _config(tmp_path, sim)
        inbox = config.watches[0].path

        async def go() -> None:
            rig = await _start(config)
            try:
                path = _drop(inbox, "faulty.wav", "d")
                rig.worker.hint(path)
                await rig.until(lambda: rig.state(path) == "done")
                fs = FaultFS(monkeypatch, "faulty", "stat", errno.EIO)
                rig.worker.hint(path)
                await rig.until(lambda: fs.hits > 0)
                await rig.until(lambda: rig.worker.idle())
                assert rig.state(path) == "done"
            finally:
                await _close(rig)

        asyncio.run(go())


def test_hash_batch_survives_an_unforeseen_error(tmp_path: Path, sim: GladiaSimulator,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception of any kind while hashing one file never costs its batch the others."""
    real = identity.hash_file

    def hash_file(path: Path, expected: Any = None, **checks: Any) -> Any:
        if "boom" in path.name:
            raise MemoryError("pretend the reader blew up")
        return real(path, expected, **checks)

    monkeypatch.setattr(settling_module, "hash_file", hash_file)
    config = _config(tmp_path, sim)
    inbox = config.watches[0].path

    async def go() -> None:
        rig = await _start(config)
        try:
            boom = _drop(inbox, "boom.wav", "b")
            good = [_drop(inbox, f"g{i}.wav", str(i)) for i in range(4)]
            for path in [boom, *good]:
                rig.worker.hint(path)
            await rig.until(lambda: all(rig.state(g) == "done" for g in good)
                            and rig.state(boom) == "failed")
            row = rig.source(boom)
            assert row is not None and "MemoryError" in (row.last_error or "")
        finally:
            await _close(rig)

    asyncio.run(go())


@pytest.mark.parametrize("step", ["stat", "read"])
def test_hung_mount_does_not_freeze_other_folders(
    tmp_path: Path, sim: GladiaSimulator, monkeypatch: pytest.MonkeyPatch, step: Step
) -> None:
    """A storage whose calls hang delays only its own files; the other folder keeps flowing."""
    share, local = tmp_path / "share", tmp_path / "local"
    share.mkdir()
    local.mkdir()
    config = _config(
        tmp_path, sim,
        WatchConfig(path=share, settle_seconds=0.05, outputs=("txt",)),
        WatchConfig(path=local, settle_seconds=0.05, outputs=("txt",)),
    )

    async def go() -> None:
        rig = await _start(config, file_timeout=1.0)
        fs: FaultFS | None = None
        try:
            stuck = _drop(share, "stuck.wav", "s")
            fine = [_drop(local, f"fine{i}.wav", str(i)) for i in range(3)]
            fs = FaultFS(monkeypatch, "stuck", step, errno.EIO, hang=True)
            rig.worker.hint(stuck)
            for path in fine:
                rig.worker.hint(path)
            await rig.until(lambda: all(rig.state(p) == "done" for p in fine))
            assert fs.hits >= 1
            assert rig.state(stuck) != "done"
            fs.stop()
            rig.worker.hint(stuck)
            await rig.until(lambda: rig.state(stuck) == "done")
        finally:
            if fs is not None:
                fs.stop()
            await _close(rig)

    asyncio.run(go())
