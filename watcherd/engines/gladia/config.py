"""The ``[gladia]`` table: how to reach the API and how much of it we may use at once.

Declared here, by the engine, as :data:`SECTION`; the config finds it through the engine
registry and knows none of its keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from watcherd.configkit import EngineSection, Note, Row, SectionParser
from watcherd.credentials import Secret, secret_problem, strip_secret
from watcherd.engines.gladia.options import OPTIONS
from watcherd.errors import ConfigError
from watcherd.log import REDACTED

__all__ = ["API_KEY_ENV_VAR", "KEYS", "SECTION", "GladiaConfig"]

API_KEY_ENV_VAR = "GLADIA_API_KEY"
KEYS = ("api_key", "api_key_file", "api_url", "max_concurrent_jobs", "upload")
#: ``upload``: "audio" sends a video's (or an over-size file's) audio stream alone when PyAV
#: is installed; "original" always sends the file as it is.
UPLOAD_MODES = ("audio", "original")


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
    # What is uploaded: "audio" (a video's audio stream alone) or "original" (the file).
    upload: str = "audio"


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
    upload = p.choice(table.get("upload", "audio"), "gladia.upload", UPLOAD_MODES)
    return GladiaConfig(
        upload=upload,
        api_key=key,
        api_url=url.strip().rstrip("/"),
        max_concurrent_jobs=jobs,
        api_key_origin=origin,
        api_key_file=key_file,
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
    return [*shown, ("api_url", gladia.api_url),
            ("max_concurrent_jobs", gladia.max_concurrent_jobs), ("upload", gladia.upload)]


SECTION: EngineSection[GladiaConfig] = EngineSection(
    name="gladia", parse=parse, default=GladiaConfig, rows=rows, options=OPTIONS,
    internal_names={("gladia", "api_key_origin"): "api_key or api_key_file"},
)
