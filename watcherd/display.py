"""Text that is safe to show or write: any file name as one printable line, JSON that is UTF-8.

File names come from the filesystem and job fields from a remote API; either may hold control
characters (a newline, ESC sequences that drive a terminal) or bytes that are not UTF-8, which
Python hands over as lone surrogates (surrogateescape: byte 0xE9 is ``'\\udce9'``). A person
reading ``status`` or a console log must see one line that shows what is really there, and a
UTF-8 stream must never be handed a lone surrogate (it raises UnicodeEncodeError).
"""

from __future__ import annotations

import os
import re
from typing import Final

# Characters escaped by printable(): C0 controls, DEL, C1 controls, the Unicode line and
# paragraph separators (they break lines in many viewers), the bidirectional embedding,
# override and isolate controls (they reorder what a terminal shows, so a name could pass
# for another), and every surrogate (a byte that was not UTF-8, or a broken UTF-16 half).
_UNPRINTABLE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SHORT: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Characters JSON text may not carry raw into a log line or a file: lone surrogates cannot be
# encoded as UTF-8 at all, and DEL, C1 and U+2028/2029 are legal JSON but drive terminals or
# break lines in JavaScript. Inside JSON they only occur in strings, so an escape is lossless.
_JSON_UNSAFE: Final = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x80 or 0xDC80 <= code <= 0xDCFF:
        # C0/DEL as \xNN; a surrogate-escaped byte as the raw byte it stands for. The two
        # never clash: surrogateescape only ever stands for bytes 0x80-0xFF.
        return f"\\x{code & 0xFF:02x}"
    # C1, separators, bidi controls and other lone surrogates are code points, not bytes:
    # \u0085 (NEL) stays distinct from \x85 (a raw byte 0x85 in a name).
    return f"\\u{code:04x}"


def printable(value: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """``value`` as one printable line: control characters and undecodable bytes escaped.

    Newline, carriage return and tab show as ``\\n``, ``\\r``, ``\\t``; other C0 controls and
    DEL as ``\\xNN``; a byte that is not UTF-8 as ``\\xNN`` (its value); C1 controls, U+2028/
    U+2029, bidi controls and other lone surrogates as ``\\uNNNN``. Everything else, accents,
    CJK, emoji, quotes, ``:`` and backslashes included, is shown unchanged. Bytes and paths
    are decoded as the filesystem does (surrogateescape).
    """
    text = os.fsdecode(value)
    if _UNPRINTABLE.search(text) is None:
        return text
    return _UNPRINTABLE.sub(_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_safe(text: str) -> str:
    """JSON text with lone surrogates, DEL, C1 and U+2028/2029 written as ``\\uXXXX`` escapes.

    Takes the output of ``json.dumps(..., ensure_ascii=False)``: the result parses back to the
    same value (``json.loads`` turns ``\\udce9`` into the same lone surrogate) and always
    encodes as UTF-8, so a transcript's NAME.json or a JSON log line never fails to write.
    """
    if _JSON_UNSAFE.search(text) is None:
        return text
    return _JSON_UNSAFE.sub(_json_escape, text)


_SURROGATE_RUN: Final = re.compile("[\ud800-\udfff]+")


def _replace_surrogates(match: re.Match[str]) -> str:
    # A well-formed high+low pair (a str built from UTF-16 halves) is the character it stands
    # for; anything else is U+FFFD, the replacement character.
    return (
        match.group()
        .encode("utf-16-le", "surrogatepass")
        .decode("utf-16-le", "replace")
    )


def utf8_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD, so it always encodes as UTF-8."""
    if _SURROGATE_RUN.search(text) is None:
        return text
    return _SURROGATE_RUN.sub(_replace_surrogates, text)
