"""The Gladia API client: real HTTP against the simulator (and a scripted server for odd replies).

Every failure must come out classified (transient or permanent, maybe sent or certainly not),
uploads must stream from disk, and the API key must never show in an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.sim import GladiaSimulator, expected_transcript, make_sparse_wav, make_wav
from watcherd import __version__
from watcherd.config import Secret
from watcherd.engines.gladia.client import CreatedJob, GladiaClient, UploadResult
from watcherd.errors import (
    AuthError,
    GladiaError,
    JobNotFound,
    PermanentGladiaError,
    SourceError,
    TransientGladiaError,
)

KEY = "sk-test-Zq9xW2vR7tK4mN8p"
T = TypeVar("T")


# -- helpers ---------------------------------------------------------------------------------


def with_client(
    base_url: str, fn: Callable[[GladiaClient], Awaitable[T]], *, key: str = KEY, **options: Any
) -> T:
    """Run ``fn(client)`` in a fresh event loop with a client that is closed afterwards."""

    async def main() -> T:
        async with GladiaClient(base_url, Secret(key), **options) as client:
            return await fn(client)

    return asyncio.run(main())


def failure(
    base_url: str, fn: Callable[[GladiaClient], Awaitable[Any]], *, key: str = KEY, **options: Any
) -> GladiaError:
    """The GladiaError ``fn(client)`` raises; the test fails if it raises nothing."""
    with pytest.raises(GladiaError) as info:
        with_client(base_url, fn, key=key, **options)
    assert_key_hidden(info.value)
    return info.value


def assert_key_hidden(exc: BaseException) -> None:
    """No rendering of the exception (or what it carries) contains the API key."""
    texts = [str(exc), repr(exc), *map(str, exc.args)]
    if isinstance(exc, GladiaError):
        texts += [exc.describe(), exc.message, *exc.validation_errors]
    for text in texts:
        assert KEY not in text
        assert "\n" not in text


async def wait_for_job(
    client: GladiaClient, job_id: str, statuses: tuple[str, ...] = ("done", "error"),
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Poll the job until its status is one of ``statuses``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        job = await client.get(job_id)
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")
        await asyncio.sleep(0.05)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Yield to the loop until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)


def recorded(sim: GladiaSimulator, endpoint: str, count: int) -> list[Any]:
    """The ledger's requests to ``endpoint`` once at least ``count`` are there.

    The simulator records a request after its response went out, so the ledger may lag the
    client by a moment.
    """
    deadline = time.monotonic() + 10.0
    while True:
        found = [r for r in sim.requests() if r.endpoint == endpoint]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} {endpoint} requests recorded, not {count}")
        time.sleep(0.01)


def read_position(path: Path) -> int:
    """How far this process has read into ``path`` (the largest offset of its descriptors)."""
    target = str(path.resolve())
    position = -1
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != target:
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                for line in info:
                    if line.startswith("pos:"):
                        position = max(position, int(line.split()[1]))
        except OSError:
            continue
    return position


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def upload_and_create(
    client: GladiaClient, path: Path, metadata: dict[str, str], **options: Any
) -> CreatedJob:
    """Upload ``path`` and create a job for it carrying ``metadata``."""
    uploaded = await client.upload(path)
    return await client.create(
        {"audio_url": uploaded.audio_url, "custom_metadata": metadata, **options}
    )


#: How this module's simulator runs (the shared ``sim`` fixture in conftest.py reads it).
SIM_OPTIONS = {"job_seconds": 0.1, "concurrency": 3}


@pytest.fixture
def wav(tmp_path: Path) -> tuple[Path, bytes]:
    """A small valid WAV source and its bytes."""
    path = tmp_path / "meeting.wav"
    return path, make_wav(path, seconds=0.5, salt="client")


# -- a scripted HTTP server, for answers the simulator has no reason to give -----------------


@dataclass
class Reply:
    """One canned answer: status, raw body and headers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    """One request the scripted server received; the body is kept only up to a cap."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body_head: bytes
    body_size: int
    body_sha256: str


class ScriptedServer:
    """A real HTTP/1.1 server on 127.0.0.1 that answers each request with the next reply.

    Request bodies are read in chunks and hashed, never held whole, so it can sink large uploads.
    """

    BODY_HEAD = 1 << 20

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                digest = hashlib.sha256()
                head = bytearray()
                left = length
                while left > 0:
                    chunk = self.rfile.read(min(65536, left))
                    if not chunk:
                        break
                    left -= len(chunk)
                    digest.update(chunk)
                    if len(head) < server.BODY_HEAD:
                        head.extend(chunk[: server.BODY_HEAD - len(head)])
                url = urlsplit(self.path)
                with server.lock:
                    server.seen.append(
                        Seen(self.command, url.path, parse_qs(url.query),
                             {k.lower(): v for k, v in self.headers.items()},
                             bytes(head), length - left, digest.hexdigest())
                    )
                    reply = server.replies.pop(0) if server.replies else Reply(200, b"{}")
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The server's root URL."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        """Queue one reply; a non-bytes body is sent as JSON."""
        if isinstance(body, bytes):
            raw = body
        else:
            raw = b"" if body is None else json.dumps(body).encode()
        hdrs = dict(headers or {})
        if not isinstance(body, bytes) and body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        with self.lock:
            self.replies.append(Reply(status, raw, hdrs))

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    """A running scripted server, stopped after the test."""
    with ScriptedServer() as server:
        yield server


# -- the tests -------------------------------------------------------------------------------


class TestFlow:
    """The whole remote life of a recording, against the simulator."""

    def test_upload_create_poll_done(self, sim: GladiaSimulator, wav: tuple[Path, bytes]) -> None:
        """Upload, create and poll give the simulator's transcript for exactly our bytes."""
        path, data = wav

        async def flow(client: GladiaClient) -> tuple[UploadResult, CreatedJob, dict[str, Any]]:
            uploaded = await client.upload(path)
            created = await client.create(
                {"audio_url": uploaded.audio_url, "custom_metadata": {"wf_key": "k1"}}
            )
            return uploaded, created, await wait_for_job(client, created.id)

        uploaded, created, job = with_client(sim.base_url, flow)
        assert uploaded.sha256 == hashlib.sha256(data).hexdigest()
        assert uploaded.size == len(data)
        assert uploaded.metadata["size"] == len(data)
        assert created.result_url is not None and created.id in created.result_url
        assert job["status"] == "done", f"job ended {job['status']} ({job['error_code']})"
        assert job["id"] == created.id
        assert job["custom_metadata"] == {"wf_key": "k1"}
        assert job["result"]["transcription"]["full_transcript"] == expected_transcript(data)
        assert sim.creates_per_content()[uploaded.sha256] == 1

    def test_job_error_is_returned_not_raised(
        self, sim: GladiaSimulator, wav: tuple[Path, bytes]
    ) -> None:
        """A failed job is data for the worker (status error, error_code), not an exception."""
        sim.fail_next_jobs(1, 500)

        async def flow(client: GladiaClient) -> dict[str, Any]:
            created = await upload_and_create(client, wav[0], {"wf_key": "k"})
            return await wait_for_job(client, created.id)

        job = with_client(sim.base_url, flow)
        assert job["status"] == "error"
        assert job["error_code"] == 500


class TestUpload:
    """Streaming a source to POST /v2/upload."""

    def test_filename_is_basename_with_non_ascii_spaces_and_quotes(
        self, sim: GladiaSimulator, tmp_path: Path
    ) -> None:
        """Gladia echoes the filename, so it must arrive intact: basename, UTF-8, quotes kept."""
        folder = tmp_path / "réunions 2026"
        folder.mkdir()
        path = folder / 'Compte rendu "équipe" été.wav'
        data = make_wav(path, seconds=0.3, salt="name")
        result = with_client(sim.base_url, lambda c: c.upload(path))
        [upload] = sim.uploads()
        assert upload["filename"] == 'Compte rendu "équipe" été.wav'
        assert upload["sha256"] == result.sha256 == hashlib.sha256(data).hexdigest()
        assert result.metadata["filename"] == 'Compte rendu "équipe" été.wav'

    def test_multipart_part_and_headers(self, scripted: ScriptedServer, tmp_path: Path) -> None:
        """One part named audio, octet-stream, exact Content-Length, and the three headers."""
        path = tmp_path / "a b.wav"
        data = make_wav(path, seconds=0.2, salt="hdr")
        scripted.add(200, {"audio_url": "https://x/file/1", "audio_metadata": {"id": "1"}})
        result = with_client(scripted.base_url + "/", lambda c: c.upload(path))
        [seen] = scripted.seen
        assert (seen.method, seen.path) == ("POST", "/v2/upload")
        assert seen.headers["x-gladia-key"] == KEY
        assert seen.headers["x-gladia-version"] == f"watcherd/{__version__}"
        assert seen.headers["user-agent"].startswith("watcherd/")
        assert "transfer-encoding" not in seen.headers
        assert int(seen.headers["content-length"]) == seen.body_size
        boundary = seen.headers["content-type"].split("boundary=")[1]
        head = seen.body_head
        assert head.startswith(
            f"--{boundary}\r\n".encode()
            + b'Content-Disposition: form-data; name="audio"; filename="a b.wav"\r\n'
            + b"Content-Type: application/octet-stream\r\n\r\n"
        )
        assert head.endswith(data + f"\r\n--{boundary}--\r\n".encode())
        assert result == UploadResult("https://x/file/1", {"id": "1"}, result.sha256, len(data))

    def test_large_upload_streams_with_flat_memory_and_a_live_loop(
        self, sim: GladiaSimulator, tmp_path: Path
    ) -> None:
        """A ~200 MB file goes up without memory growing with it, and the loop keeps ticking."""
        path = tmp_path / "long.wav"
        size = 200 * 1024 * 1024
        make_sparse_wav(path, size)
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_bytes())
                time.sleep(0.005)

        async def upload_while_ticking(client: GladiaClient) -> tuple[UploadResult, int]:
            ticks = 0
            upload = asyncio.create_task(client.upload(path))

            async def tick() -> None:
                nonlocal ticks
                while not upload.done():
                    ticks += 1
                    await asyncio.sleep(0.001)

            ticker = asyncio.create_task(tick())
            result = await upload
            await ticker
            return result, ticks

        baseline = rss_bytes()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result, ticks = with_client(sim.base_url, upload_while_ticking)
        finally:
            stop.set()
            sampler.join(5)
        assert result.size == os.path.getsize(path)
        assert sim.uploads()[0]["sha256"] == result.sha256
        assert peak - baseline < 100 * 1024 * 1024, f"RSS grew by {(peak - baseline) >> 20} MB"
        # 200 chunks were read off the loop; a loop blocked on the disk would barely tick.
        assert ticks >= 20, ticks

    def test_file_growing_during_upload_aborts_it(
        self, sim: GladiaSimulator, tmp_path: Path
    ) -> None:
        """Bytes appended while uploading abort the request: transient SourceError, no upload."""
        path = tmp_path / "growing.wav"
        make_sparse_wav(path, 32 * 1024 * 1024)
        size = os.path.getsize(path)
        # The simulator stalls before reading, so the client is stuck well before the end.
        sim.faults.add("upload", "delay", delay=1.5)

        async def grow_during_upload(client: GladiaClient) -> None:
            upload = asyncio.create_task(client.upload(path, expected_size=size, chunk_size=65536))
            await wait_until(lambda: read_position(path) > 0 or upload.done())
            with path.open("ab") as f:
                f.write(b"\0" * 4096)
            await upload

        with pytest.raises(SourceError) as info:
            with_client(sim.base_url, grow_during_upload)
        assert info.value.transient
        assert "changed during upload" in info.value.message
        assert "grew" in info.value.message
        assert sim.uploads() == []

    def test_file_shrinking_during_upload_aborts_it(
        self, sim: GladiaSimulator, tmp_path: Path
    ) -> None:
        """A file truncated while uploading aborts the request with a transient SourceError."""
        path = tmp_path / "shrinking.wav"
        make_sparse_wav(path, 32 * 1024 * 1024)
        sim.faults.add("upload", "delay", delay=1.5)

        async def shrink_during_upload(client: GladiaClient) -> None:
            upload = asyncio.create_task(client.upload(path, chunk_size=65536))
            await wait_until(lambda: read_position(path) > 0 or upload.done())
            os.truncate(path, 16 * 1024 * 1024)
            await upload

        with pytest.raises(SourceError) as info:
            with_client(sim.base_url, shrink_during_upload)
        assert info.value.transient
        assert "changed during upload" in info.value.message
        assert sim.uploads() == []

    def test_cancelled_upload_closes_the_source(
        self, sim: GladiaSimulator, tmp_path: Path
    ) -> None:
        """A worker shutting down mid-upload leaves no descriptor open on the source."""
        path = tmp_path / "cancelled.wav"
        make_sparse_wav(path, 32 * 1024 * 1024)
        sim.faults.add("upload", "delay", delay=1.5)

        async def cancel_mid_upload(client: GladiaClient) -> int:
            upload = asyncio.create_task(client.upload(path, chunk_size=65536))
            await wait_until(lambda: read_position(path) > 0 or upload.done())
            upload.cancel()
            with pytest.raises(asyncio.CancelledError):
                await upload
            return read_position(path)

        assert with_client(sim.base_url, cancel_mid_upload) == -1
        assert sim.uploads() == []

    def test_size_differs_from_expected_at_open(
        self, sim: GladiaSimulator, wav: tuple[Path, bytes]
    ) -> None:
        """A file that is no longer the size it settled at is not sent at all."""
        path, data = wav
        with pytest.raises(SourceError) as info:
            with_client(sim.base_url, lambda c: c.upload(path, expected_size=len(data) - 1))
        assert info.value.transient
        assert "changed during upload" in info.value.message
        assert [r for r in sim.requests() if r.endpoint == "upload"] == []

    def test_missing_file_is_a_source_error(self, sim: GladiaSimulator, tmp_path: Path) -> None:
        """A source that vanished raises SourceError (transient: the worker re-checks it)."""
        with pytest.raises(SourceError) as info:
            with_client(sim.base_url, lambda c: c.upload(tmp_path / "gone.wav"))
        assert info.value.transient
        assert "disappeared" in info.value.message
        assert sim.requests() == []

    def test_unreadable_file_is_a_permanent_source_error(self, tmp_path: Path) -> None:
        """Permission denied is permanent and says so (run without DAC override when root)."""
        path = tmp_path / "secret.wav"
        make_wav(path, seconds=0.1)
        path.chmod(0)
        script = (
            "import asyncio, json, sys\n"
            "from pathlib import Path\n"
            "from watcherd.config import Secret\n"
            "from watcherd.errors import SourceError\n"
            "from watcherd.engines.gladia.client import GladiaClient\n"
            "async def main():\n"
            "    async with GladiaClient('http://127.0.0.1:9', Secret('k')) as c:\n"
            "        try:\n"
            "            await c.upload(Path(sys.argv[1]))\n"
            "        except SourceError as e:\n"
            "            print(json.dumps({'message': e.message, 'transient': e.transient}))\n"
            "asyncio.run(main())\n"
        )
        command = [sys.executable, "-c", script, str(path)]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv: permissions are not enforced")
            command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
        outcome = json.loads(done.stdout)
        assert outcome["transient"] is False
        assert "permission denied" in outcome["message"]

    def test_over_the_size_limit_is_permanent(self, tmp_path: Path) -> None:
        """413 (answered before the body is read) is permanent and names Gladia's limit."""
        path = tmp_path / "big.wav"
        make_sparse_wav(path, 8 * 1024 * 1024)
        with GladiaSimulator(api_key=KEY, max_upload_bytes=1024 * 1024) as small:
            exc = failure(small.base_url, lambda c: c.upload(path))
            assert small.uploads() == []
        assert type(exc) is PermanentGladiaError
        assert exc.status == 413
        assert "larger than Gladia accepts (1000 MB)" in exc.message

    def test_corrupt_media_refused_at_upload_is_permanent(self, tmp_path: Path) -> None:
        """A 422 for unreadable media is permanent, not an auth or not-found error."""
        path = tmp_path / "noise.wav"
        path.write_bytes(b"this is not audio at all " * 200)
        with GladiaSimulator(api_key=KEY, corrupt_media="upload_error") as strict:
            exc = failure(strict.base_url, lambda c: c.upload(path))
        assert type(exc) is PermanentGladiaError
        assert exc.status == 422
        assert exc.request_id is not None and exc.request_id.startswith("G-")


class TestClassification:
    """Every failure comes out as the right exception, with the right flags."""

    def test_wrong_key_is_auth_error_without_the_key(self, sim: GladiaSimulator) -> None:
        """401 says what to fix and shows neither the wrong key nor the right one."""
        wrong = KEY[::-1]
        with pytest.raises(AuthError) as info:
            with_client(sim.base_url, lambda c: c.get("any-id"), key=wrong)
        exc = info.value
        assert_key_hidden(exc)
        assert wrong not in str(exc) and wrong not in repr(exc)
        assert exc.status == 401
        assert "api_key / api_key_file / GLADIA_API_KEY" in exc.message
        assert not exc.transient

    @pytest.mark.parametrize("key", [
        "sk-\x00zqxv\x00wkjp", "sk-zqxv\r\nX-Injected: yes", "s\x00k\x00-\x00z\x00q\x00x\x00",
        "sk-back\\slash\x00'quote\"",
    ])
    def test_a_key_the_header_refuses_is_never_quoted(
        self, sim: GladiaSimulator, key: str
    ) -> None:
        """A key HTTP cannot carry (config refuses it; a Secret made in code need not) makes
        the request fail as a broken connection whose text holds the key in no form."""
        with pytest.raises(TransientGladiaError) as info:
            with_client(sim.base_url, lambda c: c.list_jobs(), key=key)
        exc = info.value
        texts = [str(exc), repr(exc), exc.describe(), exc.message]
        forms = {key, repr(key)[1:-1], repr(key.encode())[2:-1], json.dumps(key)[1:-1],
                 "zqxv", "wkjp", "Injected", "slash", "quote"}
        for text in texts:
            for form in forms:
                assert form not in text, (form, text)
        assert "LocalProtocolError" in exc.message and "Illegal header value" in exc.message
        assert sim.requests() == []

    def test_unknown_job_is_job_not_found(self, sim: GladiaSimulator) -> None:
        """404 on GET becomes JobNotFound, naming the job."""
        exc = failure(sim.base_url, lambda c: c.get("00000000-0000-4000-8000-000000000000"))
        assert isinstance(exc, JobNotFound)
        assert "00000000-0000-4000-8000-000000000000" in exc.message

    def test_validation_errors_on_400(self, sim: GladiaSimulator, wav: tuple[Path, bytes]) -> None:
        """A refused create body is permanent and carries Gladia's validation errors."""

        async def bad_create(client: GladiaClient) -> CreatedJob:
            uploaded = await client.upload(wav[0])
            return await client.create(
                {"audio_url": uploaded.audio_url, "language_config": {"languages": ["xx"]}}
            )

        exc = failure(sim.base_url, bad_create)
        assert type(exc) is PermanentGladiaError
        assert exc.status == 400
        assert any("language_config.languages" in v for v in exc.validation_errors)
        assert "language_config.languages" in exc.describe()
        assert sim.jobs() == []

    def test_422_is_permanent(self, sim: GladiaSimulator) -> None:
        """422 on create is a permanent refusal."""
        sim.faults.add("create", "status", status=422)
        exc = failure(sim.base_url, lambda c: c.create({"audio_url": "https://x/a.wav"}))
        assert type(exc) is PermanentGladiaError
        assert exc.status == 422

    def test_429_carries_retry_after(self, sim: GladiaSimulator) -> None:
        """429 is transient and hands the server's Retry-After to the worker."""
        sim.faults.add("create", "status", status=429, retry_after=7)
        exc = failure(sim.base_url, lambda c: c.create({"audio_url": "https://x/a.wav"}))
        assert isinstance(exc, TransientGladiaError)
        assert exc.status == 429
        assert exc.retry_after == 7.0
        assert sim.jobs() == []

    def test_503_is_transient_with_ids(self, sim: GladiaSimulator) -> None:
        """5xx is transient and keeps request_id and the x-aipi-call-id header."""
        sim.faults.add("get", "status", status=503)
        exc = failure(sim.base_url, lambda c: c.get("some-id"))
        assert isinstance(exc, TransientGladiaError)
        assert exc.status == 503
        assert exc.retry_after is None
        assert exc.request_id is not None and exc.call_id is not None

    def test_408_is_transient(self, sim: GladiaSimulator) -> None:
        """408 Request Timeout is worth retrying."""
        sim.faults.add("list", "status", status=408)
        exc = failure(sim.base_url, lambda c: c.list_jobs())
        assert isinstance(exc, TransientGladiaError)
        assert exc.status == 408

    def test_reset_may_have_been_sent(self, sim: GladiaSimulator) -> None:
        """A connection reset after the request went out is transient with maybe_sent True."""
        sim.faults.add("create", "reset")
        exc = failure(sim.base_url, lambda c: c.create({"audio_url": "https://x/a.wav"}))
        assert isinstance(exc, TransientGladiaError)
        assert exc.maybe_sent is True
        assert exc.status is None

    def test_outage_was_certainly_not_sent(self, sim: GladiaSimulator) -> None:
        """A refused connection is transient with maybe_sent False, naming the API URL."""
        sim.set_outage(True)
        exc = failure(sim.base_url, lambda c: c.create({"audio_url": "https://x/a.wav"}))
        assert isinstance(exc, TransientGladiaError)
        assert exc.maybe_sent is False
        assert exc.message.startswith(f"cannot reach the Gladia API at {sim.base_url}: ")
        sim.set_outage(False)
        assert with_client(sim.base_url, lambda c: c.list_jobs()) == []

    def test_read_timeout_may_have_been_sent(self, sim: GladiaSimulator) -> None:
        """No answer within the request timeout is transient with maybe_sent True."""
        sim.faults.add("get", "delay", delay=1.5)
        exc = failure(sim.base_url, lambda c: c.get("slow"), request_timeout=0.2)
        assert isinstance(exc, TransientGladiaError)
        assert exc.maybe_sent is True

    def test_lost_create_response_then_find_jobs_adopts_the_job(
        self, sim: GladiaSimulator, wav: tuple[Path, bytes]
    ) -> None:
        """The job exists though the answer was lost: maybe_sent True, and find_jobs finds it."""
        path, _ = wav
        uploaded = with_client(sim.base_url, lambda c: c.upload(path))
        sim.faults.add("create", "lose_response")
        since = datetime.now(UTC) - timedelta(minutes=1)
        body = {"audio_url": uploaded.audio_url, "custom_metadata": {"wf_key": "lost-1"}}
        exc = failure(sim.base_url, lambda c: c.create(body))
        assert isinstance(exc, TransientGladiaError)
        assert exc.maybe_sent is True
        [job] = sim.jobs()
        found = with_client(
            sim.base_url, lambda c: c.find_jobs({"wf_key": "lost-1"}, after_date=since)
        )
        assert [j["id"] for j in found] == [job["id"]]

    def test_forbidden_is_about_the_request_not_the_key(self, scripted: ScriptedServer) -> None:
        """403 refuses one request (plan, quota), not the key; on DELETE it means not deletable."""
        body = {"statusCode": 403, "message": "Your plan does not include diarization",
                "request_id": "G-1"}
        scripted.add(403, body)
        scripted.add(403, body)
        on_create = failure(scripted.base_url, lambda c: c.create({"audio_url": "u"}))
        on_delete = failure(scripted.base_url, lambda c: c.delete("j1"))
        assert type(on_create) is PermanentGladiaError
        assert "plan does not include diarization" in on_create.message
        assert "watcherd retry" in on_create.message
        assert type(on_delete) is PermanentGladiaError
        assert "not in a deletable state" in on_delete.message

    def test_only_401_is_a_rejected_key(self, scripted: ScriptedServer) -> None:
        """401 on any call is AuthError; 403 on the key check (a plain list) is one too."""
        scripted.add(401, {"statusCode": 401, "message": "Unauthorized"})
        scripted.add(403, {"statusCode": 403, "message": "Forbidden"})
        assert isinstance(failure(scripted.base_url, lambda c: c.get("j1")), AuthError)
        assert isinstance(failure(scripted.base_url, lambda c: c.check_key()), AuthError)

    def test_pydantic_validation_errors_and_camel_case_request_id(
        self, scripted: ScriptedServer
    ) -> None:
        """Object-style validation errors render as ``loc: msg``; requestId is read too."""
        scripted.add(
            400,
            {
                "message": "Invalid parameter(s).",
                "requestId": "G-abc",
                "validation_errors": [
                    {"loc": ["body", "audio_url"], "msg": "field required"},
                    "diarization must be a boolean value",
                ],
            },
            {"x-aipi-call-id": "call-9"},
        )
        exc = failure(scripted.base_url, lambda c: c.create({}))
        assert exc.validation_errors == (
            "body.audio_url: field required",
            "diarization must be a boolean value",
        )
        assert (exc.request_id, exc.call_id, exc.status) == ("G-abc", "call-9", 400)
        assert "Invalid parameter(s)." in exc.message

    def test_non_json_error_body_falls_back_to_reason(self, scripted: ScriptedServer) -> None:
        """An HTML 502 from a proxy still gives a one-line transient error."""
        html = b"<html>\n<body>Bad gateway</body>\n</html>"
        scripted.add(502, html, {"Content-Type": "text/html"})
        exc = failure(scripted.base_url, lambda c: c.get("j1"))
        assert isinstance(exc, TransientGladiaError)
        assert "Bad Gateway" in exc.message
        assert "<html>" not in exc.message

    def test_retry_after_as_http_date_and_garbage(self, scripted: ScriptedServer) -> None:
        """Retry-After may be an HTTP date (seconds from now) and garbage is ignored."""
        later = datetime.now(UTC) + timedelta(seconds=120)
        scripted.add(503, {"message": "busy"}, {"Retry-After": format_datetime(later, usegmt=True)})
        scripted.add(429, {"message": "slow down"}, {"Retry-After": "soon-ish"})
        dated = failure(scripted.base_url, lambda c: c.get("j1"))
        garbage = failure(scripted.base_url, lambda c: c.get("j1"))
        assert dated.retry_after is not None and 60 < dated.retry_after <= 121
        assert isinstance(garbage, TransientGladiaError)
        assert garbage.retry_after is None

    def test_success_without_expected_json_is_transient(self, scripted: ScriptedServer) -> None:
        """A 2xx that is not the expected JSON may hide a created job: transient, maybe sent."""
        scripted.add(201, b"<html>ok</html>", {"Content-Type": "text/html"})
        scripted.add(201, {"result_url": "https://x/v2/pre-recorded/1"})
        not_json = failure(scripted.base_url, lambda c: c.create({"audio_url": "https://x/a"}))
        no_id = failure(scripted.base_url, lambda c: c.create({"audio_url": "https://x/a"}))
        for exc in (not_json, no_id):
            assert isinstance(exc, TransientGladiaError)
            assert exc.maybe_sent is True

    def test_key_echoed_by_the_server_is_scrubbed(self, scripted: ScriptedServer) -> None:
        """Even if a proxy echoes the key back in its error, it never reaches our messages."""
        scripted.add(
            400, {"message": f"bad header x-gladia-key={KEY}", "validation_errors": [KEY]}
        )
        exc = failure(scripted.base_url, lambda c: c.create({}))
        assert "***" in exc.message
        assert exc.validation_errors == ("***",)


class TestList:
    """GET /v2/pre-recorded: filters, pages, and the client-side metadata check."""

    def test_metadata_filter_and_pagination(
        self, sim: GladiaSimulator, tmp_path: Path
    ) -> None:
        """Five matching jobs at two per page come back in three pages, others filtered out."""
        sources = []
        for i in range(6):
            path = tmp_path / f"s{i}.wav"
            make_wav(path, seconds=0.1, salt=str(i))
            sources.append(path)

        async def make_jobs(client: GladiaClient) -> list[str]:
            ids = []
            for i, path in enumerate(sources):
                key = "wanted" if i < 5 else "other"
                ids.append((await upload_and_create(client, path, {"wf_key": key})).id)
            return ids

        ids = with_client(sim.base_url, make_jobs)
        assert [r for r in sim.requests() if r.endpoint == "list"] == []
        found = with_client(
            sim.base_url, lambda c: c.list_jobs(custom_metadata={"wf_key": "wanted"}, limit=2)
        )
        assert sorted(j["id"] for j in found) == sorted(ids[:5])
        assert len(recorded(sim, "list", 3)) == 3

    def test_max_pages_bounds_the_walk(self, sim: GladiaSimulator, tmp_path: Path) -> None:
        """At most max_pages pages are fetched even when more remain."""

        async def make_jobs(client: GladiaClient) -> None:
            for i in range(5):
                path = tmp_path / f"p{i}.wav"
                make_wav(path, seconds=0.1, salt=f"p{i}")
                await upload_and_create(client, path, {"wf_key": "many"})

        with_client(sim.base_url, make_jobs)
        found = with_client(sim.base_url, lambda c: c.list_jobs(limit=2, max_pages=2))
        assert len(found) == 4

    def test_status_and_date_filters(self, sim: GladiaSimulator, wav: tuple[Path, bytes]) -> None:
        """Statuses and after_date reach the server and filter there."""
        since = datetime.now(UTC) - timedelta(minutes=5)

        async def scenario(client: GladiaClient) -> tuple[list[Any], ...]:
            created = await upload_and_create(client, wav[0], {"wf_key": "f"})
            await wait_for_job(client, created.id, ("done",))
            return (
                await client.list_jobs(statuses=["done"]),
                await client.list_jobs(statuses=["queued", "processing"]),
                await client.list_jobs(after_date=since),
                await client.list_jobs(after_date=datetime.now(UTC) + timedelta(hours=1)),
            )

        done, pending, recent, future = with_client(sim.base_url, scenario)
        assert len(done) == 1 and done[0]["status"] == "done"
        assert pending == []
        assert len(recent) == 1
        assert future == []

    def test_query_encoding(self, scripted: ScriptedServer) -> None:
        """custom_metadata as JSON, repeated status keys, after_date as UTC with ms and Z."""
        scripted.add(200, {"first": "", "current": "", "next": None, "items": []})
        moment = datetime(2026, 5, 4, 12, 15, 2, 118_900, tzinfo=timezone(timedelta(hours=2)))
        with_client(
            scripted.base_url,
            lambda c: c.list_jobs(
                custom_metadata={"wf_key": "sha256:ab"},
                statuses=("queued", "processing"),
                after_date=moment,
                limit=10,
            ),
        )
        [seen] = scripted.seen
        assert seen.path == "/v2/pre-recorded"
        assert json.loads(seen.query["custom_metadata"][0]) == {"wf_key": "sha256:ab"}
        assert seen.query["status"] == ["queued", "processing"]
        assert seen.query["after_date"] == ["2026-05-04T10:15:02.118Z"]
        assert (seen.query["offset"], seen.query["limit"]) == (["0"], ["10"])

    def test_next_on_another_host_is_not_followed(self, scripted: ScriptedServer) -> None:
        """Paging advances offset on our API URL; the absolute next URL is never fetched."""
        page = {"first": "", "current": "", "next": "http://elsewhere.invalid/v2/pre-recorded?x"}
        scripted.add(200, {**page, "items": [{"id": "1"}, {"id": "2"}]})
        scripted.add(200, {**page, "next": None, "items": [{"id": "3"}]})
        found = with_client(scripted.base_url, lambda c: c.list_jobs(limit=2))
        assert [j["id"] for j in found] == ["1", "2", "3"]
        assert [s.query["offset"] for s in scripted.seen] == [["0"], ["2"]]

    def test_find_jobs_checks_metadata_client_side(self, scripted: ScriptedServer) -> None:
        """Items the server let through without every key and value are dropped."""
        scripted.add(
            200,
            {
                "first": "", "current": "", "next": None,
                "items": [
                    {"id": "match", "custom_metadata": {"wf_key": "k", "wf_file": "a.wav"}},
                    {"id": "other-key", "custom_metadata": {"wf_key": "k2"}},
                    {"id": "number", "custom_metadata": {"wf_key": 7}},
                    {"id": "none", "custom_metadata": None},
                    {"id": "missing"},
                ],
            },
        )
        found = with_client(scripted.base_url, lambda c: c.find_jobs({"wf_key": "k"}))
        assert [j["id"] for j in found] == ["match"]
        assert json.loads(scripted.seen[0].query["custom_metadata"][0]) == {"wf_key": "k"}


class TestDelete:
    """DELETE /v2/pre-recorded/{id}."""

    def test_delete_done_job_then_it_is_gone(
        self, sim: GladiaSimulator, wav: tuple[Path, bytes]
    ) -> None:
        """A finished job deletes, and afterwards GET says JobNotFound."""

        async def scenario(client: GladiaClient) -> str:
            created = await upload_and_create(client, wav[0], {"wf_key": "d"})
            await wait_for_job(client, created.id)
            await client.delete(created.id)
            return created.id

        job_id = with_client(sim.base_url, scenario)
        exc = failure(sim.base_url, lambda c: c.get(job_id))
        assert isinstance(exc, JobNotFound)

    def test_delete_queued_job_is_permanent_not_auth(
        self, tmp_path: Path, wav: tuple[Path, bytes]
    ) -> None:
        """A job still running cannot be deleted: PermanentGladiaError, and the key is fine."""
        with GladiaSimulator(api_key=KEY, job_seconds=30) as slow:
            created = with_client(slow.base_url, lambda c: upload_and_create(c, wav[0], {}))
            exc = failure(slow.base_url, lambda c: c.delete(created.id))
        assert type(exc) is PermanentGladiaError
        assert exc.status == 403

    def test_delete_unknown_job(self, sim: GladiaSimulator) -> None:
        """Deleting a job that does not exist is JobNotFound."""
        exc = failure(sim.base_url, lambda c: c.delete("00000000-0000-4000-8000-000000000000"))
        assert isinstance(exc, JobNotFound)


class TestKey:
    """check_key and the secrecy of the key."""

    def test_check_key_accepts_the_right_key(self, sim: GladiaSimulator) -> None:
        """A good key passes with one list request of limit 1."""
        with_client(sim.base_url, lambda c: c.check_key())
        [request] = recorded(sim, "list", 1)
        assert request.status == 200
        assert len(sim.requests()) == 1

    def test_check_key_rejects_a_wrong_key(self, sim: GladiaSimulator) -> None:
        """A wrong key raises AuthError."""
        exc = failure(sim.base_url, lambda c: c.check_key(), key="nope")
        assert isinstance(exc, AuthError)

    def test_check_key_when_the_api_is_down(self, sim: GladiaSimulator) -> None:
        """Unreachable is not a bad key: transient, certainly not sent."""
        sim.set_outage(True)
        exc = failure(sim.base_url, lambda c: c.check_key())
        assert isinstance(exc, TransientGladiaError)
        assert not exc.maybe_sent

    def test_check_key_asks_for_one_item(self, scripted: ScriptedServer) -> None:
        """The key check is one cheap list call: limit 1, no paging."""
        scripted.add(200, {"first": "", "current": "", "next": "x", "items": [{"id": "1"}]})
        with_client(scripted.base_url, lambda c: c.check_key())
        [seen] = scripted.seen
        assert (seen.method, seen.path, seen.query["limit"]) == ("GET", "/v2/pre-recorded", ["1"])

    def test_client_repr_hides_the_key(self) -> None:
        """The client's repr names the URL, never the key."""

        async def make() -> str:
            async with GladiaClient("https://api.gladia.io/", Secret(KEY)) as client:
                return repr(client)

        text = asyncio.run(make())
        assert KEY not in text
        assert "https://api.gladia.io" in text
