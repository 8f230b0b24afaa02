"""Logging: JSON lines, console on demand, secrets redacted, journald priority prefix."""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from watcherd.display import printable
from watcherd.log import (
    SecretRedactor,
    configure_logging,
    journald_stream,
    redact,
    redact_also,
    secret_forms,
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put structlog and the stdlib root logger back as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


class TestJson:
    """Machine-readable logs."""

    def test_every_line_is_json_with_event_and_level(self) -> None:
        """A JSON stream gets one parseable object per line with event, level and time."""
        out = io.StringIO()
        configure_logging(fmt="json", stream=out)
        structlog.get_logger("t").info("transcript_written", source="/in/a b.wav", n=1)
        logging.getLogger("somelib").warning("from the stdlib")
        lines = [json.loads(x) for x in out.getvalue().splitlines()]
        assert lines[0]["event"] == "transcript_written" and lines[0]["level"] == "info"
        assert lines[0]["source"] == "/in/a b.wav" and "timestamp" in lines[0]
        assert lines[1]["event"] == "from the stdlib" and lines[1]["level"] == "warning"

    def test_level_filters(self) -> None:
        """Below the configured level nothing is written."""
        out = io.StringIO()
        configure_logging(fmt="json", level="warning", stream=out)
        structlog.get_logger("t").info("quiet")
        structlog.get_logger("t").error("loud")
        assert [json.loads(x)["event"] for x in out.getvalue().splitlines()] == ["loud"]

    def test_httpx_request_lines_are_silenced(self) -> None:
        """httpx's per-request INFO lines (with URLs) do not reach the log."""
        out = io.StringIO()
        configure_logging(fmt="json", level="debug", stream=out)
        logging.getLogger("httpx").info("HTTP Request: GET http://x")
        assert out.getvalue() == ""


class TestSecrets:
    """The API key never reaches the log."""

    def test_secret_redacted_everywhere(self) -> None:
        """Strings, nested dicts and lists, and stdlib records are all cleaned."""
        out = io.StringIO()
        configure_logging(fmt="json", stream=out, secrets=["sk-SECRET"])
        log = structlog.get_logger("t")
        log.error("oops", error="key sk-SECRET rejected", nested={"a": ["sk-SECRET"]})
        logging.getLogger("lib").error("header was sk-SECRET")
        assert "sk-SECRET" not in out.getvalue()
        assert out.getvalue().count("***") == 3

    def test_escaped_forms_are_redacted_too(self) -> None:
        """A secret quoted by a library (repr of str or bytes, JSON) is redacted as well."""
        secret = "sk-'odd\\key\"\x00"
        out = io.StringIO()
        configure_logging(fmt="json", stream=out, secrets=[secret])
        log = structlog.get_logger("t")
        log.error("a", error=f"Illegal header value {secret.encode()!r}")
        log.error("b", error=repr(secret), nested={"json": json.dumps(secret)})
        text = out.getvalue()
        for form in ("odd", "key"):
            assert form not in text
        assert text.count("***") == 3

    def test_secrets_added_later_are_redacted_from_then_on(self) -> None:
        """A reload's new key: redact_also makes every later line hide it; old ones stay."""
        out = io.StringIO()
        configure_logging(fmt="json", stream=out, secrets=["sk-OLD-1234"])
        redact_also(["sk-NEW-5678"])
        structlog.get_logger("t").info("x", a="sk-OLD-1234 sk-NEW-5678")
        logging.getLogger("lib").warning("lib says sk-NEW-5678")
        assert "sk-OLD" not in out.getvalue() and "sk-NEW" not in out.getvalue()
        assert out.getvalue().count("***") == 3

    @given(st.text(min_size=1, max_size=20).filter(lambda t: "*" not in t),
           st.text(max_size=20), st.data())
    def test_redact_leaves_no_form_of_the_secret(
        self, secret: str, around: str, data: st.DataObject
    ) -> None:
        """Whatever the secret (but "*", what it becomes) and its surroundings, none of its
        plain or escaped forms survives redact()."""
        form = data.draw(st.sampled_from(secret_forms(secret)))
        cleaned = redact(f"{around}{form}{around}", [secret])
        assert not any(f in cleaned for f in secret_forms(secret))

    def test_redactor_without_secrets_is_a_no_op(self) -> None:
        """No secrets configured: events pass unchanged."""
        event = {"event": "x", "v": "y"}
        assert SecretRedactor([])(None, "info", dict(event)) == event


class TestJournald:
    """Under systemd, lines carry the syslog priority journald understands."""

    def test_prefix_when_stream_is_the_journal(self, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        """JOURNAL_STREAM matching the output stream adds <N> priorities."""
        path = tmp_path / "out.log"
        with path.open("w") as stream:
            st = os.fstat(stream.fileno())
            monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
            assert journald_stream(stream)
            configure_logging(fmt="json", stream=stream)
            structlog.get_logger("t").info("hello")
            structlog.get_logger("t").error("bad")
        lines = path.read_text().splitlines()
        assert lines[0].startswith("<6>{") and lines[1].startswith("<3>{")
        assert json.loads(lines[0][3:])["event"] == "hello"

    def test_no_prefix_for_another_stream(self, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        """A JOURNAL_STREAM naming some other file changes nothing."""
        monkeypatch.setenv("JOURNAL_STREAM", "1:2")
        with (tmp_path / "o").open("w") as stream:
            assert not journald_stream(stream)


def strict_utf8_stream() -> io.TextIOWrapper:
    """A text stream that, like journald's or a file's, refuses what UTF-8 cannot encode."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", newline="\n")


def written(stream: io.TextIOWrapper) -> str:
    """Everything written to ``stream`` so far, decoded strictly."""
    stream.flush()
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue().decode("utf-8")


# Names as the filesystem hands them over: control characters, bytes that are not UTF-8
# (surrogate escapes), a lone UTF-16 half from an API, bidi and line separators.
odd_names = st.text(
    st.characters() | st.sampled_from(
        ["\n", "\r", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u202e", "\udce9", "\ud83d"]),
    max_size=30,
)


# What must never reach a console line raw: C0, DEL, C1, line separators, lone surrogates.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class TestOddValues:
    """File names and API text never break a line or make a log write fail."""

    @given(odd_names)
    def test_json_lines_never_fail_and_round_trip(self, name: str) -> None:
        """A JSON line with any string is valid UTF-8, one line, and parses back to the value."""
        stream = strict_utf8_stream()
        configure_logging(fmt="json", stream=stream)
        structlog.get_logger("t").warning(name, source=name, nested={"paths": [name]})
        logging.getLogger("lib").warning("stdlib %s", name)
        lines = written(stream).splitlines()
        assert len(lines) == 2
        first = json.loads(lines[0])
        assert first["event"] == name and first["source"] == name
        assert first["nested"] == {"paths": [name]}
        assert json.loads(lines[1])["event"] == f"stdlib {name}"
        for line in lines:
            assert not {"\x7f", "\x85", "\x9b", "\u2028"} & set(line)

    @given(odd_names)
    def test_console_lines_are_printable_and_one_per_event(self, name: str) -> None:
        """Console output shows any string value as one printable line, escapes included."""
        stream = strict_utf8_stream()
        configure_logging(fmt="console", stream=stream)
        structlog.get_logger("t").warning(name, source=name, where=Path("/in") / "x", n=[name])
        logging.getLogger("lib").warning("stdlib %s", name)
        text = written(stream)
        lines = text.split("\n")
        assert lines[-1] == "" and len(lines) == 3
        # structlog quotes a value with "=" or odd characters (repr); either way it is one line.
        shown = printable(name)
        assert f"source={shown} " in lines[0] or f"source={shown!r} " in lines[0]
        for line in lines:
            assert CONTROL.search(line) is None, line

    def test_console_escapes_a_terminal_sequence_and_a_latin1_byte(self) -> None:
        """ESC, newline and a raw 0xE9 byte show as \\x1b, \\n and \\xe9 in the console."""
        stream = strict_utf8_stream()
        configure_logging(fmt="console", stream=stream)
        structlog.get_logger("t").info("transcript_written",
                                       source="/in/r\xe9sum\udce9\n\x1b[2Jevil.wav")
        line = written(stream)
        assert line.count("\n") == 1
        assert "source=/in/résum\\xe9\\n\\x1b[2Jevil.wav" in line
        assert "\x1b" not in line

    def test_console_keeps_a_traceback_on_its_own_lines(self) -> None:
        """An exception logged to the console still shows its traceback as several lines."""
        stream = strict_utf8_stream()
        configure_logging(fmt="console", stream=stream)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            structlog.get_logger("t").exception("failed", source="/in/a\nb")
        text = written(stream)
        assert "source=/in/a\\nb" in text
        assert "Traceback" in text and "RuntimeError: boom" in text
        assert text.count("\n") > 3
