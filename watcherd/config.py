"""Configuration: find the TOML file, validate every key, return frozen dataclasses."""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import difflib
import hashlib
import ipaddress
import json
import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, cast
from urllib.parse import urlsplit

import platformdirs

from watcherd.credentials import SecretProblem, decode_secret_file, secret_problem, strip_secret
from watcherd.errors import ConfigError
from watcherd.outputs import FORMATS
from watcherd.retry import RETRY_KEYS, RetryPolicy

# "auto" or a name from the engine registry (watcherd/engines/registry.py).
EngineName = str
LogFormat = Literal["auto", "json", "console"]
PollMode = Literal["auto", "always", "never"]
FollowLinks = Literal["inside", "anywhere"]
# The formats [defaults] / [[watch]] outputs may list: whatever the outputs module writes.
OUTPUT_FORMATS: tuple[str, ...] = FORMATS
_T = TypeVar("_T")



def engine_names() -> tuple[EngineName, ...]:
    """``auto`` and every registered engine (read when a config is parsed, not at import)."""
    from watcherd.engines.registry import ENGINES

    return ("auto", *ENGINES)
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
POLL_MODES: tuple[PollMode, ...] = ("auto", "always", "never")
#: Which symbolic links a watch follows: only those that stay beneath its root (Samba's
#: ``wide links = no``), or any (a link in the inbox can then send any file the daemon can read).
FOLLOW_LINKS: tuple[FollowLinks, ...] = ("inside", "anywhere")
LOCAL_MODELS = ("base",)
LOCAL_DEVICES = ("auto", "cpu", "cuda")
LOCAL_COMPUTE_TYPES = ("auto", "default", "int8", "int8_float16", "int8_float32",
                       "int8_bfloat16", "int16", "float16", "bfloat16", "float32")

CONFIG_ENV_VAR = "WATCHERD_CONFIG"
API_KEY_ENV_VAR = "GLADIA_API_KEY"
# A module attribute (not a literal inside find_config) so tests can point it at tmp_path.
SYSTEM_CONFIG_PATH = Path("/etc/watcherd/config.toml")

MIN_SCAN_INTERVAL_SECONDS = 5.0
# Gladia allows 2000 characters of custom_metadata; watcherd keeps 500 for its own keys.
USER_METADATA_LIMIT = 1500
# Keys watcherd writes into custom_metadata itself (see pipeline); a user value would be lost.
RESERVED_METADATA_PREFIX = "wf_"

# Gladia's documented create-body fields (docs/gladia-contract.md), minus the two we refuse.
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
# In [watch.options] only: option names (or dotted paths into them) inherited from
# [defaults.options] that this watch drops before its own options are merged in.
UNSET_KEY = "unset"

# Gladia's transcription language codes (docs/gladia-contract.md); translation adds "wo".
LANGUAGE_CODES: frozenset[str] = frozenset({
    "af", "am", "ar", "as", "az", "ba", "be", "bg", "bn", "bo", "br", "bs", "ca", "cs", "cy",
    "da", "de", "el", "en", "es", "et", "eu", "fa", "fi", "fo", "fr", "gl", "gu", "ha", "haw",
    "he", "hi", "hr", "ht", "hu", "hy", "id", "is", "it", "ja", "jw", "ka", "kk", "km", "kn",
    "ko", "la", "lb", "ln", "lo", "lt", "lv", "mg", "mi", "mk", "ml", "mn", "mr", "ms", "mt",
    "my", "ne", "nl", "nn", "no", "oc", "pa", "pl", "ps", "pt", "ro", "ru", "sa", "sd", "si",
    "sk", "sl", "sn", "so", "sq", "sr", "su", "sv", "sw", "ta", "te", "tg", "th", "tk", "tl",
    "tr", "tt", "uk", "ur", "uz", "vi", "yi", "yo", "zh",
})
TRANSLATION_CODES: frozenset[str] = LANGUAGE_CODES | {"wo"}


@dataclass(frozen=True)
class _Field:
    """The documented type of one field inside a ``*_config`` option (docs/gladia-contract.md)."""

    kind: Literal[
        "bool", "int", "number", "string", "uri", "enum", "enum_list", "codes", "strings",
        "entity_types", "vocabulary", "spelling",
    ]
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | frozenset[str] = ()
    min_items: int = 0


_BOOL = _Field("bool")
OPTION_SCHEMAS: dict[str, dict[str, _Field]] = {
    "language_config": {
        "languages": _Field("codes", choices=LANGUAGE_CODES),
        "code_switching": _BOOL,
    },
    "diarization_config": {
        "number_of_speakers": _Field("int", minimum=1),
        "min_speakers": _Field("int", minimum=0),
        "max_speakers": _Field("int", minimum=0),
    },
    "translation_config": {
        "target_languages": _Field("codes", choices=TRANSLATION_CODES, min_items=1),
        "model": _Field("enum", choices=("base", "enhanced")),
        "match_original_utterances": _BOOL,
        "lipsync": _BOOL,
        "context_adaptation": _BOOL,
        "context": _Field("string"),
        "informal": _BOOL,
    },
    "subtitles_config": {
        "formats": _Field("enum_list", choices=SUBTITLE_FORMATS, min_items=1),
        "minimum_duration": _Field("number", minimum=0),
        "maximum_duration": _Field("number", minimum=1, maximum=30),
        "maximum_characters_per_row": _Field("int", minimum=1),
        "maximum_rows_per_caption": _Field("int", minimum=1, maximum=5),
        "style": _Field("enum", choices=("default", "compliance")),
    },
    "summarization_config": {
        "type": _Field("enum", choices=("general", "bullet_points", "concise")),
    },
    "pii_redaction_config": {
        "entity_types": _Field("entity_types"),
        "processed_text_type": _Field("enum", choices=("MARKER", "MASK")),
    },
    "custom_vocabulary_config": {
        "vocabulary": _Field("vocabulary", min_items=1),
        "default_intensity": _Field("number", minimum=0, maximum=1),
    },
    "custom_spelling_config": {"spelling_dictionary": _Field("spelling")},
    "audio_to_llm_config": {
        "prompts": _Field("strings", min_items=1),
        "model": _Field("string"),
    },
    "callback_config": {
        "url": _Field("uri"),
        "method": _Field("enum", choices=("POST", "PUT")),
    },
}
# Fields Gladia requires whenever their *_config object is sent.
REQUIRED_FIELDS: dict[str, str] = {
    "translation_config": "target_languages",
    "custom_vocabulary_config": "vocabulary",
    "custom_spelling_config": "spelling_dictionary",
    "audio_to_llm_config": "prompts",
    "callback_config": "url",
}
# Flags that do nothing useful (or are refused) without these config fields.
FLAG_NEEDS: dict[str, tuple[str, str, str]] = {
    "translation": ("translation_config", "target_languages",
                    'a non-empty array of language codes such as ["fr"]'),
    "custom_vocabulary": ("custom_vocabulary_config", "vocabulary",
                          'the words to favour, e.g. ["Gladia", "watcherd"]'),
    "custom_spelling": ("custom_spelling_config", "spelling_dictionary",
                        'a table such as { "Gladia" = ["gladya", "gladiah"] }'),
    "audio_to_llm": ("audio_to_llm_config", "prompts",
                     'a non-empty array of prompts such as ["List the action items"]'),
    "callback": ("callback_config", "url", "the URL Gladia calls when done"),
}

_TOP_KEYS = (
    "gladia", "engine", "local", "journal", "log", "scan", "callback", "webhook", "defaults",
    "hooks", "metrics", "retry", "http", "node",
    "watch",
)
_CALLBACK_KEYS = ("listen", "public_url")
_WEBHOOK_KEYS = ("secret", "secret_file")
_HTTP_KEYS = ("listen", "token_file")
DEFAULT_HTTP_LISTEN = "127.0.0.1:8765"
# A token shorter than this is guessable by a patient script on the network.
MIN_HTTP_TOKEN_CHARS = 16
WEBHOOK_SECRET_PREFIX = "whsec_"
_GLADIA_KEYS = ("api_key", "api_key_file", "api_url", "max_concurrent_jobs")
_DEFAULTS_KEYS = ("outputs", "settle_seconds", "recursive", "include", "exclude", "poll", "options",
                  "fallback", "follow_links")
_WATCH_KEYS = ("path", "id", "engine", *_DEFAULTS_KEYS)
_JOURNAL_KEYS = ("path", "url", "lease_seconds")
#: A watch id: what the shared journal stores paths relative to (letters, digits, . _ -).
WATCH_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_LEASE_SECONDS = 30.0
FALLBACKS = ("none", "local")


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
    # The file named by [gladia] api_key_file (None otherwise): `config show` prints it.
    api_key_file: Path | None = None


#: The outputs of a folder that does not choose (and of a file whose folder is gone).
DEFAULT_OUTPUTS: tuple[str, ...] = ("txt", "json")


def default_outputs(source: object) -> tuple[str, ...]:
    """The default outputs, for components built without a folder lookup (tests, tools)."""
    return DEFAULT_OUTPUTS


@dataclass(frozen=True, kw_only=True)
class WatchDefaults:
    """The ``[defaults]`` table: what every ``[[watch]]`` (and ``run --watch DIR``) starts from."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    settle_seconds: float = 2.0
    recursive: bool = True
    poll: PollMode = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)
    fallback: str = "none"
    follow_links: FollowLinks = "inside"


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


@dataclass(frozen=True)
class CallbackConfig:
    """The ``[callback]`` table: where the embedded listener binds and how Gladia reaches it."""

    host: str
    port: int
    # The URL at which Gladia reaches the listener (a reverse proxy or tunnel), without the
    # token; None means http://host:port itself.
    public_url: str | None = None


@dataclass(frozen=True)
class WebhookConfig:
    """The ``[webhook]`` table: the signing secret of Gladia's dashboard webhooks."""

    secret: Secret
    # Where the secret was read from ([webhook] secret_file); None when given inline.
    secret_file: Path | None = None


@dataclass(frozen=True)
class HttpConfig:
    """The ``[http]`` table: the local status page, /metrics and /healthz."""

    # None when ``listen = ""`` turned the page off.
    address: tuple[str, int] | None = ("127.0.0.1", 8765)
    token_file: Path | None = None
    # The token read from token_file (None without one, or where it is not readable by a
    # command that does not serve the page).
    token: Secret | None = None

    @property
    def listen(self) -> str:
        """The address as ``[http] listen`` spells it ("" when off)."""
        if self.address is None:
            return ""
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class LocalConfig:
    """The ``[local]`` table: the offline Whisper engine's settings."""

    # "base" (bundled) or the absolute path of a CTranslate2 Whisper model folder.
    model: str = "base"
    # "auto" (CUDA when CTranslate2 sees a GPU, else the CPU), "cpu" or "cuda".
    device: str = "auto"
    # "auto" is int8 on the CPU, float16 on CUDA; else a CTranslate2 compute type.
    compute_type: str = "auto"
    # 0 means "auto": chosen from the CPUs at start (watcherd.engines.local.runner.auto_layout).
    workers: int = 0
    cpu_threads: int = 0
    beam_size: int = 5


@dataclass(frozen=True)
class HooksConfig:
    """The ``[hooks]`` table: commands (argv lists, no shell) run after a file ends."""

    on_done: tuple[str, ...] = ()
    on_failed: tuple[str, ...] = ()
    timeout_seconds: float = 60.0


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
    callback: CallbackConfig | None = None
    webhook: WebhookConfig | None = None
    local: LocalConfig = field(default_factory=LocalConfig)
    # With fallback = "local", how long Gladia must be unreachable before a file goes local.
    fallback_after_seconds: float = 600.0
    hooks: HooksConfig = field(default_factory=HooksConfig)
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
    # This daemon's name in a shared journal ([node] name; default the host name).
    node_name: str = field(default_factory=socket.gethostname)

    @property
    def journal_location(self) -> Path | str:
        """Where the journal is: the PostgreSQL URL when set, else the SQLite file."""
        return self.journal_url if self.journal_url is not None else self.journal_path


# -- public API ------------------------------------------------------------------------------


def secret_values(value: object) -> list[str]:
    """Every secret inside ``value`` (a config or any part of one), for redaction."""
    if isinstance(value, Secret):
        return [value.reveal()] if value.reveal() else []
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [s for f in fields(value) for s in secret_values(getattr(value, f.name))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in secret_values(v)]
    return []



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
    return _Parser(source, env, need_key=need_key).parse(data)


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


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hint(name: str, choices: Sequence[str]) -> str:
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f'; did you mean "{lowered[close[0]]}"?' if close else ""


# Names of the internal model (printed by `config show` before it spoke the file's language)
# that people paste back: each says which key of the file it is. (table, name) -> the key.
_MODEL_NAMES: dict[tuple[str, str], str] = {
    ("", "source"): "nothing: the file itself is the source",
    ("", "local_model"): "[local] model",
    ("", "journal_path"): "[journal] path",
    ("", "journal_url"): "[journal] url",
    ("", "lease_seconds"): "[journal] lease_seconds",
    ("", "log_format"): "[log] format",
    ("", "log_level"): "[log] level",
    ("", "scan_interval_seconds"): "[scan] interval_seconds",
    ("", "fallback_after_seconds"): "[engine] fallback_after_seconds",
    ("", "metrics_textfile"): "[metrics] textfile",
    ("", "node_name"): "[node] name",
    ("", "watches"): "[[watch]] tables",
    ("gladia", "api_key_origin"): "api_key or api_key_file",
    ("http", "address"): "listen",
    ("http", "token"): "token_file",
    ("callback", "host"): "listen",
    ("callback", "port"): "listen",
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

    def __init__(self, source: Path | None, env: Mapping[str, str], *,
                 need_key: bool = True) -> None:
        self.source = source
        self.env = env
        self.need_key = need_key
        self.where = str(source) if source is not None else "config"
        # Every problem found so far ("WHERE: key: message"), raised together by parse().
        self.problems: list[str] = []
        # Relative paths in a config file mean "next to the config file", as people expect.
        self.base = source.parent if source is not None else Path.cwd()

    # --- errors

    def attempt(self, build: Callable[[], _T], fallback: _T) -> _T:
        """``build()``, or ``fallback`` with its problem noted, so the next part is checked too."""
        try:
            return build()
        except ConfigError as exc:
            self.problems.append(str(exc))
            return fallback

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self.where}: {key}: {message}")

    def expected(
        self, key: str, what: str, value: Any, *, secret: bool = False, hint: str = ""
    ) -> NoReturn:
        got = _kind(value) if secret else _show(value)
        self.fail(key, f"expected {what}, got {got}{hint}")

    def check_keys(self, table: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
        """Note every unknown key (the table's known keys are still checked)."""
        for name in table:
            if name not in allowed:
                label = f"[{path}] {name}" if path else name
                hint = _model_name_hint(path, name) or _hint(name, allowed)
                self.problems.append(f"{self.where}: {label}: unknown key{hint}")

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

    def local_model(self, value: Any) -> str:
        """``[local] model``: "base", or a CTranslate2 Whisper model folder (checked here)."""
        text = self.string(value, "local.model")
        if text in LOCAL_MODELS:
            return text
        folder = self.path(text, "local.model")
        from watcherd.engines.local.model import folder_problem

        problem = folder_problem(folder)
        if problem is not None:
            if not folder.exists():
                problem = (f'"{text}" is neither "base" (the bundled model) nor a folder: '
                           f"{folder} does not exist. watcherd never downloads a model: give "
                           "the path of a CTranslate2 Whisper model folder")
            self.fail("local.model", problem)
        return str(folder)

    # --- sections

    def parse(self, data: Mapping[str, Any]) -> Config:
        """Every section, each checked even when another is wrong; all problems raised at once.

        A section that fails is replaced by its defaults so the others can still be checked;
        the caller gets one ConfigError listing every problem (people fix them in one go).
        """
        self.check_keys(data, _TOP_KEYS, "")
        gladia = self.attempt(lambda: self.gladia(self.table(data, "gladia", "gladia")),
                              GladiaConfig())
        engine, fallback_after = self.attempt(lambda: self.engine(data), ("auto", 600.0))
        local_config = self.attempt(lambda: self.local(data), LocalConfig())
        hooks = self.attempt(lambda: self.hooks(data), HooksConfig())
        retry = self.attempt(lambda: self.retry(data), RetryPolicy())
        textfile = self.attempt(lambda: self.metrics(data), None)
        no_journal: tuple[str | None, Path, float] = (None, default_journal_path(),
                                                      DEFAULT_LEASE_SECONDS)
        journal_url, journal_path, lease_seconds = self.attempt(lambda: self.journal(data),
                                                                no_journal)
        node_name = self.attempt(
            lambda: self.node_name(self.table(data, "node", "node")), socket.gethostname())
        default_log: tuple[LogFormat, str] = ("auto", "info")
        log_format, level = self.attempt(lambda: self.log(data), default_log)
        interval = self.attempt(lambda: self.scan(data), 300.0)
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
            self.attempt(lambda: self.reject_own_callbacks(defaults, watches), None)
        http = self.attempt(lambda: self.http(self.table(data, "http", "http")), HttpConfig())
        if self.problems:
            raise ConfigError(_all_problems(self.where, self.problems))

        return Config(
            source=self.source,
            gladia=gladia,
            engine=engine,
            local_model=local_config.model,
            journal_path=journal_path,
            log_format=log_format,
            log_level=level,
            watches=watches,
            scan_interval_seconds=interval,
            defaults=defaults,
            callback=callback,
            webhook=webhook,
            local=local_config,
            fallback_after_seconds=fallback_after,
            hooks=hooks,
            metrics_textfile=textfile,
            retry=retry,
            http=http,
            journal_url=journal_url,
            lease_seconds=lease_seconds,
            node_name=node_name,
        )

    def engine(self, data: Mapping[str, Any]) -> tuple[EngineName, float]:
        """``[engine]``: the engine's name and the fallback delay."""
        table = self.table(data, "engine", "engine")
        self.check_keys(table, ("name", "fallback_after_seconds"), "engine")
        fallback_after = self.number(table.get("fallback_after_seconds", 600.0),
                                     "engine.fallback_after_seconds", minimum=0)
        return self.choice(table.get("name", "auto"), "engine.name", engine_names()), \
            fallback_after

    def local(self, data: Mapping[str, Any]) -> LocalConfig:
        table = self.table(data, "local", "local")
        self.check_keys(table, ("model", "device", "compute_type", "workers", "cpu_threads",
                                "beam_size"), "local")
        return LocalConfig(
            model=self.local_model(table.get("model", "base")),
            device=self.choice(table.get("device", "auto"), "local.device", LOCAL_DEVICES),
            compute_type=self.choice(table.get("compute_type", "auto"), "local.compute_type",
                                     LOCAL_COMPUTE_TYPES),
            workers=self.count_or_auto(table.get("workers", "auto"), "local.workers",
                                       minimum=1),
            # 0 stays accepted: it meant "let the engine choose" before "auto" existed.
            cpu_threads=self.count_or_auto(table.get("cpu_threads", "auto"),
                                           "local.cpu_threads", minimum=0),
            beam_size=self.integer(table.get("beam_size", 5), "local.beam_size", minimum=1),
        )

    def hooks(self, data: Mapping[str, Any]) -> HooksConfig:
        table = self.table(data, "hooks", "hooks")
        self.check_keys(table, ("on_done", "on_failed", "timeout_seconds"), "hooks")
        return HooksConfig(
            on_done=self.command(table.get("on_done", []), "hooks.on_done"),
            on_failed=self.command(table.get("on_failed", []), "hooks.on_failed"),
            timeout_seconds=self.number(table.get("timeout_seconds", 60.0),
                                        "hooks.timeout_seconds", minimum=0.1),
        )

    def retry(self, data: Mapping[str, Any]) -> RetryPolicy:
        table = self.table(data, "retry", "retry")
        self.check_keys(table, tuple(RETRY_KEYS), "retry")
        return RetryPolicy.from_table({
            key: self.number(value, f"retry.{key}", minimum=0.01)
            for key, value in table.items() if key in RETRY_KEYS
        })

    def metrics(self, data: Mapping[str, Any]) -> Path | None:
        table = self.table(data, "metrics", "metrics")
        self.check_keys(table, ("textfile",), "metrics")
        return self.path(table["textfile"], "metrics.textfile") if "textfile" in table \
            else None

    def journal(self, data: Mapping[str, Any]) -> tuple[str | None, Path, float]:
        """``[journal]``: the PostgreSQL URL (or None), the SQLite path and the lease."""
        table = self.table(data, "journal", "journal")
        self.check_keys(table, _JOURNAL_KEYS, "journal")
        journal_url = self.journal_url(table)
        journal_path = (
            self.path(table["path"], "journal.path") if "path" in table
            else default_journal_path()
        )
        lease_seconds = self.number(table.get("lease_seconds", DEFAULT_LEASE_SECONDS),
                                    "journal.lease_seconds", minimum=0)
        if lease_seconds <= 0:
            self.expected("journal.lease_seconds", "a number of seconds > 0 (default 30)",
                          table["lease_seconds"])
        return journal_url, journal_path, lease_seconds

    def log(self, data: Mapping[str, Any]) -> tuple[LogFormat, str]:
        table = self.table(data, "log", "log")
        self.check_keys(table, ("format", "level"), "log")
        log_format = cast(
            LogFormat, self.choice(table.get("format", "auto"), "log.format", LOG_FORMATS)
        )
        level = table.get("level", "info")
        # "INFO" is what people copy from other tools; accept any case.
        if isinstance(level, str) and level.lower() in LOG_LEVELS:
            level = level.lower()
        return log_format, self.choice(level, "log.level", LOG_LEVELS)

    def scan(self, data: Mapping[str, Any]) -> float:
        table = self.table(data, "scan", "scan")
        self.check_keys(table, ("interval_seconds",), "scan")
        return self.number(table.get("interval_seconds", 300.0), "scan.interval_seconds",
                           minimum=MIN_SCAN_INTERVAL_SECONDS)

    def journal_url(self, journal: Mapping[str, Any]) -> str | None:
        """``[journal] url``: a PostgreSQL URL (libpq form), never together with ``path``."""
        if "url" not in journal:
            return None
        if "path" in journal:
            self.fail("journal", "both path and url are set: url (PostgreSQL, shared by "
                      "several nodes) replaces path (a SQLite file); keep one of them")
        url = self.string(journal["url"], "journal.url", secret=True).strip()
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("postgresql", "postgres") or not (
            parts.netloc or "host=" in parts.query
        ):
            # Never echoed: the URL may hold a password.
            self.fail("journal.url", "expected a PostgreSQL URL such as "
                      '"postgresql://watcherd@db.example.com:5432/watcherd" or, over a Unix '
                      'socket, "postgresql:///watcherd?host=/run/postgresql"')
        return url

    def node_name(self, table: Mapping[str, Any]) -> str:
        """``[node] name``: this daemon's name in a shared journal (default the host name)."""
        if "name" not in table:
            return socket.gethostname()
        name = self.string(table["name"], "node.name")
        if len(name) > 200 or not name.isprintable() or name != name.strip():
            self.expected("node.name", "a short printable name without leading or trailing "
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

    def callback(self, table: Mapping[str, Any]) -> CallbackConfig | None:
        self.check_keys(table, _CALLBACK_KEYS, "callback")
        if not table:
            return None
        if "listen" not in table:
            self.fail("callback.listen", 'missing; expected "HOST:PORT" such as "127.0.0.1:8787"')
        host, port = self.listen_address(table["listen"], "callback.listen")
        public_url: str | None = None
        if "public_url" in table:
            url = self.string(table["public_url"], "callback.public_url").strip()
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
                self.expected(
                    "callback.public_url",
                    'an https URL without query, such as "https://watcherd.example.com" '
                    "(the callback token travels in it, so plain http is refused)",
                    url,
                )
            public_url = url.rstrip("/")
        return CallbackConfig(host=host, port=port, public_url=public_url)

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

    def http(self, table: Mapping[str, Any]) -> HttpConfig:
        self.check_keys(table, _HTTP_KEYS, "http")
        listen = table.get("listen", DEFAULT_HTTP_LISTEN)
        if isinstance(listen, str) and not listen.strip():
            return HttpConfig(address=None)  # listen = "" turns the page off
        address = self.listen_address(listen, "http.listen")
        token_file: Path | None = None
        token: Secret | None = None
        if "token_file" in table:
            token_file = self.path(table["token_file"], "http.token_file")
            if self.need_key or os.access(token_file, os.R_OK):
                token = self.secret_file(token_file, "http.token_file", "the token")
                if len(token.reveal()) < MIN_HTTP_TOKEN_CHARS:
                    self.fail("http.token_file",
                              f"{token_file} must hold one word of at least "
                              f"{MIN_HTTP_TOKEN_CHARS} characters (the token), nothing else")
        elif not _loopback(address[0]):
            self.fail(
                "http.token_file",
                f'required when [http] listen is not a loopback address (got "{listen}"): '
                "anyone on the network could see and retry your files; put a random token in "
                "a file readable only by watcherd (python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))' > FILE) and set token_file = \"FILE\", or "
                'listen on "127.0.0.1:PORT"',
            )
        return HttpConfig(address=address, token_file=token_file, token=token)

    def webhook(self, table: Mapping[str, Any]) -> WebhookConfig | None:
        self.check_keys(table, _WEBHOOK_KEYS, "webhook")
        if not table:
            return None
        if "secret" in table and "secret_file" in table:
            self.fail("webhook.secret", "set either secret or secret_file, not both")
        path: Path | None = None
        if "secret" in table:
            key = "webhook.secret"
            text = strip_secret(self.string(table["secret"], key, secret=True))
        elif "secret_file" in table:
            key = "webhook.secret_file"
            path = self.path(table["secret_file"], key)
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
        return WebhookConfig(secret=self.secret_text(text, key, "the signing secret"),
                             secret_file=path)

    def reject_own_callbacks(
        self, defaults: WatchDefaults, watches: Sequence[WatchConfig]
    ) -> None:
        """With the listener on, watcherd sets callback itself: a user callback would be lost."""
        tables = [("defaults.options", defaults.options)] + [
            (f"watch[{i}].options", w.options) for i, w in enumerate(watches, start=1)
        ]
        for prefix, options in tables:
            for name in ("callback", "callback_config"):
                if name in options:
                    self.fail(
                        f"{prefix}.{name}",
                        "not allowed with [callback] listen: watcherd sets callback and "
                        "callback_config on every job itself; remove one of the two",
                    )

    def gladia(self, table: Mapping[str, Any]) -> GladiaConfig:
        self.check_keys(table, _GLADIA_KEYS, "gladia")
        key: Secret | None = None
        origin: str | None = None
        key_file: Path | None = None
        if "api_key" in table and "api_key_file" in table:
            self.fail(
                "gladia.api_key",
                "set either api_key or api_key_file, not both",
            )
        if "api_key" in table:
            value = self.string(table["api_key"], "gladia.api_key", secret=True)
            key = self.secret_text(value, "gladia.api_key", "the API key")
            origin = "[gladia] api_key"
        elif "api_key_file" in table:
            key_file = self.path(table["api_key_file"], "gladia.api_key_file")
            origin = f"[gladia] api_key_file ({key_file})"
            if self.need_key or os.access(key_file, os.R_OK):
                key = self.secret_file(key_file, "gladia.api_key_file", "the API key")
            else:
                origin += ", not readable here"
        elif self.env.get(API_KEY_ENV_VAR, "").strip():
            text = strip_secret(self.env[API_KEY_ENV_VAR])
            problem = secret_problem(text, "the API key")
            if problem is not None:
                # Not a key of the config file: the message names the variable alone.
                raise ConfigError(f"${API_KEY_ENV_VAR} {problem}")
            key, origin = Secret(text), f"${API_KEY_ENV_VAR}"

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
            api_key_file=key_file,
        )

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
                self.fail(f"{prefix}.outputs",
                          f"expected at least one of {', '.join(OUTPUT_FORMATS)}")
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
        fields["fallback"] = (
            self.choice(table["fallback"], f"{prefix}.fallback", FALLBACKS)
            if "fallback" in table else base.fallback
        )
        fields["follow_links"] = (
            self.choice(table["follow_links"], f"{prefix}.follow_links", FOLLOW_LINKS)
            if "follow_links" in table else base.follow_links
        )
        return fields

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
        return tuple(watches)

    def watch(self, number: int, table: Any, defaults: WatchDefaults,
              watches: Sequence[WatchConfig]) -> WatchConfig:
        """The ``number``-th ``[[watch]]``, checked against the ``watches`` before it."""
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
        try:
            options = self.watch_options(table.get("options", {}), defaults, prefix)
        except ConfigError as exc:
            # Options errors can come from a merged value, so say which folder they hit.
            raise ConfigError(f"{exc} (in the watch of {path})") from None
        fields = self.watch_fields(table, prefix, defaults)
        engine = (
            self.choice(table["engine"], f"{prefix}.engine", engine_names())
            if "engine" in table else None
        )
        watch_id = ""
        if "id" in table:
            watch_id = self.string(table["id"], f"{prefix}.id")
            if not WATCH_ID_RE.fullmatch(watch_id):
                self.expected(f"{prefix}.id", "a name of letters, digits, '.', '_' or '-' "
                              "(at most 64, starting with a letter or digit), the same on "
                              "every node that watches this folder", watch_id)
        watch = WatchConfig(path=path, **fields, options=options, engine=engine, id=watch_id)
        for index, other in enumerate(watches, start=1):
            if other.watch_id == watch.watch_id:
                self.fail(f"{prefix}.id", f"{watch.watch_id!r} is already the id of "
                          f"watch[{index}] ({other.path}); give each [[watch]] its own id")
        return watch

    # --- Gladia options

    def watch_options(
        self, value: Any, defaults: WatchDefaults, prefix: str
    ) -> dict[str, Any]:
        """A watch's own options over the defaults: first ``unset``, then a deep merge."""
        key = f"{prefix}.options"
        if not isinstance(value, dict):
            self.expected(key, "a table of Gladia options", value)
        own = {name: item for name, item in value.items() if name != UNSET_KEY}
        base = dict(defaults.options)
        if UNSET_KEY in value:
            base = self.unset(base, value[UNSET_KEY], f"{key}.{UNSET_KEY}")
        options = _merge(base, self.options(own, key))
        self.check_option_rules(options, key)
        return options

    def unset(self, base: dict[str, Any], value: Any, key: str) -> dict[str, Any]:
        """``base`` without the options (or dotted fields of them) named in ``value``."""
        names = self.strings(value, key)
        result = copy.deepcopy(base)
        for index, name in enumerate(names, start=1):
            item_key = f"{key}[{index}]"
            parts = name.split(".")
            if parts[0] not in KNOWN_OPTIONS or not all(parts):
                self.expected(item_key, "the name of a Gladia option, or a dotted path into one "
                              'such as "diarization_config.max_speakers"', name,
                              hint=_hint(parts[0], KNOWN_OPTIONS))
            table: Any = result
            for part in parts[:-1]:
                table = table.get(part) if isinstance(table, dict) else None
            if not isinstance(table, dict) or parts[-1] not in table:
                self.fail(item_key, f'"{name}" is not set in [defaults.options], so there is '
                          "nothing to unset; remove it from the list")
            del table[parts[-1]]
        return result

    def options(self, value: Any, prefix: str) -> dict[str, Any]:
        """Type-check one options table on its own; returns a deep copy."""
        if not isinstance(value, dict):
            self.expected(prefix, "a table of Gladia options", value)
        for name, item in value.items():
            key = f"{prefix}.{name}"
            if name == UNSET_KEY:
                self.fail(key, "only allowed in [watch.options], where it removes options "
                          "inherited from [defaults.options]")
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
                if name in OPTION_SCHEMAS:
                    self.config_table(item, OPTION_SCHEMAS[name], key)
        self.check_metadata_keys(value, prefix)
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
        elif isinstance(value, float) and not math.isfinite(value):
            self.expected(key, "a finite number (JSON has no inf or nan)", value)

    def config_table(self, table: Mapping[str, Any], schema: Mapping[str, _Field],
                     prefix: str) -> None:
        """Each field of one ``*_config`` table against its documented type."""
        for name, value in table.items():
            spec = schema.get(name)
            if spec is None:
                raise ConfigError(
                    f"{self.where}: [{prefix}] {name}: unknown field of "
                    f"{prefix.rsplit('.', 1)[-1]}{_hint(name, list(schema))}"
                )
            self.config_field(value, spec, f"{prefix}.{name}")

    def config_field(self, value: Any, spec: _Field, key: str) -> None:
        kind = spec.kind
        if kind == "bool":
            self.boolean(value, key)
        elif kind == "int":
            self.bounded(value, key, spec, integer=True)
        elif kind == "number":
            self.bounded(value, key, spec, integer=False)
        elif kind == "string":
            self.string(value, key)
        elif kind == "uri":
            parts = urlsplit(value.strip()) if isinstance(value, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                self.expected(key, "an http(s) URL", value)
        elif kind == "enum":
            self.choice(value, key, sorted(spec.choices) if isinstance(
                spec.choices, frozenset) else spec.choices)
        elif kind in ("enum_list", "codes", "strings"):
            items = self.strings(value, key)
            if len(items) < spec.min_items:
                self.fail(key, _at_least(spec.min_items, kind))
            if kind == "enum_list":
                for index, item in enumerate(items, start=1):
                    self.choice(item, f"{key}[{index}]", tuple(spec.choices))
            elif kind == "codes":
                for index, item in enumerate(items, start=1):
                    self.language_code(item, f"{key}[{index}]", spec.choices)
        elif kind == "entity_types":
            # The OAS says one value, the docs an array (docs/gladia-contract.md): accept both.
            if not isinstance(value, str):
                items = self.strings(value, key)
                if not items:
                    self.fail(key, _at_least(1, "strings"))
            else:
                self.string(value, key)
        elif kind == "vocabulary":
            self.vocabulary(value, key, spec)
        elif kind == "spelling":
            self.spelling(value, key)

    def bounded(self, value: Any, key: str, spec: _Field, *, integer: bool) -> None:
        low, high = spec.minimum, spec.maximum
        noun = "an integer" if integer else "a number"
        if low is not None and high is not None:
            what = f"{noun} from {low:g} to {high:g}"
        elif low is not None:
            what = f"{noun} >= {low:g}"
        else:
            what = noun
        ok = not isinstance(value, bool) and (
            isinstance(value, int) if integer else isinstance(value, int | float)
        )
        if not ok or (low is not None and value < low) or (high is not None and value > high):
            self.expected(key, what, value)

    def language_code(self, value: str, key: str, codes: tuple[str, ...] | frozenset[str]
                      ) -> None:
        if value not in codes:
            lowered = value.lower()
            hint = f'; did you mean "{lowered}"?' if lowered in codes else ""
            self.expected(key, 'one of Gladia\'s language codes such as "en", "fr" or "de"',
                          value, hint=hint)

    def vocabulary(self, value: Any, key: str, spec: _Field) -> None:
        if not isinstance(value, list):
            self.expected(key, "an array of words (strings or { value = ... } tables)", value)
        if len(value) < spec.min_items:
            self.fail(key, 'expected at least one word, e.g. ["Gladia"]')
        schema = {
            "value": _Field("string"),
            "intensity": _Field("number", minimum=0, maximum=1),
            "pronunciations": _Field("strings"),
            "language": _Field("codes"),
        }
        for index, item in enumerate(value, start=1):
            item_key = f"{key}[{index}]"
            if isinstance(item, str):
                self.string(item, item_key)
                continue
            if not isinstance(item, dict):
                self.expected(item_key, "a string or a { value = ... } table", item)
            if "value" not in item:
                self.fail(f"{item_key}.value", "missing; expected the word itself")
            for name, field_value in item.items():
                if name not in schema:
                    raise ConfigError(f"{self.where}: [{item_key}] {name}: unknown field of a "
                                      f"vocabulary entry{_hint(name, list(schema))}")
                if name == "language":
                    self.string(field_value, f"{item_key}.language")
                    self.language_code(field_value, f"{item_key}.language", LANGUAGE_CODES)
                else:
                    self.config_field(field_value, schema[name], f"{item_key}.{name}")

    def spelling(self, value: Any, key: str) -> None:
        if not isinstance(value, dict) or not value:
            self.expected(key, 'a table such as { "Gladia" = ["gladya", "gladiah"] }', value)
        for name, variants in value.items():
            items = self.strings(variants, f"{key}.{name}")
            if not items:
                self.fail(f"{key}.{name}", "expected at least one spelling variant")

    def check_metadata_keys(self, options: Mapping[str, Any], prefix: str) -> None:
        metadata = options.get("custom_metadata", {})
        for name in metadata:
            if name.startswith(RESERVED_METADATA_PREFIX):
                self.fail(
                    f"{prefix}.custom_metadata.{name}",
                    f'keys starting with "{RESERVED_METADATA_PREFIX}" are reserved for watcherd',
                )

    def check_option_rules(self, options: Mapping[str, Any], prefix: str) -> None:
        """Checks on the options that will actually be sent (after merging)."""
        for flag, (config_name, needed, example) in FLAG_NEEDS.items():
            if options.get(flag) and not options.get(config_name, {}).get(needed):
                self.fail(
                    f"{prefix}.{flag}",
                    f"{flag} = true needs {config_name}.{needed}, {example}",
                )
        for config_name, needed in REQUIRED_FIELDS.items():
            if config_name in options and needed not in options[config_name]:
                self.fail(
                    f"{prefix}.{config_name}",
                    f"missing {needed}: Gladia requires it whenever {config_name} is sent "
                    f"(or unset {config_name} in this watch)",
                )
        speakers = options.get("diarization_config", {})
        low, high = speakers.get("min_speakers"), speakers.get("max_speakers")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            self.fail(
                f"{prefix}.diarization_config",
                f"min_speakers ({low}) is greater than max_speakers ({high})",
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


def _at_least(count: int, kind: str) -> str:
    if kind == "codes":
        return 'expected at least one language code, e.g. ["fr"]'
    if kind == "enum_list":
        return 'expected at least one of "srt", "vtt"'
    return f"expected at least {count} item{'s' if count > 1 else ''}"
