"""The ``[gladia]`` table: how to reach the API and how much of it we may use at once.

Declared here, by the engine, as :data:`SECTION`; the config finds it through the engine
registry and knows none of its keys. A new key is one field of :class:`GladiaTable` (type,
limits, default, stated once) and a line of config.example.toml: checking it, the validated
:class:`GladiaConfig` (the table plus where the key came from) and `config show` follow.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

from watcherd.configkit import (
    DELETE_AFTER,
    EngineSection,
    Note,
    Row,
    SectionParser,
    Table,
    Text,
    table_keys,
    table_rows,
)
from watcherd.credentials import Secret, secret_problem, strip_secret
from watcherd.engines.gladia.options import DEFAULT_MODEL, OPTIONS
from watcherd.errors import ConfigError
from watcherd.log import REDACTED

__all__ = ["API_KEY_ENV_VAR", "DELETE_AFTER", "KEYS", "SECTION", "GladiaConfig", "GladiaTable"]

API_KEY_ENV_VAR = "GLADIA_API_KEY"
# When a job is deleted at Gladia: never (Gladia keeps it 12 months), or once it is done.
DeleteAfter = Literal["never", "done"]
#: What a file does when it would pass monthly_hours_limit: wait, or go to the local engine.
OverLimit = Literal["pause", "local"]
_OVER_LIMIT: tuple[str, ...] = get_args(OverLimit)
#: ``upload``: "audio" sends a video's (or an over-size file's) audio stream alone when PyAV
#: is installed; "original" always sends the file as it is.
UploadMode = Literal["audio", "original"]
_UPLOAD_MODES: tuple[str, ...] = get_args(UploadMode)
_Hours = Annotated[float, Meta(ge=0)]


class GladiaTable(Table, frozen=True):
    """``[gladia]`` as the file writes it: its keys are the fields, each default stated once
    (the key itself is one of api_key, api_key_file or $GLADIA_API_KEY)."""

    # Written as a string; read into a Secret at once, so no plain copy is ever kept.
    api_key: Secret | None = None
    api_key_file: Path | None = None
    api_url: Text = "https://api.gladia.io"
    max_concurrent_jobs: Annotated[int, Meta(ge=1)] = 3
    # What is uploaded: "audio" (a video's audio stream alone) or "original" (the file).
    upload: UploadMode = "audio"
    # Jobs created beyond the plan's concurrency, queued at Gladia so a slot that frees starts
    # the next one at once (None: as many as max_concurrent_jobs; 0: create only into a free slot).
    queue_ahead: Annotated[int, Meta(ge=0)] | None = None
    # Delete each job at Gladia once its outputs are written ("done"); a watch may override.
    delete_after: DeleteAfter = "never"
    # How much may be used (docs/gladia-contract.md, "Plans"): the plan's hours a month (the
    # free plan's 10), shown against the hours used.
    monthly_hours: _Hours = 10.0
    # Remote work stops before passing this many hours in a billing month (None: no limit).
    monthly_hours_limit: _Hours | None = None
    # What an hour costs, for the estimate in `status --usage` (0: no estimate).
    price_per_hour: _Hours = 0.0
    over_limit: OverLimit = "pause"
    # The day of the month (UTC) on which the plan's month starts (1 to 31; a shorter month
    # starts on its last day).
    billing_day: Annotated[int, Meta(ge=1, le=31,
                                     extra={"expected": "a day of the month from 1 to 31"})] = 1


KEYS = table_keys(GladiaTable)


class GladiaConfig(GladiaTable, frozen=True):
    """The ``[gladia]`` table checked: :class:`GladiaTable`'s keys, with the key itself read
    (``api_key`` is also set from api_key_file or $GLADIA_API_KEY) and where it came from."""

    # Where the key came from ("[gladia] api_key", "[gladia] api_key_file (PATH)",
    # "$GLADIA_API_KEY"), for doctor; never the key itself. Not a key of the file.
    api_key_origin: str | None = None

    @property
    def key_from_environment(self) -> bool:
        """Whether the key comes from $GLADIA_API_KEY (a service started by systemd or
        launchd does not see the shell's environment)."""
        return self.api_key_origin == f"${API_KEY_ENV_VAR}"

    def key_file_in(self, folder: Path) -> bool:
        """Whether ``api_key_file`` points into ``folder`` (e.g. systemd's credentials)."""
        return str(folder) in (self.api_key_origin or "")

    @property
    def jobs_ahead(self) -> int:
        """How many jobs may wait in Gladia's queue beyond the plan's concurrency."""
        return self.max_concurrent_jobs if self.queue_ahead is None else self.queue_ahead


def _url(p: SectionParser, value: Any, key: str) -> str:
    url = p.string(value, key).strip()
    parts = urlsplit(url)
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.query
            or parts.fragment):
        p.expected(key, "an http(s) URL such as \"https://api.gladia.io\"", value)
    return url.rstrip("/")


def _api_key(p: SectionParser, table: GladiaTable) -> tuple[Secret | None, str | None]:
    """The API key and where it came from: api_key, api_key_file, else $GLADIA_API_KEY."""
    if table.api_key is not None:
        return table.api_key, "[gladia] api_key"
    if table.api_key_file is not None:
        origin = f"[gladia] api_key_file ({table.api_key_file})"
        if p.need_key or os.access(table.api_key_file, os.R_OK):
            return p.secret_file(table.api_key_file, "gladia.api_key_file", "the API key"), origin
        return None, origin + ", not readable here"
    if p.env.get(API_KEY_ENV_VAR, "").strip():
        text = strip_secret(p.env[API_KEY_ENV_VAR])
        problem = secret_problem(text, "the API key")
        if problem is not None:
            # Not a key of the config file: the message names the variable alone.
            raise ConfigError(f"${API_KEY_ENV_VAR} {problem}")
        return Secret(text), f"${API_KEY_ENV_VAR}"
    return None, None


def parse(p: SectionParser, raw: Mapping[str, Any]) -> GladiaConfig:
    """Check ``[gladia]`` against :class:`GladiaTable`; the key may also come from
    $GLADIA_API_KEY."""
    table = p.section(raw, GladiaTable, "gladia", one_of=("api_key", "api_key_file", ""),
                      custom={"api_key": lambda value, key: p.secret_text(
                                  p.string(value, key, secret=True), key, "the API key"),
                              "api_key_file": p.path,
                              "api_url": lambda value, key: _url(p, value, key)})
    key, origin = _api_key(p, table)
    return GladiaConfig(**(msgspec.structs.asdict(table) | {"api_key": key}),
                        api_key_origin=origin)


# The keys written as they are (the API key is read, and shown by its origin only).
_SETTINGS = KEYS[2:]
# What `config show` says of a key that is not set.
_UNSET: dict[str, Callable[[GladiaConfig], str]] = {
    "queue_ahead": lambda g: f"as many as max_concurrent_jobs ({g.jobs_ahead})",
    "monthly_hours_limit": lambda g: "not set (remote work is never paused for hours)",
}


def _key_row(gladia: GladiaConfig) -> Row | Note:
    """How the API key is shown: the file it is read from, or where it comes from."""
    if gladia.api_key_file is not None:
        return ("api_key_file", gladia.api_key_file)
    if gladia.api_key_origin == f"${API_KEY_ENV_VAR}":
        return Note(f"api_key: from ${API_KEY_ENV_VAR} (not shown)")
    if gladia.api_key is not None:
        return ("api_key", REDACTED)
    return Note("api_key: not set (nor api_key_file, nor $GLADIA_API_KEY): the gladia engine "
                "is off")


def rows(gladia: GladiaConfig) -> list[Row | Note]:
    """``[gladia]`` as `config show` writes it: the key's origin, never the key."""
    return [_key_row(gladia), *table_rows(gladia, keys=_SETTINGS, unset=_UNSET)]


SECTION: EngineSection[GladiaConfig] = EngineSection(
    name="gladia", parse=parse, default=GladiaConfig, rows=rows, options=OPTIONS,
    internal_names={("gladia", "api_key_origin"): "api_key or api_key_file"},
    default_model=DEFAULT_MODEL,
)
