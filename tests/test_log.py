"""Logging: JSON lines, console on demand, secrets redacted, journald priority prefix."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from watcherd.log import SecretRedactor, configure_logging, journald_stream


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
