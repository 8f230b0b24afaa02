"""The simulator's vocabulary and fault injection: endpoints, fault kinds, the fault plan."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Literal, NamedTuple

Endpoint = Literal["upload", "create", "get", "list", "delete", "file", "definition", "any"]
FaultKind = Literal["status", "reset", "lose_response", "delay"]
_ENDPOINTS = ("upload", "create", "get", "list", "delete", "file", "definition", "any")
_FAULT_KINDS = ("status", "reset", "lose_response", "delay")

DEFAULT_MAX_UPLOAD_BYTES = 1000 * 1024 * 1024
DEFAULT_MAX_AUDIO_SECONDS = 135 * 60
_MAX_JSON_BODY = 1024 * 1024
_SMALL_UNREAD_BODY = 1024 * 1024  # unread bodies up to this size are drained to keep the connection
_CHUNK = 256 * 1024
_JOB_STATUSES = ("queued", "processing", "done", "error")

# The 99 ISO-639-1-style transcription codes of docs/gladia-contract.md (Whisper's set).
_LANGUAGE_CODES_TEXT = """
af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi
hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no
oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo
zh
"""
LANGUAGE_CODES: frozenset[str] = frozenset(_LANGUAGE_CODES_TEXT.split())
TRANSLATION_CODES: frozenset[str] = LANGUAGE_CODES | {"wo"}


class RequestRecord(NamedTuple):
    """One request the simulator received; status is None when no response was sent."""

    method: str
    path: str
    endpoint: str
    status: int | None
    time: float


@dataclass
class _Fault:
    endpoint: str
    kind: str
    count: int
    status: int
    retry_after: float | None
    delay: float


class FaultPlan:
    """Faults to inject, fired in the order added, each `count` times, on matching requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    def add(
        self,
        endpoint: Endpoint,
        kind: FaultKind,
        *,
        count: int = 1,
        status: int = 503,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue a fault for `count` requests to `endpoint` ("any" matches every endpoint)."""
        if endpoint not in _ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        if kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._faults.append(_Fault(endpoint, kind, count, status, retry_after, delay))

    def clear(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> int:
        """How many fault firings are still queued (for tests that check faults were used)."""
        with self._lock:
            return sum(f.count for f in self._faults)

    def take(self, endpoint: str) -> _Fault | None:
        """The first pending fault matching `endpoint`, consuming one of its firings."""
        with self._lock:
            for fault in self._faults:
                if fault.endpoint in (endpoint, "any"):
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return copy.copy(fault)
        return None
