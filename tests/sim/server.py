"""The simulator itself: state, scheduling, callbacks, and the HTTP handler."""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import hmac
import http
import json
import queue
import re
import shutil
import socket
import socketserver
import struct
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from tests.sim.faults import (
    _CHUNK,
    _MAX_JSON_BODY,
    _SMALL_UNREAD_BODY,
    DEFAULT_MAX_AUDIO_SECONDS,
    DEFAULT_MAX_UPLOAD_BYTES,
    FaultPlan,
    RequestRecord,
)
from tests.sim.jobs import (
    build_result,
)
from tests.sim.media import (
    MediaInfo,
    probe_media,
    stream_kinds,
)
from tests.sim.requests import (
    BadMultipart,
    BodyReader,
    ClientGone,
    _AudioSink,
    _ListQuery,
    _parse_header_params,
    _QueryError,
    _SpooledAudio,
    metadata_contains,
    parse_list_query,
    parse_multipart_upload,
)
from tests.sim.validation import (
    _FLAG_DEFAULTS,
    DEFAULT_MODEL,
    _v_uri,
    openapi_definition,
    validate_create_body,
)

# ---------------------------------------------------------------------------------------------
# The simulator.


def _now() -> datetime:
    """The current UTC time truncated to milliseconds, the precision the API shows."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and Z, e.g. 2023-12-28T09:04:17.210Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@dataclass
class _Upload:
    id: str
    path: Path
    sha256: str
    size: int
    filename: str
    extension: str
    audio_duration: float
    number_of_channels: int
    distinct_channels: int
    corrupt: bool
    too_long: bool
    source: str | None
    audio_url: str
    content_type: str = ""
    # The kinds of stream the container holds ("audio", "video"), when PyAV can tell.
    streams: tuple[str, ...] | None = None


@dataclass
class _Job:
    id: str
    seq: int
    upload: _Upload
    body: dict[str, Any]
    created_at: datetime
    created_mono: float
    fail_code: int | None
    status: str = "queued"
    started_mono: float = 0.0
    due_mono: float = 0.0
    completed_at: datetime | None = None
    error_code: int | None = None
    result: dict[str, Any] | None = None
    deleted: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    sim: GladiaSimulator

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connection-level errors are the clients' business; handler bugs are recorded."""


class GladiaSimulator:
    """Gladia's pre-recorded v2 API over real HTTP, with fault injection and a ledger."""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        job_seconds: float = 0.2,
        concurrency: int = 3,
        list_lag_seconds: float = 0.0,
        corrupt_media: Literal["job_error", "upload_error"] = "job_error",
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS,
        host: str = "127.0.0.1",
        port: int = 0,
        reject_unknown_fields: bool = True,
        echo_all_params: bool = False,
        null_on_error: bool = True,
        max_queued_jobs: int | None = None,
        forbidden_features: Sequence[str] = (),
        job_transform: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        """Configure; nothing listens until start().

        The extra switches choose among undocumented behaviours: unknown create fields
        give 400 (or are ignored); request_params echoes only the sent keys (or every flag with
        its default, like the OAS example); an error job has null file/request_params (or keeps
        them); with max_queued_jobs, a create beyond that many queued jobs gets 429 (section 8).
        ``forbidden_features`` are create fields the account's plan lacks: a create that turns
        one on gets 403, as SKILLS describes ("key doesn't have access to the feature").
        ``job_transform`` rewrites what GET of a done job returns (odd shapes, lone surrogate
        escapes; bytes are sent as the raw body) to test how the client copes with odd answers.
        """
        if corrupt_media not in ("job_error", "upload_error"):
            raise ValueError("corrupt_media must be 'job_error' or 'upload_error'")
        self._api_key = api_key
        self.job_seconds = job_seconds
        self._concurrency = concurrency
        self.list_lag_seconds = list_lag_seconds
        self.corrupt_media = corrupt_media
        self.max_upload_bytes = max_upload_bytes
        self.max_audio_seconds = max_audio_seconds
        self.host = host
        self.port = port
        self.reject_unknown_fields = reject_unknown_fields
        self.echo_all_params = echo_all_params
        self.null_on_error = null_on_error
        self.max_queued_jobs = max_queued_jobs
        self.forbidden_features = frozenset(forbidden_features)
        self.job_transform = job_transform
        self.faults = FaultPlan()

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._server_lock = threading.Lock()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._scheduler: threading.Thread | None = None
        self._callback_thread: threading.Thread | None = None
        self._callback_queue: queue.Queue[tuple[str, str, dict[str, Any], str] | None] = (
            queue.Queue()
        )
        self._spool: tempfile.TemporaryDirectory[str] | None = None
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()

        self._uploads: dict[str, _Upload] = {}
        self._upload_order: list[_Upload] = []
        self._jobs: dict[str, _Job] = {}
        self._job_order: list[_Job] = []
        self._queue: collections.deque[_Job] = collections.deque()
        self._processing: list[_Job] = []
        self._requests: list[RequestRecord] = []
        self._callbacks: list[dict[str, Any]] = []
        self._internal_errors: list[str] = []
        self._creates: collections.Counter[str] = collections.Counter()
        self._fail_next: collections.deque[int] = collections.deque()
        self._peak_processing = 0
        self._peak_queued = 0
        self._started_jobs = 0
        self._waited: set[str] = set()
        self._seq = 0
        self._down = False
        # While set and not released, a create makes its job and then holds the response back
        # (a test does something, such as filling the client's disk, in that instant).
        self._create_gate: threading.Event | None = None
        # The same for DELETE (a test kills the client between its intent and the delete).
        self._delete_gate: threading.Event | None = None
        self._delete_count = 0
        self._started = False
        self._stopped = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> GladiaSimulator:
        """Bind the port (an ephemeral one when port=0), start serving; returns self."""
        if self._started:
            return self
        self._started = True
        self._spool = tempfile.TemporaryDirectory(prefix="gladia-sim-")
        with self._server_lock:
            self._bind()
        self._scheduler = threading.Thread(
            target=self._run_scheduler, name="gladia-sim-scheduler", daemon=True
        )
        self._scheduler.start()
        self._callback_thread = threading.Thread(
            target=self._deliver_callbacks, name="gladia-sim-callbacks", daemon=True
        )
        self._callback_thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end the background threads, delete spooled uploads. Never hangs."""
        if not self._started or self._stopped:
            return
        self._stopped = True
        with self._server_lock:
            if not self._down:
                self._unbind()
        with self._cond:
            self._cond.notify_all()
        if self._scheduler is not None:
            self._scheduler.join(timeout=5)
        self._callback_queue.put(None)
        if self._callback_thread is not None:
            self._callback_thread.join(timeout=5)
        if self._spool is not None:
            shutil.rmtree(self._spool.name, ignore_errors=True)

    def __enter__(self) -> GladiaSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The root URL clients use, e.g. http://127.0.0.1:41234 (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def spool_dir(self) -> Path:
        """Where uploaded files are kept while the simulator runs."""
        if self._spool is None:
            raise RuntimeError("the simulator is not started")
        return Path(self._spool.name)

    @property
    def concurrency(self) -> int:
        """How many jobs may be processing at once (the plan's concurrency)."""
        return self._concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        with self._cond:
            self._concurrency = value
            self._cond.notify_all()

    def rotate_key(self, new_key: str) -> None:
        """Accept only ``new_key`` from now on, as after a key is rotated in the dashboard."""
        with self._lock:
            self._api_key = new_key

    def _bind(self) -> None:
        server = _Server((self.host, self.port), _Handler)
        server.sim = self
        self.port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"gladia-sim-{self.port}",
            daemon=True,
        )
        self._server, self._serve_thread = server, thread
        thread.start()

    def _unbind(self) -> None:
        server, thread = self._server, self._serve_thread
        self._server = self._serve_thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def set_outage(self, down: bool) -> None:
        """Down: close the listening socket and cut open connections. Up: listen on the same port.

        Jobs keep progressing during an outage, as they would on Gladia's side.
        """
        with self._server_lock:
            if self._stopped or not self._started:
                raise RuntimeError("set_outage needs a running simulator")
            if down and not self._down:
                self._down = True
                self._unbind()
            elif not down and self._down:
                self._bind()
                self._down = False

    @property
    def is_down(self) -> bool:
        """True while set_outage(True) is in force."""
        return self._down

    def _register(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.add(conn)

    def _unregister(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._connections.discard(conn)

    # -- test controls and ledger ------------------------------------------------------------

    def hold_create_responses(self) -> None:
        """From now on, each create makes its job, then waits for release_create_responses()
        before answering (at most 60 s): the instant between a job existing and its client
        hearing of it."""
        with self._lock:
            self._create_gate = threading.Event()

    def release_create_responses(self) -> None:
        """Answer the held creates, and every later one at once."""
        with self._lock:
            gate, self._create_gate = self._create_gate, None
        if gate is not None:
            gate.set()

    def fail_next_jobs(self, count: int, error_code: int = 500) -> None:
        """The next `count` jobs created end with status "error" and this error_code."""
        with self._lock:
            self._fail_next.extend([error_code] * count)

    def jobs(self) -> list[dict[str, Any]]:
        """Every job ever created (deleted ones too), each as GET returns it, oldest first."""
        with self._lock:
            return [self._job_object(job) for job in self._job_order]

    def uploads(self) -> list[dict[str, Any]]:
        """Every upload: id, sha256, size, filename, audio_url (plus extension, audio_duration)."""
        with self._lock:
            return [
                {
                    "id": u.id,
                    "sha256": u.sha256,
                    "size": u.size,
                    "filename": u.filename,
                    "audio_url": u.audio_url,
                    "extension": u.extension,
                    "audio_duration": u.audio_duration,
                    "content_type": u.content_type,
                    "streams": u.streams,
                }
                for u in self._upload_order
            ]

    def requests(self) -> list[RequestRecord]:
        """Every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    def callbacks(self) -> list[dict[str, Any]]:
        """Every callback attempt: job_id, url, method, event, body, status (None), error."""
        with self._lock:
            return copy.deepcopy(self._callbacks)

    def internal_errors(self) -> list[str]:
        """Tracebacks of simulator bugs hit while handling requests (should stay empty)."""
        with self._lock:
            return list(self._internal_errors)

    def creates_per_content(self) -> collections.Counter[str]:
        """Uploaded-file sha256 -> number of jobs created for it (lost responses included)."""
        with self._lock:
            return collections.Counter(self._creates)

    @property
    def peak_processing(self) -> int:
        """The most jobs ever processing at the same time."""
        with self._lock:
            return self._peak_processing

    @property
    def peak_queued(self) -> int:
        """The most jobs ever waiting in the queue at once (accepted beyond the concurrency)."""
        with self._lock:
            return self._peak_queued

    @property
    def waited_jobs(self) -> int:
        """How many jobs had to wait in the queue for a slot (created beyond the concurrency)."""
        with self._lock:
            return len(self._waited)

    @property
    def started_jobs(self) -> int:
        """How many jobs have started processing (each job starts once, in creation order)."""
        with self._lock:
            return self._started_jobs

    def schedule(self) -> list[tuple[float, float, float]]:
        """(created, started, finished) of every finished job on the monotonic clock, in
        creation order: how long each waited for a slot, and the slots' idle gaps."""
        with self._lock:
            return [(j.created_mono, j.started_mono, j.due_mono) for j in self._job_order
                    if j.status in ("done", "error")]

    def timeline(self) -> list[tuple[str, float, float, float]]:
        """(job id, created, started, finished) of every finished job on the wall clock (the
        requests' clock), in creation order: when each job could first be seen done."""
        offset = time.time() - time.monotonic()
        with self._lock:
            return [(j.id, j.created_mono + offset, j.started_mono + offset, j.due_mono + offset)
                    for j in self._job_order if j.status in ("done", "error")]

    @property
    def queued_now(self) -> int:
        """How many jobs are waiting in the queue right now."""
        with self._lock:
            return len(self._queue)

    def wait_idle(self, timeout: float) -> None:
        """Block until no job is queued or processing; TimeoutError after `timeout` seconds."""
        with self._cond:
            idle = self._cond.wait_for(lambda: not self._queue and not self._processing, timeout)
            if not idle:
                raise TimeoutError(
                    f"{len(self._queue)} queued and {len(self._processing)} processing jobs "
                    f"after {timeout} s"
                )

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _record_internal_error(self, text: str) -> None:
        with self._lock:
            self._internal_errors.append(text)

    # -- state: uploads and jobs ---------------------------------------------------------------

    def _store_upload(self, spooled: _SpooledAudio, info: MediaInfo, source: str | None) -> _Upload:
        upload_id = str(uuid.uuid4())
        corrupt = info.extension is None
        extension = info.extension or (
            Path(spooled.filename).suffix.lstrip(".").lower() or "unknown"
        )
        # A file we cannot read still gets a plausible duration, as for an undecodable stream.
        duration = info.audio_duration if not corrupt else spooled.size / 16_000
        upload = _Upload(
            id=upload_id,
            path=spooled.path,
            sha256=spooled.sha256,
            size=spooled.size,
            filename=spooled.filename,
            extension=extension,
            audio_duration=duration,
            number_of_channels=info.number_of_channels,
            distinct_channels=info.distinct_channels,
            corrupt=corrupt,
            too_long=not corrupt and duration > self.max_audio_seconds,
            source=source,
            audio_url=f"{self.base_url}/file/{upload_id}",
            content_type=spooled.content_type,
            streams=stream_kinds(spooled.path),
        )
        with self._lock:
            self._uploads[upload_id] = upload
            self._upload_order.append(upload)
        return upload

    def _upload_for_url(self, url: str) -> _Upload | None:
        prefix = f"{self.base_url}/file/"
        if not url.startswith(prefix):
            return None
        with self._lock:
            return self._uploads.get(url[len(prefix) :])

    def _create_job(self, body: dict[str, Any], upload: _Upload) -> _Job | None:
        """Queue a new job; None when the queue is full (max_queued_jobs)."""
        with self._cond:
            if self.max_queued_jobs is not None and len(self._queue) >= self.max_queued_jobs:
                return None
            fail_code = self._fail_next.popleft() if self._fail_next else None
            if fail_code is None and (upload.corrupt or upload.too_long):
                fail_code = 422
            self._seq += 1
            job = _Job(
                id=str(uuid.uuid4()),
                seq=self._seq,
                upload=upload,
                body=copy.deepcopy(body),
                created_at=_now(),
                created_mono=time.monotonic(),
                fail_code=fail_code,
            )
            self._jobs[job.id] = job
            self._job_order.append(job)
            self._queue.append(job)
            self._creates[upload.sha256] += 1
            self._cond.notify_all()
            return job

    def _visible_job(self, job_id: str) -> _Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return None if job is None or job.deleted else job

    def hold_deletes(self) -> None:
        """DELETE requests wait (before acting) until :meth:`release_deletes`."""
        with self._lock:
            self._delete_gate = threading.Event()

    def release_deletes(self) -> None:
        with self._lock:
            gate, self._delete_gate = self._delete_gate, None
        if gate is not None:
            gate.set()

    def delete_requests(self) -> int:
        """How many DELETE /v2/pre-recorded/{id} requests arrived (held ones included)."""
        with self._lock:
            return self._delete_count

    def is_deleted(self, job_id: str) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            return job is not None and job.deleted

    def _delete_job(self, job_id: str) -> int:
        with self._lock:
            self._delete_count += 1
            gate = self._delete_gate
        if gate is not None:
            gate.wait(timeout=60)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.deleted:
                return 404
            if job.status not in ("done", "error"):
                return 403
            job.deleted = True
            return 202

    def _list_page(self, q: _ListQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of matching jobs, newest first, as one consistent snapshot; and the total."""
        now = time.monotonic()
        with self._lock:
            found = []
            for job in self._job_order:
                if job.deleted or now < job.created_mono + self.list_lag_seconds:
                    continue
                if q.statuses is not None and job.status not in q.statuses:
                    continue
                if q.after is not None and not job.created_at > q.after:
                    continue
                if q.before is not None and not job.created_at < q.before:
                    continue
                if q.day is not None and job.created_at.date() != q.day:
                    continue
                stored = job.body.get("custom_metadata")
                if q.metadata and not metadata_contains(stored, q.metadata):
                    continue
                found.append(job)
            found.sort(key=lambda j: (j.created_at, j.seq), reverse=True)
            page = found[q.offset : q.offset + q.limit]
            return [self._job_object(job) for job in page], len(found)

    def _job_object(self, job: _Job) -> dict[str, Any]:
        """The job exactly as GET /v2/pre-recorded/{id} shows it (sections 4.1, 4.3, 4.4)."""
        upload = job.upload
        file: dict[str, Any] | None = {
            "id": upload.id,
            "filename": upload.filename,
            "source": upload.source,
            "audio_duration": upload.audio_duration,
            "number_of_channels": upload.number_of_channels,
        }
        params: dict[str, Any] | None = {
            k: copy.deepcopy(v) for k, v in job.body.items() if k != "custom_metadata"
        }
        if params is not None:
            # Which model ran (Gladia's default when the body named none).
            params.setdefault("model", DEFAULT_MODEL)
        if self.echo_all_params and params is not None:
            for flag in _FLAG_DEFAULTS:
                params.setdefault(flag, False)
        if job.status == "error" and self.null_on_error:
            file = params = None
        return {
            "id": job.id,
            "request_id": "G-" + job.id[:8],
            "version": 2,
            "kind": "pre-recorded",
            "status": job.status,
            "created_at": iso(job.created_at),
            "completed_at": iso(job.completed_at) if job.completed_at else None,
            "custom_metadata": copy.deepcopy(job.body.get("custom_metadata")),
            "error_code": job.error_code,
            "post_session_metadata": {},
            "file": file,
            "request_params": params,
            "result": copy.deepcopy(job.result) if job.status == "done" else None,
        }

    # -- simulated processing ----------------------------------------------------------------

    def _run_scheduler(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                self._advance_locked(now)
                dues = [job.due_mono for job in self._processing]
                self._cond.wait(max(0.0, min(dues) - now) if dues else None)

    def _advance_locked(self, now: float) -> None:
        changed = False
        while True:
            progressed = False
            for job in [j for j in self._processing if j.due_mono <= now]:
                self._finish_locked(job, now)
                progressed = True
            while self._queue and len(self._processing) < self._concurrency:
                job = self._queue.popleft()
                job.status = "processing"
                job.started_mono = now
                job.due_mono = now + self.job_seconds
                self._processing.append(job)
                self._started_jobs += 1
                self._peak_processing = max(self._peak_processing, len(self._processing))
                progressed = True
            if not progressed:
                break
            changed = True
        # What is still queued now waits for a slot: accepted beyond the concurrency.
        self._peak_queued = max(self._peak_queued, len(self._queue))
        self._waited.update(job.id for job in self._queue)
        if changed:
            self._cond.notify_all()

    def _finish_locked(self, job: _Job, now: float) -> None:
        self._processing.remove(job)
        job.completed_at = _now()
        if job.fail_code is not None:
            job.status = "error"
            job.error_code = job.fail_code
        else:
            job.status = "done"
            job.result = build_result(
                job.upload.sha256, job.upload.audio_duration, job.body, now - job.started_mono,
                distinct_channels=job.upload.distinct_channels,
            )
        self._queue_callbacks(job)

    def _queue_callbacks(self, job: _Job) -> None:
        body = job.body
        targets: list[tuple[str, str]] = []
        config = body.get("callback_config")
        if body.get("callback") is True and isinstance(config, dict) and "url" in config:
            targets.append((config["url"], config.get("method", "POST")))
        if isinstance(body.get("callback_url"), str):
            targets.append((body["callback_url"], "POST"))
        if not targets:
            return
        payload: dict[str, Any]
        if job.status == "done":
            payload = {
                "id": job.id,
                "event": "transcription.success",
                "payload": copy.deepcopy(job.result),
                "custom_metadata": copy.deepcopy(body.get("custom_metadata")),
            }
        else:
            code = job.error_code or 500
            payload = {
                "id": job.id,
                "event": "transcription.error",
                "error": {"code": code, "message": _phrase(code)},
                "custom_metadata": copy.deepcopy(body.get("custom_metadata")),
            }
        for url, method in targets:
            self._callback_queue.put((url, method, payload, job.id))

    def _deliver_callbacks(self) -> None:
        with httpx.Client(timeout=3.0) as client:
            while True:
                item = self._callback_queue.get()
                if item is None:
                    return
                url, method, payload, job_id = item
                record: dict[str, Any] = {
                    "job_id": job_id,
                    "url": url,
                    "method": method,
                    "event": payload["event"],
                    "body": payload,
                    "status": None,
                    "error": None,
                }
                try:
                    record["status"] = client.request(method, url, json=payload).status_code
                except httpx.HTTPError as exc:  # delivery failures are ignored, as Gladia would
                    record["error"] = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self._callbacks.append(record)


# ---------------------------------------------------------------------------------------------
# HTTP.

_JOB_PATH = re.compile(r"^/v2/(?:pre-recorded|transcription)/([^/]+)(/file)?/?$")
_COLLECTION_PATH = re.compile(r"^/v2/(?:pre-recorded|transcription)/?$")


def classify(method: str, path: str) -> tuple[str, str | None]:
    """The ledger endpoint name of a request and the job id in its path, if any."""
    if path.rstrip("/") == "/v2/upload" and method == "POST":
        return "upload", None
    if path == "/openapi.json" and method == "GET":
        return "definition", None
    if _COLLECTION_PATH.match(path):
        if method == "POST":
            return "create", None
        if method == "GET":
            return "list", None
    match = _JOB_PATH.match(path)
    if match:
        job_id = match.group(1)
        if match.group(2) and method == "GET":
            return "file", job_id
        if not match.group(2) and method == "GET":
            return "get", job_id
        if not match.group(2) and method == "DELETE":
            return "delete", job_id
    return "other", None


def _format_retry_after(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gladia-sim/2"
    sys_version = ""
    timeout = 60
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: _Server

    # -- plumbing ------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.sim._register(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.sim._unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the ledger is the log."""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def _handle(self) -> None:
        sim = self.server.sim
        started = time.time()
        parts = urlsplit(self.path)
        self._route_path = parts.path
        self._query = parts.query
        self._status: int | None = None
        self._lose = False
        self._close_after = False
        self._call_id = str(uuid.uuid4())
        endpoint, job_id = classify(self.command, parts.path)
        length = self.headers.get("Content-Length")
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        try:
            body_length = int(length) if length is not None else 0
            if body_length < 0:
                raise ValueError(length)
        except ValueError:
            body_length = 0
            self._close_after = True
        self._body = BodyReader(cast(BinaryIO, self.rfile), body_length)
        if chunked:
            self._close_after = True  # we do not parse chunked bodies: never reuse this socket
        try:
            self._serve(sim, endpoint, job_id, chunked)
        except ClientGone:
            self._drop(rst=False)
        except OSError:
            self._status = None
            self.close_connection = True
        except Exception:
            import traceback

            sim._record_internal_error(traceback.format_exc())
            if self._status is None and not self._lose:
                try:
                    self._error(500, "Internal Server Error")
                except OSError:
                    self.close_connection = True
        finally:
            sim._record(RequestRecord(self.command, parts.path, endpoint, self._status, started))

    def _serve(
        self, sim: GladiaSimulator, endpoint: str, job_id: str | None, chunked: bool
    ) -> None:
        if sim.is_down:
            self._drop(rst=True)
            return
        fault = sim.faults.take(endpoint)
        if fault is not None:
            if fault.kind == "reset":
                self._drop(rst=True)
                return
            if fault.kind == "status":
                self._error(fault.status, _phrase(fault.status), retry_after=fault.retry_after)
                return
            if fault.kind == "delay":
                time.sleep(fault.delay)
            elif fault.kind == "lose_response":
                self._lose = True
        if endpoint == "definition":
            # Public, as Gladia's own (https://api.gladia.io/openapi.json): no key needed.
            self._send_json(200, openapi_definition())
            return
        if not self._authorized(sim):
            self._error(401, "Unauthorized: missing or invalid x-gladia-key header")
            return
        if chunked and endpoint in ("upload", "create"):
            self._error(411, "Length Required")
            return
        if endpoint == "upload":
            self._upload(sim)
        elif endpoint == "create":
            self._create(sim)
        elif endpoint == "list":
            self._list(sim)
        elif endpoint == "get":
            self._get(sim, cast(str, job_id))
        elif endpoint == "delete":
            self._delete(sim, cast(str, job_id))
        elif endpoint == "file":
            self._file(sim, cast(str, job_id))
        else:
            self._error(404, f"Cannot {self.command} {self._route_path}")

    def _authorized(self, sim: GladiaSimulator) -> bool:
        given = self.headers.get("x-gladia-key", "")
        return hmac.compare_digest(given.encode(), sim._api_key.encode())

    def _drop(self, *, rst: bool) -> None:
        """End the connection without a response; with rst, abort it (TCP RST)."""
        self._status = None
        self.close_connection = True
        if rst:
            try:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
            except OSError:
                pass

    def _settle_body(self) -> None:
        """Before answering: drain a small unread body, or plan to close after a large one."""
        remaining = self._body.remaining
        if 0 < remaining <= _SMALL_UNREAD_BODY and not self._close_after:
            self._body.drain(_SMALL_UNREAD_BODY)
        elif remaining > 0:
            self._close_after = True

    def _linger(self) -> None:
        """After an early answer, read (and discard) what the client still sends for a moment.

        Closing with unread data makes the kernel send RST, which can destroy the answer before
        the client reads it (the 413 would turn into a reset). So half-close, drain briefly,
        then close: the body is never read in full if the client keeps sending.
        """
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + 2.0
            while self._body.remaining > 0 and time.monotonic() < deadline:
                self._body.read(_CHUNK)
        except (ClientGone, OSError):
            pass

    def _send(
        self,
        status: int,
        body: bytes | Path = b"",
        content_type: str | None = "application/json; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if self.server.sim.is_down or self._lose:
            self._drop(rst=False)
            return
        self._settle_body()
        size = body.stat().st_size if isinstance(body, Path) else len(body)
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(size))
        self.send_header("x-aipi-call-id", self._call_id)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self._close_after:
            self.send_header("Connection", "close")
        self.end_headers()
        if isinstance(body, Path):
            with body.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    self.wfile.write(chunk)
        else:
            self.wfile.write(body)
        self._status = status
        if self._close_after:
            self.close_connection = True
            if self._body.remaining > 0:
                self._linger()

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode(), headers=headers)

    def _error(
        self,
        status: int,
        message: str,
        validation_errors: Sequence[str] = (),
        *,
        retry_after: float | None = None,
    ) -> None:
        """Answer with Gladia's error body (section 3.3); validation_errors only on 400."""
        body: dict[str, Any] = {
            "timestamp": iso(_now()),
            "path": self._route_path,
            "request_id": "G-" + uuid.uuid4().hex[:8],
            "statusCode": status,
            "message": message,
        }
        if status == 400:
            body["validation_errors"] = list(validation_errors)
        headers = {} if retry_after is None else {"Retry-After": _format_retry_after(retry_after)}
        self._send_json(status, body, headers)

    def _read_json(self) -> tuple[bool, Any]:
        if self._body.remaining > _MAX_JSON_BODY:
            self._error(413, "Payload Too Large")
            return False, None
        data = bytearray()
        while chunk := self._body.read(_CHUNK):
            data += chunk
        try:
            return True, json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            self._error(400, "Invalid JSON body", ["body must be a valid JSON object"])
            return False, None

    # -- endpoints -------------------------------------------------------------------------------

    def _upload(self, sim: GladiaSimulator) -> None:
        if self._body.remaining > sim.max_upload_bytes:
            self._error(413, "File too large: the maximum upload size is 1000 MB")
            return
        kind, params = _parse_header_params(self.headers.get("Content-Type", ""))
        source: str | None = None
        if kind == "multipart/form-data":
            boundary = params.get("boundary")
            if not boundary:
                self._error(400, "Content-Type is missing Multipart Boundary.")
                return
            try:
                spooled = parse_multipart_upload(
                    self._body, boundary.encode("latin-1"), sim.spool_dir
                )
            except BadMultipart as exc:
                self._error(400, "Invalid multipart body", [str(exc)])
                return
        elif kind == "application/json":
            ok, body = self._read_json()
            if not ok:
                return
            url = body.get("audio_url") if isinstance(body, dict) else None
            errors: list[str] = []
            _v_uri("audio_url", url, errors)
            if errors:
                self._error(400, "Invalid parameter(s).", errors)
                return
            fetched = self._fetch(sim, cast(str, url))
            if fetched is None:
                self._error(400, "Could not download the file at audio_url", ["audio_url"])
                return
            spooled, source = fetched, url
        else:
            self._error(400, "Content-Type is missing Multipart Boundary.")
            return
        info = probe_media(spooled.path, spooled.head)
        too_long = info.extension is not None and info.audio_duration > sim.max_audio_seconds
        if (info.extension is None or too_long) and sim.corrupt_media == "upload_error":
            spooled.path.unlink(missing_ok=True)
            if too_long:
                self._error(422, "Audio duration exceeds the maximum of 135 minutes")
            else:
                self._error(422, "Unable to process the file: unsupported or corrupted media")
            return
        upload = sim._store_upload(spooled, info, source)
        metadata: dict[str, Any] = {
            "id": upload.id,
            "filename": upload.filename,
            "extension": upload.extension,
            "size": upload.size,
            "audio_duration": upload.audio_duration,
            "number_of_channels": upload.number_of_channels,
        }
        if source is not None:
            metadata["source"] = source
        self._send_json(200, {"audio_url": upload.audio_url, "audio_metadata": metadata})

    def _fetch(self, sim: GladiaSimulator, url: str) -> _SpooledAudio | None:
        """URL import: download to the spool while hashing (any reachable http URL)."""
        sink = _AudioSink(sim.spool_dir / f"upload-{uuid.uuid4().hex}")
        try:
            with httpx.stream("GET", url, timeout=10.0, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise httpx.HTTPError(f"status {response.status_code}")
                for chunk in response.iter_bytes(_CHUNK):
                    sink.write(chunk)
                    if sink.size > sim.max_upload_bytes:
                        raise httpx.HTTPError("too large")
        except httpx.HTTPError:
            sink.close()
            sink.path.unlink(missing_ok=True)
            return None
        digest = sink.close()
        name = Path(urlsplit(url).path).name or "audio"
        return _SpooledAudio(sink.path, name, sink.size, digest, bytes(sink.head))

    def _create(self, sim: GladiaSimulator) -> None:
        kind, _ = _parse_header_params(self.headers.get("Content-Type", ""))
        if kind != "application/json":
            self._error(
                400,
                "/v2/pre-recorded only accept application/json",
                ["Content-Type must be application/json"],
            )
            return
        ok, body = self._read_json()
        if not ok:
            return
        errors = validate_create_body(body, reject_unknown_fields=sim.reject_unknown_fields)
        upload = None
        if not errors:
            upload = sim._upload_for_url(body["audio_url"])
            if upload is None:
                errors.append(
                    "audio_url must be a file URL returned by POST /v2/upload on this server"
                )
        if errors or upload is None:
            self._error(
                400, "Invalid parameter(s). See validation_errors for more details.", errors
            )
            return
        lacking = sorted(f for f in sim.forbidden_features if body.get(f) not in (None, False))
        if lacking:
            self._error(403, f"Your plan does not include {', '.join(lacking)}: upgrade it")
            return
        job = sim._create_job(body, upload)
        if job is None:
            self._error(429, "Too many queued transcriptions: wait for some to finish")
            return
        gate = sim._create_gate
        if gate is not None:
            gate.wait(timeout=60)
        self._send_json(
            201, {"id": job.id, "result_url": f"{sim.base_url}/v2/pre-recorded/{job.id}"}
        )

    def _list(self, sim: GladiaSimulator) -> None:
        pairs = parse_qsl(self._query, keep_blank_values=True)
        try:
            q = parse_list_query(pairs)
        except _QueryError as exc:
            self._error(400, "Invalid query parameter(s).", exc.errors)
            return
        items, total = sim._list_page(q)

        def page_url(offset: int) -> str:
            query = urlencode([*q.filter_pairs, ("offset", str(offset)), ("limit", str(q.limit))])
            return f"{sim.base_url}{self._route_path}?{query}"

        more = q.offset + q.limit < total
        self._send_json(
            200,
            {
                "first": page_url(0),
                "current": page_url(q.offset),
                "next": page_url(q.offset + q.limit) if more else None,
                "items": items,
            },
        )

    def _get(self, sim: GladiaSimulator, job_id: str) -> None:
        job = sim._visible_job(job_id)
        if job is None:
            self._error(404, "The transcription doesn't exist or has been deleted")
            return
        with sim._lock:
            obj = sim._job_object(job)
        if sim.job_transform is not None and obj.get("status") == "done":
            odd = sim.job_transform(obj)
            if isinstance(odd, bytes):
                self._send(200, odd)
            else:
                # ASCII JSON: lone surrogates travel as the \uXXXX escapes a backend would send.
                self._send(200, json.dumps(odd, ensure_ascii=True).encode())
            return
        self._send_json(200, obj)

    def _delete(self, sim: GladiaSimulator, job_id: str) -> None:
        status = sim._delete_job(job_id)
        if status == 202:
            self._send(202, b"", content_type=None)
        elif status == 403:
            self._error(403, "The transcription is not in a deletable state (queued or processing)")
        else:
            self._error(404, "The transcription doesn't exist or has been deleted")

    def _file(self, sim: GladiaSimulator, job_id: str) -> None:
        job = sim._visible_job(job_id)
        if job is None or not job.upload.path.exists():
            self._error(
                404, "The transcription or its audio file doesn't exist or has been deleted"
            )
            return
        self._send(200, job.upload.path, content_type="application/octet-stream")


# ---------------------------------------------------------------------------------------------
# Manual runs.


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator in the foreground until Ctrl-C, printing its base URL."""
    parser = argparse.ArgumentParser(description="Gladia pre-recorded v2 API simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--job-seconds", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=3)
    parser.add_argument("--list-lag-seconds", type=float, default=0.0)
    parser.add_argument(
        "--corrupt-media", choices=("job_error", "upload_error"), default="job_error"
    )
    args = parser.parse_args(argv)
    sim = GladiaSimulator(
        api_key=args.api_key,
        job_seconds=args.job_seconds,
        concurrency=args.concurrency,
        list_lag_seconds=args.list_lag_seconds,
        corrupt_media=args.corrupt_media,
        host=args.host,
        port=args.port,
    )
    with sim:
        print(sim.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


