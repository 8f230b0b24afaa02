"""What an API key, token or signing secret may be, and how one is read from a file.

A secret travels in an HTTP header and is redacted from every log line by plain string
replacement. Both only work for printable ASCII without spaces: a NUL, CR/LF or other control
byte makes the HTTP library refuse the header with an error that quotes it *escaped* (so the
redaction no longer matches), and a non-ASCII character cannot be encoded as a header at all.
Key files saved by Windows editors (UTF-16, "UTF-8 with BOM") are the usual way such bytes get
in; they are refused at start with a message saying how to save the file instead.

The messages never quote the secret: they start with a verb ("is empty", "holds ...") so the
caller can put the file, the config key or the variable in front.
"""

from __future__ import annotations

import codecs

__all__ = ["Secret", "SecretProblem", "decode_secret_file", "secret_problem", "strip_secret"]

# What is trimmed around a secret: spaces and the line end an editor adds. Nothing else, so a
# stray control character at either end is reported rather than silently dropped.
_TRIMMED = " \t\r\n"
_ASCII_SPACES = " \t\r\n\v\f"
# UTF-32 marks first: the UTF-32 LE mark begins with the UTF-16 LE one.
_WIDE_MARKS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


class SecretProblem(ValueError):
    """A secret cannot be used; the message (never quoting it) says what is wrong and what to do."""


def strip_secret(text: str) -> str:
    """``text`` without the spaces and line ends around it."""
    return text.strip(_TRIMMED)


def secret_problem(text: str, what: str) -> str | None:
    """Why ``text`` (already stripped) cannot be ``what`` ("the API key"), or None if it can.

    A usable secret is one or more printable ASCII characters (``!`` to ``~``).
    """
    if not text:
        return f"is empty; expected {what} alone"
    for position, ch in enumerate(text, start=1):
        # Spaces, tabs and line ends separate words; Python also counts U+001C..U+001F as
        # spaces, but those are control characters to a person.
        if ch in _ASCII_SPACES or (ord(ch) > 0x7E and ch.isspace()):
            return f"holds more than one word; expected {what} alone, with nothing around it"
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            return (f"holds a control character (U+{ord(ch):04X} at character {position}); "
                    f"expected {what} alone: printable ASCII, no spaces; copy it again")
        if ord(ch) > 0x7E:
            return (f"holds a character that is not ASCII (at character {position}); "
                    f"{what} is plain ASCII: copy it again")
    return None


def decode_secret_file(raw: bytes, what: str) -> str:
    """The secret held by a file's bytes, trimmed; SecretProblem when the file is not usable.

    A trailing newline (and spaces around the secret) are fine; a byte-order mark, UTF-16 or
    UTF-32 text, NUL bytes, bytes that are not UTF-8 and the problems of
    :func:`secret_problem` are not.
    """
    plain = f"save it as plain text (UTF-8 without BOM) holding only {what}"
    for mark, encoding in _WIDE_MARKS:
        if raw.startswith(mark):
            raise SecretProblem(f"is saved as {encoding}: {plain}")
    if raw.startswith(codecs.BOM_UTF8):
        raise SecretProblem(f'starts with a byte-order mark (saved as "UTF-8 with BOM"): {plain}')
    if b"\x00" in raw:
        if _looks_utf16(raw):
            raise SecretProblem(f"is saved as UTF-16: {plain}")
        raise SecretProblem(f"holds NUL bytes: {plain}")
    try:
        text = strip_secret(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SecretProblem(f"is not UTF-8 text: {plain}") from None
    problem = secret_problem(text, what)
    if problem is not None:
        raise SecretProblem(problem)
    return text


def _looks_utf16(raw: bytes) -> bool:
    """ASCII saved as UTF-16 without a byte-order mark: every other byte is NUL."""
    return len(raw) >= 2 and (not any(raw[1::2]) or not any(raw[0::2]))


class Secret:
    """A string that never shows itself in repr, str, logs or exceptions."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that must send it (the HTTP header)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
