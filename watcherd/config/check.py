"""Checking the TOML data: every key of every core table, each problem collected, all
reported at once (the engines check their own tables through the same SectionParser)."""

from __future__ import annotations

import base64
import binascii
import importlib
import importlib.util
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from watcherd.config.model import (
    _CALLBACK_KEYS,
    _DEFAULTS_KEYS,
    _TOP_KEYS,
    _WATCH_KEYS,
    _WEBHOOK_KEYS,
    FALLBACKS,
    LOG_LEVELS,
    MIN_HTTP_TOKEN_CHARS,
    NOTIFY_EXTRA_HINT,
    OUTPUT_FORMATS,
    RETRY_TABLE,
    WATCH_ID_RE,
    WEBHOOK_SECRET_PREFIX,
    CallbackConfig,
    Config,
    EngineTable,
    HooksConfig,
    HttpConfig,
    HttpTable,
    JournalTable,
    LogTable,
    MetricsTable,
    NodeTable,
    NotifyConfig,
    NotifyRoute,
    NotifyTable,
    ScanTable,
    WatchConfig,
    WatchDefaults,
    WebhookConfig,
    WebhookTable,
    default_journal_path,
    engine_names,
    engine_options,
    engine_sections,
)
from watcherd.configkit import DELETE_AFTER, EngineSection, SectionParser
from watcherd.connections import is_loopback
from watcherd.credentials import Secret, strip_secret
from watcherd.errors import ConfigError
from watcherd.outputs.facts import MdTemplate
from watcherd.outputs.job import SPEAKER_NAME_MAX, speaker_name, speaker_number
from watcherd.outputs.note import TEMPLATE_FIELDS
from watcherd.outputs.templates import check_fields, check_name
from watcherd.retry import RETRY_KEYS, RetryPolicy

__all__ = ["ConfigChecker", "reject_nesting"]



# -- validation ------------------------------------------------------------------------------


# Names of the internal model (printed by `config show` before it spoke the file's language)
# that people paste back: each says which key of the file it is. (table, name) -> the key.
_MODEL_NAMES: dict[tuple[str, str], str] = {
    ("", "source"): "nothing: the file itself is the source",
    ("", "journal_path"): "[journal] path",
    ("", "journal_url"): "[journal] url",
    ("", "lease_seconds"): "[journal] lease_seconds",
    ("", "history_days"): "[journal] history_days",
    ("", "log_format"): "[log] format",
    ("", "log_level"): "[log] level",
    ("", "scan_interval_seconds"): "[scan] interval_seconds",
    ("", "fallback_after_seconds"): "[engine] fallback_after_seconds",
    ("", "metrics_textfile"): "[metrics] textfile",
    ("", "node_name"): "[node] name",
    ("", "watches"): "[[watch]] tables",
    ("http", "address"): "listen",
    ("http", "token"): "token_file",
    ("callback", "host"): "listen",
    ("callback", "port"): "listen",
    ("callback", "address"): "listen",
    **{("retry", field_name): key for key, field_name in RETRY_KEYS.items()},
}


def _model_name_hint(table: str, name: str) -> str:
    """A did-you-mean for an internal name (``retry_base``, ``journal_path``...), or ""."""
    if (table, name) in _MODEL_NAMES:
        return f"; did you mean {_MODEL_NAMES[table, name]}?"
    if table == "retry" and name in {f.name for f in fields(RetryPolicy)}:
        return ("; it is not a setting (watcherd's own budget): remove it; the [retry] keys "
                "are " + ", ".join(RETRY_KEYS))
    return ""


def _all_problems(where: str, problems: Sequence[str]) -> str:
    """One message for every problem, each on its own line when there are several."""
    if len(problems) == 1:
        return problems[0]
    prefix = f"{where}: "
    lines = [p[len(prefix):] if p.startswith(prefix) else p for p in problems]
    return f"{where}: {len(problems)} problems:\n" + "\n".join(f"  - {line}" for line in lines)


def reject_nesting(
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


def _reject_outputs_as_inputs(watches: Sequence[WatchConfig], where: str) -> None:
    """Refuse an output folder that watching would read: outputs must never become inputs.

    An ``output_dir`` may lie inside a watch root only when that watch's ``exclude`` skips
    it; it may not be a root, nor hold one (outputs mirrored beneath it could land there).
    """
    # Imported here: the filters module reads this one's WatchConfig.
    from watcherd.filters import SourceFilter

    for number, watch in enumerate(watches, start=1):
        out = watch.output_dir
        if out is None:
            continue
        key = f"{where}: watch[{number}].output_dir"
        for other_number, other in enumerate(watches, start=1):
            if out == other.path or other.path.is_relative_to(out):
                raise ConfigError(
                    f"{key}: {out} {'is' if out == other.path else 'contains'} the watched "
                    f"folder of watch[{other_number}] ({other.path}); outputs must never "
                    "become inputs: choose an output folder outside every watched folder")
            rules = SourceFilter(other)
            # Pruned itself, or below a pruned folder: the walk never reaches it.
            skipped = any(rules.prunes(folder) for folder in (out, *out.parents)
                          if folder.is_relative_to(other.path) and folder != other.path)
            if out.is_relative_to(other.path) and not skipped:
                rel = out.relative_to(other.path).as_posix()
                raise ConfigError(
                    f"{key}: {out} is inside the watched folder of watch[{other_number}] "
                    f"({other.path}) and would be watched: outputs must never become inputs; "
                    f'add exclude = ["{rel}"] to that watch, or choose a folder outside it')


class ConfigChecker(SectionParser):
    """Walks the TOML data once, noting every problem; the engines' tables are theirs."""

    def model_name_hint(self, table: str, name: str) -> str:
        hint = _model_name_hint(table, name)
        if hint:
            return hint
        for section in engine_sections():
            if (table, name) in section.internal_names:
                return f"; did you mean {section.internal_names[table, name]}?"
        return ""

    # --- sections

    def parse(self, data: Mapping[str, Any]) -> Config:
        """Every section, each checked even when another is wrong; all problems raised at once.

        A section that fails is replaced by its defaults so the others can still be checked;
        the caller gets one ConfigError listing every problem (people fix them in one go).
        """
        sections = engine_sections()
        self.check_keys(data, (*(s.name for s in sections), *_TOP_KEYS), "")
        # Each engine's own table, checked by the engine (see watcherd.engines.registry).
        engine_fields: dict[str, Any] = {}
        for section in sections:
            value = self.attempt(partial(self.engine_section, data, section), section.default())
            engine_fields[section.name] = value
            if section.config_fields is not None:
                engine_fields.update(section.config_fields(value))
        engine = self.attempt(lambda: self.declared(data, "engine", EngineTable, custom={
            "name": partial(self.choice, choices=engine_names())}), EngineTable())
        hooks = self.attempt(lambda: self.declared(data, "hooks", HooksConfig, custom={
            "on_done": self.command, "on_failed": self.command}), HooksConfig())
        notify = self.attempt(lambda: self.notify(data), NotifyConfig())
        retry = self.attempt(lambda: self.retry(data), RetryPolicy())
        metrics = self.attempt(lambda: self.declared(data, "metrics", MetricsTable,
                                                     custom={"textfile": self.path}),
                               MetricsTable())
        journal = self.attempt(lambda: self.journal(data), JournalTable())
        node = self.attempt(lambda: self.declared(data, "node", NodeTable,
                                                  custom={"name": self.node_name}), NodeTable())
        log = self.attempt(lambda: self.declared(data, "log", LogTable,
                                                 custom={"level": self.log_level}), LogTable())
        scan = self.attempt(lambda: self.declared(data, "scan", ScanTable), ScanTable())
        defaults = self.attempt(lambda: self.defaults(self.table(data, "defaults", "defaults")),
                                WatchDefaults())
        no_watches: tuple[WatchConfig, ...] = ()
        watches = self.attempt(lambda: self.watches(data.get("watch", []), defaults),
                               no_watches)
        seen = len(self.problems)
        callback = self.attempt(lambda: self.callback(self.table(data, "callback", "callback")),
                                None)
        callback_failed = len(self.problems) > seen
        webhook = self.attempt(lambda: self.webhook(self.table(data, "webhook", "webhook")),
                               None)
        if webhook is not None and callback is None and not callback_failed:
            self.attempt(lambda: self.fail(
                "webhook",
                "webhooks arrive on the callback listener: add [callback] listen = "
                '"127.0.0.1:PORT" (and public_url, the address Gladia reaches)',
            ), None)
        if callback is not None:
            self.attempt(lambda: engine_options().reject_listener(self, [
                ("defaults.options", defaults.options),
                *((f"watch[{i}].options", w.options) for i, w in enumerate(watches, start=1)),
            ]), None)
        http = self.attempt(lambda: self.http(self.table(data, "http", "http")), HttpConfig())
        if self.problems:
            raise ConfigError(_all_problems(self.where, self.problems))

        return Config(
            source=self.source,
            engine=engine.name,
            journal_path=journal.path or default_journal_path(),
            log_format=log.format,
            log_level=log.level,
            watches=watches,
            scan_interval_seconds=scan.interval_seconds,
            defaults=defaults,
            callback=callback,
            webhook=webhook,
            fallback_after_seconds=engine.fallback_after_seconds,
            hooks=hooks,
            notify=notify,
            metrics_textfile=metrics.textfile,
            retry=retry,
            http=http,
            journal_url=journal.url,
            lease_seconds=journal.lease_seconds,
            history_days=journal.history_days,
            node_name=node.name or socket.gethostname(),
            warnings=tuple(self.warnings),
            **engine_fields,
        )

    def engine_section(self, data: Mapping[str, Any], section: EngineSection[Any]) -> Any:
        """An engine's own table (``[gladia]``, ``[local]``), checked by its declaration."""
        return section.parse(self, self.table(data, section.name, section.name))

    def apprise_urls(self, value: Any, key: str) -> tuple[Secret, ...]:
        """``urls`` of a notify table: Apprise URLs, secrets (a URL holds a token or a
        password), so only their kind is ever shown."""
        if not isinstance(value, list):
            self.expected(key, "an array of Apprise URLs", value, secret=True)
        for index, url in enumerate(value, start=1):
            self.string(url, f"{key}[{index}]", secret=True)
            if "://" not in url:
                self.fail(f"{key}[{index}]", "expected an Apprise URL such as "
                          "ntfy://ntfy.sh/TOPIC or json://host/path (see "
                          "https://github.com/caronc/apprise/wiki)")
        return tuple(Secret(url.strip()) for url in value)

    def notify(self, data: Mapping[str, Any]) -> NotifyConfig:
        """``[notify]`` and each watch's ``notify`` (by its path), checked by their tables."""
        table = self.section(self.table(data, "notify", "notify"), NotifyTable, "notify",
                             custom={"urls": self.apprise_urls})
        # A watch's notify keeps what [notify] sets for the keys it does not set itself.
        route = NotifyRoute(table.urls, table.on)
        watches = []
        for number, watch in enumerate(data.get("watch", []) or [], start=1):
            if isinstance(watch, dict) and "notify" in watch and "path" in watch:
                own = self.section(watch["notify"], NotifyRoute, f"watch[{number}].notify",
                                   custom={"urls": self.apprise_urls}, base=route)
                watches.append((self.path(watch["path"], f"watch[{number}].path"), own))
        config = NotifyConfig(**msgspec.structs.asdict(table), watches=tuple(watches))
        if config.enabled and importlib.util.find_spec("apprise") is None:
            self.fail("notify", f"sending notifications needs Apprise: {NOTIFY_EXTRA_HINT}")
        return config

    def retry(self, data: Mapping[str, Any]) -> RetryPolicy:
        """``[retry]``: the waits and budgets of retries, in the file's key names."""
        table = self.declared(data, "retry", RETRY_TABLE)
        return RetryPolicy.from_table({key: getattr(table, key) for key in RETRY_KEYS})

    def journal(self, data: Mapping[str, Any]) -> JournalTable:
        """``[journal]``: the SQLite path or the PostgreSQL URL (never both), the lease and
        how many days of history are kept event by event."""
        table = self.table(data, "journal", "journal")
        if "url" in table and "path" in table:
            self.fail("journal", "both path and url are set: url (PostgreSQL, shared by "
                      "several nodes) replaces path (a SQLite file); keep one of them")
        return self.section(table, JournalTable, "journal",
                            custom={"path": self.path, "url": self.journal_url})

    def log_level(self, value: Any, key: str) -> str:
        """``[log] level``: "INFO" is what people copy from other tools; any case is taken."""
        if isinstance(value, str) and value.lower() in LOG_LEVELS:
            value = value.lower()
        return self.choice(value, key, LOG_LEVELS)

    def journal_url(self, value: Any, key: str) -> str:
        """``[journal] url``: a PostgreSQL URL (libpq form)."""
        url = self.string(value, key, secret=True).strip()
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("postgresql", "postgres") or not (
            parts.netloc or "host=" in parts.query
        ):
            # Never echoed: the URL may hold a password.
            self.fail(key, "expected a PostgreSQL URL such as "
                      '"postgresql://watcherd@db.example.com:5432/watcherd" or, over a Unix '
                      'socket, "postgresql:///watcherd?host=/run/postgresql"')
        return url

    def node_name(self, value: Any, key: str) -> str:
        """``[node] name``: this daemon's name in a shared journal (default the host name)."""
        name = self.string(value, key)
        if len(name) > 200 or not name.isprintable() or name != name.strip():
            self.expected(key, "a short printable name without leading or trailing "
                          "spaces (one per running node)", name)
        return name

    def command(self, value: Any, key: str) -> tuple[str, ...]:
        """A hook command: a list of strings (program, then arguments), run without a shell."""
        if isinstance(value, str):
            self.expected(key, 'a list such as ["/usr/local/bin/notify", "--quiet"] (program '
                          "then arguments; no shell, so file names are never interpreted)", value)
        argv = self.strings(value, key)
        if argv and not argv[0].strip():
            self.fail(f"{key}[1]", "expected the program to run, got an empty string")
        return argv

    def callback(self, raw: Mapping[str, Any]) -> CallbackConfig | None:
        known = self.known_keys(raw, _CALLBACK_KEYS, "callback")
        if not raw:
            return None
        if "listen" not in raw:
            self.fail("callback.listen", 'missing; expected "HOST:PORT" such as "127.0.0.1:8787"')
        return self.section(known, CallbackConfig, "callback", custom={
            "listen": self.listen_address, "public_url": self.public_url})

    def public_url(self, value: Any, key: str) -> str:
        """``[callback] public_url``: where Gladia reaches the listener (https only)."""
        url = self.string(value, key).strip()
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            self.expected(
                key,
                'an https URL without query, such as "https://watcherd.example.com" '
                "(the callback token travels in it, so plain http is refused)",
                url,
            )
        return url.rstrip("/")

    def listen_address(self, value: Any, key: str) -> tuple[str, int]:
        what = '"HOST:PORT" with an IP address (or localhost) and a port 1-65535'
        text = self.string(value, key).strip()
        found = re.fullmatch(r"\[(?P<v6>[^\]]+)\]:(?P<port>\d{1,5})|(?P<host>[^:]+):(?P<p>\d{1,5})",
                             text)
        if not found:
            self.expected(key, what, value)
        host = found["v6"] or found["host"]
        port = int(found["port"] or found["p"])
        if host != "localhost":
            try:
                ipaddress.ip_address(host)
            except ValueError:
                self.expected(key, what, value)
        if not 1 <= port <= 65535:
            self.expected(key, what, value)
        return host, port

    def http(self, raw: Mapping[str, Any]) -> HttpConfig:
        table = self.section(raw, HttpTable, "http", custom={
            "listen": self.listen_or_off, "token_file": self.path})
        address = table.address
        if address is None:
            return HttpConfig(address=None)  # listen = "" turns the page off
        token_file = table.token_file
        token: Secret | None = None
        if token_file is not None:
            if self.need_key or os.access(token_file, os.R_OK):
                token = self.secret_file(token_file, "http.token_file", "the token")
                if len(token.reveal()) < MIN_HTTP_TOKEN_CHARS:
                    self.fail("http.token_file",
                              f"{token_file} must hold one word of at least "
                              f"{MIN_HTTP_TOKEN_CHARS} characters (the token), nothing else")
        elif not is_loopback(address[0]):
            self.fail(
                "http.token_file",
                f'required when [http] listen is not a loopback address (got "{table.listen}"): '
                "anyone on the network could see and retry your files; put a random token in "
                "a file readable only by watcherd (python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))' > FILE) and set token_file = \"FILE\", or "
                'listen on "127.0.0.1:PORT"',
            )
        return HttpConfig(**msgspec.structs.asdict(table), token=token)

    def listen_or_off(self, value: Any, key: str) -> tuple[str, int] | None:
        """``[http] listen``: "HOST:PORT", or "" (the page is off: None)."""
        if isinstance(value, str) and not value.strip():
            return None
        return self.listen_address(value, key)

    def webhook(self, raw: Mapping[str, Any]) -> WebhookConfig | None:
        known = self.known_keys(raw, _WEBHOOK_KEYS, "webhook")
        if not raw:
            return None
        table = self.section(known, WebhookTable, "webhook", one_of=("secret", "secret_file", ""),
                             custom={"secret": lambda value, key: Secret(
                                         strip_secret(self.string(value, key, secret=True))),
                                     "secret_file": self.path})
        path = table.secret_file
        if table.secret is not None:
            key = "webhook.secret"
            text = table.secret.reveal()
        elif path is not None:
            key = "webhook.secret_file"
            text = self.secret_file(path, key, "the signing secret").reveal()
        else:
            self.fail("webhook.secret", 'missing; expected secret = "whsec_..." or secret_file')
        if not text.startswith(WEBHOOK_SECRET_PREFIX):
            self.fail(key, f'expected a signing secret starting with "{WEBHOOK_SECRET_PREFIX}" '
                           "(copy it from https://app.gladia.io/webhooks)")
        try:
            decoded = base64.b64decode(text[len(WEBHOOK_SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if not decoded:
            self.fail(key, f'expected "{WEBHOOK_SECRET_PREFIX}" followed by base64 text; '
                           "copy the whole secret from the dashboard")
        # The prefix and base64 checks are stricter than the one every secret passes; it is
        # run all the same so that no secret reaches a header or a log unchecked.
        return WebhookConfig(**(msgspec.structs.asdict(table)
                                | {"secret": self.secret_text(text, key, "the signing secret")}))

    def defaults(self, table: Mapping[str, Any]) -> WatchDefaults:
        known = self.known_keys(table, _DEFAULTS_KEYS, "defaults")
        options = engine_options().defaults(self, table.get("options", {}), "defaults.options")
        return self.section(known, WatchDefaults, "defaults", base=WatchDefaults(options=options),
                            custom={**self.watch_checks(), "options": lambda _v, _k: options})

    def known_keys(self, table: Mapping[str, Any], keys: Sequence[str], prefix: str
                   ) -> dict[str, Any]:
        """``table``'s known keys, its unknown ones noted first (before a problem that stops
        the table, such as a watch's missing path or its options, hides them)."""
        self.check_keys(table, keys, prefix)
        return {key: value for key, value in table.items() if key in keys}

    def watch_checks(self) -> dict[str, Callable[[Any, str], Any]]:
        """The keys of a defaults or watch table whose rules a type cannot say."""
        return {"outputs": self.outputs, "fallback": partial(self.choice, choices=FALLBACKS),
                "delete_after": partial(self.choice, choices=DELETE_AFTER),
                "output_dir": self.path, "output_name": self.output_name,
                "md_template": self.md_template, "speakers": self.speakers}

    def outputs(self, value: Any, key: str) -> tuple[str, ...]:
        """``outputs``: formats the outputs module writes, at least one, each once."""
        outputs = self.strings(value, key)
        for index, name in enumerate(outputs):
            if name not in OUTPUT_FORMATS:
                listed = ", ".join(f'"{f}"' for f in OUTPUT_FORMATS)
                self.expected(f"{key}[{index + 1}]", f"one of {listed}", name)
        if not outputs:
            self.fail(key, f"expected at least one of {', '.join(OUTPUT_FORMATS)}")
        if len(set(outputs)) != len(outputs):
            twice = next(o for o in outputs if outputs.count(o) > 1)
            self.fail(key, f'"{twice}" is listed twice; list each format once')
        return outputs

    def output_name(self, value: Any, key: str) -> str:
        """``output_name``: a file name template (tokens {stem} {ext} {lang} {date} {watch})."""
        text = self.string(value, key)
        try:
            return check_name(text)
        except ValueError as exc:
            self.fail(key, f"{text!r} {exc}" if str(exc).startswith(("must", "may", "is "))
                      else f"{text!r}: {exc}")

    def md_template(self, value: Any, key: str) -> MdTemplate:
        """``md_template``: a Markdown file whose {fields} are checked now, not at run time."""
        path = self.path(value, key)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            self.fail(key, f"{path} is not UTF-8 text; save it as UTF-8")
        except OSError as exc:
            self.fail(key, f"cannot read {path}: {exc.strerror or exc}; give the path of a "
                      "Markdown template readable by watcherd")
        try:
            check_fields(text, TEMPLATE_FIELDS)
        except ValueError as exc:
            self.fail(key, f"{path}: {exc}")
        return MdTemplate(path=path, text=text)

    def watch_id(self, value: Any, key: str) -> str:
        """``[[watch]] id``: the name the shared journal stores this folder's paths under."""
        watch_id = self.string(value, key)
        if not WATCH_ID_RE.fullmatch(watch_id):
            self.expected(key, "a name of letters, digits, '.', '_' or '-' (at most 64, "
                          "starting with a letter or digit), the same on every node that "
                          "watches this folder", watch_id)
        return watch_id

    def speakers(self, value: Any, key: str) -> tuple[tuple[int, str], ...]:
        """``[watch.speakers]``: speaker labels (1 = "Alice": "Speaker 1") to names."""
        if not isinstance(value, dict):
            self.expected(key, 'a table such as { 1 = "Alice", 2 = "Bob" }', value)
        found: dict[int, str] = {}
        for label, name in value.items():
            number = speaker_number(label)
            if number is None:
                self.fail(f"{key}.{label}", "expected a speaker's number (1 for \"Speaker 1\", "
                          "2 for \"Speaker 2\"...) as the key")
            clean = speaker_name(name)
            if clean is None:
                self.expected(f"{key}.{label}", "a name: one line of printable text of at most "
                              f"{SPEAKER_NAME_MAX} characters", name)
            found[number] = clean
        return tuple(sorted(found.items()))

    def watches(self, value: Any, defaults: WatchDefaults) -> tuple[WatchConfig, ...]:
        if isinstance(value, dict):
            self.fail("watch", "expected an array of tables, written [[watch]] (double brackets)")
        if not isinstance(value, list):
            self.expected("watch", "an array of tables, written [[watch]]", value)
        watches: list[WatchConfig] = []
        for number, table in enumerate(value, start=1):
            # Each watch on its own: a problem in one does not hide those of the next.
            watch = self.attempt(partial(self.watch, number, table, defaults, watches), None)
            if watch is not None:
                watches.append(watch)
        self.attempt(lambda: _reject_outputs_as_inputs(watches, self.where), None)
        return tuple(watches)

    def watch(self, number: int, table: Any, defaults: WatchDefaults,
              watches: Sequence[WatchConfig]) -> WatchConfig:
        """The ``number``-th ``[[watch]]``, checked against the ``watches`` before it."""
        prefix = f"watch[{number}]"
        if not isinstance(table, dict):
            self.expected(prefix, "a table", table)
        known = self.known_keys(table, _WATCH_KEYS, prefix)
        if "path" not in table:
            self.fail(f"{prefix}.path", "missing; expected the folder to watch")
        # The path first: the nesting check and the options' messages name the folder.
        path = self.path(table["path"], f"{prefix}.path")
        for index, other in enumerate(watches, start=1):
            reject_nesting(
                f"{prefix}.path", path, f"watch[{index}].path", other.path, where=self.where
            )
        warned = len(self.warnings)
        try:
            options = engine_options().watch(self, table.get("options", {}), defaults.options,
                                             f"{prefix}.options")
        except ConfigError as exc:
            # Options errors can come from a merged value, so say which folder they hit.
            raise ConfigError(f"{exc} (in the watch of {path})") from None
        finally:
            self.warnings[warned:] = [f"{w} (in the watch of {path})"
                                      for w in self.warnings[warned:]]
        watch = self.section(known, WatchConfig, prefix, base=replace(defaults, options=options),
                             elsewhere=("notify",), custom={
            **self.watch_checks(), "path": lambda _v, _k: path, "options": lambda _v, _k: options,
            "engine": partial(self.choice, choices=engine_names()), "id": self.watch_id})
        for index, other in enumerate(watches, start=1):
            if other.watch_id == watch.watch_id:
                self.fail(f"{prefix}.id", f"{watch.watch_id!r} is already the id of "
                          f"watch[{index}] ({other.path}); give each [[watch]] its own id")
        return watch
