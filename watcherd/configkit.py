"""The toolkit every config section is checked with: typed getters and their messages.

Core sections (watcherd.config) and each engine's own section (``engines/<name>/config.py``)
are checked with the same :class:`SectionParser`, so every message has one shape ("WHERE:
key: expected ..., got ...") and every problem is collected to be reported at once. It imports
nothing of watcherd but the secret rules, so engines can use it without importing the config
(which would make config and engines import each other).
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, NoReturn, TypeVar

from watcherd.credentials import (
    Secret,
    SecretProblem,
    decode_secret_file,
    secret_problem,
    strip_secret,
)
from watcherd.errors import ConfigError

__all__ = [
    "DELETE_AFTER", "EngineOptions", "EngineSection", "Note", "Row", "SectionParser",
    "did_you_mean", "kind_of", "show",
]

_T = TypeVar("_T")
_S = TypeVar("_S")

#: ``delete_after`` ([gladia] and each watch): keep Gladia's copy, or delete it once done.
#: Here because both the core config (per watch) and the Gladia engine's table take it.
DELETE_AFTER = ("never", "done")

#: One line of a table in ``config show``: ``(key, value)``, written ``key = value``.
Row = tuple[str, Any]


class Note:
    """A comment line in a table of ``config show``: a key that is not set, and why."""

    def __init__(self, text: str) -> None:
        self.text = text


@dataclass(frozen=True)
class EngineSection(Generic[_S]):
    """An engine's own config table, declared in its package (``engines/<name>/config.py``).

    The config checks the table ``[name]`` with ``parse`` (``default()`` stands in when it is
    wrong, so the other sections are still checked) and keeps the result as ``Config.<name>``;
    ``config show`` writes it back with ``rows``.
    """

    name: str
    parse: Callable[[SectionParser, Mapping[str, Any]], _S]
    default: Callable[[], _S]
    rows: Callable[[_S], list[Row | Note]]
    #: The engine's options ([defaults.options], [watch.options]), if it takes any.
    options: EngineOptions | None = None
    #: Other fields of ``Config`` derived from the section (kept for older callers).
    config_fields: Callable[[_S], Mapping[str, Any]] | None = None
    #: Names of the internal model people paste back: (table, name) -> the key they mean.
    internal_names: Mapping[tuple[str, str], str] = field(default_factory=dict)
    #: The model the engine's service bills a job under when the folder names none (the hours
    #: report counts by it); None for an engine that bills nothing.
    default_model: str | None = None


@dataclass(frozen=True)
class EngineOptions:
    """How an engine checks the options folders send it."""

    #: ``(parser, [defaults.options] value, key prefix)`` -> the checked options.
    defaults: Callable[[SectionParser, Any, str], dict[str, Any]]
    #: ``(parser, [watch.options] value, the inherited options, key prefix)`` -> the merged ones.
    watch: Callable[[SectionParser, Any, Mapping[str, Any], str], dict[str, Any]]
    #: ``(parser, [(key prefix, options)])``: refuse what the callback listener sets itself.
    reject_listener: Callable[[SectionParser, Sequence[tuple[str, Mapping[str, Any]]]], None]


def show(value: Any) -> str:
    """A short, TOML-looking rendering of a bad value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def deep_merge(base: Any, over: Any) -> Any:
    """``over`` deep-merged onto ``base``, as a watch's options merge onto the defaults: tables
    merge key by key, anything else replaces. A copy: neither input is changed."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        merged = copy.deepcopy(dict(base))
        for key, value in over.items():
            merged[key] = deep_merge(merged.get(key), value)
        return merged
    return copy.deepcopy(over)


def kind_of(value: Any) -> str:
    """The TOML type of ``value`` in words, for messages that must not echo it."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f'; did you mean "{lowered[close[0]]}"?' if close else ""



class SectionParser:
    """Checks TOML tables of one config file, noting each problem (see :meth:`attempt`)."""

    def __init__(self, source: Path | None, env: Mapping[str, str], *,
                 need_key: bool = True) -> None:
        self.source = source
        self.env = env
        self.need_key = need_key
        self.where = str(source) if source is not None else "config"
        # Every problem found so far ("WHERE: key: message"), raised together by parse().
        self.problems: list[str] = []
        # What is allowed but probably a mistake (an option watcherd does not know): logged
        # at start, never fatal.
        self.warnings: list[str] = []
        # Relative paths in a config file mean "next to the config file", as people expect.
        self.base = source.parent if source is not None else Path.cwd()

    def model_name_hint(self, table: str, name: str) -> str:
        """A did-you-mean for a name of the internal model rather than of the file, or ""."""
        return ""

    # --- errors

    def attempt(self, build: Callable[[], _T], fallback: _T) -> _T:
        """``build()``, or ``fallback`` with its problem noted, so the next part is checked too."""
        try:
            return build()
        except ConfigError as exc:
            self.problems.append(str(exc))
            return fallback

    def warn(self, message: str) -> None:
        """Note something allowed that may be a mistake (the daemon logs it at start)."""
        if message not in self.warnings:
            self.warnings.append(message)

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.where}: {key}: {message}")

    def expected(
        self, key: str, what: str, value: Any, *, secret: bool = False, hint: str = ""
    ) -> NoReturn:
        got = kind_of(value) if secret else show(value)
        self.fail(key, f"expected {what}, got {got}{hint}")

    def check_keys(self, table: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
        """Note every unknown key (the table's known keys are still checked)."""
        for name in table:
            if name not in allowed:
                label = f"[{path}] {name}" if path else name
                hint_text = self.model_name_hint(path, name) or did_you_mean(name, allowed)
                self.problems.append(f"{self.where}: {label}: unknown key{hint_text}")

    # --- typed getters (``key`` is the full dotted path used in messages)

    def table(self, data: Mapping[str, Any], name: str, key: str) -> Mapping[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            # `engine = "auto"` at the top is what the internal model's name looked like.
            named = ' (the engine is [engine] name = "...")' if key == "engine" else ""
            self.expected(key, "a table", value,
                          hint=f"; write [{key}] on a line of its own and its keys below it"
                          f"{named}")
        return value

    def string(self, value: Any, key: str, *, secret: bool = False) -> str:
        if not isinstance(value, str) or not value.strip():
            self.expected(key, "a non-empty string", value, secret=secret)
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            self.expected(key, "true or false", value)
        return value

    def integer(self, value: Any, key: str, *, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.expected(key, f"an integer >= {minimum}", value)
        return value

    def count_or_auto(self, value: Any, key: str, *, minimum: int) -> int:
        """``"auto"`` (returned as 0) or an integer >= ``minimum``."""
        if value == "auto":
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.expected(key, f'"auto" or an integer >= {minimum}', value)
        return value

    def number(self, value: Any, key: str, *, minimum: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            self.expected(key, f"a number >= {minimum:g}", value)
        if value != value or value in (float("inf"), float("-inf")):
            self.expected(key, f"a finite number >= {minimum:g}", value)
        return float(value)

    def choice(self, value: Any, key: str, choices: Sequence[str]) -> str:
        if not isinstance(value, str) or value not in choices:
            listed = ", ".join(f'"{c}"' for c in choices)
            close = did_you_mean(value, choices) if isinstance(value, str) else ""
            self.expected(key, f"one of {listed}", value, hint=close)
        return value

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.expected(key, "an array of strings", value)
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.expected(f"{key}[{index + 1}]", "a non-empty string", item)
        return tuple(value)

    def path(self, value: Any, key: str) -> Path:
        text = self.string(value, key)
        try:
            return (self.base / os.path.expanduser(text)).resolve()
        except (OSError, ValueError):
            # e.g. an embedded NUL byte, or a symlink loop
            self.expected(key, "a usable file system path", value)

    def secret_text(self, value: str, key: str, what: str) -> Secret:
        """A secret written in the config itself, checked like one read from a file."""
        text = strip_secret(value)
        problem = secret_problem(text, what)
        if problem is not None:
            self.fail(key, f"the value {problem}")
        return Secret(text)

    def secret_file(self, path: Path, key: str, what: str) -> Secret:
        """The secret held by the file at ``path`` (see :mod:`watcherd.credentials`)."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self.fail(key, f"cannot read {path}: {exc.strerror or type(exc).__name__}")
        try:
            return Secret(decode_secret_file(raw, what))
        except SecretProblem as exc:
            self.fail(key, f"{path} {exc}")
