"""Strict validation of the Svix / Standard Webhooks headers (the Gladia engine's webhooks):
whatever the headers hold, verify() either returns the message id of a genuine request or
refuses with
WebhookRejected and a reason naming the header; it never raises anything else.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from watcherd.config import Secret
from watcherd.engines.gladia.webhooks import (
    WebhookRejected,
    WebhookVerifier,
    decode_secret,
    parse_event,
    parse_signatures,
    sign,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY = decode_secret(Secret(SECRET))
NOW = 1_700_000_000
BODY = b'{"event": "transcription.success", "payload": {"id": "x"}}'

_PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7e)
_IDS = st.text(_PRINTABLE, min_size=1, max_size=256)
_ODD = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["\u00b2", "1\u00b2", "\u0661\u0662", "\uff11", "17000000\n", " 1", "1 ",
                     "-1", "+1", "1e9", "0x10", "", "9" * 13, "9" * 5000, "v1,", "v1,===",
                     "v1,AAAA,", "v1 AAAA", "v1,AAAA\tv1,AAAA", "v1,AAAA  v1,AAAA",
                     "v1,\u00e9", "v1," + "A" * 2000]),
)


def verifier() -> WebhookVerifier:
    """A verifier with the test secret and a clock frozen at NOW."""
    return WebhookVerifier(Secret(SECRET), clock=lambda: float(NOW))


def genuine(message_id: str = "msg_1", timestamp: int = NOW,
            body: bytes = BODY) -> dict[str, str]:
    """Correctly signed headers for ``body``."""
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(KEY, message_id, timestamp, body)}


@given(field=st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature"]),
       value=_ODD, family=st.sampled_from(["webhook", "svix"]))
def test_any_header_value_is_verified_or_rejected_never_crashes(
    field: str, value: str, family: str
) -> None:
    """One header of a genuine request replaced by anything (unicode digits, newlines, huge
    or empty values): a genuine message id or WebhookRejected, nothing else."""
    headers = {k.replace("webhook", family): v for k, v in {**genuine(), field: value}.items()}
    try:
        message_id = verifier().verify(headers, BODY)
    except WebhookRejected as exc:
        assert exc.status in (400, 401) and exc.reason
    else:
        # Only a value that still signs correctly can pass.
        assert message_id == headers[f"{family}-id"]
        assert sign(KEY, message_id, int(headers[f"{family}-timestamp"]), BODY) in (
            headers[f"{family}-signature"].split(" "))


@given(headers=st.dictionaries(st.sampled_from(["webhook-id", "webhook-timestamp",
                                                "webhook-signature", "svix-id",
                                                "svix-timestamp", "svix-signature", "x"]),
                               _ODD, max_size=6),
       body=st.binary(max_size=200))
def test_arbitrary_header_sets_are_rejected(headers: dict[str, str], body: bytes) -> None:
    """Headers made of arbitrary values never verify (no valid signature can be guessed), and
    always fail with WebhookRejected."""
    with pytest.raises(WebhookRejected):
        verifier().verify(headers, body)


@given(timestamp=st.text(max_size=20))
def test_the_timestamp_must_be_one_to_twelve_ascii_digits(timestamp: str) -> None:
    """A timestamp that is not ^[0-9]{1,12}$ (ASCII only) is refused with a reason naming the
    header, before any signature is computed, whatever the rest of the request."""
    assume(re.fullmatch(r"[0-9]{1,12}", timestamp, flags=re.ASCII) is None)
    headers = {**genuine(), "webhook-timestamp": timestamp}
    with pytest.raises(WebhookRejected, match="webhook-timestamp") as caught:
        verifier().verify(headers, BODY)
    assert caught.value.status == 400


@given(message_id=_IDS, offset=st.integers(min_value=-300, max_value=300),
       body=st.binary(max_size=500), extra=st.lists(st.one_of(
           # Other v1 signatures are valid base64 (a malformed one fails the whole header);
           # other versions only need the base64 alphabet.
           st.sampled_from(["v1,AAAA", "v1,b2xkIHNlY3JldA=="]),
           st.builds(lambda v, b: f"{v},{b}", st.sampled_from(["v1a", "v2"]),
                     st.text(st.sampled_from("ABCxyz0189+/"), min_size=1, max_size=60))),
           max_size=3))
def test_genuine_requests_verify_among_other_signatures(
    message_id: str, offset: int, body: bytes, extra: list[str]
) -> None:
    """Any printable-ASCII id, any time within 5 minutes, any body, the right signature among
    others (a rotation, other versions): accepted, and the id comes back."""
    headers = genuine(message_id, NOW + offset, body)
    headers["webhook-signature"] = " ".join([*extra, headers["webhook-signature"]])
    assert verifier().verify(headers, body) == message_id


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "no webhook-signature"),
        ("v1", "expected space-separated 'v1,<base64>'"),
        ("v1,AAAA,", "expected space-separated"),
        ("v1,AAAA  v1,AAAA", "expected space-separated"),
        ("v1,AA\u00e9A", "expected space-separated"),
        ("v1,A", "not valid base64"),
        ("v1a,xyz v2,AAAA", "no v1 signature"),
        (" ".join(["v1,AAAA"] * 17), "more than 16"),
    ],
)
def test_malformed_signature_headers_say_what_is_wrong(header: str, reason: str) -> None:
    """Each malformed signature list is refused with a reason that says what is wrong."""
    with pytest.raises(WebhookRejected, match=re.escape(reason)):
        parse_signatures(header)


@pytest.mark.parametrize("message_id", ["", "a b", "a\nb", "\u00e9", "x" * 257, "msg\x00"])
def test_the_id_must_be_bounded_printable_ascii(message_id: str) -> None:
    """Empty, spaced, control, non-ASCII or over-long ids are refused, naming the header."""
    with pytest.raises(WebhookRejected, match=r"webhook-id.*printable ASCII"):
        verifier().verify({**genuine(), "webhook-id": message_id}, BODY)


@given(body=st.binary(max_size=300))
def test_parse_event_never_raises_anything_else(body: bytes) -> None:
    """Any body: a WebhookEvent or WebhookRejected (not JSON, nesting, huge numbers...)."""
    try:
        parse_event(body)
    except WebhookRejected as exc:
        assert exc.status == 400


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"event": ' + b"1" * 5000 + b"}"])
def test_parse_event_refuses_pathological_json(body: bytes) -> None:
    """Nesting beyond the recursion limit and numbers beyond int()'s digit limit are refused."""
    with pytest.raises(WebhookRejected, match="not JSON"):
        parse_event(body)
