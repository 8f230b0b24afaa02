"""display: any name or text as one printable line; JSON and text that always encode as UTF-8."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcherd.display import json_safe, printable, utf8_text

# What printable() promises never to let through.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

# Characters that must be escaped: C0, DEL, C1, separators, bidi controls, surrogates
# (escapes of undecodable bytes and lone UTF-16 halves).
controls = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x1F),
    st.just("\x7f"),
    st.characters(min_codepoint=0x80, max_codepoint=0x9F),
    st.sampled_from(["\u2028", "\u2029", "\u202e", "\u2066"]),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]),
)
any_text = st.text(st.characters() | controls, max_size=40)


@given(any_text)
def test_output_has_no_control_character_and_encodes_as_utf8(text: str) -> None:
    """Whatever goes in, the result is one line with no control character, valid UTF-8."""
    shown = printable(text)
    assert CONTROL.search(shown) is None
    assert "\n" not in shown
    shown.encode("utf-8")


@given(st.lists(st.text(st.characters(), max_size=5), min_size=1, max_size=6),
       st.data())
def test_inputs_differing_only_in_control_characters_stay_distinct(
    parts: list[str], data: st.DataObject
) -> None:
    """Two strings equal but for the control characters between their parts show differently."""
    gaps = len(parts) - 1 or 1
    first = data.draw(st.lists(controls, min_size=gaps, max_size=gaps))
    second = data.draw(st.lists(controls, min_size=gaps, max_size=gaps))
    one = "".join(p + c for p, c in zip(parts, first, strict=False)) + parts[-1] * (len(parts) > 1)
    two = "".join(p + c for p, c in zip(parts, second, strict=False)) + parts[-1] * (len(parts) > 1)
    assert (printable(one) == printable(two)) == (one == two)


@given(st.text(st.characters(exclude_characters="\\") | controls, max_size=20),
       st.text(st.characters(exclude_characters="\\") | controls, max_size=20))
def test_without_backslashes_distinct_inputs_stay_distinct(one: str, two: str) -> None:
    """For text without a backslash, printable() is one-to-one (the escapes are unambiguous)."""
    assert (printable(one) == printable(two)) == (one == two)


@given(st.text(st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp"])
               .filter(lambda c: CONTROL.match(c) is None)))
def test_ordinary_text_is_unchanged(text: str) -> None:
    """Accents, CJK, emoji, quotes, ':' and backslashes are shown as they are."""
    assert printable(text) == text


def ascii_shown(byte: int) -> str:
    """How printable() shows one ASCII byte: \\n, \\r, \\t, \\xNN for other controls, else it."""
    short = {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
    if byte in short:
        return short[byte]
    return f"\\x{byte:02x}" if byte < 0x20 or byte == 0x7F else chr(byte)


@given(st.binary(max_size=60))
def test_raw_bytes_show_as_hex_escapes(raw: bytes) -> None:
    """A name as bytes (or the str Python makes of it) shows undecodable bytes as \\xNN."""
    shown = printable(raw)
    assert shown == printable(os.fsdecode(raw))
    assert CONTROL.search(shown) is None
    if raw.isascii():
        assert shown == "".join(ascii_shown(b) for b in raw)
    for byte in set(os.fsdecode(raw)):
        if 0xDC80 <= ord(byte) <= 0xDCFF:
            assert f"\\x{ord(byte) & 0xFF:02x}" in shown


def test_a_path_shows_like_its_text() -> None:
    """A Path is shown as its text, escapes included."""
    assert printable(Path("/in") / "caf\udce9\n.wav") == "/in/caf\\xe9\\n.wav"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("a\nb", "a\\nb"), ("a\rb\tc", "a\\rb\\tc"), ("\x1b[2J", "\\x1b[2J"), ("\x7f", "\\x7f"),
        ("\x00", "\\x00"), ("\x85", "\\u0085"), ("\u2028", "\\u2028"), ("\u202e", "\\u202e"),
        ("r\udce9sum\udce9", "r\\xe9sum\\xe9"), ("\ud83d", "\\ud83d"),
        (b"caf\xe9.wav", "caf\\xe9.wav"),
        ("café 会議 😀 'q' \"d\" a:b \\x", "café 会議 😀 'q' \"d\" a:b \\x"),
    ],
)
def test_examples(value: str | bytes, shown: str) -> None:
    """Each kind of character shows as documented."""
    assert printable(value) == shown


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=10,
))
def test_json_safe_is_lossless_and_utf8(value: object) -> None:
    """json_safe(json.dumps(v, ensure_ascii=False)) encodes as UTF-8 and parses back to v."""
    text = json_safe(json.dumps(value, ensure_ascii=False))
    text.encode("utf-8")
    assert json.dumps(json.loads(text)) == json.dumps(value)
    assert re.search("[\x7f-\x9f\u2028\u2029]", text) is None


@given(any_text)
def test_utf8_text_replaces_only_lone_surrogates(text: str) -> None:
    """utf8_text encodes as UTF-8 and changes nothing in text that already did."""
    cleaned = utf8_text(text)
    cleaned.encode("utf-8")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        assert "\ufffd" in cleaned
    else:
        assert cleaned == text


def test_utf8_text_joins_a_split_pair_and_replaces_a_lone_half() -> None:
    """A high+low surrogate pair becomes its emoji; a lone half becomes U+FFFD."""
    assert utf8_text("a\ud83d\ude00b\ud83dc\ude00") == "a\U0001f600b\ufffdc\ufffd"
