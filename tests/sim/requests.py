"""Reading requests: streamed multipart uploads and the list endpoint's filters."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import unquote

from tests.sim.faults import (
    _CHUNK,
    _JOB_STATUSES,
    _SMALL_UNREAD_BODY,
)
from tests.sim.validation import (
    _is_number,
)

# ---------------------------------------------------------------------------------------------
# Streaming multipart/form-data: the body is read from the socket in bounded chunks and the
# `audio` part goes straight to disk while being hashed, so memory never grows with file size.


class ClientGone(Exception):
    """The client closed the connection before sending the whole body."""


class BadMultipart(Exception):
    """The multipart body is ill-formed."""


class BodyReader:
    """Reads exactly Content-Length bytes from the connection, never more."""

    def __init__(self, rfile: BinaryIO, length: int) -> None:
        self._rfile = rfile
        self.remaining = length

    def read(self, size: int) -> bytes:
        """Up to `size` bytes of the body; b"" once it is all read."""
        if self.remaining <= 0:
            return b""
        try:
            data = self._rfile.read1(min(size, self.remaining))  # type: ignore[attr-defined]
        except (OSError, ValueError) as exc:
            raise ClientGone(str(exc)) from exc
        if not data:
            raise ClientGone("connection closed before the end of the body")
        self.remaining -= len(data)
        return cast(bytes, data)

    def drain(self, limit: int) -> None:
        """Read and discard the rest of the body, if it is at most `limit` bytes."""
        while 0 < self.remaining <= limit:
            self.read(_CHUNK)


def _parse_header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `form-data; name="audio"; filename="a b.wav"` into its kind and parameters."""
    kind, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in re.finditer(r'\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)\s*;?', rest):
        key, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[key] = raw
    return kind.strip().lower(), params


def _part_filename(params: Mapping[str, str]) -> str | None:
    """The filename of a part: RFC 5987 `filename*` first, else HTML5-escaped `filename`."""
    star = params.get("filename*")
    if star and "'" in star:
        charset, _, rest = star.partition("'")
        _lang, _, encoded = rest.partition("'")
        try:
            return unquote(encoded, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            pass
    name = params.get("filename")
    if name is None:
        return None
    # Browsers and httpx escape '"' and control characters as %XX (HTML5 form encoding).
    return re.sub(r"%(0[0-9A-F]|1[0-9A-F]|22)", lambda m: chr(int(m.group(1), 16)), name)


@dataclass
class _SpooledAudio:
    path: Path
    filename: str
    size: int
    sha256: str
    head: bytes
    content_type: str = ""  # the part's Content-Type header


class _AudioSink:
    """Writes a part to a file while hashing it and keeping its first bytes for sniffing."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0
        self.head = bytearray()

    def write(self, data: bytes) -> None:
        if len(self.head) < 4096:
            self.head += bytes(data[: 4096 - len(self.head)])
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def close(self) -> str:
        self._file.close()
        return self._hash.hexdigest()


class _MemorySink:
    """Collects a small non-file field; refuses to grow past a bound."""

    def __init__(self, limit: int = 64 * 1024) -> None:
        self.data = bytearray()
        self._limit = limit

    def write(self, data: bytes) -> None:
        self.data += data
        if len(self.data) > self._limit:
            raise BadMultipart("a form field is too large")


def parse_multipart_upload(reader: BodyReader, boundary: bytes, spool_dir: Path) -> _SpooledAudio:
    """Stream a multipart body and spool its first `audio` part to a file in `spool_dir`.

    Raises BadMultipart (ill-formed or no audio part) or ClientGone (truncated body).
    """
    delimiter = b"--" + boundary
    separator = b"\r\n" + delimiter
    buf = bytearray()
    audio: _SpooledAudio | None = None

    def fill() -> None:
        chunk = reader.read(_CHUNK)
        if not chunk:
            raise BadMultipart("the body ends before the closing boundary")
        buf.extend(chunk)

    # Preamble: everything before the first delimiter is ignored (RFC 2046).
    while True:
        i = buf.find(delimiter)
        if i >= 0:
            del buf[: i + len(delimiter)]
            break
        del buf[: max(0, len(buf) - len(delimiter))]
        fill()
    try:
        while True:
            while len(buf) < 2:
                fill()
            if buf[:2] == b"--":
                reader.drain(_SMALL_UNREAD_BODY)  # the epilogue, ignored
                break
            # Transport padding (spaces/tabs) may follow a delimiter before its CRLF.
            while True:
                stripped = buf.lstrip(b" \t")
                if len(stripped) >= 2:
                    break
                fill()
            if stripped[:2] != b"\r\n":
                raise BadMultipart("a boundary is not followed by CRLF")
            del buf[: len(buf) - len(stripped) + 2]
            while (end := buf.find(b"\r\n\r\n")) < 0:
                if len(buf) > 16 * 1024:
                    raise BadMultipart("part headers are too large")
                fill()
            headers: dict[str, str] = {}
            for line in bytes(buf[:end]).decode("utf-8", "replace").split("\r\n"):
                key, sep, value = line.partition(":")
                if sep:
                    headers[key.strip().lower()] = value.strip()
            del buf[: end + 4]
            kind, params = _parse_header_params(headers.get("content-disposition", ""))
            if kind != "form-data" or "name" not in params:
                raise BadMultipart("a part has no Content-Disposition: form-data name")
            sink: _AudioSink | _MemorySink
            if params["name"] == "audio" and audio is None:
                sink = _AudioSink(spool_dir / f"upload-{uuid.uuid4().hex}")
            else:
                sink = _MemorySink()
            try:
                while True:
                    k = buf.find(separator)
                    if k >= 0:
                        sink.write(bytes(buf[:k]))
                        del buf[: k + len(separator)]
                        break
                    safe = len(buf) - (len(separator) - 1)
                    if safe > 0:
                        sink.write(bytes(buf[:safe]))
                        del buf[:safe]
                    fill()
            except BaseException:
                if isinstance(sink, _AudioSink):
                    sink.close()
                    sink.path.unlink(missing_ok=True)
                raise
            if isinstance(sink, _AudioSink):
                digest = sink.close()
                filename = _part_filename(params) or "audio"
                audio = _SpooledAudio(sink.path, filename, sink.size, digest, bytes(sink.head),
                                      headers.get("content-type", ""))
    except BaseException:
        if audio is not None:
            audio.path.unlink(missing_ok=True)
        raise
    if audio is None:
        raise BadMultipart("audio should not be empty")
    return audio


# ---------------------------------------------------------------------------------------------
# List filters (docs/gladia-contract.md).

_DEEP_OBJECT_KEY = re.compile(r"^custom_metadata((?:\[[^\[\]]*\])+)$")


class _QueryError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass
class _ListQuery:
    offset: int = 0
    limit: int = 20
    statuses: set[str] | None = None
    after: datetime | None = None
    before: datetime | None = None
    day: date | None = None
    metadata: dict[str, Any] | None = None
    filter_pairs: list[tuple[str, str]] = field(default_factory=list)


def _parse_datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip())
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def parse_list_query(pairs: Sequence[tuple[str, str]]) -> _ListQuery:
    """Parse list query pairs; raises _QueryError with validation_errors when one is invalid."""
    q = _ListQuery()
    errors: list[str] = []
    for key, value in pairs:
        if key not in ("offset", "limit"):
            q.filter_pairs.append((key, value))
        if key in ("offset", "limit"):
            low = 0 if key == "offset" else 1
            try:
                number = int(value)
            except ValueError:
                errors.append(f"{key} must be an integer number")
                continue
            if number < low:
                errors.append(f"{key} must not be less than {low}")
            elif key == "offset":
                q.offset = number
            else:
                q.limit = number
        elif key == "status":
            # The documented encoding repeats the key; a comma list is accepted too.
            for part in (p.strip() for p in value.split(",")):
                if not part:
                    continue
                if part not in _JOB_STATUSES:
                    errors.append(
                        "each value in status must be one of the following values: "
                        + ", ".join(_JOB_STATUSES)
                    )
                    continue
                q.statuses = (q.statuses or set()) | {part}
        elif key in ("after_date", "before_date"):
            try:
                moment = _parse_datetime(value)
            except ValueError:
                errors.append(f"{key} must be a valid ISO 8601 date string")
                continue
            if key == "after_date":
                q.after = moment
            else:
                q.before = moment
        elif key == "date":
            try:
                q.day = (
                    date.fromisoformat(value)
                    if len(value.strip()) == 10
                    else _parse_datetime(value).date()
                )
            except ValueError:
                errors.append("date must be a valid ISO 8601 date string")
        elif key == "custom_metadata":
            try:
                wanted = json.loads(value)
            except ValueError:
                errors.append("custom_metadata must be a valid JSON object")
                continue
            if not isinstance(wanted, dict):
                errors.append("custom_metadata must be a valid JSON object")
                continue
            q.metadata = q.metadata or {}
            _merge(q.metadata, wanted)
        elif match := _DEEP_OBJECT_KEY.match(key):
            # deepObject style, as the SDK sends it: custom_metadata[a][b]=value (a string).
            segments = re.findall(r"\[([^\[\]]*)\]", match.group(1))
            nested: dict[str, Any] = {}
            cursor = nested
            for segment in segments[:-1]:
                cursor = cursor.setdefault(segment, {})
            cursor[segments[-1]] = value
            q.metadata = q.metadata or {}
            _merge(q.metadata, nested)
    if errors:
        raise _QueryError(errors)
    return q


def _json_equal(a: Any, b: Any) -> bool:
    """Strict JSON equality: no string/number coercion, booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def metadata_contains(stored: Any, wanted: Any) -> bool:
    """Containment matching: every key of `wanted` is in `stored`, nested objects recursively."""
    if isinstance(wanted, dict):
        return isinstance(stored, dict) and all(
            key in stored and metadata_contains(stored[key], value) for key, value in wanted.items()
        )
    return _json_equal(stored, wanted)
