"""The toolkit every config section is checked with: typed getters and their messages.

Core sections (watcherd.config) and each engine's own section (``engines/<name>/config.py``)
are checked with the same :class:`SectionParser`, so every message has one shape ("WHERE:
key: expected ..., got ...") and every problem is collected to be reported at once. It imports
nothing of watcherd but the secret rules and how a secret is shown, so engines can use it
without importing the config (which would make config and engines import each other).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import os
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import (
    Annotated,
    Any,
    Generic,
    Literal,
    NoReturn,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

import msgspec
import msgspec.inspect as mi

from watcherd.credentials import (
    Secret,
    SecretProblem,
    decode_secret_file,
    secret_problem,
    strip_secret,
)
from watcherd.errors import ConfigError
from watcherd.log import REDACTED

__all__ = ["AUTO", "DELETE_AFTER", "EngineOptions", "EngineSection", "Note", "Row", "SectionParser",
           "Table", "Text", "Word", "describe", "did_you_mean", "show", "table_keys", "table_rows"]

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


def _kind_of(value: Any) -> str:
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


class Table(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The base of every config table's declaration: one Struct per TOML table.

    A field is a key of the table: its name, its type (limits as ``msgspec.Meta``) and its
    default are stated there once, and :meth:`SectionParser.section` checks a table against
    them. ``Annotated[int, Meta(ge=1, extra=AUTO)]`` also takes ``"auto"``, kept as 0;
    ``Meta(extra={"expected": "..."})`` words what the key takes when the type cannot.
    """


#: ``Meta(extra=AUTO)``: the key also takes ``"auto"``, kept as 0 (what "let watcherd choose" is).
AUTO: dict[str, Any] = {"auto": 0}
#: A string with something in it (blank is refused like missing).
Text = Annotated[str, msgspec.Meta(pattern=r"\S")]
#: A string that is not empty (an item of a list of names or patterns).
Word = Annotated[str, msgspec.Meta(min_length=1)]
# Raised by a table once its every problem is noted, so attempt() does not note it again.
_ALREADY_NOTED = "(noted)"


def describe(info: Any) -> str:
    """What a value of the type ``info`` (``msgspec.inspect.type_info``) looks like, in words."""
    if isinstance(info, mi.Metadata):
        extra = info.extra or {}
        if "expected" in extra:
            return str(extra["expected"])
        text = describe(info.type)
        return f'"auto" or {text}' if "auto" in extra else text
    if isinstance(info, mi.IntType):
        if info.ge is not None and info.le is not None:
            return f"an integer from {info.ge} to {info.le}"
        return f"an integer >= {info.ge}" if info.ge is not None else "an integer"
    if isinstance(info, mi.FloatType):
        if info.gt is not None:
            return f"a number > {info.gt:g}"
        return f"a number >= {info.ge:g}" if info.ge is not None else "a number"
    if isinstance(info, mi.StrType):
        return "a non-empty string" if info.pattern or info.min_length else "a string"
    if isinstance(info, mi.BoolType):
        return "true or false"
    if isinstance(info, mi.LiteralType):
        return "one of " + ", ".join(f'"{c}"' for c in info.values)
    if isinstance(info, mi.VarTupleType | mi.ListType):
        words = isinstance(info.item_type, mi.StrType | mi.LiteralType)
        return "an array of strings" if words else "an array"
    if isinstance(info, mi.UnionType):
        return " or ".join(describe(t) for t in info.types if not isinstance(t, mi.NoneType))
    return "a table" if isinstance(info, mi.DictType | mi.StructType) else "a value"


def _declared_fields(schema: Any) -> list[tuple[str, str, Any]]:
    """``(attribute, key, type)`` of each key a table declared by ``schema`` accepts, in
    declaration order: the fields of a :class:`Table` (msgspec Struct) or of a dataclass
    (types with their ``Annotated`` limits)."""
    if dataclasses.is_dataclass(schema):
        hints = get_type_hints(schema, include_extras=True)
        return [(f.name, f.name, hints[f.name]) for f in dataclasses.fields(schema)]
    return [(f.name, f.encode_name, f.type) for f in msgspec.structs.fields(schema)]


def table_keys(schema: Any) -> tuple[str, ...]:
    """The keys a table declared by ``schema`` accepts, in declaration order."""
    return tuple(key for _, key, _ in _declared_fields(schema))


def table_rows(table: Table, *, keys: Sequence[str] | None = None,
               unset: Mapping[str, str | Callable[[Any], str]] | None = None
               ) -> list[Row | Note]:
    """A table as ``config show`` writes it: each key (of ``keys`` if given, else every field)
    and its value, "auto" written as such and a :class:`Secret` as ``***``. A field the file
    names otherwise (``msgspec.field(name="listen")``) is written by the table's attribute of
    the file's name (a property giving the file's form). A key not set (None, or an empty
    list) that ``unset`` names is a comment: ``unset[key]`` (or ``unset[key](table)``) says
    what that means; any other key set to None is "KEY: not set"."""
    rows: list[Row | Note] = []
    for f in msgspec.structs.fields(table):
        if keys is not None and f.encode_name not in keys:
            continue
        value = getattr(table, f.encode_name if hasattr(type(table), f.encode_name) else f.name)
        reason = (unset or {}).get(f.encode_name)
        if reason is not None and (value is None or value == ()):
            rows.append(Note(f"{f.encode_name}: "
                             f"{reason if isinstance(reason, str) else reason(table)}"))
            continue
        extra = _extra(f.type)
        if "auto" in extra and value == extra["auto"]:
            rows.append((f.encode_name, "auto"))
        elif value is None:
            # TOML has no null: a new optional key is shown as not set until it gets its note.
            rows.append(Note(f"{f.encode_name}: not set"))
        else:
            rows.append((f.encode_name, _shown(value)))
    return rows


def _shown(value: Any) -> Any:
    """``value`` for ``config show``: a secret (alone or in a list) is never written."""
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, tuple):
        return tuple(_shown(item) for item in value)
    return value


def _extra(kind: Any) -> Mapping[str, Any]:
    """The ``Meta(extra=...)`` of a field's type (also of ``X | None``), read from the type
    itself: msgspec cannot describe every field's type (a :class:`Secret`)."""
    kind = _settable(kind)
    if get_origin(kind) is Annotated:
        for meta in get_args(kind)[1:]:
            if isinstance(meta, msgspec.Meta) and meta.extra:
                return meta.extra
    return {}


def _settable(kind: Any) -> Any:
    """``kind`` without the ``None`` that stands for "not set"."""
    if isinstance(kind, types.UnionType) or get_origin(kind) is Union:
        kept = [k for k in get_args(kind) if k is not type(None)]
        return kept[0] if len(kept) == 1 else kind
    return kind


def _choices(kind: Any) -> tuple[str, ...]:
    """The values of a ``Literal`` type, in the order written (type_info sorts them)."""
    kind = _settable(kind)
    if get_origin(kind) is Annotated:
        return _choices(get_args(kind)[0])
    return tuple(str(v) for v in get_args(kind)) if get_origin(kind) is Literal else ()



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
            if str(exc) != _ALREADY_NOTED:
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
        got = _kind_of(value) if secret else show(value)
        self.fail(key, f"expected {what}, got {got}{hint}")

    def check_keys(self, table: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
        """Note every unknown key (the table's known keys are still checked)."""
        for name in table:
            if name not in allowed:
                label = f"[{path}] {name}" if path else name
                hint_text = self.model_name_hint(path, name) or did_you_mean(name, allowed)
                self.problems.append(f"{self.where}: {label}: unknown key{hint_text}")

    # --- declared tables

    def section(self, table: Any, schema: type[_S], prefix: str, *,
                custom: Mapping[str, Callable[[Any, str], Any]] | None = None,
                one_of: tuple[str, str, str] | None = None, base: Any = None,
                elsewhere: Sequence[str] = ()) -> _S:
        """``table`` checked against its declaration ``schema`` (a :class:`Table`, or a
        frozen dataclass whose fields' types carry their limits).

        Every unknown key and every bad value is noted (a whole table is reported at once);
        keys not set take the declared defaults (or ``base``'s: a watch's come from
        ``[defaults]``). ``custom[key](value, dotted key)`` checks a key whose rules a type
        cannot say (paths, URLs, secrets) and returns its value. ``one_of``: two keys that
        must not both be set, and the end of the message saying why (or ""). ``elsewhere``:
        keys allowed here but checked and kept by someone else.
        """
        if not isinstance(table, dict):
            self.expected(prefix, "a table", table)
        if one_of is not None and one_of[0] in table and one_of[1] in table:
            first, second, why = one_of
            self.fail(f"{prefix}.{first}", f"set either {first} or {second}, not both{why}")
        declared = _declared_fields(schema)
        seen = len(self.problems)
        self.check_keys(table, [key for _, key, _ in declared] + list(elsewhere), prefix)
        values: dict[str, Any] = {}
        for name, key, kind in declared:
            if key in table:
                check = (custom or {}).get(key) or partial(self.value, kind=kind)
                values[name] = self.attempt(partial(check, table[key], f"{prefix}.{key}"), None)
        if len(self.problems) > seen:
            raise ConfigError(_ALREADY_NOTED)
        if base is not None:
            values = {**{name: getattr(base, name) for name, _, _ in _declared_fields(type(base))},
                      **values}
        return schema(**values)

    def declared(self, data: Mapping[str, Any], name: str, schema: type[_S], *,
                 custom: Mapping[str, Callable[[Any, str], Any]] | None = None,
                 one_of: tuple[str, str, str] | None = None) -> _S:
        """The top-level table ``[name]`` of ``data`` checked against ``schema`` (see
        :meth:`section`); not set, it is the declared defaults."""
        return self.section(self.table(data, name, name), schema, name, custom=custom,
                            one_of=one_of)

    def value(self, raw: Any, key: str, kind: Any, *, secret: bool = False) -> Any:
        """``raw`` as the type ``kind`` (a field's type, with its msgspec limits), or the
        problem in today's words: "KEY: expected WHAT, got VALUE[; did you mean ...]"."""
        if raw is not None:
            # TOML has no null: an optional key set is checked (and described) as its type.
            kind = _settable(kind)
        info = mi.type_info(kind)
        extra = (info.extra or {}) if isinstance(info, mi.Metadata) else {}
        if "auto" in extra and raw == "auto":
            return extra["auto"]
        bare = info.type if isinstance(info, mi.Metadata) else info
        if isinstance(raw, list) and isinstance(bare, mi.VarTupleType | mi.ListType):
            # Each item on its own, so the message names the one at fault (1-based).
            item = get_args(_settable(kind))[0]
            return tuple(self.value(v, f"{key}[{i}]", item) for i, v in enumerate(raw, 1))
        if isinstance(raw, float) and math.isnan(raw) and isinstance(bare, mi.FloatType):
            self.expected(key, f"a finite {describe(info).removeprefix('a ')}", raw)
        try:
            value = msgspec.convert(raw, kind, strict=True)
        except msgspec.ValidationError:
            choices = _choices(kind)
            if choices and "expected" not in extra:
                listed = ", ".join(f'"{c}"' for c in choices)
                hint = did_you_mean(raw, choices) if isinstance(raw, str) else ""
                self.expected(key, f"one of {listed}", raw, hint=hint)
            self.expected(key, describe(info), raw, secret=secret)
        if isinstance(value, float) and math.isinf(value):
            self.expected(key, f"a finite {describe(info).removeprefix('a ')}", raw)
        return value

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
        flag: bool = self.value(value, key, bool)
        return flag

    def integer(self, value: Any, key: str, *, minimum: int) -> int:
        count: int = self.value(value, key, Annotated[int, msgspec.Meta(ge=minimum)])
        return count

    def count_or_auto(self, value: Any, key: str, *, minimum: int) -> int:
        """``"auto"`` (returned as 0) or an integer >= ``minimum``."""
        count: int = self.value(value, key,
                                Annotated[int, msgspec.Meta(ge=minimum, extra=AUTO)])
        return count

    def number(self, value: Any, key: str, *, minimum: float) -> float:
        amount: float = self.value(value, key, Annotated[float, msgspec.Meta(ge=minimum)])
        return amount

    def choice(self, value: Any, key: str, choices: Sequence[str]) -> str:
        chosen: str = self.value(value, key, Literal[tuple(choices)])
        return chosen

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
