"""The Gladia pre-recorded v2 API client: one call per method, every failure classified.

The client never retries: the worker owns retry policy and the "never pay twice" logic, so
each method makes exactly one HTTP request (or one per page for lists) and turns every failure
into a :mod:`watcherd.errors` exception that says whether it is worth retrying and whether the
request may have reached Gladia (``maybe_sent``). The API key is sent in one header and never
appears in a message, a repr or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NoReturn
from urllib.parse import quote

import httpx
import structlog

from watcherd import __version__, roots
from watcherd.config import Secret
from watcherd.errors import (
    AuthError,
    ConfigError,
    GladiaError,
    JobNotFound,
    PermanentGladiaError,
    SourceError,
    TransientGladiaError,
)
from watcherd.http11 import unquoted
from watcherd.log import redact

log = structlog.get_logger(__name__)

_PRERECORDED = "/v2/pre-recorded"
_UPLOAD = "/v2/upload"
# Gladia's documented limit; the message names it so a person knows why the file was refused.
_MAX_UPLOAD_MB = 1000
# Long server texts are cut so every message stays one readable line.
_MAX_TEXT = 300
# HTML5 multipart filename escaping, as browsers and httpx do it (RFC 7578 section 4.2).
_FILENAME_ESCAPES = {'"': "%22", "\\": "\\\\"}
_FILENAME_ESCAPES.update({chr(c): f"%{c:02X}" for c in range(0x20) if c != 0x1B})
_FILENAME_RE = re.compile("|".join(re.escape(c) for c in _FILENAME_ESCAPES))
_AUTH_HINT = "check [gladia] api_key / api_key_file / GLADIA_API_KEY"


@dataclass(frozen=True)
class UploadResult:
    """What ``POST /v2/upload`` returned, plus the identity of the bytes actually sent."""

    audio_url: str
    metadata: dict[str, Any]
    sha256: str
    size: int


@dataclass(frozen=True)
class CreatedJob:
    """A job Gladia accepted: its id, and the result URL it suggested (opaque, unused)."""

    id: str
    result_url: str | None


@dataclass(frozen=True)
class _ErrorBody:
    """The parts of Gladia's error body (docs/gladia-contract.md) the client reports."""

    message: str
    request_id: str | None
    validation_errors: tuple[str, ...]


class _UploadBody:
    """A multipart body streamed from an open file, hashing the file bytes as they are sent.

    It yields the preamble, the file in chunks read on a worker thread (so the event loop never
    waits on the disk), and the closing boundary only once the file proved to be exactly the
    announced size: a file that grew or shrank aborts the request before it is complete.
    """

    def __init__(self, file: IO[bytes], size: int, filename: str, chunk_size: int) -> None:
        self.file = file
        self.size = size
        self.chunk_size = chunk_size
        self.boundary = secrets.token_hex(16)
        self.preamble = (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="audio"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self.closing = f"\r\n--{self.boundary}--\r\n".encode()
        self.sha256 = hashlib.sha256()
        self.sent = 0
        self.finished = False

    @property
    def content_length(self) -> int:
        """The exact number of bytes the body will have."""
        return len(self.preamble) + self.size + len(self.closing)

    @property
    def content_type(self) -> str:
        """The request's Content-Type, naming the boundary."""
        return f"multipart/form-data; boundary={self.boundary}"

    def _read(self, n: int) -> bytes:
        # Runs on a worker thread: the hash is computed there too, off the event loop.
        try:
            data = self.file.read(n)
        except OSError as exc:
            raise SourceError(
                f"cannot read the file during upload: {exc.strerror or exc}", transient=True
            ) from exc
        self.sha256.update(data)
        return data

    def _grew(self) -> bool:
        try:
            return bool(self.file.read(1))
        except OSError:
            return False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.preamble
        remaining = self.size
        while remaining > 0:
            data = await asyncio.to_thread(self._read, min(self.chunk_size, remaining))
            if not data:
                raise SourceError(
                    f"the file changed during upload: it shrank to {self.size - remaining} "
                    f"bytes from {self.size}; it will be uploaded again once it settles",
                    transient=True,
                )
            remaining -= len(data)
            self.sent += len(data)
            yield data
        if await asyncio.to_thread(self._grew):
            raise SourceError(
                f"the file changed during upload: it grew past {self.size} bytes; "
                "it will be uploaded again once it settles",
                transient=True,
            )
        self.finished = True
        yield self.closing


class GladiaClient:
    """An async client for Gladia's pre-recorded v2 API that classifies, never retries."""

    def __init__(
        self,
        api_url: str,
        api_key: Secret,
        *,
        connect_timeout: float = 10.0,
        request_timeout: float = 60.0,
        min_upload_bytes_per_second: float = 256 * 1024,
        transport: httpx.AsyncBaseTransport | None = None,
        on_request: Callable[[str, int | None], None] | None = None,
    ) -> None:
        """``on_request(endpoint, status)`` is told of every request once it ends (status None:
        no answer), for metrics; it must not raise and never sees the key."""
        base = api_url.strip().rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ConfigError(
                f"[gladia] api_url must be an http:// or https:// URL, got {api_url!r}"
            )
        if min_upload_bytes_per_second <= 0:
            raise ValueError("min_upload_bytes_per_second must be positive")
        self.api_url = base
        self._key = api_key
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._min_upload_rate = min_upload_bytes_per_second
        self._on_request = on_request
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(request_timeout, connect=connect_timeout),
            follow_redirects=False,
            headers={
                "x-gladia-key": api_key.reveal(),
                "x-gladia-version": f"watcherd/{__version__}",
                "User-Agent": f"watcherd/{__version__} httpx/{httpx.__version__}",
                "Accept": "application/json",
            },
        )

    def __repr__(self) -> str:
        return f"GladiaClient(api_url={self.api_url!r})"

    async def __aenter__(self) -> GladiaClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # -- endpoints -----------------------------------------------------------------------

    async def upload(
        self, path: Path, *, expected_size: int | None = None, chunk_size: int = 1024 * 1024
    ) -> UploadResult:
        """Stream ``path`` to ``POST /v2/upload``; the result names the bytes actually sent."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        file, size = await asyncio.to_thread(_open_source, path)
        try:
            if expected_size is not None and size != expected_size:
                raise SourceError(
                    f"the file changed during upload: it is {size} bytes now, {expected_size} "
                    "when it settled; it will be uploaded again once it settles",
                    transient=True,
                )
            return await self.upload_file(file, size, filename=path.name,
                                          chunk_size=chunk_size)
        finally:
            # Closing a file opened for reading does not block; doing it inline keeps it
            # closed even when the upload is cancelled.
            file.close()

    async def upload_file(
        self, file: IO[bytes], size: int, *, filename: str, chunk_size: int = 1024 * 1024
    ) -> UploadResult:
        """Stream ``size`` bytes of an open ``file`` (from its offset) as ``filename``.

        The caller owns the file (it is not closed here): the audio track of a video
        (:mod:`watcherd.engines.gladia.audioonly`) is sent this way.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        body = _UploadBody(file, size, _filename_param(filename), chunk_size)
        write_budget = max(self._request_timeout, size / self._min_upload_rate)
        timeout = httpx.Timeout(
            self._request_timeout, connect=self._connect_timeout, write=write_budget
        )
        headers = {
            "Content-Type": body.content_type,
            "Content-Length": str(body.content_length),
        }
        # httpx's write timeout bounds each socket write; this bounds the whole upload, so
        # a connection that trickles a few bytes at a time cannot hold a slot forever.
        deadline = write_budget + self._request_timeout + self._connect_timeout
        try:
            async with asyncio.timeout(deadline):
                response = await self._send(
                    "POST", _UPLOAD, "upload", content=body, headers=headers, timeout=timeout
                )
        except TimeoutError:
            raise TransientGladiaError(
                f"the upload to Gladia did not finish within {deadline:.0f} s "
                f"({size} bytes); it may have reached Gladia",
                maybe_sent=True,
            ) from None
        if not body.finished:
            _unexpected(response, "upload", "Gladia answered before receiving the whole file")
        data = _json_object(response, "upload")
        audio_url = data.get("audio_url")
        if not isinstance(audio_url, str) or not audio_url:
            _unexpected(response, "upload", "the response has no audio_url")
        metadata = data.get("audio_metadata")
        return UploadResult(
            audio_url=audio_url,
            metadata=metadata if isinstance(metadata, dict) else {},
            sha256=body.sha256.hexdigest(),
            size=body.sent,
        )

    async def create(self, body: Mapping[str, Any]) -> CreatedJob:
        """``POST /v2/pre-recorded``: create one job (costs money; the caller guards it)."""
        response = await self._send("POST", _PRERECORDED, "create", json_body=dict(body))
        data = _json_object(response, "create")
        job_id = data.get("id")
        if not isinstance(job_id, str) or not job_id:
            _unexpected(response, "create", "the response has no job id")
        result_url = data.get("result_url")
        return CreatedJob(id=job_id, result_url=result_url if isinstance(result_url, str) else None)

    async def get(self, job_id: str) -> dict[str, Any]:
        """``GET /v2/pre-recorded/{id}``: the job object exactly as Gladia returned it."""
        response = await self._send("GET", _job_path(job_id), "get", job_id=job_id)
        return _json_object(response, "get")

    async def list_jobs(
        self,
        *,
        custom_metadata: Mapping[str, str] | None = None,
        statuses: Sequence[str] = (),
        after_date: datetime | None = None,
        before_date: datetime | None = None,
        limit: int = 20,
        max_pages: int = 5,
    ) -> list[dict[str, Any]]:
        """``GET /v2/pre-recorded`` with filters, following pages up to ``max_pages``."""
        if limit < 1 or max_pages < 1:
            raise ValueError("limit and max_pages must be at least 1")
        if isinstance(statuses, str):
            statuses = (statuses,)
        filters: list[tuple[str, str]] = []
        if custom_metadata:
            filters.append(
                ("custom_metadata", json.dumps(dict(custom_metadata), separators=(",", ":")))
            )
        filters.extend(("status", status) for status in statuses)
        if after_date is not None:
            filters.append(("after_date", _iso_utc(after_date)))
        if before_date is not None:
            filters.append(("before_date", _iso_utc(before_date)))
        items: list[dict[str, Any]] = []
        offset = 0
        for _ in range(max_pages):
            params = [("offset", str(offset)), ("limit", str(limit)), *filters]
            response = await self._send("GET", _PRERECORDED, "list", params=params)
            page = _json_object(response, "list")
            page_items = page.get("items")
            if not isinstance(page_items, list):
                _unexpected(response, "list", "the response has no items list")
            items.extend(item for item in page_items if isinstance(item, dict))
            # The absolute ``next`` URL may name another host; only its presence is trusted.
            if page.get("next") is None or not page_items:
                break
            offset += limit
        return items

    async def find_jobs(
        self, custom_metadata: Mapping[str, str], *, after_date: datetime | None = None
    ) -> list[dict[str, Any]]:
        """The listed jobs whose ``custom_metadata`` really holds every given key and value."""
        wanted = dict(custom_metadata)
        jobs = await self.list_jobs(custom_metadata=wanted, after_date=after_date)
        # The server's filter semantics are not guaranteed (docs/gladia-contract.md).
        return [job for job in jobs if _contains(job.get("custom_metadata"), wanted)]

    async def delete(self, job_id: str) -> None:
        """``DELETE /v2/pre-recorded/{id}``; only done or error jobs can be deleted."""
        await self._send("DELETE", _job_path(job_id), "delete", job_id=job_id)

    async def check_key(self) -> None:
        """One cheap authenticated call; raises AuthError for a rejected key."""
        try:
            response = await self._send("GET", _PRERECORDED, "list", params={"limit": "1"})
        except PermanentGladiaError as exc:
            if exc.status != 403:
                raise
            # The plainest call there is was refused: this key has no access at all.
            raise AuthError(
                f"the Gladia API key was refused (HTTP 403) even for listing jobs: {_AUTH_HINT}",
                status=403, request_id=exc.request_id, call_id=exc.call_id,
            ) from None
        _json_object(response, "list")

    # -- one request, classified ---------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        op: str,
        *,
        job_id: str | None = None,
        params: Any = None,
        json_body: Any = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        try:
            return await self._send_once(method, path, op, job_id=job_id, params=params,
                                         json_body=json_body, content=content,
                                         headers=headers, timeout=timeout)
        except GladiaError as exc:
            exc.idempotent = method == "GET"
            raise

    async def _send_once(
        self,
        method: str,
        path: str,
        op: str,
        *,
        job_id: str | None,
        params: Any,
        json_body: Any,
        content: Any,
        headers: Mapping[str, str] | None,
        timeout: httpx.Timeout | None,
    ) -> httpx.Response:
        url = self.api_url + path
        try:
            response = await self._http.request(
                method,
                url,
                params=params,
                json=json_body,
                content=content,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            self._count(op, None)
            reason = self._scrub(_reason(exc))
            raise TransientGladiaError(
                f"cannot reach the Gladia API at {self.api_url}: {reason}", maybe_sent=False
            ) from exc
        except httpx.HTTPError as exc:
            self._count(op, None)
            reason = self._scrub(_reason(exc))
            raise TransientGladiaError(
                f"the connection to the Gladia API broke during {op} ({reason}); "
                "the request may have reached Gladia",
                maybe_sent=True,
            ) from exc
        self._count(op, response.status_code)
        call_id = response.headers.get("x-aipi-call-id")
        log.debug(
            "gladia_response", op=op, method=method, status=response.status_code, call_id=call_id
        )
        if response.is_success:
            return response
        raise self._status_error(response, method, op, job_id)

    def _status_error(
        self, response: httpx.Response, method: str, op: str, job_id: str | None
    ) -> GladiaError:
        status = response.status_code
        parsed = _parse_error_body(response)
        server_text = self._scrub(parsed.message)
        details = {
            "status": status,
            "request_id": parsed.request_id,
            "call_id": response.headers.get("x-aipi-call-id"),
            "validation_errors": tuple(self._scrub(v) for v in parsed.validation_errors),
        }
        if status == 401:
            # Only a 401 is about the key itself: it pauses all remote work. A 403 is about
            # this request (a feature the plan lacks, a used-up quota, a job not deletable),
            # so it stays with the one file that made it.
            return AuthError(
                f"the Gladia API key was rejected (HTTP {status}): {_AUTH_HINT} "
                f"(Gladia said: {server_text})",
                **details,
            )
        if status == 408 or status == 429 or 500 <= status <= 599:
            return TransientGladiaError(
                f"Gladia could not serve the {op} request now: {server_text}",
                retry_after=_retry_after(response.headers.get("retry-after")),
                **details,
            )
        if status == 404 and job_id is not None:
            return JobNotFound(
                f"the job {job_id} does not exist at Gladia (deleted, expired or never created)",
                **details,
            )
        if status == 403 and method == "DELETE":
            return PermanentGladiaError(
                f"the job {job_id} cannot be deleted now: it is not in a deletable state "
                "(only done or error jobs can be deleted)",
                **details,
            )
        if status == 403:
            return PermanentGladiaError(
                f"Gladia refused the {op} request (HTTP 403: {server_text}): the account's plan "
                "may not include a feature this folder asks for, or a quota is used up; change "
                "the folder's options ([watch.options]) or the plan, then run `watcherd retry`",
                **details,
            )
        if status == 413:
            return PermanentGladiaError(
                f"file is larger than Gladia accepts ({_MAX_UPLOAD_MB} MB); split it or compress "
                "it (e.g. to mono MP3) and drop the parts in", **details
            )
        if 300 <= status <= 399:
            location = self._scrub(response.headers.get("location", "nowhere"))
            return PermanentGladiaError(
                f"the Gladia API answered {op} with a redirect to {_one_line(location)}; "
                "check [gladia] api_url, then run `watcherd retry`",
                **details,
            )
        return PermanentGladiaError(f"Gladia refused the {op} request: {server_text}", **details)

    def _count(self, op: str, status: int | None) -> None:
        if self._on_request is not None:
            with contextlib.suppress(Exception):  # metrics never break a request
                self._on_request(op, status)

    def _scrub(self, text: str) -> str:
        # A server or proxy might echo the key back, or a library quote it escaped; it must
        # not travel on in our messages in any form.
        return redact(text, [self._key.reveal()])


# -- helpers ---------------------------------------------------------------------------------


def _open_source(path: Path) -> tuple[IO[bytes], int]:
    """Open the source for reading and return it with its size (runs on a worker thread)."""
    try:
        # Through the watch roots' resolver: never a link out of the folder, never a folder
        # swapped for a link since the file was hashed (watcherd.roots).
        file = os.fdopen(roots.current().locate(path).open(os.O_RDONLY), "rb")
    except roots.LinkOnPath as exc:
        raise SourceError(roots.SWAPPED, transient=True) from exc
    except FileNotFoundError as exc:
        raise SourceError(f"the file disappeared before upload: {path}", transient=True) from exc
    except PermissionError as exc:
        raise SourceError(
            f"permission denied: watcherd cannot read {path}; give its user read access, "
            "then run `watcherd retry` on it",
            transient=False,
        ) from exc
    except IsADirectoryError as exc:
        raise SourceError(f"{path} is a directory, not a file", transient=False) from exc
    except OSError as exc:
        raise SourceError(
            f"cannot open {path} for upload: {exc.strerror or exc}", transient=True
        ) from exc
    try:
        size = os.fstat(file.fileno()).st_size
    except OSError as exc:
        file.close()
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}", transient=True) from exc
    return file, size


def _filename_param(name: str) -> str:
    """A basename, escaped for a multipart ``filename="..."`` parameter as HTML5 does it."""
    # Undecodable bytes in a POSIX name become U+FFFD: the server gets valid UTF-8.
    name = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _FILENAME_RE.sub(lambda m: _FILENAME_ESCAPES[m.group(0)], name)


def _job_path(job_id: str) -> str:
    if not job_id:
        raise ValueError("job_id must not be empty")
    return f"{_PRERECORDED}/{quote(job_id, safe='')}"


def _iso_utc(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and Z; a naive datetime is taken to be UTC already."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _contains(metadata: Any, wanted: Mapping[str, Any]) -> bool:
    return isinstance(metadata, dict) and all(
        key in metadata and metadata[key] == value for key, value in wanted.items()
    )


def _reason(exc: BaseException) -> str:
    """An HTTP library error as one line that names its class and never quotes header bytes."""
    text = str(exc).strip()
    if isinstance(exc, httpx.ProtocolError):
        # h11 quotes the header it refused ("Illegal header value b'...'"), escaped so that
        # redacting the key by replacement would miss it: only the words before the quote.
        text = unquoted(text)
    name = type(exc).__name__
    return _one_line(f"{name}: {text}" if text else name)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None for garbage."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _parse_error_body(response: httpx.Response) -> _ErrorBody:
    """Gladia's error body (section 3.3), or the HTTP reason when it is not JSON."""
    fallback = response.reason_phrase or f"HTTP {response.status_code}"
    try:
        data = response.json()
    except ValueError:
        return _ErrorBody(_one_line(fallback), None, ())
    if not isinstance(data, dict):
        return _ErrorBody(_one_line(fallback), None, ())
    message = data.get("message")
    if isinstance(message, list):
        message = "; ".join(str(part) for part in message)
    text = _one_line(str(message)) if message not in (None, "") else _one_line(fallback)
    request_id = data.get("request_id", data.get("requestId"))
    errors = data.get("validation_errors")
    rendered: tuple[str, ...] = ()
    if isinstance(errors, list):
        rendered = tuple(_validation_error(item) for item in errors)
    return _ErrorBody(text, str(request_id) if request_id is not None else None, rendered)


def _validation_error(item: Any) -> str:
    """One validation error as a line: strings as is, Pydantic ``{loc, msg}`` as ``a.b: msg``."""
    if isinstance(item, dict) and "msg" in item:
        loc = item.get("loc")
        where = ".".join(str(part) for part in loc) if isinstance(loc, list | tuple) else ""
        return _one_line(f"{where}: {item['msg']}" if where else str(item["msg"]))
    if isinstance(item, str):
        return _one_line(item)
    return _one_line(json.dumps(item, default=str))


def _json_object(response: httpx.Response, op: str) -> dict[str, Any]:
    """The 2xx body as a JSON object; anything else is a transient, maybe-sent failure."""
    try:
        data = response.json()
    except ValueError:
        _unexpected(response, op, "the body is not JSON")
    if not isinstance(data, dict):
        _unexpected(response, op, "the body is not a JSON object")
    return data


def _unexpected(response: httpx.Response, op: str, what: str) -> NoReturn:
    raise TransientGladiaError(
        f"Gladia answered {op} with HTTP {response.status_code} but {what}",
        status=response.status_code,
        call_id=response.headers.get("x-aipi-call-id"),
        maybe_sent=True,
        malformed=True,
        idempotent=response.request.method == "GET",
    )
