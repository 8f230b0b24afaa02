"""Structured logging: JSON lines for machines, a console renderer for people, secrets redacted.

Log lines carry file names and API text, which may hold control characters or bytes that are
not UTF-8 (lone surrogates). Neither may break a line or make a write fail: console values go
through :func:`watcherd.display.printable`, JSON lines through :func:`watcherd.display.json_safe`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

from watcherd.display import json_safe, printable

REDACTED = "***"


class SecretRedactor:
    """A structlog processor that replaces every known secret string wherever it appears."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = [s for s in secrets if s]

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]
                 ) -> MutableMapping[str, Any]:
        if not self._secrets:
            return event
        for key, value in list(event.items()):
            event[key] = self._clean(value)
        return event

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value


def configure_logging(
    *,
    fmt: str = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Set up structlog (and the stdlib loggers of httpx and watchdog) for this process."""
    stream = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        SafeJsonRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    # JSON escapes control characters itself; the console shows values as they are, so they
    # are made printable first (one line, no terminal escapes, no lone surrogates).
    readable: Any = _identity if use_json else printable_values
    level_no = logging.getLevelName(level.upper())
    if not isinstance(level_no, int):
        level_no = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        SecretRedactor(secrets),
    ]
    final: Any = renderer
    if journald_stream(stream):
        final = JournaldPrefix(renderer)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info if use_json else _identity,
            readable,
            final,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, readable,
                        renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_no)
    # httpx logs every request URL at INFO; that is noise in a daemon's log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("watchdog").setLevel(logging.WARNING)


class SafeJsonRenderer:
    """structlog's JSON renderer (non-ASCII kept) whose lines always encode as UTF-8.

    A lone surrogate (a file name that is not UTF-8, a transcript cut mid-emoji) is written as
    its ``\\uXXXX`` escape, as are DEL, C1 and U+2028/2029: the line stays one valid JSON line
    that a strict UTF-8 stream (journald, a file) accepts, and parses back to the same value.
    """

    def __init__(self) -> None:
        self._inner = structlog.processors.JSONRenderer(ensure_ascii=False)

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        return json_safe(str(self._inner(logger, name, event)))


# Values the console renderer prints as blocks of lines on purpose.
_MULTILINE = frozenset({"exception", "stack"})


def printable_values(_logger: Any, _name: str, event: MutableMapping[str, Any]
                     ) -> MutableMapping[str, Any]:
    """Processor: every string or path value (the event too) as one printable line.

    Values inside lists and dicts need nothing: the console renderer shows them with repr(),
    which escapes control characters and lone surrogates already. A traceback stays on its
    own lines (its file names come from repr() too).
    """
    for key, value in list(event.items()):
        if key not in _MULTILINE and isinstance(value, str | os.PathLike):
            event[key] = printable(value)
    return event


# syslog priorities, which journald reads from a "<N>" line prefix.
_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}


def journald_stream(stream: TextIO) -> bool:
    """True when ``stream`` is the journald stream systemd connected (JOURNAL_STREAM)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, inode = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, inode)


class JournaldPrefix:
    """Renderer wrapper that prefixes each line with its syslog priority for journald."""

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        level = str(event.get("level", name)).lower()
        line = self._renderer(logger, name, event)
        return f"<{_PRIORITY.get(level, 6)}>{line}"


def _identity(_logger: Any, _name: str, event: MutableMapping[str, Any]
              ) -> MutableMapping[str, Any]:
    return event
