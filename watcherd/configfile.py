"""A :class:`~watcherd.config.Config` written back in the config file's own terms.

``watcherd config show`` prints this: the sections and key names of config.example.toml
(``[retry] base_seconds``, ``[engine] name``, ``[http] listen = "HOST:PORT"``,
``workers = "auto"``), every default filled in, secrets as ``***``. Pasted into a file it
loads to the same configuration (a key read from a file shows as that file's name, so only
the secrets written inline in the config must be put back by hand). Nothing of the internal
model (field names, derived values) appears: people copy what they see.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from watcherd.config import Config, WatchConfig, WatchDefaults, engine_sections
from watcherd.config.model import HttpTable, NotifyTable
from watcherd.configkit import Note as Note
from watcherd.configkit import Row as Row
from watcherd.configkit import deep_merge, table_keys, table_rows
from watcherd.log import REDACTED
from watcherd.retry import RETRY_KEYS

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (JSON's escapes, plus DEL, which TOML refuses raw)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_key(name: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted."""
    return name if _BARE_KEY.fullmatch(name) else toml_string(name)


def toml_value(value: Any) -> str:
    """A value as TOML: booleans, numbers, strings, arrays and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, Path):
        return toml_string(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{toml_key(str(k))} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _table(header: str, rows: Sequence[Row | Note]) -> list[str]:
    lines = ["", header]
    for row in rows:
        if isinstance(row, Note):
            lines.append(f"# {row.text}")
        else:
            lines.append(f"{toml_key(row[0])} = {toml_value(row[1])}")
    return lines


def _journal(config: Config) -> list[Row | Note]:
    where: Row = (("url", config.journal_url) if config.journal_url is not None
                  else ("path", config.journal_path))
    return [where, ("lease_seconds", config.lease_seconds)]


def _optional(key: str, value: Any, unset: str) -> Row | Note:
    return Note(f"{key}: not set ({unset})") if value is None else (key, value)


def _callback(config: Config) -> list[Row | Note]:
    callback = config.callback
    if callback is None:
        return [Note("listen: not set (results arrive by polling)")]
    return table_rows(callback, unset={
        "public_url": lambda c: f"not set (Gladia calls http://{c.listen} itself)"})


def _webhook(config: Config) -> list[Row | Note]:
    webhook = config.webhook
    if webhook is None:
        return [Note("secret: not set (no dashboard webhooks)")]
    if webhook.secret_file is not None:
        return [("secret_file", webhook.secret_file)]
    return [("secret", REDACTED)]


def _watch_fields(watch: WatchDefaults) -> list[Row | Note]:
    return [("outputs", list(watch.outputs)), ("settle_seconds", watch.settle_seconds),
            ("recursive", watch.recursive), ("include", list(watch.include)),
            ("exclude", list(watch.exclude)), ("poll", watch.poll),
            ("fallback", watch.fallback), ("follow_links", watch.follow_links),
            _optional("output_dir", watch.output_dir, "outputs go beside each source"),
            ("output_name", watch.output_name), ("subtitle_names", watch.subtitle_names),
            _optional("md_template", None if watch.md_template is None
                      else watch.md_template.path, "NAME.md is watcherd's report"),
            ("speakers", {str(n + 1): name for n, name in watch.speakers}),
            _optional("delete_after", watch.delete_after, "[gladia] delete_after decides")]


def _options(options: Mapping[str, Any]) -> list[Row | Note]:
    return [(name, value) for name, value in options.items()] or [Note("none")]


def _unset(defaults: Mapping[str, Any], options: Mapping[str, Any]) -> list[str]:
    """The inherited options a watch must drop so its own options load back unchanged.

    A watch's options are the defaults merged with its own; shown in full they merge again on
    loading, so every default the watch lacks, or whose table would merge into something
    else, is unset first (and the watch's whole table given instead).
    """
    return [name for name, value in defaults.items()
            if name not in options or deep_merge(value, options[name]) != options[name]]


def _watch(watch: WatchConfig, defaults: WatchDefaults) -> list[str]:
    rows: list[Row | Note] = [("path", watch.path)]
    rows.append(("id", watch.id) if watch.id
                else Note(f"id: not set (derived from the path: {watch.watch_id})"))
    rows.append(("engine", watch.engine) if watch.engine is not None
                else Note("engine: not set ([engine] name decides)"))
    lines = _table("[[watch]]", rows + _watch_fields(watch))
    unset = _unset(defaults.options, watch.options)
    options: list[Row | Note] = [("unset", unset)] if unset else []
    if watch.options or unset:
        lines += _table("[watch.options]", options + _options(watch.options))
    return lines


# What a notify table without URLs means (its rows are its declared keys: table_rows).
_NOTIFY_UNSET = {"urls": "not set (no notifications)"}


def effective_toml(config: Config) -> str:
    """``config`` as a config file: every section of config.example.toml, defaults applied."""
    hooks, retry, http = config.hooks, config.retry, config.http
    # Each engine writes its own table (watcherd.engines.<name>.config), [engine] after them.
    sections: list[tuple[str, list[Row | Note]]] = [
        *((s.name, s.rows(getattr(config, s.name))) for s in engine_sections()),
        ("engine", [("name", config.engine),
                    ("fallback_after_seconds", config.fallback_after_seconds)]),
        ("journal", _journal(config)),
        ("node", [("name", config.node_name)]),
        ("log", [("format", config.log_format), ("level", config.log_level)]),
        ("hooks", [_optional("on_done", list(hooks.on_done) or None, "no command"),
                   _optional("on_failed", list(hooks.on_failed) or None, "no command"),
                   ("timeout_seconds", hooks.timeout_seconds)]),
        ("notify", table_rows(config.notify, keys=table_keys(NotifyTable),
                              unset=_NOTIFY_UNSET)),
        ("metrics", [_optional("textfile", config.metrics_textfile, "no metrics file")]),
        ("retry", [(key, getattr(retry, name)) for key, name in RETRY_KEYS.items()]),
        ("http", table_rows(http, keys=table_keys(HttpTable),
                            unset={"token_file": "not set (needed only off loopback)"})),
        ("scan", [("interval_seconds", config.scan_interval_seconds)]),
        ("callback", _callback(config)),
        ("webhook", _webhook(config)),
        ("defaults", _watch_fields(config.defaults)),
        ("defaults.options", _options(config.defaults.options)),
    ]
    source = config.source or "no config file: the defaults"
    lines = [f"# The configuration watcherd uses (from {source}), defaults applied, secrets",
             "# as ***. Saved as a file (with any *** written back), it loads to the same."]
    for name, rows in sections:
        lines += _table(f"[{name}]", rows)
    routes = dict(config.notify.watches)
    for watch in config.watches:
        lines += _watch(watch, config.defaults)
        if watch.path in routes:
            lines += _table("[watch.notify]", table_rows(routes[watch.path],
                                                         unset=_NOTIFY_UNSET))
    if not config.watches:
        lines += ["", "# nothing to watch: pass --watch DIR or add a [[watch]] table"]
    return "\n".join(lines) + "\n"
