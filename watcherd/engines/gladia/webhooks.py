"""Gladia dashboard webhooks: Svix signature checks, replay window, redelivery dedupe.

Gladia's account-level webhooks (docs/gladia-contract.md) are delivered by Svix. Each request
carries a message id, a Unix timestamp and one or more signatures, in ``webhook-*`` headers (or
the ``svix-*`` equivalents); a signature is ``v1,`` followed by the base64 HMAC-SHA256 of
``"{id}.{timestamp}.{raw body}"`` keyed with the base64-decoded part of ``whsec_...``. The body
holds only the job id, so a verified webhook is still only a hint to fetch the job.

The headers come from anyone who can reach the listener, so their form is checked before any
of them is used: the id is bounded printable ASCII, the timestamp 1 to 12 ASCII digits, the
signature header a space-separated list of ``vN,<base64>`` entries. Anything else is refused
with :class:`WebhookRejected` saying which header is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from watcherd.config import WEBHOOK_SECRET_PREFIX, Secret

# Svix's own tolerance: a signed request older (or newer) than this is a replay or a bad clock.
_TOLERANCE_SECONDS = 300.0
# Redeliveries keep their message id; remember this many handled ids.
_SEEN_CAPACITY = 10_000
_FINISHED_EVENTS = frozenset({"transcription.success", "transcription.error"})
_HEADER_FAMILIES = ("webhook", "svix")
# Used with fullmatch and explicit ASCII classes: \d and str.isdigit() accept digits such as
# '²' that int() refuses, and $ accepts a trailing newline.
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,256}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# One entry of the signature list: a version (v1, v1a, ...) and a base64 value. Versions other
# than v1 (asymmetric v1a during a migration) are allowed in the list but never match.
_SIGNATURE_ENTRY = re.compile(r"(v[0-9]{1,3}[a-z]?),([A-Za-z0-9+/]{1,1024}={0,2})")
_MAX_SIGNATURES = 16
_JOB_ID = re.compile(r"[0-9A-Za-z-]{1,64}")


class WebhookRejected(Exception):
    """A webhook request that must not be acted on; ``status`` is what to answer."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class WebhookEvent:
    """What a verified webhook says: the event name and the job id it is about."""

    event: str
    job_id: str | None

    @property
    def finished(self) -> bool:
        """True for the events that mean a job ended (success or error)."""
        return self.event in _FINISHED_EVENTS


def decode_secret(secret: Secret) -> bytes:
    """The HMAC key of a ``whsec_...`` signing secret (config already checked its form)."""
    text = secret.reveal()
    if text.startswith(WEBHOOK_SECRET_PREFIX):
        text = text[len(WEBHOOK_SECRET_PREFIX):]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the webhook secret is not whsec_ followed by base64") from None


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature Svix sends for this message (tests sign with it too)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


class WebhookVerifier:
    """Checks one request's signature and timestamp; returns its message id when genuine."""

    def __init__(self, secret: Secret, *, tolerance: float = _TOLERANCE_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = decode_secret(secret)
        self.tolerance = tolerance
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebhookVerifier(tolerance={self.tolerance:g})"

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """The message id of a correctly signed, recent request; WebhookRejected otherwise.

        ``headers`` has lower-case names.
        """
        family = next((f for f in _HEADER_FAMILIES if f"{f}-id" in headers), None)
        if family is None:
            raise WebhookRejected("no webhook-id (or svix-id) header: not a signed webhook", 400)
        message_id = headers.get(f"{family}-id", "")
        raw_timestamp = headers.get(f"{family}-timestamp", "")
        if not _MESSAGE_ID.fullmatch(message_id):
            raise WebhookRejected(
                f"malformed {family}-id header: expected 1 to 256 printable ASCII characters",
                400)
        if not _TIMESTAMP.fullmatch(raw_timestamp):
            raise WebhookRejected(
                f"missing or malformed {family}-timestamp header: expected Unix seconds "
                "(1 to 12 ASCII digits)", 400)
        candidates = parse_signatures(headers.get(f"{family}-signature", ""), family)
        timestamp = int(raw_timestamp)
        expected = sign(self._key, message_id, timestamp, body).encode("ascii")
        # Several signatures appear while a secret is being rotated; any valid one will do.
        # Every candidate is compared, so the time taken does not say which one matched.
        good = False
        for candidate in candidates:
            if hmac.compare_digest(candidate.encode("ascii"), expected):
                good = True
        if not good:
            raise WebhookRejected("bad signature")
        # Checked after the signature, so an unsigned request learns nothing about our clock.
        skew = self._clock() - timestamp
        if skew > self.tolerance:
            raise WebhookRejected(f"signed {int(skew)} s ago: too old (a replay?)")
        if skew < -self.tolerance:
            raise WebhookRejected(f"signed {int(-skew)} s in the future: check the clock")
        return message_id


def parse_signatures(header: str, family: str = "webhook") -> list[str]:
    """The ``v1,<base64>`` entries of a signature header; WebhookRejected when malformed.

    The header is a space-separated list of ``version,base64`` entries (Standard Webhooks);
    entries of other versions are allowed but left out, as no v1 key can match them.
    """
    if not header:
        raise WebhookRejected(f"no {family}-signature header", 400)
    entries = header.split(" ")
    if len(entries) > _MAX_SIGNATURES:
        raise WebhookRejected(
            f"malformed {family}-signature header: more than {_MAX_SIGNATURES} entries", 400)
    found: list[str] = []
    for entry in entries:
        match = _SIGNATURE_ENTRY.fullmatch(entry)
        if match is None:
            raise WebhookRejected(
                f"malformed {family}-signature header: expected space-separated "
                "'v1,<base64>' entries", 400)
        version, value = match.groups()
        if version != "v1":
            continue
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejected(
                f"malformed {family}-signature header: a v1 entry is not valid base64",
                400) from None
        found.append(entry)
    if not found:
        raise WebhookRejected("bad signature: no v1 signature in the header")
    return found


class SeenMessages:
    """A bounded memory of handled message ids, oldest forgotten first."""

    def __init__(self, capacity: int = _SEEN_CAPACITY) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str) -> None:
        """Remember ``message_id``; the oldest id goes when full."""
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


def parse_event(body: bytes) -> WebhookEvent:
    """The event and job id of a webhook body ``{"event": ..., "payload": {"id": ...}}``."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        # Not UTF-8, not JSON, too deep, or a number beyond int()'s digit limit.
        raise WebhookRejected("the body is not JSON", 400) from None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise WebhookRejected("the body has no event", 400)
    payload = data.get("payload")
    job_id = payload.get("id") if isinstance(payload, dict) else None
    if job_id is not None and (not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id)):
        raise WebhookRejected("the body's payload.id is not a job id", 400)
    return WebhookEvent(event=data["event"], job_id=job_id)
