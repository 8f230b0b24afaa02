"""The ``[gladia]`` table: how to reach the API and how much of it we may use at once.

Declared here, by the engine, as :data:`SECTION`; the config finds it through the engine
registry and knows none of its keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from watcherd.configkit import DELETE_AFTER, EngineSection, Note, Row, SectionParser
from watcherd.credentials import Secret, secret_problem, strip_secret
from watcherd.engines.gladia.options import DEFAULT_MODEL, OPTIONS
from watcherd.errors import ConfigError
from watcherd.log import REDACTED

__all__ = ["API_KEY_ENV_VAR", "DELETE_AFTER", "KEYS", "OVER_LIMIT", "SECTION", "GladiaConfig"]

API_KEY_ENV_VAR = "GLADIA_API_KEY"
# When a job is deleted at Gladia: never (Gladia keeps it 12 months), or once it is done.
DeleteAfter = Literal["never", "done"]
#: What a file does when it would pass monthly_hours_limit: wait, or go to the local engine.
OVER_LIMIT = ("pause", "local")
OverLimit = Literal["pause", "local"]
# How much may be used: the usage keys (docs/gladia-contract.md, "Plans").
USAGE_KEYS = ("monthly_hours", "monthly_hours_limit", "price_per_hour", "over_limit",
              "billing_day")
KEYS = ("api_key", "api_key_file", "api_url", "max_concurrent_jobs", "queue_ahead",
        "upload", "delete_after",
        *USAGE_KEYS)
#: ``upload``: "audio" sends a video's (or an over-size file's) audio stream alone when PyAV
#: is installed; "original" always sends the file as it is.
UPLOAD_MODES = ("audio", "original")


@dataclass(frozen=True)
class GladiaConfig:
    """The ``[gladia]`` table: how to reach the API and how much of it we may use at once."""

    api_key: Secret | None = None
    api_url: str = "https://api.gladia.io"
    max_concurrent_jobs: int = 3
    # Jobs created beyond the plan's concurrency, queued at Gladia so a slot that frees starts
    # the next one at once (None: as many as max_concurrent_jobs; 0: create only into a free slot).
    queue_ahead: int | None = None
    # Where the key came from ("[gladia] api_key", "[gladia] api_key_file (PATH)",
    # "$GLADIA_API_KEY"), for doctor; never the key itself.
    api_key_origin: str | None = None
    # The file named by [gladia] api_key_file (None otherwise): `config show` prints it.
    api_key_file: Path | None = None
    # What is uploaded: "audio" (a video's audio stream alone) or "original" (the file).
    upload: str = "audio"
    # Delete each job at Gladia once its outputs are written ("done"); a watch may override.
    delete_after: DeleteAfter = "never"
    # The plan's hours a month (the free plan's 10), shown against the hours used.
    monthly_hours: float = 10.0
    # Remote work stops before passing this many hours in a billing month (None: no limit).
    monthly_hours_limit: float | None = None
    # What an hour costs, for the estimate in `status --usage` (0: no estimate).
    price_per_hour: float = 0.0
    over_limit: OverLimit = "pause"
    # The day of the month (UTC) on which the plan's month starts (1 to 31; a shorter month
    # starts on its last day).
    billing_day: int = 1

    @property
    def jobs_ahead(self) -> int:
        """How many jobs may wait in Gladia's queue beyond the plan's concurrency."""
        return self.max_concurrent_jobs if self.queue_ahead is None else self.queue_ahead


def parse(p: SectionParser, table: Mapping[str, Any]) -> GladiaConfig:
    """Check ``[gladia]``; the key may also come from $GLADIA_API_KEY."""
    p.check_keys(table, KEYS, "gladia")
    key: Secret | None = None
    origin: str | None = None
    key_file: Path | None = None
    if "api_key" in table and "api_key_file" in table:
        p.fail(
            "gladia.api_key",
            "set either api_key or api_key_file, not both",
        )
    if "api_key" in table:
        value = p.string(table["api_key"], "gladia.api_key", secret=True)
        key = p.secret_text(value, "gladia.api_key", "the API key")
        origin = "[gladia] api_key"
    elif "api_key_file" in table:
        key_file = p.path(table["api_key_file"], "gladia.api_key_file")
        origin = f"[gladia] api_key_file ({key_file})"
        if p.need_key or os.access(key_file, os.R_OK):
            key = p.secret_file(key_file, "gladia.api_key_file", "the API key")
        else:
            origin += ", not readable here"
    elif p.env.get(API_KEY_ENV_VAR, "").strip():
        text = strip_secret(p.env[API_KEY_ENV_VAR])
        problem = secret_problem(text, "the API key")
        if problem is not None:
            # Not a key of the config file: the message names the variable alone.
            raise ConfigError(f"${API_KEY_ENV_VAR} {problem}")
        key, origin = Secret(text), f"${API_KEY_ENV_VAR}"

    url = p.string(table.get("api_url", "https://api.gladia.io"), "gladia.api_url")
    parts = urlsplit(url.strip())
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
    ):
        p.expected("gladia.api_url", "an http(s) URL such as \"https://api.gladia.io\"", url)
    jobs = p.integer(
        table.get("max_concurrent_jobs", 3), "gladia.max_concurrent_jobs", minimum=1
    )
    delete_after: Any = p.choice(table.get("delete_after", "never"), "gladia.delete_after",
                                 DELETE_AFTER)
    hours = p.number(table.get("monthly_hours", 10.0), "gladia.monthly_hours", minimum=0)
    limit = (p.number(table["monthly_hours_limit"], "gladia.monthly_hours_limit", minimum=0)
             if "monthly_hours_limit" in table else None)
    price = p.number(table.get("price_per_hour", 0.0), "gladia.price_per_hour", minimum=0)
    over: Any = p.choice(table.get("over_limit", "pause"), "gladia.over_limit", OVER_LIMIT)
    day = p.integer(table.get("billing_day", 1), "gladia.billing_day", minimum=1)
    if day > 31:
        p.expected("gladia.billing_day", "a day of the month from 1 to 31", day)
    ahead = (p.integer(table["queue_ahead"], "gladia.queue_ahead", minimum=0)
             if "queue_ahead" in table else None)
    upload = p.choice(table.get("upload", "audio"), "gladia.upload", UPLOAD_MODES)
    return GladiaConfig(
        upload=upload,
        api_key=key,
        api_url=url.strip().rstrip("/"),
        max_concurrent_jobs=jobs,
        queue_ahead=ahead,
        api_key_origin=origin,
        api_key_file=key_file,
        delete_after=delete_after, monthly_hours=hours, monthly_hours_limit=limit,
        price_per_hour=price, over_limit=over, billing_day=day,
    )


def rows(gladia: GladiaConfig) -> list[Row | Note]:
    """``[gladia]`` as `config show` writes it: the key's origin, never the key."""
    shown: list[Row | Note] = []
    if gladia.api_key_file is not None:
        shown.append(("api_key_file", gladia.api_key_file))
    elif gladia.api_key_origin == f"${API_KEY_ENV_VAR}":
        shown.append(Note(f"api_key: from ${API_KEY_ENV_VAR} (not shown)"))
    elif gladia.api_key is not None:
        shown.append(("api_key", REDACTED))
    else:
        shown.append(Note("api_key: not set (nor api_key_file, nor $GLADIA_API_KEY): the "
                          "gladia engine is off"))
    limit: list[Row | Note] = (
        [("monthly_hours_limit", gladia.monthly_hours_limit)]
        if gladia.monthly_hours_limit is not None
        else [Note("monthly_hours_limit: not set (remote work is never paused for hours)")])
    return [*shown, ("api_url", gladia.api_url),
            ("max_concurrent_jobs", gladia.max_concurrent_jobs), ("upload", gladia.upload),
            ("queue_ahead", gladia.queue_ahead) if gladia.queue_ahead is not None else
            Note(f"queue_ahead: as many as max_concurrent_jobs ({gladia.jobs_ahead})"),
            ("delete_after", gladia.delete_after), ("monthly_hours", gladia.monthly_hours),
            *limit, ("price_per_hour", gladia.price_per_hour),
            ("over_limit", gladia.over_limit), ("billing_day", gladia.billing_day)]


SECTION: EngineSection[GladiaConfig] = EngineSection(
    name="gladia", parse=parse, default=GladiaConfig, rows=rows, options=OPTIONS,
    internal_names={("gladia", "api_key_origin"): "api_key or api_key_file"},
    default_model=DEFAULT_MODEL,
)
