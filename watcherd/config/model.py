"""The configuration's shape: every table as a frozen dataclass, each default stated once."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import msgspec
import platformdirs
from msgspec import Meta

from watcherd.configkit import EngineOptions, EngineSection, Table, Word, table_keys
from watcherd.credentials import Secret
from watcherd.outputs import FORMATS
from watcherd.outputs.facts import MdTemplate
from watcherd.outputs.formats import DEFAULT_OUTPUTS
from watcherd.outputs.settings import OutputSettings, SubtitleNames
from watcherd.outputs.templates import DEFAULT_NAME
from watcherd.retry import RETRY_KEYS, RetryPolicy
from watcherd.roots import FollowLinks

if TYPE_CHECKING:
    # Types only: at run time the engines' sections are found through the engine registry
    # (engines import this module, so importing them here would make a cycle).
    from watcherd.engines.gladia.config import GladiaConfig
    from watcherd.engines.local.config import LocalConfig

__all__ = [
    "CORE_TABLES",
    "DEFAULT_HISTORY_DAYS",
    "DEFAULT_HTTP_LISTEN",
    "DEFAULT_LEASE_SECONDS",
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
    "RETRY_TABLE",
    "WATCH_ID_RE",
    "WEBHOOK_SECRET_PREFIX",
    "CallbackConfig",
    "Config",
    "EngineName",
    "EngineTable",
    "HooksConfig",
    "HttpConfig",
    "HttpTable",
    "JournalTable",
    "LogFormat",
    "LogLevel",
    "LogTable",
    "MetricsTable",
    "NodeTable",
    "NotifyConfig",
    "NotifyEvent",
    "NotifyRoute",
    "NotifyTable",
    "PollMode",
    "ScanTable",
    "WatchConfig",
    "WatchDefaults",
    "WebhookConfig",
    "WebhookTable",
    "default_journal_path",
    "default_watch_id",
    "engine_names",
    "engine_options",
    "engine_sections",
    "watch_roots",
]

# "auto" or a name from the engine registry (watcherd/engines/registry.py).
EngineName = str
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
PollMode = Literal["auto", "always", "never"]
# The formats [defaults] / [[watch]] outputs may list: whatever the outputs module writes.
OUTPUT_FORMATS: tuple[str, ...] = FORMATS



def engine_names() -> tuple[EngineName, ...]:
    """``auto`` and every registered engine (read when a config is parsed, not at import)."""
    from watcherd.engines.registry import ENGINES

    return ("auto", *ENGINES)


def engine_sections() -> tuple[EngineSection[Any], ...]:
    """Each engine's own table, declared by the engine (read when needed, not at import)."""
    from watcherd.engines.registry import config_sections

    return config_sections()


def engine_options() -> EngineOptions:
    """How the options of [defaults.options] / [watch.options] are checked: by their engine."""
    return next(s.options for s in engine_sections() if s.options is not None)


LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
POLL_MODES: tuple[PollMode, ...] = ("auto", "always", "never")
#: Which symbolic links a watch follows: only those that stay beneath its root (Samba's
#: ``wide links = no``), or any (a link in the inbox can then send any file the daemon can read).
FOLLOW_LINKS: tuple[FollowLinks, ...] = get_args(FollowLinks)

MIN_SCAN_INTERVAL_SECONDS = 5.0

DEFAULT_HTTP_LISTEN = "127.0.0.1:8765"
_HTTP_HOST, _, _HTTP_PORT = DEFAULT_HTTP_LISTEN.rpartition(":")
# A token shorter than this is guessable by a patient script on the network.
MIN_HTTP_TOKEN_CHARS = 16
WEBHOOK_SECRET_PREFIX = "whsec_"
#: A watch id: what the shared journal stores paths relative to (letters, digits, . _ -).
WATCH_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_LEASE_SECONDS = 30.0
# Events older than this many days are folded into a summary per file ([journal] history_days).
DEFAULT_HISTORY_DAYS = 365.0
FALLBACKS = ("none", "local")


@dataclass(frozen=True, kw_only=True)
class WatchDefaults:
    """The ``[defaults]`` table: what every ``[[watch]]`` (and ``run --watch DIR``) starts from.

    Its fields are the table's keys (configkit.SectionParser.section checks a table against
    their types and limits; what a type cannot say is a custom check in check.py).
    """

    include: tuple[Word, ...] = ()
    exclude: tuple[Word, ...] = ()
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    settle_seconds: Annotated[float, Meta(ge=0)] = 2.0
    recursive: bool = True
    poll: PollMode = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)
    fallback: str = "none"
    follow_links: FollowLinks = "inside"
    # Where outputs go, mirroring the source's path below its root; None: beside the source.
    output_dir: Path | None = None
    output_name: str = DEFAULT_NAME
    subtitle_names: SubtitleNames = "plain"
    md_template: MdTemplate | None = None
    # [watch.speakers]: (speaker number, 0-based; name).
    speakers: tuple[tuple[int, str], ...] = ()
    # Whether this folder's Gladia jobs are deleted once done; None: [gladia] delete_after.
    delete_after: str | None = None


@dataclass(frozen=True, kw_only=True)
class WatchConfig(WatchDefaults):
    """One ``[[watch]]`` table: a folder, with the ``[defaults]`` already applied."""

    path: Path
    # This folder's engine; None means the [engine] name of the whole config.
    engine: EngineName | None = None
    # The name the shared journal stores this folder's paths under ("" = derived from path).
    id: str = ""

    @property
    def watch_id(self) -> str:
        """The watch's id: its ``id``, or one derived from its path (:func:`default_watch_id`)."""
        return self.id or default_watch_id(self.path)

    @property
    def output_settings(self) -> OutputSettings:
        """What this watch asks of its outputs, as the outputs module takes it."""
        return OutputSettings(formats=tuple(self.outputs), output_dir=self.output_dir,
                              name=self.output_name, subtitle_names=self.subtitle_names,
                              md_template=self.md_template, speakers=self.speakers,
                              watch_id=self.watch_id)


_DEFAULTS_KEYS = table_keys(WatchDefaults)
# "notify" is checked with [notify] (config.check.ConfigChecker.notify), kept there.
_WATCH_KEYS = (*table_keys(WatchConfig), "notify")


def default_watch_id(path: Path) -> str:
    """A watch id from a folder's path: its last component and a short hash of the whole path.

    Stable for one path; two nodes that mount the share at different places derive different
    ids, so those must set ``[[watch]] id`` to the same name on every node.
    """
    digest = hashlib.blake2b(os.fsencode(str(path)), digest_size=3).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.name).strip("._-")[:40] or "root"
    return f"{stem}-{digest}"


def watch_roots(watches: Sequence[WatchConfig]) -> dict[str, str]:
    """``{watch id: local root}`` for a shared journal (paths stored relative to the ids)."""
    return {w.watch_id: str(w.path) for w in watches}


def _listen(address: tuple[str, int] | None) -> str:
    """An address as a ``listen`` key spells it ("" for none)."""
    if address is None:
        return ""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class CallbackConfig(Table, frozen=True):
    """The ``[callback]`` table: where the embedded listener binds and how Gladia reaches it."""

    # "HOST:PORT" in the file (the key listen), checked into (host, port); required.
    address: tuple[str, int] = msgspec.field(name="listen")
    # The URL at which Gladia reaches the listener (a reverse proxy or tunnel), without the
    # token; None means http://host:port itself.
    public_url: str | None = None

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def listen(self) -> str:
        """The address as ``[callback] listen`` spells it."""
        return _listen(self.address)


class WebhookTable(Table, frozen=True):
    """``[webhook]`` as the file writes it: the signing secret, inline or in a file."""

    secret: Secret | None = None
    # Where the secret is read from; None when it is given inline.
    secret_file: Path | None = None


class WebhookConfig(WebhookTable, frozen=True, kw_only=False):
    """The ``[webhook]`` table checked: the signing secret of Gladia's dashboard webhooks,
    read (inline or from secret_file) and always there."""

    secret: Secret


class HttpTable(Table, frozen=True):
    """``[http]`` as the file writes it: the local status page, /metrics and /healthz."""

    # "HOST:PORT" in the file (the key listen); None when ``listen = ""`` turned the page off.
    address: tuple[str, int] | None = msgspec.field(default=(_HTTP_HOST, int(_HTTP_PORT)),
                                                    name="listen")
    token_file: Path | None = None

    @property
    def listen(self) -> str:
        """The address as ``[http] listen`` spells it ("" when off)."""
        return _listen(self.address)


class HttpConfig(HttpTable, frozen=True):
    """The ``[http]`` table checked: its keys, and the token read from token_file."""

    # None without a token_file, or where it is not readable by a command that does not serve
    # the page. Not a key of the file.
    token: Secret | None = None


_CALLBACK_KEYS = table_keys(CallbackConfig)
_WEBHOOK_KEYS = table_keys(WebhookTable)


def _default_local() -> LocalConfig:
    # Through the registry: importing the local engine's package here would be a cycle.
    from watcherd.engines.registry import config_section

    local: LocalConfig = config_section("local").default()
    return local


class HooksConfig(Table, frozen=True):
    """The ``[hooks]`` table: commands (argv lists, no shell) run after a file ends."""

    on_done: tuple[str, ...] = ()
    on_failed: tuple[str, ...] = ()
    timeout_seconds: Annotated[float, Meta(ge=0.1)] = 60.0


# -- the core tables whose keys are checked against a declaration (configkit.Table); what a
# -- type cannot say (an engine's name, paths, URLs, a host name) is a custom check in check.py


class EngineTable(Table, frozen=True):
    """``[engine]``: which engine transcribes ("auto" or a registered engine's name)."""

    name: EngineName = "auto"
    # With fallback = "local", how long Gladia must be unreachable before a file goes local.
    fallback_after_seconds: Annotated[float, Meta(ge=0)] = 600.0


class ScanTable(Table, frozen=True):
    """``[scan]``: how often every watch is walked again, whatever the events said."""

    interval_seconds: Annotated[float, Meta(ge=MIN_SCAN_INTERVAL_SECONDS)] = 300.0


class LogTable(Table, frozen=True):
    """``[log]``: the log's form and level."""

    format: LogFormat = "auto"
    level: LogLevel = "info"


class MetricsTable(Table, frozen=True):
    """``[metrics]``: a Prometheus textfile (node_exporter's textfile collector)."""

    textfile: Path | None = None


class NodeTable(Table, frozen=True):
    """``[node]``: this daemon's name in a shared journal (None: the host name)."""

    name: str | None = None


class JournalTable(Table, frozen=True):
    """``[journal]``: the SQLite file, or the PostgreSQL URL shared by several nodes."""

    path: Path | None = None
    url: str | None = None
    # How long a node's claim on a source outlives its last renewal.
    lease_seconds: Annotated[float, Meta(gt=0, extra={
        "expected": "a number of seconds > 0 (default 30)"})] = DEFAULT_LEASE_SECONDS
    # Events older than this many days are folded into a summary per file.
    history_days: Annotated[float, Meta(ge=1)] = DEFAULT_HISTORY_DAYS


_JOURNAL_KEYS = table_keys(JournalTable)


#: ``[retry]``: its keys are RETRY_KEYS, each a number of seconds >= 0.01 whose default is
#: RetryPolicy's (stated there once).
RETRY_TABLE: type[msgspec.Struct] = msgspec.defstruct(
    "RetryTable",
    [(key, Annotated[float, Meta(ge=0.01)], getattr(RetryPolicy(), field_name))
     for key, field_name in RETRY_KEYS.items()],
    bases=(Table,), frozen=True)


#: What ``[notify] on`` may name: a file done, a file failed, work paused for a person.
NotifyEvent = Literal["done", "failed", "paused"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = get_args(NotifyEvent)
NOTIFY_EXTRA_HINT = "install the extra: pip install 'watcherd[notify]' (it brings Apprise)"


class NotifyRoute(Table, frozen=True, kw_only=False):
    """Where one watch's notifications go, as ``[[watch]] notify = {...}`` writes it: Apprise
    URLs (secrets: they hold tokens; checked in check.py) and the events sent (a key not set
    keeps ``[notify]``'s)."""

    urls: tuple[Secret, ...] = ()
    on: tuple[NotifyEvent, ...] = NOTIFY_EVENTS


class NotifyTable(NotifyRoute, frozen=True):
    """``[notify]`` as the file writes it: the route of every watch, and the batching."""

    # At most one message per route this often (a burst of files is one message).
    batch_seconds: Annotated[float, Meta(ge=0)] = 60.0


class NotifyConfig(NotifyTable, frozen=True):
    """The ``[notify]`` table checked (watcherd.notify): its keys, and each watch's route."""

    #: ``[[watch]] notify = {...}`` by watch root: that folder's own URLs and events (not a
    #: key of [notify]).
    watches: tuple[tuple[Path, NotifyRoute], ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether any notification can be sent at all."""
        return bool(self.urls) or any(route.urls for _, route in self.watches)


#: Each core table by its name in the file, with its declaration ("watch": each [[watch]]).
#: Their names are the top-level keys a config file may have, besides each engine's own table
#: ([gladia], [local]: engines/registry.config_sections).
CORE_TABLES: Mapping[str, type[Any]] = {
    "engine": EngineTable, "journal": JournalTable, "log": LogTable, "scan": ScanTable,
    "callback": CallbackConfig, "webhook": WebhookTable, "defaults": WatchDefaults,
    "hooks": HooksConfig, "notify": NotifyTable, "metrics": MetricsTable, "retry": RETRY_TABLE,
    "http": HttpTable, "node": NodeTable, "watch": WatchConfig,
}
_TOP_KEYS = tuple(CORE_TABLES)


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
    scan_interval_seconds: float = ScanTable().interval_seconds
    defaults: WatchDefaults = field(default_factory=WatchDefaults)
    callback: CallbackConfig | None = None
    webhook: WebhookConfig | None = None
    local: LocalConfig = field(default_factory=_default_local)
    # With fallback = "local", how long Gladia must be unreachable before a file goes local.
    fallback_after_seconds: float = EngineTable().fallback_after_seconds
    hooks: HooksConfig = field(default_factory=HooksConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    # A Prometheus textfile (node_exporter's textfile collector) refreshed while running.
    metrics_textfile: Path | None = None
    # Every retry wait and budget ([retry]; the defaults suit production).
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    http: HttpConfig = field(default_factory=HttpConfig)
    # A PostgreSQL journal shared by several nodes ([journal] url); None: the SQLite file at
    # journal_path (which then still names this node's state folder for its own files).
    journal_url: str | None = None
    # How long a node's claim on a source outlives its last renewal ([journal] lease_seconds).
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    # Events older than this are folded into a per-file summary ([journal] history_days).
    history_days: float = DEFAULT_HISTORY_DAYS
    # This daemon's name in a shared journal ([node] name; default the host name).
    node_name: str = field(default_factory=socket.gethostname)
    # What loads but is probably a mistake (an option watcherd does not know): logged at start.
    warnings: tuple[str, ...] = ()

    @property
    def journal_location(self) -> Path | str:
        """Where the journal is: the PostgreSQL URL when set, else the SQLite file."""
        return self.journal_url if self.journal_url is not None else self.journal_path


def default_journal_path() -> Path:
    """Where the journal lives when ``[journal] path`` is not set: the user state dir."""
    return Path(platformdirs.user_state_dir("watcherd")) / "journal.db"

