"""Fidelity of the Gladia simulator to docs/gladia-contract.md, checked with plain httpx."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
import wave
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.paths import REPO as ROOT
from tests.sim import (
    GladiaSimulator,
    expected_transcript,
    expected_translation,
    make_corrupt,
    make_mp3,
    make_sparse_wav,
    make_wav,
)

KEY = "test-key"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ERROR_KEYS = {"timestamp", "path", "request_id", "statusCode", "message"}
JOB_KEYS = {
    "id", "request_id", "version", "kind", "status", "created_at", "completed_at",
    "custom_metadata", "error_code", "post_session_metadata", "file", "request_params", "result",
}  # fmt: skip
ENVELOPE_KEYS = {"success", "is_empty", "exec_time", "error", "results"}

# ---------------------------------------------------------------------------------------------
# Helpers and fixtures


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll `predicate` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def sim() -> Iterator[GladiaSimulator]:
    """A fast simulator; the test fails if any request hit a simulator bug."""
    simulator = GladiaSimulator(api_key=KEY, job_seconds=0.05).start()
    try:
        yield simulator
        assert simulator.internal_errors() == []
    finally:
        simulator.stop()


@pytest.fixture
def client(sim: GladiaSimulator) -> Iterator[httpx.Client]:
    """An httpx client pointed at the simulator with the right key."""
    with httpx.Client(base_url=sim.base_url, headers={"x-gladia-key": KEY}, timeout=10) as c:
        yield c


def upload(client: httpx.Client, path: Path, filename: str | None = None) -> httpx.Response:
    """POST a file to /v2/upload the way the SDK does (field audio, octet-stream part)."""
    with path.open("rb") as f:
        files = {"audio": (filename or path.name, f, "application/octet-stream")}
        return client.post("/v2/upload", files=files)


def create(client: httpx.Client, audio_url: str, **options: Any) -> httpx.Response:
    """POST /v2/pre-recorded with audio_url and options."""
    return client.post("/v2/pre-recorded", json={"audio_url": audio_url, **options})


def new_job(
    client: httpx.Client, tmp_path: Path, salt: str = "", seconds: float = 1.0, **options: Any
) -> tuple[str, bytes]:
    """Upload a fresh WAV and create a job on it; returns (job id, file bytes)."""
    path = tmp_path / f"audio-{salt or uuid.uuid4().hex}.wav"
    data = make_wav(path, seconds=seconds, salt=salt or path.name)
    response = upload(client, path)
    assert response.status_code == 200, response.text
    created = create(client, response.json()["audio_url"], **options)
    assert created.status_code == 201, created.text
    return created.json()["id"], data


def get_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    """GET the job; it must exist."""
    response = client.get(f"/v2/pre-recorded/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_error_body(response: httpx.Response, status: int, path: str) -> dict[str, Any]:
    """The response is Gladia's error body (section 3.3) for `status` on `path`."""
    assert response.status_code == status
    assert response.headers.get("x-aipi-call-id")
    body: dict[str, Any] = response.json()
    expected = ERROR_KEYS | ({"validation_errors"} if status == 400 else set())
    assert set(body) == expected
    assert body["statusCode"] == status
    assert body["path"] == path
    assert ISO_MS.match(body["timestamp"])
    assert re.fullmatch(r"G-[0-9a-f]{8}", body["request_id"])
    assert isinstance(body["message"], str) and body["message"]
    if status == 400:
        assert all(isinstance(e, str) for e in body["validation_errors"])
    return body


def raw_http(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send a hand-made request and read one response (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, "connection closed before a response"
            data += chunk
        header_blob, _, rest = data.partition(b"\r\n\r\n")
        lines = header_blob.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-body"
            rest += chunk
        return status, headers, rest[:length]


def vm_rss_kib() -> int:
    """This process's resident set size in KiB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


class CallbackReceiver:
    """A real local HTTP listener that records the callbacks it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, Any]] = []
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with lock:
                    received.append((self.command, self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        """Stop listening."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    """A callback listener, shut down after the test."""
    r = CallbackReceiver()
    try:
        yield r
    finally:
        r.close()


# ---------------------------------------------------------------------------------------------
# Test media helpers


class TestMedia:
    """make_wav and the transcript derivation the other tests rely on."""

    def test_make_wav_writes_a_valid_16k_mono_pcm_wav(self, tmp_path: Path) -> None:
        """make_wav writes what it returns, and the stdlib wave reader accepts it as specified."""
        path = tmp_path / "a.wav"
        data = make_wav(path, seconds=1.5, salt="s")
        assert path.read_bytes() == data
        with wave.open(str(path)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            assert w.getnframes() == 24000

    def test_make_wav_samples_depend_on_salt(self, tmp_path: Path) -> None:
        """Different salts give different bytes; the same salt gives the same bytes."""
        a = make_wav(tmp_path / "a.wav", salt="one")
        b = make_wav(tmp_path / "b.wav", salt="two")
        c = make_wav(tmp_path / "c.wav", salt="one")
        assert a != b
        assert a == c

    def test_expected_transcript_is_deterministic_per_content(self, tmp_path: Path) -> None:
        """The transcript is 2-4 sentences of 3-8 words and changes with the bytes."""
        a = make_wav(tmp_path / "a.wav", salt="one")
        b = make_wav(tmp_path / "b.wav", salt="two")
        text = expected_transcript(a)
        assert text == expected_transcript(a)
        assert text != expected_transcript(b)
        sentences = re.findall(r"[^.?!]+[.?!]", text)
        assert 2 <= len(sentences) <= 4
        assert all(3 <= len(s.split()) <= 8 for s in sentences)


# ---------------------------------------------------------------------------------------------
# POST /v2/upload (section 2)


class TestUpload:
    """POST /v2/upload (docs/gladia-contract.md)."""

    def test_upload_response_has_the_documented_shape(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """200 (not 201) with audio_url and the six required audio_metadata keys, typed."""
        path = tmp_path / "meeting.wav"
        data = make_wav(path, seconds=2.0)
        response = upload(client, path)
        assert response.status_code == 200
        assert response.headers["x-aipi-call-id"]
        body = response.json()
        assert set(body) == {"audio_url", "audio_metadata"}
        meta = body["audio_metadata"]
        assert set(meta) == {
            "id", "filename", "extension", "size", "audio_duration", "number_of_channels"
        }  # fmt: skip
        assert str(uuid.UUID(meta["id"], version=4)) == meta["id"]
        assert body["audio_url"] == f"{sim.base_url}/file/{meta['id']}"
        assert meta["filename"] == "meeting.wav"
        assert meta["extension"] == "wav"
        assert meta["size"] == len(data)
        assert meta["audio_duration"] == 2.0
        assert meta["number_of_channels"] == 1
        [recorded] = sim.uploads()
        assert recorded["sha256"] == hashlib.sha256(data).hexdigest()
        assert recorded["size"] == len(data)

    def test_upload_keeps_the_multipart_filename_with_spaces_quotes_and_unicode(
        self, client: httpx.Client, tmp_path: Path
    ) -> None:
        """The filename comes back as sent, even with characters httpx has to escape."""
        path = tmp_path / "a.wav"
        make_wav(path)
        name = 'réunion "Q2" 2026 \u2013 été.wav'
        response = upload(client, path, filename=name)
        assert response.json()["audio_metadata"]["filename"] == name

    def test_format_is_detected_by_content_not_by_name(
        self, client: httpx.Client, tmp_path: Path
    ) -> None:
        """An MP3 named .wav is reported as mp3, with a duration read from its frames."""
        path = tmp_path / "really-mp3.wav"
        make_mp3(path, seconds=2.0)
        meta = upload(client, path).json()["audio_metadata"]
        assert meta["extension"] == "mp3"
        assert meta["audio_duration"] == pytest.approx(2.0, abs=0.1)

    def test_missing_boundary_is_400(self, client: httpx.Client) -> None:
        """multipart/form-data without a boundary gets the documented 400 message."""
        response = client.post(
            "/v2/upload", content=b"x", headers={"Content-Type": "multipart/form-data"}
        )
        body = assert_error_body(response, 400, "/v2/upload")
        assert body["message"] == "Content-Type is missing Multipart Boundary."

    def test_multipart_without_an_audio_part_is_400(
        self, sim: GladiaSimulator, client: httpx.Client
    ) -> None:
        """A well-formed body with no `audio` field is refused and nothing is stored."""
        response = client.post("/v2/upload", files={"file": ("a.wav", b"RIFF", "audio/wav")})
        body = assert_error_body(response, 400, "/v2/upload")
        assert any("audio" in e for e in body["validation_errors"])
        assert sim.uploads() == []

    def test_truncated_multipart_is_400(self, sim: GladiaSimulator) -> None:
        """A body that ends before its closing boundary is ill-formed: 400, nothing spooled."""
        body = b'--b\r\nContent-Disposition: form-data; name="audio"; filename="a"\r\n\r\nRIFF'
        head = (
            f"POST /v2/upload HTTP/1.1\r\nHost: x\r\nx-gladia-key: {KEY}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        status, _, raw = raw_http(sim.port, head, body)
        assert status == 400
        assert json.loads(raw)["statusCode"] == 400
        assert sim.uploads() == []
        assert list(sim.spool_dir.iterdir()) == []

    def test_over_the_size_limit_is_413_without_reading_the_body(
        self, sim: GladiaSimulator
    ) -> None:
        """A 2 GB Content-Length gets 413 after only 1 KB was sent: the body is not awaited."""
        head = (
            f"POST /v2/upload HTTP/1.1\r\nHost: x\r\nx-gladia-key: {KEY}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            "Content-Length: 2000000000\r\n\r\n"
        ).encode()
        status, headers, raw = raw_http(sim.port, head, b"--b\r\n" + b"\0" * 1024)
        assert status == 413
        assert headers["connection"] == "close"
        body = json.loads(raw)
        assert set(body) == ERROR_KEYS
        assert body["statusCode"] == 413
        assert sim.uploads() == []

    def test_httpx_sees_the_413_for_a_body_over_a_small_limit(self, tmp_path: Path) -> None:
        """A real client streaming a 5 MB file over a 1 MB limit reads the 413, not a reset."""
        with GladiaSimulator(api_key=KEY, max_upload_bytes=1024 * 1024) as small:
            path = tmp_path / "big.wav"
            make_sparse_wav(path, 5 * 1024 * 1024)
            with httpx.Client(base_url=small.base_url, headers={"x-gladia-key": KEY}) as c:
                response = upload(c, path)
            assert_error_body(response, 413, "/v2/upload")
            assert small.uploads() == []

    def test_corrupt_media_can_be_refused_at_upload_with_422(self, tmp_path: Path) -> None:
        """corrupt_media="upload_error": unknown content gets 422 (no validation_errors)."""
        with GladiaSimulator(api_key=KEY, corrupt_media="upload_error") as strict:
            path = tmp_path / "notes.wav"
            make_corrupt(path)
            with httpx.Client(base_url=strict.base_url, headers={"x-gladia-key": KEY}) as c:
                response = upload(c, path)
            assert_error_body(response, 422, "/v2/upload")
            assert strict.uploads() == []

    def test_truncated_body_from_a_vanishing_client_is_dropped_cleanly(
        self, sim: GladiaSimulator
    ) -> None:
        """A client that closes mid-upload leaves no upload, no spool file, no simulator error."""
        head = (
            f"POST /v2/upload HTTP/1.1\r\nHost: x\r\nx-gladia-key: {KEY}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            "Content-Length: 100000\r\n\r\n"
        ).encode()
        part = b'--b\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
        with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as sock:
            sock.sendall(head + part + b"RIFF" + b"\0" * 5000)
        wait_for(lambda: any(r.endpoint == "upload" for r in sim.requests()), what="the record")
        assert [r.status for r in sim.requests()] == [None]
        assert sim.uploads() == []
        assert list(sim.spool_dir.iterdir()) == []

    def test_json_url_import_downloads_the_file_and_reports_its_source(
        self, client: httpx.Client, tmp_path: Path
    ) -> None:
        """The JSON variant fetches audio_url and adds audio_metadata.source."""
        data = make_wav(tmp_path / "remote.wav", salt="remote")

        class Files(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/remote.wav"
            response = client.post("/v2/upload", json={"audio_url": url})
        finally:
            server.shutdown()
            server.server_close()
        assert response.status_code == 200
        meta = response.json()["audio_metadata"]
        assert meta["source"] == url
        assert meta["size"] == len(data)
        assert meta["extension"] == "wav"


# ---------------------------------------------------------------------------------------------
# Authentication and generic errors (sections 1, 3.3, 9)


class TestAuth:
    """The x-gladia-key header and the generic error body (sections 1, 3.3, 9)."""

    @pytest.mark.parametrize("key", [None, "wrong-key"])
    def test_every_endpoint_requires_the_key(
        self, sim: GladiaSimulator, tmp_path: Path, key: str | None
    ) -> None:
        """Missing or wrong x-gladia-key gives 401 with the error body on all six endpoints."""
        job = str(uuid.uuid4())
        headers = {} if key is None else {"x-gladia-key": key}
        with httpx.Client(base_url=sim.base_url, headers=headers) as c:
            answers = {
                "/v2/upload": c.post("/v2/upload", files={"audio": ("a", b"RIFF")}),
                "/v2/pre-recorded": c.post("/v2/pre-recorded", json={"audio_url": "http://x"}),
                f"/v2/pre-recorded/{job}": c.get(f"/v2/pre-recorded/{job}"),
                f"/v2/pre-recorded/{job}/file": c.get(f"/v2/pre-recorded/{job}/file"),
            }
            listed = c.get("/v2/pre-recorded")
            deleted = c.delete(f"/v2/pre-recorded/{job}")
        for path, response in answers.items():
            assert_error_body(response, 401, path)
        assert_error_body(listed, 401, "/v2/pre-recorded")
        assert_error_body(deleted, 401, f"/v2/pre-recorded/{job}")
        assert KEY not in listed.text
        assert sim.uploads() == [] and sim.jobs() == []

    def test_unknown_route_is_404_with_the_error_body(self, client: httpx.Client) -> None:
        """A path the API does not have answers 404 in the same error shape."""
        assert_error_body(client.get("/v2/nothing-here"), 404, "/v2/nothing-here")


# ---------------------------------------------------------------------------------------------
# POST /v2/pre-recorded (section 3)


class TestCreate:
    """POST /v2/pre-recorded and its validation (section 3)."""

    def test_create_answers_201_with_id_and_result_url(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """201 with exactly id (uuid4) and result_url; the job starts life queued."""
        path = tmp_path / "a.wav"
        make_wav(path)
        url = upload(client, path).json()["audio_url"]
        response = create(client, url)
        assert response.status_code == 201
        body = response.json()
        assert set(body) == {"id", "result_url"}
        assert str(uuid.UUID(body["id"], version=4)) == body["id"]
        assert body["result_url"] == f"{sim.base_url}/v2/pre-recorded/{body['id']}"
        assert sim.creates_per_content() == {hashlib.sha256(path.read_bytes()).hexdigest(): 1}

    def test_create_accepts_only_json(self, client: httpx.Client) -> None:
        """A form-encoded create gets 400 saying the endpoint only accepts application/json."""
        response = client.post("/v2/pre-recorded", data={"audio_url": "http://x/a.wav"})
        body = assert_error_body(response, 400, "/v2/pre-recorded")
        assert "only accept application/json" in body["message"]

    def test_invalid_json_is_400(self, client: httpx.Client) -> None:
        """A body that is not JSON gets 400 with validation_errors."""
        response = client.post(
            "/v2/pre-recorded", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert_error_body(response, 400, "/v2/pre-recorded")

    @pytest.mark.parametrize(
        ("options", "named"),
        [
            ({"detect_language": True}, "detect_language"),
            ({"diarization": "yes"}, "diarization"),
            ({"language_config": {"languages": ["english"]}}, "language_config.languages"),
            ({"language_config": {"languages": ["en"], "colour": 1}}, "colour"),
            ({"subtitles": True, "subtitles_config": {"formats": ["ass"]}}, "formats"),
            ({"subtitles_config": {"formats": []}}, "formats"),
            ({"translation": True}, "translation_config"),
            ({"translation": True, "translation_config": {"target_languages": []}}, "target"),
            ({"custom_metadata": {"k": "x" * 2100}}, "custom_metadata"),
            ({"custom_metadata": ["not", "an", "object"]}, "custom_metadata"),
            ({"callback": True, "callback_config": {"url": "not a url"}}, "callback_config.url"),
            ({"diarization_config": {"number_of_speakers": 0}}, "number_of_speakers"),
            ({"summarization_config": {"type": "epic"}}, "summarization_config.type"),
        ],
    )
    def test_invalid_bodies_get_400_naming_the_field(
        self,
        sim: GladiaSimulator,
        client: httpx.Client,
        tmp_path: Path,
        options: dict[str, Any],
        named: str,
    ) -> None:
        """Each violation of section 3.1 gives 400 with a validation error that names it."""
        path = tmp_path / "a.wav"
        make_wav(path)
        url = upload(client, path).json()["audio_url"]
        response = create(client, url, **options)
        body = assert_error_body(response, 400, "/v2/pre-recorded")
        assert any(named in e for e in body["validation_errors"]), body["validation_errors"]
        assert sim.jobs() == []

    def test_audio_url_must_be_a_known_upload(self, client: httpx.Client) -> None:
        """A missing or foreign audio_url is a 400, not a job."""
        for body in ({}, {"audio_url": "http://127.0.0.1:9/file/nope"}):
            response = client.post("/v2/pre-recorded", json=body)
            errors = assert_error_body(response, 400, "/v2/pre-recorded")["validation_errors"]
            assert any("audio_url" in e for e in errors)

    def test_unknown_fields_can_be_ignored_instead(self, tmp_path: Path) -> None:
        """reject_unknown_fields=False switches the [?] behaviour: legacy fields are ignored."""
        with (
            GladiaSimulator(api_key=KEY, reject_unknown_fields=False) as lenient,
            httpx.Client(base_url=lenient.base_url, headers={"x-gladia-key": KEY}) as c,
        ):
            path = tmp_path / "a.wav"
            make_wav(path)
            url = upload(c, path).json()["audio_url"]
            assert create(c, url, detect_language=True).status_code == 201


# ---------------------------------------------------------------------------------------------
# GET /v2/pre-recorded/{id} and the job life cycle (section 4)


class TestJob:
    """GET /v2/pre-recorded/{id}, the job life cycle and results (section 4)."""

    def test_done_job_matches_the_documented_shape(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """A done job has the section 4.3 keys and types; the transcript depends on the bytes."""
        metadata = {"wf_key": "sha256:abc", "wf_file": "inbox/a.wav"}
        job_id, data = new_job(
            client, tmp_path, seconds=3.0, custom_metadata=metadata, language_config={}
        )
        sim.wait_idle(5)
        job = get_job(client, job_id)
        assert set(job) == JOB_KEYS
        assert job["id"] == job_id and job["request_id"] == "G-" + job_id[:8]
        assert (job["version"], job["kind"], job["status"]) == (2, "pre-recorded", "done")
        assert ISO_MS.match(job["created_at"]) and ISO_MS.match(job["completed_at"])
        assert job["completed_at"] >= job["created_at"]
        assert job["custom_metadata"] == metadata
        assert job["error_code"] is None and job["post_session_metadata"] == {}
        assert set(job["file"]) == {
            "id",
            "filename",
            "source",
            "audio_duration",
            "number_of_channels",
        }
        assert job["file"]["source"] is None and job["file"]["audio_duration"] == 3.0
        assert "custom_metadata" not in job["request_params"]
        assert job["request_params"]["language_config"] == {}
        result = job["result"]
        assert set(result) == {"metadata", "transcription"}
        assert set(result["metadata"]) == {
            "audio_duration", "number_of_distinct_channels", "billing_time", "transcription_time"
        }  # fmt: skip
        assert result["metadata"]["billing_time"] == 3.0
        transcription = result["transcription"]
        assert set(transcription) == {"full_transcript", "languages", "utterances"}
        assert transcription["full_transcript"] == expected_transcript(data)
        utterances = transcription["utterances"]
        assert 2 <= len(utterances) <= 4
        assert transcription["full_transcript"] == " ".join(u["text"] for u in utterances)
        previous_end = 0.0
        for utt in utterances:
            assert set(utt) == {
                "start",
                "end",
                "confidence",
                "channel",
                "words",
                "text",
                "language",
            }
            assert utt["channel"] == 0 and utt["language"] == "en"
            assert 3 <= len(utt["words"]) <= 8
            assert "".join(w["word"] for w in utt["words"]) == utt["text"]
            assert not utt["words"][0]["word"].startswith(" ")
            assert all(w["word"].startswith(" ") for w in utt["words"][1:])
            for word in utt["words"]:
                assert set(word) == {"word", "start", "end", "confidence"}
                assert previous_end <= word["start"] < word["end"] <= 3.0
                previous_end = word["end"]

    def test_status_progresses_without_any_polling(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """Jobs are queued, then processing, then done on the simulator's own clock."""
        sim.job_seconds = 0.3
        job_id, _ = new_job(client, tmp_path)
        assert get_job(client, job_id)["status"] in ("queued", "processing")
        sim.wait_idle(5)
        assert [j["status"] for j in sim.jobs()] == ["done"]
        assert get_job(client, job_id)["status"] == "done"

    def test_requested_add_ons_appear_with_the_envelope(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """Every requested add-on yields its block; speakers, subtitles, translations as asked."""
        options: dict[str, Any] = {
            "diarization": True,
            "subtitles": True,
            "subtitles_config": {"formats": ["srt", "vtt"]},
            "summarization": True,
            "summarization_config": {"type": "bullet_points"},
            "translation": True,
            "translation_config": {"target_languages": ["fr", "de"]},
            "sentiment_analysis": True,
            "named_entity_recognition": True,
            "sentences": True,
            "audio_to_llm": True,
            "audio_to_llm_config": {"prompts": ["Who speaks?", "Any dates?"]},
        }
        job_id, data = new_job(client, tmp_path, **options)
        sim.wait_idle(5)
        job = get_job(client, job_id)
        assert job["request_params"] == {"audio_url": job["request_params"]["audio_url"],
                                         "model": "solaria-1", **options}
        result = job["result"]
        for block in ("summarization", "translation", "sentiment_analysis",
                      "named_entity_recognition", "sentences", "audio_to_llm"):  # fmt: skip
            assert set(result[block]) == ENVELOPE_KEYS, block
            assert result[block]["success"] is True and result[block]["error"] is None
        utterances = result["transcription"]["utterances"]
        assert utterances[0]["speaker"] == 0
        assert all(isinstance(u["speaker"], int) for u in utterances)
        subs = result["transcription"]["subtitles"]
        assert [s["format"] for s in subs] == ["srt", "vtt"]
        assert subs[0]["subtitles"].startswith("1\n00:00:")
        assert subs[1]["subtitles"].startswith("WEBVTT\n\n00:00:")
        assert result["summarization"]["results"].startswith("- ")
        translations = result["translation"]["results"]
        assert [t["languages"] for t in translations] == [["fr"], ["de"]]
        assert translations[0]["full_transcript"] == expected_translation(data, "fr")
        assert all(t["error"] is None and t["utterances"] for t in translations)
        assert len(result["sentiment_analysis"]["results"]) == len(utterances)
        assert isinstance(result["named_entity_recognition"]["results"], list)
        llm = result["audio_to_llm"]["results"]
        assert [a["results"]["prompt"] for a in llm] == ["Who speaks?", "Any dates?"]

    def test_pii_redaction_is_reflected_in_the_transcript(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """With pii_redaction, the transcript is what expected_transcript predicts for it."""
        options: dict[str, Any] = {
            "pii_redaction": True,
            "pii_redaction_config": {"entity_types": ["GDPR"]},
        }
        ids = [new_job(client, tmp_path, salt=f"pii{i}", **options) for i in range(4)]
        sim.wait_idle(5)
        for job_id, data in ids:
            text = get_job(client, job_id)["result"]["transcription"]["full_transcript"]
            assert text == expected_transcript(data, options=options)
            assert not re.search(r"\b(Anna|David|Paris|Berlin|Monday|June)\b", text)

    def test_fail_next_jobs_end_in_error_with_the_given_code(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """fail_next_jobs(1, 500): the next job errors like the 4.4 example, the one after works."""
        sim.fail_next_jobs(1, error_code=500)
        failed, _ = new_job(client, tmp_path, custom_metadata={"wf_key": "k"})
        fine, _ = new_job(client, tmp_path)
        sim.wait_idle(5)
        job = get_job(client, failed)
        assert set(job) == JOB_KEYS
        assert (job["status"], job["error_code"]) == ("error", 500)
        assert job["file"] is None and job["request_params"] is None and job["result"] is None
        assert job["custom_metadata"] == {"wf_key": "k"}
        assert ISO_MS.match(job["completed_at"])
        assert get_job(client, fine)["status"] == "done"

    def test_corrupt_media_accepted_at_upload_fails_the_job_with_422(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """corrupt_media="job_error" (default): the upload passes, the job ends error 422."""
        path = tmp_path / "corrupt.wav"
        make_corrupt(path)
        response = upload(client, path)
        assert response.status_code == 200
        job_id = create(client, response.json()["audio_url"]).json()["id"]
        sim.wait_idle(5)
        job = get_job(client, job_id)
        assert (job["status"], job["error_code"], job["result"]) == ("error", 422, None)

    def test_audio_over_the_duration_limit_fails_the_job_with_422(self, tmp_path: Path) -> None:
        """A file longer than max_audio_seconds is accepted, then its job ends error 422."""
        with (
            GladiaSimulator(api_key=KEY, job_seconds=0.01, max_audio_seconds=0.5) as short,
            httpx.Client(base_url=short.base_url, headers={"x-gladia-key": KEY}) as c,
        ):
            job_id, _ = new_job(c, tmp_path, seconds=1.0)
            short.wait_idle(5)
            job = get_job(c, job_id)
            assert (job["status"], job["error_code"]) == ("error", 422)

    def test_error_jobs_can_keep_file_and_params(self, tmp_path: Path) -> None:
        """null_on_error=False switches the [?]: an error job keeps file and request_params."""
        with (
            GladiaSimulator(api_key=KEY, job_seconds=0.01, null_on_error=False) as keep,
            httpx.Client(base_url=keep.base_url, headers={"x-gladia-key": KEY}) as c,
        ):
            keep.fail_next_jobs(1, 503)
            job_id, _ = new_job(c, tmp_path)
            keep.wait_idle(5)
            job = get_job(c, job_id)
            assert job["error_code"] == 503
            assert job["file"] is not None and job["request_params"] is not None

    def test_unknown_job_is_404(self, client: httpx.Client) -> None:
        """GET of the all-zero UUID (as the SDK e2e test does) is 404 with the error body."""
        path = "/v2/pre-recorded/00000000-0000-0000-0000-000000000000"
        assert_error_body(client.get(path), 404, path)

    def test_file_endpoint_returns_the_uploaded_bytes(
        self, client: httpx.Client, tmp_path: Path
    ) -> None:
        """GET .../file streams the original upload as application/octet-stream."""
        job_id, data = new_job(client, tmp_path)
        response = client.get(f"/v2/pre-recorded/{job_id}/file")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.content == data
        missing = f"/v2/pre-recorded/{uuid.uuid4()}/file"
        assert_error_body(client.get(missing), 404, missing)


# ---------------------------------------------------------------------------------------------
# GET /v2/pre-recorded (section 5)


class TestList:
    """GET /v2/pre-recorded: pagination and filters (section 5)."""

    def test_pages_are_newest_first_with_absolute_urls_and_null_next_at_the_end(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """5 jobs, limit 2: pages of 2, 2, 1 by following `next`; filters survive in the URLs."""
        ids = [new_job(client, tmp_path, salt=f"p{i}", custom_metadata={"g": "x"})[0]
               for i in range(5)]  # fmt: skip
        seen: list[str] = []
        url: str | None = f"{sim.base_url}/v2/pre-recorded?custom_metadata[g]=x&limit=2"
        pages = 0
        while url is not None:
            page = client.get(url).json()
            assert set(page) == {"first", "current", "next", "items"}
            assert page["first"].startswith(f"{sim.base_url}/v2/pre-recorded?")
            assert "offset=0" in page["first"] and "custom_metadata" in page["first"]
            assert page["current"].startswith(sim.base_url)
            assert all(set(item) == JOB_KEYS for item in page["items"])
            seen += [item["id"] for item in page["items"]]
            url = page["next"]
            pages += 1
        assert pages == 3
        assert seen == ids[::-1]

    def test_custom_metadata_filter_accepts_json_and_deep_object_forms(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """Both encodings select by containment, nested objects included."""
        a, _ = new_job(client, tmp_path, custom_metadata={"wf_key": "A", "n": {"d": 4576}})
        b, _ = new_job(client, tmp_path, custom_metadata={"wf_key": "B", "n": {"d": 1}})
        new_job(client, tmp_path)

        def ids(params: Any) -> list[str]:
            response = client.get("/v2/pre-recorded", params=params)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["items"]]

        assert ids({"custom_metadata": json.dumps({"wf_key": "A"})}) == [a]
        assert ids({"custom_metadata": json.dumps({"n": {"d": 1}})}) == [b]
        assert ids({"custom_metadata[wf_key]": "B"}) == [b]
        assert ids([("custom_metadata[wf_key]", "A"), ("custom_metadata[n][d]", "1")]) == []
        assert ids({"custom_metadata": json.dumps({"wf_key": "C"})}) == []

    def test_custom_metadata_leaves_compare_as_strict_json(
        self, client: httpx.Client, tmp_path: Path
    ) -> None:
        """A stored number is not matched by a string (the recommended strict rule)."""
        job_id, _ = new_job(client, tmp_path, custom_metadata={"user": 2348739875894375})
        as_number = {"custom_metadata": json.dumps({"user": 2348739875894375})}
        as_string = {"custom_metadata": json.dumps({"user": "2348739875894375"})}
        listed = client.get("/v2/pre-recorded", params=as_number).json()["items"]
        assert [i["id"] for i in listed] == [job_id]
        assert client.get("/v2/pre-recorded", params=as_string).json()["items"] == []

    def test_invalid_custom_metadata_json_is_400(self, client: httpx.Client) -> None:
        """custom_metadata that is not a JSON object gets 400 with validation_errors."""
        for bad in ("{nope", "[1]"):
            response = client.get("/v2/pre-recorded", params={"custom_metadata": bad})
            assert_error_body(response, 400, "/v2/pre-recorded")

    def test_status_filter_accepts_repeated_keys_and_comma_lists(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """status=a&status=b and status=a,b both select the union; a bad value is 400."""
        sim.fail_next_jobs(1, 500)
        failed, _ = new_job(client, tmp_path)
        done, _ = new_job(client, tmp_path)
        sim.wait_idle(5)
        sim.job_seconds = 30
        queued, _ = new_job(client, tmp_path)
        wait_for(lambda: get_job(client, queued)["status"] == "processing", what="processing")

        def ids(params: Any) -> set[str]:
            return {i["id"] for i in client.get("/v2/pre-recorded", params=params).json()["items"]}

        assert ids([("status", "done"), ("status", "error")]) == {failed, done}
        assert ids({"status": "done,error"}) == {failed, done}
        assert ids({"status": "processing"}) == {queued}
        assert ids({}) == {failed, done, queued}
        assert_error_body(
            client.get("/v2/pre-recorded", params={"status": "finished"}), 400, "/v2/pre-recorded"
        )

    def test_date_filters_are_exclusive_on_created_at(
        self, client: httpx.Client, tmp_path: Path
    ) -> None:
        """after_date/before_date exclude a job created exactly at the bound; date= picks a day."""
        first, _ = new_job(client, tmp_path)
        first_at = get_job(client, first)["created_at"]
        wait_for(lambda: datetime.now().astimezone() > datetime.fromisoformat(first_at),
                 what="the clock to pass the first job")  # fmt: skip
        second, _ = new_job(client, tmp_path)
        second_at = get_job(client, second)["created_at"]
        assert second_at > first_at

        def ids(**params: str) -> list[str]:
            response = client.get("/v2/pre-recorded", params=params)
            assert response.status_code == 200, response.text
            return [i["id"] for i in response.json()["items"]]

        assert ids(after_date=first_at) == [second]
        assert ids(before_date=second_at) == [first]
        assert ids(after_date=first_at, before_date=second_at) == []
        assert ids(date=first_at[:10]) == [second, first]
        assert ids(date="2000-01-01") == []
        assert_error_body(
            client.get("/v2/pre-recorded", params={"after_date": "yesterday"}),
            400,
            "/v2/pre-recorded",
        )

    def test_list_lag_hides_a_new_job_for_a_while(self, tmp_path: Path) -> None:
        """With list_lag_seconds, a just-created job is gettable but not yet listed."""
        with (
            GladiaSimulator(api_key=KEY, list_lag_seconds=0.5) as lagging,
            httpx.Client(base_url=lagging.base_url, headers={"x-gladia-key": KEY}) as c,
        ):
            job_id, _ = new_job(c, tmp_path, custom_metadata={"wf_key": "lag"})
            params = {"custom_metadata": json.dumps({"wf_key": "lag"})}
            assert c.get("/v2/pre-recorded", params=params).json()["items"] == []
            assert get_job(c, job_id)["id"] == job_id
            wait_for(
                lambda: len(c.get("/v2/pre-recorded", params=params).json()["items"]) == 1,
                what="the job to become listable",
            )

    def test_bad_offset_or_limit_is_400(self, client: httpx.Client) -> None:
        """limit below 1, negative or non-numeric offset: 400 with validation_errors."""
        for params in ({"limit": "0"}, {"offset": "-1"}, {"offset": "x"}):
            response = client.get("/v2/pre-recorded", params=params)
            assert_error_body(response, 400, "/v2/pre-recorded")


# ---------------------------------------------------------------------------------------------
# DELETE /v2/pre-recorded/{id} (section 6)


class TestDelete:
    """DELETE /v2/pre-recorded/{id} (section 6)."""

    def test_delete_is_403_until_the_job_ends_then_202_then_gone(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """Queued/processing cannot be deleted; done deletes (202, empty); then 404 everywhere."""
        sim.job_seconds = 0.5
        job_id, _ = new_job(client, tmp_path, custom_metadata={"wf_key": "del"})
        path = f"/v2/pre-recorded/{job_id}"
        assert_error_body(client.delete(path), 403, path)
        sim.wait_idle(5)
        response = client.delete(path)
        assert response.status_code == 202
        assert response.content == b""
        assert_error_body(client.get(path), 404, path)
        assert_error_body(client.get(path + "/file"), 404, path + "/file")
        assert_error_body(client.delete(path), 404, path)
        params = {"custom_metadata": json.dumps({"wf_key": "del"})}
        assert client.get("/v2/pre-recorded", params=params).json()["items"] == []
        assert [j["id"] for j in sim.jobs()] == [job_id]

    def test_error_jobs_can_be_deleted(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """A job in status error is deletable too."""
        sim.fail_next_jobs(1)
        job_id, _ = new_job(client, tmp_path)
        sim.wait_idle(5)
        assert client.delete(f"/v2/pre-recorded/{job_id}").status_code == 202


# ---------------------------------------------------------------------------------------------
# Fault injection


class TestFaults:
    """The fault plan: status, reset, lose_response, delay."""

    def test_status_fault_answers_the_error_body_with_retry_after(
        self, sim: GladiaSimulator, client: httpx.Client
    ) -> None:
        """A 429 fault with retry_after sends Gladia's error body and a Retry-After header."""
        sim.faults.add("list", "status", status=429, retry_after=2)
        first = client.get("/v2/pre-recorded")
        assert_error_body(first, 429, "/v2/pre-recorded")
        assert first.headers["retry-after"] == "2"
        assert client.get("/v2/pre-recorded").status_code == 200

    def test_status_fault_on_upload_keeps_the_answer_readable(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """A 503 on upload is read by the client whatever the body size; nothing is stored."""
        sim.faults.add("upload", "status", status=503, retry_after=0.5)
        path = tmp_path / "big.wav"
        make_sparse_wav(path, 8 * 1024 * 1024)
        response = upload(client, path)
        assert_error_body(response, 503, "/v2/upload")
        assert response.headers["retry-after"] == "0.5"
        assert sim.uploads() == []

    def test_reset_fault_drops_the_connection_before_doing_anything(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """A reset create raises a transport error and creates no job; the next create works."""
        path = tmp_path / "a.wav"
        make_wav(path)
        url = upload(client, path).json()["audio_url"]
        sim.faults.add("create", "reset")
        with pytest.raises(httpx.TransportError) as caught:
            create(client, url)
        assert not isinstance(caught.value, httpx.ConnectError)
        assert sim.jobs() == []
        assert create(client, url).status_code == 201
        # The ledger records a request once its response has gone out: wait for the second.
        wait_for(lambda: len([r for r in sim.requests() if r.endpoint == "create"]) == 2,
                 what="both creates in the ledger")
        assert [r.status for r in sim.requests() if r.endpoint == "create"] == [None, 201]

    def test_lose_response_creates_the_job_but_the_client_sees_a_dropped_connection(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """The work is done (job billed) yet no response arrives; list then finds the job."""
        path = tmp_path / "a.wav"
        data = make_wav(path)
        url = upload(client, path).json()["audio_url"]
        sim.faults.add("create", "lose_response")
        with pytest.raises(httpx.RemoteProtocolError):
            create(client, url, custom_metadata={"wf_key": "lost"})
        [job] = sim.jobs()
        assert sim.creates_per_content()[hashlib.sha256(data).hexdigest()] == 1
        params = {"custom_metadata": json.dumps({"wf_key": "lost"})}
        listed = client.get("/v2/pre-recorded", params=params).json()["items"]
        assert [i["id"] for i in listed] == [job["id"]]

    def test_lose_response_on_upload_stores_the_upload(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """An upload whose answer is lost is still received and stored in full."""
        path = tmp_path / "a.wav"
        data = make_wav(path)
        sim.faults.add("upload", "lose_response")
        with pytest.raises(httpx.RemoteProtocolError):
            upload(client, path)
        [stored] = sim.uploads()
        assert stored["sha256"] == hashlib.sha256(data).hexdigest()

    def test_delay_fault_answers_late_and_the_work_still_happens(
        self, sim: GladiaSimulator, tmp_path: Path
    ) -> None:
        """A client that gives up before a delayed create's answer still leaves a created job."""
        headers = {"x-gladia-key": KEY}
        with httpx.Client(base_url=sim.base_url, headers=headers, timeout=10) as patient:
            path = tmp_path / "a.wav"
            make_wav(path)
            url = upload(patient, path).json()["audio_url"]
            sim.faults.add("get", "delay", delay=0.3)
            missing = f"/v2/pre-recorded/{uuid.uuid4()}"
            assert_error_body(patient.get(missing), 404, missing)
        sim.faults.add("create", "delay", delay=1.0)
        with (
            httpx.Client(base_url=sim.base_url, headers=headers, timeout=0.2) as hasty,
            pytest.raises(httpx.ReadTimeout),
        ):
            create(hasty, url)
        wait_for(lambda: len(sim.jobs()) == 1, what="the delayed create to complete")

    def test_faults_fire_in_order_each_count_times(
        self, sim: GladiaSimulator, client: httpx.Client
    ) -> None:
        """Two 500s on list, then a 503 on any endpoint, then normal service."""
        sim.faults.add("list", "status", status=500, count=2)
        sim.faults.add("any", "status", status=503)
        missing = f"/v2/pre-recorded/{uuid.uuid4()}"
        statuses = [
            client.get("/v2/pre-recorded").status_code,
            client.get(missing).status_code,
            client.get("/v2/pre-recorded").status_code,
            client.get("/v2/pre-recorded").status_code,
            client.get(missing).status_code,
        ]
        assert statuses == [500, 503, 500, 200, 404]
        assert sim.faults.pending() == 0

    def test_clear_forgets_pending_faults(self, sim: GladiaSimulator, client: httpx.Client) -> None:
        """After clear(), requests are answered normally."""
        sim.faults.add("any", "reset", count=3)
        sim.faults.clear()
        assert client.get("/v2/pre-recorded").status_code == 200


# ---------------------------------------------------------------------------------------------
# Outage


class TestOutage:
    """set_outage: refused connections, then the same port again."""

    def test_outage_refuses_connections_then_recovers_on_the_same_port(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """Down: connections are refused while jobs keep progressing. Up: same URL works."""
        sim.job_seconds = 0.3
        job_id, _ = new_job(client, tmp_path)
        base_url = sim.base_url
        sim.set_outage(True)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base_url}/v2/pre-recorded", headers={"x-gladia-key": KEY})
        sim.wait_idle(5)
        sim.set_outage(False)
        assert sim.base_url == base_url
        with httpx.Client(base_url=base_url, headers={"x-gladia-key": KEY}) as fresh:
            assert get_job(fresh, job_id)["status"] == "done"

    def test_outage_cuts_open_keep_alive_connections(
        self, sim: GladiaSimulator, client: httpx.Client
    ) -> None:
        """A pooled connection opened before the outage cannot be used during it."""
        assert client.get("/v2/pre-recorded").status_code == 200
        sim.set_outage(True)
        try:
            with pytest.raises(httpx.TransportError):
                client.get("/v2/pre-recorded")
        finally:
            sim.set_outage(False)
        assert client.get("/v2/pre-recorded").status_code == 200


# ---------------------------------------------------------------------------------------------
# Concurrency (section 8)


class TestConcurrency:
    """Plan concurrency and queueing (section 8)."""

    def test_never_more_than_the_concurrency_processing_at_once(self, tmp_path: Path) -> None:
        """concurrency=2 and 5 jobs: at most 2 processing in any snapshot; the rest queue FIFO."""
        with (
            GladiaSimulator(api_key=KEY, job_seconds=0.25, concurrency=2) as sim,
            httpx.Client(base_url=sim.base_url, headers={"x-gladia-key": KEY}) as c,
        ):
            ids = [new_job(c, tmp_path, salt=f"c{i}")[0] for i in range(5)]
            saw_queued = False
            deadline = time.monotonic() + 10
            while True:
                items = c.get("/v2/pre-recorded", params={"limit": 10}).json()["items"]
                statuses = [i["status"] for i in items]
                assert statuses.count("processing") <= 2
                saw_queued = saw_queued or "queued" in statuses
                if statuses.count("done") == 5:
                    break
                assert time.monotonic() < deadline, f"jobs not done: {statuses}"
                time.sleep(0.02)
            assert saw_queued
            assert sim.peak_processing == 2
            finished = sorted(sim.jobs(), key=lambda j: j["completed_at"])
            assert {j["id"] for j in finished[:2]} == set(ids[:2])

    def test_a_full_queue_answers_429_and_creates_nothing(self, tmp_path: Path) -> None:
        """max_queued_jobs=1, concurrency=1: the third create is refused with 429."""
        with (
            GladiaSimulator(api_key=KEY, job_seconds=30, concurrency=1, max_queued_jobs=1) as sim,
            httpx.Client(base_url=sim.base_url, headers={"x-gladia-key": KEY}) as c,
        ):
            new_job(c, tmp_path)
            wait_for(lambda: sim.jobs()[0]["status"] == "processing", what="processing")
            new_job(c, tmp_path)
            path = tmp_path / "third.wav"
            make_wav(path, salt="third")
            response = create(c, upload(c, path).json()["audio_url"])
            assert_error_body(response, 429, "/v2/pre-recorded")
            assert len(sim.jobs()) == 2


# ---------------------------------------------------------------------------------------------
# Callbacks (section 7.1)


class TestCallbacks:
    """Per-job callbacks (section 7.1) to a real local listener."""

    def test_success_and_error_callbacks_reach_a_real_listener(
        self,
        sim: GladiaSimulator,
        client: httpx.Client,
        tmp_path: Path,
        receiver: CallbackReceiver,
    ) -> None:
        """POST success body, PUT when asked, error body for failures, legacy callback_url."""
        meta = {"wf_key": "cb"}
        ok_config = {"url": receiver.url + "/ok"}
        ok, _ = new_job(
            client, tmp_path, custom_metadata=meta, callback=True, callback_config=ok_config
        )
        put_config = {"url": receiver.url + "/put", "method": "PUT"}
        put, _ = new_job(client, tmp_path, callback=True, callback_config=put_config)
        sim.fail_next_jobs(1, 500)
        bad_config = {"url": receiver.url + "/bad"}
        bad, _ = new_job(
            client, tmp_path, custom_metadata=meta, callback=True, callback_config=bad_config
        )
        legacy, _ = new_job(client, tmp_path, callback_url=receiver.url + "/legacy")
        wait_for(lambda: len(receiver.received) == 4, what="four callbacks")
        by_path = {path: (method, body) for method, path, body in receiver.received}
        method, body = by_path["/ok"]
        assert method == "POST"
        assert set(body) == {"id", "event", "payload", "custom_metadata"}
        assert (body["id"], body["event"], body["custom_metadata"]) == (
            ok, "transcription.success", meta
        )  # fmt: skip
        assert body["payload"] == get_job(client, ok)["result"]
        assert by_path["/put"][0] == "PUT" and by_path["/put"][1]["id"] == put
        method, body = by_path["/bad"]
        assert body == {
            "id": bad,
            "event": "transcription.error",
            "error": {"code": 500, "message": "Internal Server Error"},
            "custom_metadata": meta,
        }
        assert by_path["/legacy"][0] == "POST"
        assert by_path["/legacy"][1]["event"] == "transcription.success"
        assert by_path["/legacy"][1]["id"] == legacy
        wait_for(lambda: len(sim.callbacks()) == 4, what="the callback ledger")
        assert {c["status"] for c in sim.callbacks()} == {200}

    def test_failed_delivery_is_recorded_and_ignored(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """A callback to a closed port is recorded with its error; the job is still done."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead_port = probe.getsockname()[1]
        config = {"url": f"http://127.0.0.1:{dead_port}/cb"}
        job_id, _ = new_job(client, tmp_path, callback=True, callback_config=config)
        wait_for(lambda: len(sim.callbacks()) == 1, what="the callback attempt")
        [attempt] = sim.callbacks()
        assert attempt["status"] is None and attempt["error"]
        assert get_job(client, job_id)["status"] == "done"


# ---------------------------------------------------------------------------------------------
# Ledger, lifecycle, memory


class TestLifecycle:
    """The ledger, start/stop, the command line and the streaming memory bound."""

    def test_request_ledger_names_endpoints_and_statuses(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """Each request is recorded with its method, path, endpoint and status."""
        job_id, _ = new_job(client, tmp_path)
        client.get("/v2/pre-recorded")
        client.get(f"/v2/pre-recorded/{job_id}")
        # A request is recorded once its answer is written: the client may have it first.
        wait_for(lambda: len(sim.requests()) >= 4, what="the last request's record")
        records = sim.requests()
        assert [(r.method, r.endpoint, r.status) for r in records] == [
            ("POST", "upload", 200),
            ("POST", "create", 201),
            ("GET", "list", 200),
            ("GET", "get", 200),
        ]
        assert records[3].path == f"/v2/pre-recorded/{job_id}"
        assert all(a.time <= b.time for a, b in itertools.pairwise(records))

    def test_stop_returns_with_open_connections_and_frees_the_port(self) -> None:
        """stop() does not hang on an idle keep-alive connection, and the port then refuses."""
        sim = GladiaSimulator(api_key=KEY).start()
        with httpx.Client(base_url=sim.base_url, headers={"x-gladia-key": KEY}) as c:
            assert c.get("/v2/pre-recorded").status_code == 200
            sim.stop()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{sim.base_url}/v2/pre-recorded")

    def test_command_line_runs_the_simulator_and_prints_its_url(self) -> None:
        """python -m tests.sim prints its base URL and serves until terminated."""
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.sim", "--port", "0", "--api-key", "cli-key"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
            response = httpx.get(f"{base_url}/v2/pre-recorded", headers={"x-gladia-key": "cli-key"})
            assert response.status_code == 200
        finally:
            process.terminate()
            process.wait(timeout=10)

    def test_streamed_upload_of_200_mb_keeps_memory_flat(
        self, sim: GladiaSimulator, client: httpx.Client, tmp_path: Path
    ) -> None:
        """A ~200 MB upload grows this process's RSS (client + simulator) by under 100 MB."""
        path = tmp_path / "huge.wav"
        make_sparse_wav(path, 200 * 1024 * 1024)
        before = vm_rss_kib()
        response = upload(client, path)
        growth_mib = (vm_rss_kib() - before) / 1024
        assert response.status_code == 200
        meta = response.json()["audio_metadata"]
        assert meta["size"] == path.stat().st_size
        assert meta["audio_duration"] == pytest.approx((path.stat().st_size - 44) / 32000)
        assert growth_mib < 100, f"RSS grew by {growth_mib:.0f} MiB"
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        assert sim.uploads()[0]["sha256"] == digest.hexdigest()
