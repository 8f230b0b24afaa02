"""The core tables declared as msgspec Structs (watcherd.config.model): each default stated
once, every problem of a table reported at once, any value at any key kept or refused naming
that key."""

from __future__ import annotations

import base64
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcherd.config import parse_config
from watcherd.config.model import (
    CORE_TABLES,
    RETRY_TABLE,
    CallbackConfig,
    EngineTable,
    HooksConfig,
    HttpTable,
    JournalTable,
    LogTable,
    MetricsTable,
    NodeTable,
    NotifyRoute,
    NotifyTable,
    ScanTable,
    WebhookTable,
    default_journal_path,
)
from watcherd.configkit import table_keys
from watcherd.errors import ConfigError
from watcherd.retry import RETRY_KEYS, RetryPolicy

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
TABLES: dict[str, type[Any]] = {
    "engine": EngineTable, "scan": ScanTable, "log": LogTable, "hooks": HooksConfig,
    "metrics": MetricsTable, "node": NodeTable, "journal": JournalTable, "retry": RETRY_TABLE,
    "http": HttpTable, "notify": NotifyTable,
}


def test_a_config_without_tables_is_the_declared_defaults() -> None:
    config = parse_config({}, source=None, env={})
    assert (config.engine, config.fallback_after_seconds) == (
        EngineTable().name, EngineTable().fallback_after_seconds)
    assert config.scan_interval_seconds == ScanTable().interval_seconds
    assert (config.log_format, config.log_level) == (LogTable().format, LogTable().level)
    assert config.hooks == HooksConfig() and config.metrics_textfile is None
    assert config.node_name == socket.gethostname()
    journal = JournalTable()
    assert (config.journal_path, config.journal_url, config.lease_seconds,
            config.history_days) == (default_journal_path(), None, journal.lease_seconds,
                                     journal.history_days)
    assert config.retry == RetryPolicy()
    assert (config.notify.urls, config.notify.on, config.notify.batch_seconds,
            config.notify.watches) == (NotifyTable().urls, NotifyTable().on,
                                       NotifyTable().batch_seconds, ())
    assert RETRY_TABLE() == RETRY_TABLE(**{key: getattr(RetryPolicy(), name)
                                           for key, name in RETRY_KEYS.items()})


def test_every_problem_of_a_core_table_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"journal": {"lease_seconds": 0, "history_days": 0, "pth": "x"},
                      "hooks": {"timeout_seconds": 0, "on_done": "notify"}},
                     source=None, env={})
    assert str(caught.value).splitlines() == [
        "config: 5 problems:",
        "  - hooks.on_done: expected a list such as [\"/usr/local/bin/notify\", \"--quiet\"] "
        "(program then arguments; no shell, so file names are never interpreted), got "
        "\"notify\"",
        "  - hooks.timeout_seconds: expected a number >= 0.1, got 0",
        '  - [journal] pth: unknown key; did you mean "path"?',
        "  - journal.lease_seconds: expected a number of seconds > 0 (default 30), got 0",
        "  - journal.history_days: expected a number >= 1, got 0",
    ]


def test_the_example_documents_every_key_of_every_declared_table() -> None:
    text = EXAMPLE.read_text("utf-8")
    assert {**TABLES, "callback": CallbackConfig, "webhook": WebhookTable}.items() <= (
        CORE_TABLES.items())
    missing = [f"{name}.{key}" for name, schema in CORE_TABLES.items()
               for key in table_keys(schema) if not re.search(rf"\b{key}\b", text)]
    assert missing == []
    assert [name for name in CORE_TABLES if not re.search(rf"^\[\[?{name}\]", text, re.M)] == []


def test_the_top_level_keys_are_the_declared_tables() -> None:
    """A config may have each core table (CORE_TABLES) and each engine's, nothing else."""
    everything: dict[str, Any] = {name: ([] if name == "watch" else {}) for name in CORE_TABLES}
    assert parse_config({**everything, "gladia": {}, "local": {}}, source=None, env={})
    with pytest.raises(ConfigError, match=r'^config: notfy: unknown key; did you mean "notify"'):
        parse_config({"notfy": {}}, source=None, env={})


_VALUES: st.SearchStrategy[Any] = (
    st.booleans() | st.integers(-5, 400) | st.floats() | st.text(max_size=12)
    | st.sampled_from(["auto", "local", "INFO", "json", "postgresql://h/db"])
    | st.lists(st.text(max_size=5), max_size=2) | st.just({}))


@given(table=st.sampled_from(sorted(TABLES)), data=st.data())
def test_any_value_at_any_core_key_is_kept_or_refused_naming_that_key(
        table: str, data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(table_keys(TABLES[table])))
    value = data.draw(_VALUES)
    try:
        parse_config({table: {key: value}}, source=None, env={})
    except ConfigError as exc:
        assert re.match(rf"config: {table}\.{key}(\[\d+\])?: ", str(exc)), str(exc)
        if key == "url" and isinstance(value, str) and len(value) > 3:
            assert value not in str(exc)  # the URL may hold a password
        if key == "urls":  # Apprise URLs hold tokens: never shown
            shown = value if isinstance(value, list) else [value]
            assert not [v for v in shown if isinstance(v, str) and len(v) > 3
                        and v in str(exc)], str(exc)


@given(key=st.sampled_from(table_keys(NotifyRoute)), value=_VALUES)
def test_any_value_at_any_key_of_a_watch_notify_is_kept_or_refused_naming_it(
        key: str, value: Any) -> None:
    try:
        config = parse_config({"watch": [{"path": "/srv/in", "notify": {key: value}}]},
                              source=None, env={})
    except ConfigError as exc:
        assert re.match(rf"config: watch\[1\]\.notify\.{key}(\[\d+\])?: ", str(exc)), str(exc)
    else:
        [(path, route)] = config.notify.watches
        assert path == Path("/srv/in").resolve()
        assert len(route.on if key == "on" else route.urls) == len(value)


def test_every_problem_of_the_notify_tables_is_reported_at_once() -> None:
    """[notify] is declared (NotifyTable): its keys' problems come together, each list item
    named; a watch's notify takes only urls and on (NotifyRoute)."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"notify": {"urls": ["ntfy-token-1234"], "on": ["done", "dnoe"],
                                 "batch_seconds": -1, "batch_second": 1}}, source=None, env={})
    assert str(caught.value).splitlines() == [
        "config: 4 problems:",
        '  - [notify] batch_second: unknown key; did you mean "batch_seconds"?',
        "  - notify.urls[1]: expected an Apprise URL such as ntfy://ntfy.sh/TOPIC or "
        "json://host/path (see https://github.com/caronc/apprise/wiki)",
        '  - notify.on[2]: expected one of "done", "failed", "paused", got "dnoe"; '
        'did you mean "done"?',
        "  - notify.batch_seconds: expected a number >= 0, got -1",
    ]
    with pytest.raises(ConfigError, match=r"\[watch\[1\]\.notify\] batch_seconds: unknown key"):
        parse_config({"watch": [{"path": "/srv/in", "notify": {"batch_seconds": 1}}]},
                     source=None, env={})


def test_defaults_and_watches_keys_are_their_fields() -> None:
    """[defaults] keys are WatchDefaults' fields; a watch's are WatchConfig's and notify."""
    from watcherd.config.model import _DEFAULTS_KEYS, _WATCH_KEYS, WatchConfig, WatchDefaults

    assert table_keys(WatchDefaults) == _DEFAULTS_KEYS
    assert set(_WATCH_KEYS) == {*table_keys(WatchConfig), "notify"} == {
        *_DEFAULTS_KEYS, "path", "engine", "id", "notify"}
    assert parse_config({}, source=None, env={}).defaults == WatchDefaults()


def test_every_problem_of_a_watch_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"defaults": {"settle_seconds": -1, "poll": "sometimes"},
                      "watch": [{"path": str(tmp_path), "recursive": "yes", "id": "a b",
                                 "include": ["*.mp3", ""], "colour": 1}]},
                     source=None, env={})
    assert str(caught.value).splitlines() == [
        "config: 6 problems:",
        "  - defaults.settle_seconds: expected a number >= 0, got -1",
        '  - defaults.poll: expected one of "auto", "always", "never", got "sometimes"',
        "  - [watch[1]] colour: unknown key",
        '  - watch[1].include[2]: expected a non-empty string, got ""',
        '  - watch[1].recursive: expected true or false, got "yes"',
        "  - watch[1].id: expected a name of letters, digits, '.', '_' or '-' (at most 64, "
        'starting with a letter or digit), the same on every node that watches this folder, '
        'got "a b"',
    ]


def test_a_watch_takes_what_it_does_not_set_from_the_defaults(tmp_path: Path) -> None:
    config = parse_config({"defaults": {"settle_seconds": 7, "outputs": ["srt"]},
                           "watch": [{"path": str(tmp_path), "recursive": False}]},
                          source=None, env={})
    watch = config.watches[0]
    assert (watch.settle_seconds, watch.outputs, watch.recursive) == (7.0, ("srt",), False)


_DEFAULTS_SCALAR_KEYS = ("include", "exclude", "outputs", "settle_seconds", "recursive", "poll",
                         "fallback", "follow_links", "output_name", "subtitle_names",
                         "speakers", "delete_after")


@given(key=st.sampled_from(_DEFAULTS_SCALAR_KEYS), value=_VALUES)
def test_any_value_at_any_defaults_key_is_kept_or_refused_naming_that_key(
        key: str, value: Any) -> None:
    try:
        parse_config({"defaults": {key: value}}, source=None, env={})
    except ConfigError as exc:
        assert re.match(rf"config: defaults\.{key}(\[\d+\]|\.\S+)?: ", str(exc)), str(exc)


def test_a_webhook_and_a_callback_problem_come_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"callback": {"listen": "127.0.0.1:8787", "public_url": "http://x"},
                      "webhook": {"secret": "whsec_AAAA", "secret_file": str(tmp_path)},
                      "http": {"listen": "nowhere", "tokn_file": "x"}},
                     source=None, env={})
    assert str(caught.value).splitlines() == [
        "config: 4 problems:",
        '  - callback.public_url: expected an https URL without query, such as '
        '"https://watcherd.example.com" (the callback token travels in it, so plain http is '
        'refused), got "http://x"',
        "  - webhook.secret: set either secret or secret_file, not both",
        '  - [http] tokn_file: unknown key; did you mean "token_file"?',
        '  - http.listen: expected "HOST:PORT" with an IP address (or localhost) and a port '
        '1-65535, got "nowhere"',
    ]


def _section(shown: str, header: str) -> list[str]:
    """The lines of one table of `config show` (its header to the next blank line)."""
    start = shown.splitlines().index(header)
    lines = shown.splitlines()[start:]
    return lines[:lines.index("") if "" in lines else len(lines)]


def test_config_show_writes_the_notify_tables_from_their_declaration(tmp_path: Path) -> None:
    """[notify] and a watch's notify are written by their declared keys, with a note for no
    URLs, each URL as *** (never in the text at all), a watch's keys as it inherits them."""
    from watcherd.config import secret_values
    from watcherd.configfile import effective_toml
    from watcherd.log import redact

    def shown(data: dict[str, Any]) -> str:
        config = parse_config(data, source=None, env={})
        return redact(effective_toml(config), secret_values(config))

    assert _section(shown({}), "[notify]") == [
        "[notify]", "# urls: not set (no notifications)", 'on = ["done", "failed", "paused"]',
        "batch_seconds = 60.0"]
    url = 'json://u:pa"ss\\word@example/hook'
    text = shown({"notify": {"urls": [url], "on": ["failed"], "batch_seconds": 5},
                  "watch": [{"path": str(tmp_path), "notify": {"on": ["done"]}}]})
    assert _section(text, "[notify]") == [
        "[notify]", 'urls = ["***"]', 'on = ["failed"]', "batch_seconds = 5.0"]
    assert _section(text, "[watch.notify]") == [
        "[watch.notify]", 'urls = ["***"]', 'on = ["done"]']
    assert "word@example" not in text


def test_the_notify_tables_are_declared_once() -> None:
    """A watch's route, [notify] and the checked NotifyConfig are one declaration, each adding
    only its own fields: a new [notify] key is one field of NotifyTable."""
    from watcherd.config.model import NotifyConfig

    def own(schema: type[Any], base: type[Any]) -> list[str]:
        return [name for name in table_keys(schema) if name not in table_keys(base)]

    assert issubclass(NotifyConfig, NotifyTable) and issubclass(NotifyTable, NotifyRoute)
    assert "batch_seconds" in own(NotifyTable, NotifyRoute)
    assert own(NotifyConfig, NotifyTable) == ["watches"]
    config = parse_config({"notify": {"batch_seconds": 3}}, source=None, env={}).notify
    assert (config.urls, config.on, config.batch_seconds, config.enabled) == (
        (), NotifyRoute().on, 3.0, False)


def test_config_show_writes_callback_webhook_and_http_from_their_declaration(
        tmp_path: Path) -> None:
    """[callback] and [http] are written by their declared keys (listen in the file's form,
    a note for a key not set); [webhook] by where its secret is; the secret never written."""
    from watcherd.config import secret_values
    from watcherd.configfile import effective_toml
    from watcherd.log import redact

    def shown(data: dict[str, Any]) -> str:
        config = parse_config(data, source=None, env={})
        return redact(effective_toml(config), secret_values(config))

    plain = shown({})
    assert _section(plain, "[callback]") == [
        "[callback]", "# listen: not set (results arrive by polling)"]
    assert _section(plain, "[webhook]") == [
        "[webhook]", "# secret: not set (no dashboard webhooks)"]
    assert _section(plain, "[http]") == [
        "[http]", 'listen = "127.0.0.1:8765"', "# token_file: not set (needed only off loopback)"]
    token = tmp_path / "token"
    token.write_text("abcdefghijklmnop-0123\n")
    secret = "whsec_" + base64.b64encode(b"a signing key of 24 bytes").decode()
    text = shown({"callback": {"listen": " [::1]:8787 "}, "webhook": {"secret": secret},
                  "http": {"listen": "[::]:9000", "token_file": str(token)}})
    assert _section(text, "[callback]") == [
        "[callback]", 'listen = "[::1]:8787"',
        "# public_url: not set (Gladia calls http://[::1]:8787 itself)"]
    assert _section(text, "[webhook]") == ["[webhook]", 'secret = "***"']
    assert _section(text, "[http]") == [
        "[http]", 'listen = "[::]:9000"', f"token_file = {json.dumps(str(token.resolve()))}"]
    assert "abcdefghijklmnop" not in text and secret not in text
    hook = tmp_path / "hook"
    hook.write_text(secret)
    text = shown({"callback": {"listen": "127.0.0.1:8787", "public_url": "https://x.example/"},
                  "webhook": {"secret_file": str(hook)}, "http": {"listen": ""}})
    assert _section(text, "[callback]") == [
        "[callback]", 'listen = "127.0.0.1:8787"', 'public_url = "https://x.example"']
    assert _section(text, "[webhook]") == [
        "[webhook]", f"secret_file = {json.dumps(str(hook.resolve()))}"]
    assert _section(text, "[http]") == ["[http]", 'listen = ""',
                                        "# token_file: not set (needed only off loopback)"]


def test_callback_webhook_and_http_are_declared_once() -> None:
    """Each checked table is its declaration, adding only what the file does not hold: the
    webhook's secret read (always there), the page's token read from token_file."""
    from watcherd.config.model import CallbackConfig, HttpConfig, WebhookConfig

    assert CORE_TABLES["callback"] is CallbackConfig
    assert table_keys(CallbackConfig) == ("listen", "public_url")
    assert issubclass(WebhookConfig, WebhookTable)
    assert table_keys(WebhookConfig) == table_keys(WebhookTable) == ("secret", "secret_file")
    assert issubclass(HttpConfig, HttpTable)
    assert [k for k in table_keys(HttpConfig) if k not in table_keys(HttpTable)] == ["token"]
    config = parse_config({"callback": {"listen": "127.0.0.1:8787"}}, source=None, env={})
    assert config.callback is not None
    assert (config.callback.host, config.callback.port, config.callback.listen) == (
        "127.0.0.1", 8787, "127.0.0.1:8787")
    assert (config.http.address, config.http.listen) == (("127.0.0.1", 8765), "127.0.0.1:8765")
