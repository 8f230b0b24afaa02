"""Property tests of the callback listener against a real socket: whatever a client sends, the
listener answers with well-formed HTTP or closes cleanly, never lets an exception escape, and
acts only on a request that carries the token and names a job the journal awaits.

Each example starts a real Listener on 127.0.0.1 (as tests/test_listener.py does), sends one
request on a fresh connection, half-closes, and reads the whole answer. Unhandled exceptions
are looked for in two places: the event loop's exception handler (asyncio reports a failed
connection callback there) and the structured log (the listener's fault boundary logs at
error level).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import pytest
import structlog
from hypothesis import event, given
from hypothesis import strategies as st

from watcherd.config import Secret
from watcherd.engines.gladia.listener import Listener
from watcherd.engines.gladia.webhooks import decode_secret, sign
from watcherd.journal import FileStat, Journal

JOB = "45463597-20b7-4af7-b3b3-f5fb778203ab"
DONE = "8a1f6c2e-3b4d-4e5f-9a6b-7c8d9e0f1a2b"
OTHER = "c0ffee00-1234-4abc-8def-0123456789ab"
TOKEN = "tok_" + "A1b2C3d4" * 5
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY = decode_secret(Secret(SECRET))
NOW = 1_700_000_000
PREFIX = "/w"


# -- the harness -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def journal() -> Iterator[Journal]:
    """One journal for a whole property (no example may change it): JOB awaited, DONE done."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        j = Journal.open(tmp / "journal.db", exclusive=True)
        st_ = FileStat(10, 1, 1, 1)
        awaited, done = j.observe_many([(str(tmp / "a.wav"), str(tmp), st_, "{}"),
                                        (str(tmp / "b.wav"), str(tmp), st_, "{}")])
        j.transition(awaited, "submitted", actor="test", job_id=JOB, content_key="k1")
        j.transition(done, "done", actor="test", job_id=DONE, content_key="k2")
        yield j
        j.close()


@dataclass
class Outcome:
    """What one exchange produced: the raw answer, the wake-ups, and anything unhandled."""

    answer: bytes
    calls: list[str]
    loop_errors: list[dict[str, Any]]
    logs: list[MutableMapping[str, Any]]
    stats: dict[str, int] = field(default_factory=dict)
    journal_changed: bool = False


def events_count(journal: Journal) -> int:
    """How many transitions the journal holds, to prove an exchange changed nothing."""
    return sum(len(journal.events(s.id)) for s in journal.all())


def exchange(journal: Journal, data: bytes, *, prefix: bool = False,
             webhook: bool = True) -> Outcome:
    """Start a listener, send ``data`` on one connection, half-close, read all it answers."""
    calls: list[str] = []
    loop_errors: list[dict[str, Any]] = []

    async def go() -> tuple[bytes, dict[str, int]]:
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: loop_errors.append(context))
        server = Listener(host="127.0.0.1", port=0, token=Secret(TOKEN), journal=journal,
                          on_finished=calls.append, nudge_delays=(),
                          public_url=f"https://h.example{PREFIX}" if prefix else None,
                          webhook_secret=Secret(SECRET) if webhook else None,
                          clock=lambda: float(NOW), max_callback_body=64 * 1024,
                          header_timeout=10.0, request_timeout=10.0)
        await server.start()
        try:
            async with asyncio.timeout(20):
                host, port = server.address
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    writer.write(data)
                    await writer.drain()
                    writer.write_eof()
                except ConnectionError:
                    pass  # refused early (e.g. a huge head): the answer is still there to read
                answer = await reader.read()
                writer.close()
        finally:
            await server.close()
        return answer, dict(server.stats)

    before = events_count(journal)
    with structlog.testing.capture_logs() as logs:
        answer, stats = asyncio.run(go())
    return Outcome(answer, calls, loop_errors, logs, stats,
                   journal_changed=events_count(journal) != before)


def response_status(answer: bytes) -> int | None:
    """The final status of a well-formed HTTP/1.1 answer; None for a clean close (no bytes).

    Fails the test when the bytes are not one complete response h11 accepts.
    """
    if answer == b"":
        return None
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="POST", target="/", headers=[("Host", "x"),
                                                               ("Content-Length", "0")]))
    client.send(h11.EndOfMessage())
    client.receive_data(answer)
    client.receive_data(b"")
    status: int | None = None
    while True:
        event = client.next_event()
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            break
        assert event is not h11.NEED_DATA, answer
    assert status is not None
    # Nothing may follow the one answer.
    assert isinstance(client.next_event(), h11.ConnectionClosed), answer
    return status


def assert_robust(outcome: Outcome) -> int | None:
    """The properties every exchange must have; returns the answer's status."""
    assert outcome.loop_errors == [], outcome.loop_errors
    bad_logs = [e for e in outcome.logs
                if e.get("log_level") in ("error", "critical") or "exc_info" in e]
    assert bad_logs == [], bad_logs
    assert all(TOKEN[:12] not in json.dumps(e, default=str) for e in outcome.logs)
    assert not outcome.journal_changed
    assert set(outcome.calls) <= {JOB}
    assert outcome.stats.get("accepted", 0) == len(outcome.calls)
    status = response_status(outcome.answer)
    if outcome.calls:
        assert status == 200
    return status


# -- (a) arbitrary bytes -----------------------------------------------------------------------

_STARTS = [
    b"", b"POST ", b"POST / HTTP/1.1\r\n", f"POST /callback/{TOKEN} HTTP/1.1\r\n".encode(),
    f"POST /callback/{TOKEN} HTTP/1.1\r\nHost: x\r\n".encode(),
    f"PUT /callback/{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: ".encode(),
    b"POST /webhook HTTP/1.1\r\nHost: x\r\n",
    b"POST /webhook HTTP/1.1\r\nHost: x\r\nwebhook-id: m\r\nwebhook-timestamp: ",
    f"POST /callback/{TOKEN} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode(),
]


@given(start=st.sampled_from(_STARTS), rest=st.binary(max_size=2048))
def test_arbitrary_bytes_never_escape_and_never_act(journal: Journal, start: bytes,
                                                    rest: bytes) -> None:
    """Any bytes (alone or after a plausible request start): well-formed answer or clean
    close, nothing unhandled, no wake-up (random bytes never name the awaited job)."""
    outcome = exchange(journal, start + rest)
    assert_robust(outcome)
    assert outcome.calls == []


# -- (b) structured requests -------------------------------------------------------------------

# Each one_of draws its branches evenly: the plausible values get branches of their own, so
# that about half of the generated requests get past each check and reach the deeper ones.
_METHODS = st.one_of(st.just("POST"), st.just("PUT"),
                     st.sampled_from(["GET", "DELETE", "PATCH", "post", "HEAD"]),
                     st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1,
                             max_size=20))
_TOKEN_PATHS = [
    f"/callback/{TOKEN}", f"/callback/{TOKEN}?x=1", f"/callback/{TOKEN[:-1]}",
    f"/callback/{TOKEN}x", f"/callback/{TOKEN.lower()}", f"/callback/{TOKEN}/",
    f"/callback//{TOKEN}", f"//callback/{TOKEN}", f"/callback/%{TOKEN}", "/callback/",
    f"/CALLBACK/{TOKEN}", f"/callback/{TOKEN[:-1]}\u00b2", "/webhook", "/webhook/", "/",
    f"http://h/callback/{TOKEN}", "*",
]
_PATHS = st.one_of(
    st.just(f"/callback/{TOKEN}"), st.just("/webhook"),
    st.sampled_from(_TOKEN_PATHS),
    st.sampled_from(_TOKEN_PATHS).map(lambda p: PREFIX + p),
    st.text(max_size=40).map(lambda p: "/" + p),
)
_VERSIONS = st.one_of(st.just("HTTP/1.1"), st.just("HTTP/1.1"),
                      st.sampled_from(["HTTP/1.0", "HTTP/2.0", "http/1.1", "HTTP/1.1 x", ""]))
_NUMBERS = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str),
    st.sampled_from(["\u00b2", "\u0661\u0662", "1\u00b2", "\uff11", "-1", "1e3", "0x10", " 5",
                     "5 ", "5, 5", "5,6", "", "9" * 20, "9" * 5000, "1" * 4301, "+5"]),
)
_HEADER_NAMES = st.one_of(
    st.sampled_from(["Host", "Content-Length", "Transfer-Encoding", "Content-Type", "Expect",
                     "webhook-id", "webhook-timestamp", "webhook-signature", "svix-id",
                     "svix-timestamp", "svix-signature", "Connection", "X-A"]),
    st.text(max_size=20),
)
_HEADER_VALUES = st.one_of(
    _NUMBERS, st.sampled_from(["chunked", "gzip, chunked", "100-continue", "v1,AAAA",
                               "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "msg_1",
                               "x" * 20000]),
    st.text(max_size=40),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=12,
)
_JOB_IDS = st.one_of(st.just(JOB), st.sampled_from([DONE, OTHER, JOB.upper(), JOB + "\n",
                                                    "../x", ""]), _JSON)
_BODIES = st.one_of(
    st.builds(lambda job_id, extra: json.dumps({"id": job_id, "event": "transcription.success",
                                                 "payload": extra}).encode(), _JOB_IDS, _JSON),
    st.builds(lambda job_id: json.dumps({"event": "transcription.success",
                                         "payload": {"id": job_id}}).encode(), _JOB_IDS),
    _JSON.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=300),
    st.sampled_from([b"[" * 100_000, b'{"id": ' + b"1" * 5000 + b"}"]),
)
# How the body is framed: right, absent, chunked, or a length given by a header strategy.
_FRAMINGS = st.one_of(st.just("length"), st.just("chunked"),
                      st.sampled_from(["none", "header", "duplicate-same",
                                       "duplicate-different", "chunked-and-length"]))


def encode(text: str) -> bytes:
    """A generated str as wire bytes: UTF-8, surrogates kept as they are (never an error)."""
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class Spec:
    """A generated request and how to put it on the wire."""

    method: str
    path: str
    version: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    framing: str
    length_value: str
    signature: str  # "good" (a correct Svix signature), "none", or "forged"
    prefix: bool = False  # whether the listener has public_url https://h.example/w

    def __repr__(self) -> str:
        # Bodies can be 100 kB: a failing example must still print readably.
        fields = {k: v for k, v in self.__dict__.items() if k != "body"}
        body = self.body if len(self.body) <= 200 else self.body[:200] + b"..."
        return f"Spec(body={body!r}, {', '.join(f'{k}={v!r}' for k, v in fields.items())})"

    def wire(self) -> bytes:
        """The request's bytes."""
        headers = list(self.headers)
        if self.signature == "good":
            headers += [("webhook-id", "msg_1"), ("webhook-timestamp", str(NOW)),
                        ("webhook-signature", sign(KEY, "msg_1", NOW, self.body))]
        elif self.signature == "forged":
            headers += [("webhook-id", "msg_1"), ("webhook-timestamp", str(NOW)),
                        ("webhook-signature", sign(KEY, "msg_2", NOW, self.body))]
        body = self.body
        size = str(len(body))
        if self.framing == "length":
            headers.append(("Content-Length", size))
        elif self.framing == "header":
            headers.append(("Content-Length", self.length_value))
        elif self.framing == "duplicate-same":
            headers += [("Content-Length", size), ("Content-Length", size)]
        elif self.framing == "duplicate-different":
            headers += [("Content-Length", size), ("Content-Length", size + "0")]
        elif self.framing in ("chunked", "chunked-and-length"):
            headers.append(("Transfer-Encoding", "chunked"))
            if self.framing == "chunked-and-length":
                headers.append(("Content-Length", size))
            body = (b"%x\r\n" % len(body) + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
        head = f"{self.method} {self.path} {self.version}\r\n"
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
        return encode(head + lines + "\r\n") + body


_PLAIN_HEADERS = st.lists(
    st.tuples(st.sampled_from(["Content-Type", "User-Agent", "X-Request-Id", "Accept"]),
              st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=30)),
    max_size=3)


@st.composite
def _specs(draw: st.DrawFn) -> Spec:
    """A request: half the time a plausible request line and plain headers (so the checks
    behind the parser are reached), half the time anything from the wide strategies."""
    prefix = draw(st.booleans())
    if draw(st.booleans()):
        path = draw(st.sampled_from([*_TOKEN_PATHS[:6], "/webhook"]))
        line = (draw(st.sampled_from(["POST", "PUT"])), (PREFIX if prefix else "") + path,
                "HTTP/1.1")
    else:
        line = (draw(_METHODS), draw(_PATHS), draw(_VERSIONS))
    extra = draw(st.one_of(_PLAIN_HEADERS,
                           st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=3)))
    return Spec(*line, headers=(("Host", "h.example"), *extra), body=draw(_BODIES),
                framing=draw(_FRAMINGS), length_value=draw(_NUMBERS),
                signature=draw(st.sampled_from(["none", "good", "forged"])), prefix=prefix)


_SPECS = _specs()


def entitled(spec: Spec) -> bool:
    """Whether ``spec`` could legitimately wake JOB: the exact token path or a genuinely signed
    webhook, and a body that names JOB."""
    base = PREFIX if spec.prefix else ""
    path = spec.path.split("?", 1)[0]
    names_job = JOB.encode() in spec.body
    if path == f"{base}/callback/{TOKEN}":
        return names_job
    if path == f"{base}/webhook":
        return names_job and spec.signature == "good"
    return False


@given(spec=_SPECS)
def test_structured_requests_act_only_with_the_token_and_an_awaited_job(
    journal: Journal, spec: Spec
) -> None:
    """Generated methods, paths (the token path and near misses), headers (unicode digits,
    duplicates, huge values), framings and bodies: robust answers, and a wake-up only for a
    request with the right token (or signature) that names the awaited job."""
    outcome = exchange(journal, spec.wire(), prefix=spec.prefix)
    status = assert_robust(outcome)
    # Shown by --hypothesis-show-statistics: how deep the generated requests get.
    event(f"answer {status}" + (" (woke the job)" if outcome.calls else ""))
    if outcome.calls:
        assert entitled(spec), spec


_GOOD_HEADERS = st.lists(
    st.tuples(st.sampled_from(["Content-Type", "User-Agent", "X-Request-Id", "Accept"]),
              st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=30)),
    max_size=4).map(lambda extra: (("Host", "h.example"), *extra))


@given(method=st.sampled_from(["POST", "PUT"]), query=st.sampled_from(["", "?a=1", "?"]),
       headers=_GOOD_HEADERS, framing=st.sampled_from(["length", "chunked", "duplicate-same"]),
       payload=_JSON, prefix=st.booleans())
def test_genuine_callbacks_are_accepted_however_framed(
    journal: Journal, method: str, query: str, headers: tuple[tuple[str, str], ...],
    framing: str, payload: Any, prefix: bool,
) -> None:
    """The other side of the property: a valid callback for the awaited job wakes it exactly
    once, whatever its framing, query, extra headers or payload."""
    body = json.dumps({"id": JOB, "event": "transcription.success", "payload": payload})
    spec = Spec(method, f"{PREFIX if prefix else ''}/callback/{TOKEN}{query}", "HTTP/1.1",
                headers, body.encode(), framing, "", "none", prefix)
    outcome = exchange(journal, spec.wire(), prefix=prefix)
    assert assert_robust(outcome) == 200
    assert outcome.calls == [JOB]
