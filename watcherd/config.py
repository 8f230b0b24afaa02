"""Configuration: find the TOML file, validate every key, return frozen dataclasses."""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NoReturn, cast
from urllib.parse import urlsplit

import platformdirs

from watcherd.errors import ConfigError

EngineName = Literal["auto", "gladia", "local"]
LogFormat = Literal["auto", "json", "console"]
PollMode = Literal["auto", "always", "never"]
OUTPUT_FORMATS = ("txt", "json", "srt", "vtt")

ENGINE_NAMES: tuple[EngineName, ...] = ("auto", "gladia", "local")
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
POLL_MODES: tuple[PollMode, ...] = ("auto", "always", "never")
LOCAL_MODELS = ("base",)

CONFIG_ENV_VAR = "WATCHERD_CONFIG"
API_KEY_ENV_VAR = "GLADIA_API_KEY"
# A module attribute (not a literal inside find_config) so tests can point it at tmp_path.
SYSTEM_CONFIG_PATH = Path("/etc/watcherd/config.toml")

MIN_SCAN_INTERVAL_SECONDS = 5.0
# Gladia allows 2000 characters of custom_metadata; watcherd keeps 500 for its own keys.
USER_METADATA_LIMIT = 1500
# Keys watcherd writes into custom_metadata itself (see pipeline); a user value would be lost.
RESERVED_METADATA_PREFIX = "wf_"

# Gladia's documented create-body fields (gladia-api.md section 3.1), minus the two we refuse.
FLAG_OPTIONS = (
    "diarization",
    "translation",
    "subtitles",
    "summarization",
    "pii_redaction",
    "sentiment_analysis",
    "named_entity_recognition",
    "sentences",
    "punctuation_enhanced",
    "custom_vocabulary",
    "custom_spelling",
    "audio_to_llm",
    "callback",
)
TABLE_OPTIONS = (
    "language_config",
    "diarization_config",
    "translation_config",
    "subtitles_config",
    "summarization_config",
    "pii_redaction_config",
    "custom_vocabulary_config",
    "custom_spelling_config",
    "audio_to_llm_config",
    "callback_config",
    "custom_metadata",
)
KNOWN_OPTIONS = FLAG_OPTIONS + TABLE_OPTIONS
REFUSED_OPTIONS = {
    "audio_url": "watcherd uploads each source and sets audio_url itself",
    "callback_url": (
        "Gladia deprecated it; use callback = true with callback_config = { url = \"...\" }"
    ),
}
SUBTITLE_FORMATS = ("srt", "vtt")

_TOP_KEYS = ("gladia", "engine", "local", "journal", "log", "scan", "defaults", "watch")
_GLADIA_KEYS = ("api_key", "api_key_file", "api_url", "max_concurrent_jobs")
_DEFAULTS_KEYS = ("outputs", "settle_seconds", "recursive", "include", "exclude", "poll", "options")
_WATCH_KEYS = ("path", *_DEFAULTS_KEYS)


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


@dataclass(frozen=True)
class GladiaConfig:
    """The ``[gladia]`` table: how to reach the API and how much of it we may use at once."""

    api_key: Secret | None = None
    api_url: str = "https://api.gladia.io"
    max_concurrent_jobs: int = 3
    # Where the key came from ("[gladia] api_key", "[gladia] api_key_file (PATH)",
    # "$GLADIA_API_KEY"), for doctor; never the key itself.
    api_key_origin: str | None = None


@dataclass(frozen=True)
class WatchDefaults:
    """The ``[defaults]`` table: what every ``[[watch]]`` (and ``run --watch DIR``) starts from."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("txt", "json")
    settle_seconds: float = 2.0
    recursive: bool = True
    poll: PollMode = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WatchConfig:
    """One ``[[watch]]`` table with the ``[defaults]`` already applied."""

    path: Path
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("txt", "json")
    settle_seconds: float = 2.0
    recursive: bool = True
    poll: PollMode = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    source: Path | None
    gladia: GladiaConfig
    engine: EngineName
    local_model: str
    journal_path: Path
    log_format: LogFormat
    log_level: str
    watches: tuple[WatchConfig, ...]
    scan_interval_seconds: float = 300.0
    defaults: WatchDefaults = field(default_factory=WatchDefaults)


# -- public API ------------------------------------------------------------------------------


def default_journal_path() -> Path:
    """Where the journal lives when ``[journal] path`` is not set: the user state dir."""
    return Path(platformdirs.user_state_dir("watcherd")) / "journal.db"


def user_config_path() -> Path:
    """The per-user config file (``~/.config/watcherd/config.toml`` on Linux)."""
    return Path(platformdirs.user_config_dir("watcherd")) / "config.toml"


def find_config(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    """The config file to use: --config, $WATCHERD_CONFIG, the user dir, /etc; None if none."""
    if explicit is not None:
        _require_file(explicit, "given with --config")
        return explicit
    named = env.get(CONFIG_ENV_VAR, "")
    if named:
        path = Path(os.path.expanduser(named))
        _require_file(path, f"named by ${CONFIG_ENV_VAR}")
        return path
    for candidate in (user_config_path(), SYSTEM_CONFIG_PATH):
        if candidate.is_file():
            return candidate
    return None


def load_config(explicit: Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Find, read and validate the config; with no file, the defaults and no watches."""
    env = os.environ if env is None else env
    path = find_config(explicit, env)
    if path is None:
        return parse_config({}, source=None, env=env)
    return parse_config(_read_toml(path), source=path, env=env)


def parse_config(data: Mapping[str, Any], *, source: Path | None, env: Mapping[str, str]) -> Config:
    """Validate parsed TOML ``data`` read from ``source`` into a :class:`Config`."""
    return _Parser(source, env).parse(data)


def with_extra_watches(config: Config, paths: Sequence[Path]) -> Config:
    """``config`` plus one watch per path (``run --watch DIR``), built from ``[defaults]``.

    A path already watched is skipped; one nested inside (or around) another watch is an error.
    """
    watches = list(config.watches)
    in_file = f" in {config.source}" if config.source is not None else ""
    labels = [f"watch[{i}].path{in_file}" for i in range(1, len(watches) + 1)]
    for raw in paths:
        path = Path(os.path.expanduser(str(raw))).resolve()
        if any(w.path == path for w in watches):
            continue
        label = f"--watch {path}"
        for other, other_label in zip(watches, labels, strict=True):
            _reject_nesting(label, path, other_label, other.path, where=None)
        d = config.defaults
        watches.append(
            WatchConfig(
                path=path,
                include=d.include,
                exclude=d.exclude,
                outputs=d.outputs,
                settle_seconds=d.settle_seconds,
                recursive=d.recursive,
                poll=d.poll,
                options=copy.deepcopy(dict(d.options)),
            )
        )
        labels.append(label)
    return replace(config, watches=tuple(watches))


# -- reading ---------------------------------------------------------------------------------


def _require_file(path: Path, how: str) -> None:
    if not path.exists():
        raise ConfigError(f"{path}: no such config file ({how})")
    if not path.is_file():
        raise ConfigError(f"{path}: not a file ({how}); expected a TOML config file")


_TOML_POSITION = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = _TOML_POSITION.match(message)
        if found:
            raise ConfigError(
                f"{path}: line {found['line']}, column {found['col']}: "
                f"invalid TOML: {found['msg']}"
            ) from None
        raise ConfigError(f"{path}: invalid TOML: {message}") from None


# -- validation ------------------------------------------------------------------------------


def _show(value: Any) -> str:
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


def _kind(value: Any) -> str:
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


def _hint(name: str, choices: Sequence[str]) -> str:
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f'; did you mean "{lowered[close[0]]}"?' if close else ""


def _reject_nesting(
    label: str, path: Path, other_label: str, other: Path, *, where: str | None
) -> None:
    prefix = f"{where}: " if where else ""
    if path == other:
        raise ConfigError(
            f"{prefix}{label}: {path} is the same folder as {other_label}; keep only one"
        )
    if path.is_relative_to(other):
        raise ConfigError(
            f"{prefix}{label}: {path} is inside {other_label} ({other}); a folder may belong "
            "to one watch only, so remove one of them"
        )
    if other.is_relative_to(path):
        raise ConfigError(
            f"{prefix}{label}: {path} contains {other_label} ({other}); a folder may belong "
            "to one watch only, so remove one of them"
        )


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` deep-merged onto ``base``: tables merge key by key, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _Parser:
    """Walks the TOML data once, raising ConfigError at the first problem."""

    def __init__(self, source: Path | None, env: Mapping[str, str]) -> None:
        self.source = source
        self.env = env
        self.where = str(source) if source is not None else "config"
        # Relative paths in a config file mean "next to the config file", as people expect.
        self.base = source.parent if source is not None else Path.cwd()

    # --- errors

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.where}: {key}: {message}")

    def expected(
        self, key: str, what: str, value: Any, *, secret: bool = False, hint: str = ""
    ) -> NoReturn:
        got = _kind(value) if secret else _show(value)
        self.fail(key, f"expected {what}, got {got}{hint}")

    def check_keys(self, table: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
        for name in table:
            if name not in allowed:
                label = f"[{path}] {name}" if path else name
                raise ConfigError(
                    f"{self.where}: {label}: unknown key{_hint(name, allowed)}"
                )

    # --- typed getters (``key`` is the full dotted path used in messages)

    def table(self, data: Mapping[str, Any], name: str, key: str) -> Mapping[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            self.expected(key, "a table", value)
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

    def number(self, value: Any, key: str, *, minimum: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            self.expected(key, f"a number >= {minimum:g}", value)
        if value != value or value in (float("inf"), float("-inf")):
            self.expected(key, f"a finite number >= {minimum:g}", value)
        return float(value)

    def choice(self, value: Any, key: str, choices: Sequence[str]) -> str:
        if not isinstance(value, str) or value not in choices:
            listed = ", ".join(f'"{c}"' for c in choices)
            hint = _hint(value, choices) if isinstance(value, str) else ""
            self.expected(key, f"one of {listed}", value, hint=hint)
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

    # --- sections

    def parse(self, data: Mapping[str, Any]) -> Config:
        self.check_keys(data, _TOP_KEYS, "")
        gladia = self.gladia(self.table(data, "gladia", "gladia"))

        engine_table = self.table(data, "engine", "engine")
        self.check_keys(engine_table, ("name",), "engine")
        engine = cast(
            EngineName, self.choice(engine_table.get("name", "auto"), "engine.name", ENGINE_NAMES)
        )

        local = self.table(data, "local", "local")
        self.check_keys(local, ("model",), "local")
        model = self.choice(local.get("model", "base"), "local.model", LOCAL_MODELS)

        journal = self.table(data, "journal", "journal")
        self.check_keys(journal, ("path",), "journal")
        journal_path = (
            self.path(journal["path"], "journal.path")
            if "path" in journal
            else default_journal_path()
        )

        log = self.table(data, "log", "log")
        self.check_keys(log, ("format", "level"), "log")
        log_format = cast(
            LogFormat, self.choice(log.get("format", "auto"), "log.format", LOG_FORMATS)
        )
        level = log.get("level", "info")
        # "INFO" is what people copy from other tools; accept any case.
        if isinstance(level, str) and level.lower() in LOG_LEVELS:
            level = level.lower()
        level = self.choice(level, "log.level", LOG_LEVELS)

        scan = self.table(data, "scan", "scan")
        self.check_keys(scan, ("interval_seconds",), "scan")
        interval = self.number(
            scan.get("interval_seconds", 300.0), "scan.interval_seconds",
            minimum=MIN_SCAN_INTERVAL_SECONDS,
        )

        defaults = self.defaults(self.table(data, "defaults", "defaults"))
        watches = self.watches(data.get("watch", []), defaults)

        return Config(
            source=self.source,
            gladia=gladia,
            engine=engine,
            local_model=model,
            journal_path=journal_path,
            log_format=log_format,
            log_level=level,
            watches=watches,
            scan_interval_seconds=interval,
            defaults=defaults,
        )

    def gladia(self, table: Mapping[str, Any]) -> GladiaConfig:
        self.check_keys(table, _GLADIA_KEYS, "gladia")
        key: Secret | None = None
        origin: str | None = None
        if "api_key" in table and "api_key_file" in table:
            self.fail(
                "gladia.api_key",
                "set either api_key or api_key_file, not both",
            )
        if "api_key" in table:
            value = self.string(table["api_key"], "gladia.api_key", secret=True)
            key, origin = Secret(value.strip()), "[gladia] api_key"
        elif "api_key_file" in table:
            key_file = self.path(table["api_key_file"], "gladia.api_key_file")
            key = Secret(self.read_key_file(key_file))
            origin = f"[gladia] api_key_file ({key_file})"
        elif self.env.get(API_KEY_ENV_VAR, "").strip():
            key, origin = Secret(self.env[API_KEY_ENV_VAR].strip()), f"${API_KEY_ENV_VAR}"

        url = self.string(table.get("api_url", "https://api.gladia.io"), "gladia.api_url")
        parts = urlsplit(url.strip())
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
        ):
            self.expected("gladia.api_url", "an http(s) URL such as \"https://api.gladia.io\"", url)
        jobs = self.integer(
            table.get("max_concurrent_jobs", 3), "gladia.max_concurrent_jobs", minimum=1
        )
        return GladiaConfig(
            api_key=key,
            api_url=url.strip().rstrip("/"),
            max_concurrent_jobs=jobs,
            api_key_origin=origin,
        )

    def read_key_file(self, path: Path) -> str:
        key = "gladia.api_key_file"
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self.fail(key, f"cannot read {path}: {exc.strerror or type(exc).__name__}")
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            self.fail(key, f"{path} is not UTF-8 text; expected a file holding only the API key")
        if not text:
            self.fail(key, f"{path} is empty; expected a file holding only the API key")
        if any(ch.isspace() for ch in text):
            self.fail(
                key,
                f"{path} holds more than one word; expected a file holding only the API key",
            )
        return text

    def defaults(self, table: Mapping[str, Any]) -> WatchDefaults:
        self.check_keys(table, _DEFAULTS_KEYS, "defaults")
        base = WatchDefaults()
        options = self.options(table.get("options", {}), "defaults.options")
        self.check_option_rules(options, "defaults.options")
        return WatchDefaults(**self.watch_fields(table, "defaults", base), options=options)

    def watch_fields(
        self, table: Mapping[str, Any], prefix: str, base: WatchDefaults
    ) -> dict[str, Any]:
        """The non-option fields of a defaults or watch table, falling back to ``base``."""
        fields: dict[str, Any] = {}
        if "outputs" in table:
            outputs = self.strings(table["outputs"], f"{prefix}.outputs")
            for index, name in enumerate(outputs):
                if name not in OUTPUT_FORMATS:
                    listed = ", ".join(f'"{f}"' for f in OUTPUT_FORMATS)
                    self.expected(f"{prefix}.outputs[{index + 1}]", f"one of {listed}", name)
            if not outputs:
                self.fail(f"{prefix}.outputs", "expected at least one of txt, json, srt, vtt")
            if len(set(outputs)) != len(outputs):
                twice = next(o for o in outputs if outputs.count(o) > 1)
                self.fail(f"{prefix}.outputs", f'"{twice}" is listed twice; list each format once')
        fields["outputs"] = outputs if "outputs" in table else base.outputs
        fields["settle_seconds"] = (
            self.number(table["settle_seconds"], f"{prefix}.settle_seconds", minimum=0)
            if "settle_seconds" in table
            else base.settle_seconds
        )
        fields["recursive"] = (
            self.boolean(table["recursive"], f"{prefix}.recursive")
            if "recursive" in table
            else base.recursive
        )
        for name in ("include", "exclude"):
            fields[name] = (
                self.strings(table[name], f"{prefix}.{name}") if name in table
                else getattr(base, name)
            )
        fields["poll"] = (
            self.choice(table["poll"], f"{prefix}.poll", POLL_MODES) if "poll" in table
            else base.poll
        )
        return fields

    def watches(self, value: Any, defaults: WatchDefaults) -> tuple[WatchConfig, ...]:
        if isinstance(value, dict):
            self.fail("watch", "expected an array of tables, written [[watch]] (double brackets)")
        if not isinstance(value, list):
            self.expected("watch", "an array of tables, written [[watch]]", value)
        watches: list[WatchConfig] = []
        for number, table in enumerate(value, start=1):
            prefix = f"watch[{number}]"
            if not isinstance(table, dict):
                self.expected(prefix, "a table", table)
            self.check_keys(table, _WATCH_KEYS, prefix)
            if "path" not in table:
                self.fail(f"{prefix}.path", "missing; expected the folder to watch")
            path = self.path(table["path"], f"{prefix}.path")
            for index, other in enumerate(watches, start=1):
                _reject_nesting(
                    f"{prefix}.path", path, f"watch[{index}].path", other.path, where=self.where
                )
            own = self.options(table.get("options", {}), f"{prefix}.options")
            options = _merge(defaults.options, own)
            self.check_option_rules(options, f"{prefix}.options")
            fields = self.watch_fields(table, prefix, defaults)
            watches.append(WatchConfig(path=path, **fields, options=options))
        return tuple(watches)

    # --- Gladia options

    def options(self, value: Any, prefix: str) -> dict[str, Any]:
        """Type-check one options table on its own; returns a deep copy."""
        if not isinstance(value, dict):
            self.expected(prefix, "a table of Gladia options", value)
        for name, item in value.items():
            key = f"{prefix}.{name}"
            if name in REFUSED_OPTIONS:
                self.fail(key, f"not allowed: {REFUSED_OPTIONS[name]}")
            if name not in KNOWN_OPTIONS:
                raise ConfigError(
                    f"{self.where}: [{prefix}] {name}: unknown Gladia option"
                    f"{_hint(name, KNOWN_OPTIONS)}"
                )
            if name in FLAG_OPTIONS:
                self.boolean(item, key)
            elif not isinstance(item, dict):
                self.expected(key, "a table", item)
            else:
                self.json_only(item, key)
        self.check_option_shapes(value, prefix)
        return copy.deepcopy(value)

    def json_only(self, value: Any, key: str) -> None:
        """Refuse TOML values JSON cannot carry (dates and times): options are sent as JSON."""
        if isinstance(value, dict):
            for name, item in value.items():
                self.json_only(item, f"{key}.{name}")
        elif isinstance(value, list):
            for index, item in enumerate(value, start=1):
                self.json_only(item, f"{key}[{index}]")
        elif not isinstance(value, str | int | float | bool):
            self.expected(key, "a string, number, boolean, array or table (JSON has no dates)",
                          value)

    def check_option_shapes(self, options: Mapping[str, Any], prefix: str) -> None:
        """Checks that hold for any one table, merged or not."""
        language = options.get("language_config", {})
        if "languages" in language:
            self.strings(language["languages"], f"{prefix}.language_config.languages")
        if "code_switching" in language:
            self.boolean(language["code_switching"], f"{prefix}.language_config.code_switching")

        translation = options.get("translation_config", {})
        if "target_languages" in translation:
            targets = self.strings(
                translation["target_languages"], f"{prefix}.translation_config.target_languages"
            )
            if not targets:
                self.fail(
                    f"{prefix}.translation_config.target_languages",
                    "expected at least one language code, e.g. [\"fr\"]",
                )

        subtitles = options.get("subtitles_config", {})
        if "formats" in subtitles:
            key = f"{prefix}.subtitles_config.formats"
            formats = self.strings(subtitles["formats"], key)
            if not formats:
                self.fail(key, 'expected at least one of "srt", "vtt"')
            for index, name in enumerate(formats, start=1):
                if name not in SUBTITLE_FORMATS:
                    self.expected(f"{key}[{index}]", 'one of "srt", "vtt"', name)

        metadata = options.get("custom_metadata", {})
        for name in metadata:
            if name.startswith(RESERVED_METADATA_PREFIX):
                self.fail(
                    f"{prefix}.custom_metadata.{name}",
                    f'keys starting with "{RESERVED_METADATA_PREFIX}" are reserved for watcherd',
                )

    def check_option_rules(self, options: Mapping[str, Any], prefix: str) -> None:
        """Checks on the options that will actually be sent (after merging)."""
        if options.get("translation"):
            targets = options.get("translation_config", {}).get("target_languages")
            if not targets:
                self.fail(
                    f"{prefix}.translation",
                    "translation = true needs translation_config.target_languages, "
                    "a non-empty array of language codes such as [\"fr\"]",
                )
        if options.get("callback"):
            url = options.get("callback_config", {}).get("url")
            if not isinstance(url, str) or not url:
                self.fail(
                    f"{prefix}.callback",
                    "callback = true needs callback_config.url, the URL Gladia calls when done",
                )
        metadata = options.get("custom_metadata")
        if metadata is not None:
            size = len(json.dumps(metadata, ensure_ascii=False))
            if size > USER_METADATA_LIMIT:
                self.fail(
                    f"{prefix}.custom_metadata",
                    f"expected at most {USER_METADATA_LIMIT} characters once written as JSON, "
                    f"got {size} (Gladia allows 2000 and watcherd adds its own keys)",
                )
