"""Configuration: find the TOML file, validate every key, return frozen dataclasses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

EngineName = Literal["auto", "gladia", "local"]
LogFormat = Literal["auto", "json", "console"]
PollMode = Literal["auto", "always", "never"]
OUTPUT_FORMATS = ("txt", "json", "srt", "vtt")


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
