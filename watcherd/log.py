"""Structured logging: JSON lines for machines, a console renderer for people, secrets redacted.

Log lines carry file names and API text, which may hold control characters or bytes that are
not UTF-8 (lone surrogates). Neither may break a line or make a write fail: console values go
through :func:`watcherd.display.printable`, JSON lines through :func:`watcherd.display.json_safe`.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import structlog

from watcherd.display import json_safe, printable

REDACTED = "***"


def secret_forms(secret: str) -> list[str]:
    """The ways ``secret`` can appear in text, longest first.

    As itself, and escaped the way library messages quote values: ``repr`` of the string or of
    its bytes (h11 says "Illegal header value b'...'") and JSON. A secret that passed
    :mod:`watcherd.credentials` has at most backslashes and quotes to escape; the forms make
    the redaction hold for any string all the same.
    """
    if not secret:
        return []
    forms = {
        secret,
        repr(secret)[1:-1],
        repr(secret.encode("utf-8", "surrogatepass"))[2:-1],
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    return sorted((f for f in forms if f), key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret replaced by ``***``."""
    for secret in secrets:
        for form in secret_forms(secret):
            text = text.replace(form, REDACTED)
    return text


class SecretRedactor:
    """A structlog processor that replaces every known secret string wherever it appears."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._forms: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Redact ``secrets`` too from now on (a reload brought a new key)."""
        forms = set(self._forms)
        forms.update(form for secret in secrets for form in secret_forms(secret))
        # Longest first, so that a secret containing another is replaced whole.
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]
                 ) -> MutableMapping[str, Any]:
        if not self._forms:
            return event
        for key, value in list(event.items()):
            event[key] = self._clean(value)
        return event

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for form in self._forms:
                value = value.replace(form, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean(v) for v in value]
        return value


# The redactor of the logging set up last, so that a reload can add the secrets it brings.
_active = SecretRedactor(())


def redact_also(secrets: Iterable[str]) -> None:
    """Redact ``secrets`` from every later log line too, besides those given at set-up."""
    _active.add(secrets)


def configure_logging(
    *,
    fmt: str = "auto",
    level: str = "info",
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
    roots: Sequence[Path] = (),
    width: int | None = None,
    before_line: Callable[[], None] | None = None,
) -> None:
    """Set up structlog (and the stdlib loggers of httpx and watchdog) for this process.

    On the console, paths inside one of ``roots`` are shown relative to it, times as
    HH:MM:SS, and on a terminal (or with ``width``) each event's line is cut to fit; JSON keeps
    every value whole. ``before_line`` is called before each line is written (a progress bar
    on the same terminal erases itself).
    """
    stream = stream or sys.stdout
    tty = stream.isatty()
    use_json = fmt == "json" or (fmt == "auto" and not tty)
    renderer: Any
    if use_json:
        renderer = SafeJsonRenderer()
    else:
        renderer = _console_renderer(colors=tty)
        if width is None and tty:
            width = shutil.get_terminal_size().columns
        if width is not None:
            renderer = FitLine(renderer, width)
    # JSON escapes control characters itself; the console shows values as they are, so they
    # are made printable first (one line, no terminal escapes, no lone surrogates).
    readable: Any = _identity if use_json else ConsoleValues(roots)
    global _active
    redactor = _active = SecretRedactor(secrets)
    level_no = logging.getLevelName(level.upper())
    if not isinstance(level_no, int):
        level_no = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True) if use_json
        else structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
        redactor,
    ]
    final: Any = renderer
    if journald_stream(stream):
        final = JournaldPrefix(renderer)
    if before_line is not None:
        final = BeforeLine(final, before_line)
        renderer = BeforeLine(renderer, before_line)
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
    # Apprise's HTTP (requests/urllib3) names each request's host and path, and a
    # notification URL's path often is its token: only their warnings, redacted like all.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("apprise").setLevel(logging.ERROR)


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


def _console_renderer(*, colors: bool) -> Any:
    """structlog's console renderer, compact: keys in the order logged, little padding."""
    # The padding keywords changed name across the structlog versions we accept.
    accepted = inspect.signature(structlog.dev.ConsoleRenderer).parameters
    compact: dict[str, Any] = {"sort_keys": False}
    if "pad_event_to" in accepted:
        compact["pad_event_to"] = 20
    if "pad_level" in accepted:
        compact["pad_level"] = False
    return structlog.dev.ConsoleRenderer(colors=colors, **compact)


# Shown first on the console: what the event is about.
_LEADING = ("source", "path", "root")


class ConsoleValues:
    """Processor for the console: values printable, and short enough to read at a glance.

    A path inside a watch root is shown relative to it (the ``root`` itself stays whole), a
    path elsewhere under the home folder starts with ``~``, and ``outputs`` lists only the
    suffixes of the files written next to the source (``.txt,.json``).
    """

    def __init__(self, roots: Sequence[Path] = ()) -> None:
        # Longest first, so a root's own prefix never wins over a deeper one.
        self._roots = sorted({str(r).rstrip(os.sep) for r in roots}, key=len, reverse=True)
        self._home = str(Path.home())

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]
                 ) -> MutableMapping[str, Any]:
        source = event.get("source") or event.get("path")
        outputs = event.get("outputs")
        if isinstance(source, str) and isinstance(outputs, list | tuple) and outputs:
            stem = os.path.splitext(source)[0]
            if all(isinstance(o, str) and o.startswith(stem) for o in outputs):
                event["outputs"] = ",".join(o[len(stem):] for o in outputs)
        for key, value in list(event.items()):
            if key in _MULTILINE:
                continue
            if isinstance(value, str | os.PathLike):
                # A root itself is shown whole (only ~ for the home folder).
                event[key] = self.short(os.fspath(value), relative=key != "root")
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                event[key] = [self.short(v) for v in value]
        ordered = {k: event[k] for k in _LEADING if k in event}
        ordered.update((k, v) for k, v in event.items() if k not in ordered)
        event.clear()
        event.update(ordered)
        return _printable_values(logger, name, event)

    def short(self, value: str | bytes, *, relative: bool = True) -> str | bytes:
        """``value`` relative to its watch root, or with ``~`` for the home folder."""
        if not isinstance(value, str) or not value.startswith(os.sep):
            return value
        for root in self._roots if relative else ():
            if value.startswith(root + os.sep):
                return value[len(root) + 1:]
        if self._home != os.sep and value.startswith(self._home + os.sep):
            return "~" + value[len(self._home):]
        return value


_SGR = re.compile("\x1b\\[[0-9;]*m")


class FitLine:
    """Renderer wrapper: the first line of each event cut to ``width`` visible characters.

    Colour codes do not count and are kept (a reset closes a cut line); a traceback's lines
    after the first are left whole, since they are read, not skimmed.
    """

    def __init__(self, renderer: Any, width: int) -> None:
        self._renderer = renderer
        self._width = max(width, 40)

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        text = str(self._renderer(logger, name, event))
        first, sep, rest = text.partition("\n")
        return fit(first, self._width) + sep + rest


def fit(line: str, width: int) -> str:
    """``line`` cut to ``width`` visible characters, ending in "…" when cut.

    The cut falls after a word, not inside one, unless that would lose more than half the
    width (a long path or value is then cut where the width ends).
    """
    visible = len(_SGR.sub("", line))
    if visible <= width:
        return line
    out: list[str] = []
    shown = 0
    pos = 0
    last_space: int | None = None  # index in out of the last space kept
    while pos < len(line) and shown < width - 1:
        match = _SGR.match(line, pos)
        if match is not None:
            out.append(match.group())
            pos = match.end()
            continue
        if line[pos] == " " and shown >= width // 2:
            last_space = len(out)
        out.append(line[pos])
        shown += 1
        pos += 1
    if last_space is not None and pos < len(line) and line[pos] != " ":
        # Mid-word: drop the word's start (colour codes after it are closed by the reset).
        out = out[:last_space]
    colored = "\x1b[" in line
    return "".join(out).rstrip() + "…" + ("\x1b[0m" if colored else "")


def _printable_values(_logger: Any, _name: str, event: MutableMapping[str, Any]
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


class BeforeLine:
    """Renderer wrapper that calls ``hook`` just before its line is written."""

    def __init__(self, renderer: Any, hook: Callable[[], None]) -> None:
        self._renderer = renderer
        self._hook = hook

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        line = str(self._renderer(logger, name, event))
        self._hook()
        return line


def _identity(_logger: Any, _name: str, event: MutableMapping[str, Any]
              ) -> MutableMapping[str, Any]:
    return event
