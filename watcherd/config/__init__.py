"""Configuration: find the TOML file, check every key, return frozen dataclasses.

The shape (every table as a frozen dataclass, each default once) is in ``model``; checking
the TOML data, key by key, in ``check``; each engine declares and checks its own table in its
package (``engines/<name>/config.py``). This module finds and reads the file.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import platformdirs

from watcherd.config.check import ConfigChecker, reject_nesting
from watcherd.config.model import (
    DEFAULT_HISTORY_DAYS,
    DEFAULT_HTTP_LISTEN,
    DEFAULT_LEASE_SECONDS,
    FALLBACKS,
    FOLLOW_LINKS,
    LOG_FORMATS,
    LOG_LEVELS,
    MIN_HTTP_TOKEN_CHARS,
    MIN_SCAN_INTERVAL_SECONDS,
    NOTIFY_EVENTS,
    NOTIFY_EXTRA_HINT,
    OUTPUT_FORMATS,
    POLL_MODES,
    WATCH_ID_RE,
    WEBHOOK_SECRET_PREFIX,
    CallbackConfig,
    Config,
    EngineName,
    HooksConfig,
    HttpConfig,
    LogFormat,
    NotifyConfig,
    NotifyRoute,
    PollMode,
    WatchConfig,
    WatchDefaults,
    WebhookConfig,
    default_journal_path,
    default_watch_id,
    engine_names,
    engine_options,
    engine_sections,
    watch_roots,
)
from watcherd.credentials import Secret
from watcherd.errors import ConfigError
from watcherd.outputs.formats import DEFAULT_OUTPUTS, default_outputs
from watcherd.roots import FollowLinks

if TYPE_CHECKING:
    # Types only: at run time the engines' sections are found through the engine registry
    # (engines import this module, so importing them here would make a cycle).
    from watcherd.engines.gladia.config import API_KEY_ENV_VAR as API_KEY_ENV_VAR
    from watcherd.engines.gladia.config import GladiaConfig as GladiaConfig
    from watcherd.engines.local.config import LOCAL_COMPUTE_TYPES as LOCAL_COMPUTE_TYPES
    from watcherd.engines.local.config import LocalConfig as LocalConfig

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_HISTORY_DAYS",
    "DEFAULT_HTTP_LISTEN",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_OUTPUTS",
    "FALLBACKS",
    "FOLLOW_LINKS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MIN_HTTP_TOKEN_CHARS",
    "MIN_SCAN_INTERVAL_SECONDS",
    "NOTIFY_EVENTS",
    "NOTIFY_EXTRA_HINT",
    "OUTPUT_FORMATS",
    "POLL_MODES",
    "SYSTEM_CONFIG_PATH",
    "WATCH_ID_RE",
    "WEBHOOK_SECRET_PREFIX",
    "CallbackConfig",
    "Config",
    "EngineName",
    "FollowLinks",
    "HooksConfig",
    "HttpConfig",
    "LogFormat",
    "NotifyConfig",
    "NotifyRoute",
    "PollMode",
    "Secret",
    "WatchConfig",
    "WatchDefaults",
    "WebhookConfig",
    "default_journal_path",
    "default_outputs",
    "default_watch_id",
    "engine_names",
    "engine_options",
    "engine_sections",
    "find_config",
    "load_config",
    "parse_config",
    "reject_file_roots",
    "secret_values",
    "toml_error",
    "user_config_path",
    "watch_roots",
    "with_extra_watches",
]

# Names that moved into the engines' packages, still importable from here.
_MOVED = {
    "API_KEY_ENV_VAR": "watcherd.engines.gladia.config",
    "GladiaConfig": "watcherd.engines.gladia.config",
    "LOCAL_COMPUTE_TYPES": "watcherd.engines.local.config",
    "LocalConfig": "watcherd.engines.local.config",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CONFIG_ENV_VAR = "WATCHERD_CONFIG"
# A module attribute (not a literal inside find_config) so tests can point it at tmp_path.
SYSTEM_CONFIG_PATH = Path("/etc/watcherd/config.toml")


# -- public API ------------------------------------------------------------------------------


def secret_values(value: object) -> list[str]:
    """Every secret inside ``value`` (a config or any part of one), for redaction."""
    if isinstance(value, Secret):
        return [value.reveal()] if value.reveal() else []
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [s for f in fields(value) for s in secret_values(getattr(value, f.name))]
    if isinstance(value, msgspec.Struct):
        # A table declared as a Struct (the [gladia] key, [notify]'s URLs) holds its secrets.
        return [s for f in msgspec.structs.fields(value)
                for s in secret_values(getattr(value, f.name))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in secret_values(v)]
    return []




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


def load_config(explicit: Path | None = None, *, env: Mapping[str, str] | None = None,
                need_key: bool = True) -> Config:
    """Find, read and validate the config; with no file, the defaults and no watches.

    ``need_key=False`` (status, retry, service install) tolerates an api_key_file that cannot
    be read here, such as a systemd credential that exists only while the service runs.
    """
    env = os.environ if env is None else env
    path = find_config(explicit, env)
    if path is None:
        return parse_config({}, source=None, env=env)
    return parse_config(_read_toml(path), source=path, env=env, need_key=need_key)


def parse_config(data: Mapping[str, Any], *, source: Path | None, env: Mapping[str, str],
                 need_key: bool = True) -> Config:
    """Validate parsed TOML ``data`` read from ``source`` into a :class:`Config`."""
    return ConfigChecker(source, env, need_key=need_key).parse(data)


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
            reject_nesting(label, path, other_label, other.path, where=None)
        inherited = {f.name: getattr(config.defaults, f.name) for f in fields(WatchDefaults)}
        inherited["options"] = copy.deepcopy(dict(config.defaults.options))
        watches.append(WatchConfig(path=path, **inherited))
        labels.append(label)
    return replace(config, watches=tuple(watches))


def reject_file_roots(config: Config) -> None:
    """Refuse a configured watch root that is a file, as ``run --watch FILE`` is refused.

    A missing folder is fine (the watcher waits for it to appear: a mount not up yet); a file
    never becomes a folder, so waiting for it would only hide the mistake. Asked by ``run``
    (and on reload) rather than by every command that reads the config: ``status`` must not
    stat the watch roots.
    """
    in_file = f" in {config.source}" if config.source is not None else ""
    for number, watch in enumerate(config.watches, start=1):
        if watch.path.is_file():
            raise ConfigError(
                f"watch[{number}].path{in_file}: {watch.path} is a file, not a folder; "
                "expected the folder to watch (the file's folder, or another one)"
            )


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
        raise ConfigError(f"{path}: {toml_error(text, str(exc))}") from None


def _parses(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def toml_error(text: str, message: str) -> str:
    """tomllib's ``message`` about ``text`` as "line L, column C: invalid TOML: what".

    tomllib says "(at end of document)" for whatever is still open at the end (an array, an
    inline table, a string): the statement at fault is the one after the longest run of
    lines that parses, so that is where the line and column point.
    """
    found = _TOML_POSITION.match(message)
    if found:
        return f"line {found['line']}, column {found['col']}: invalid TOML: {found['msg']}"
    what = message.removesuffix(" (at end of document)")
    # Lines as TOML counts them: ended by "\n" only (str.splitlines knows more breaks).
    lines = [part for part in re.split(r"(?<=\n)", text) if part]
    good = next(count for count in range(len(lines), -1, -1)
                if _parses("".join(lines[:count])))
    if good >= len(lines):
        return f"invalid TOML: {message}"
    line = lines[good]
    column = len(line) - len(line.lstrip()) + 1
    still = ""
    if "=" in line and not _parses("".join(lines[good:])):
        # Point at the bracket or quote that opened what the end of the file left open.
        value = line.index("=")
        starts = sorted((i, ch) for i, ch in ((line.find(ch, value), ch) for ch in "[{\"'")
                        if i >= 0)
        if starts:
            column = starts[0][0] + 1
            noun = {"[": "array", "{": "inline table"}.get(starts[0][1], "string")
            still = f" (the file ends before the {noun} opened here is closed)"
    return f"line {good + 1}, column {column}: invalid TOML: {what}{still}"
