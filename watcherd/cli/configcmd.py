"""``watcherd config init`` and ``watcherd config show``: write a commented config, print the
effective one.

The commented config is the example that ships inside the package
(``watcherd/config.example.toml``, also at the top of the repository), with its ``[[watch]]``
table set to the folders given. ``show`` prints every setting watcherd would use, after the
defaults, ``$GLADIA_API_KEY`` and ``--watch`` are applied, in the file's own terms
(:mod:`watcherd.configfile`), with every secret replaced by ``***``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import click

from watcherd.cli._common import (
    config_option,
    create_watch_dirs,
    handles_errors,
    resolved_dirs,
    watch_option,
)
from watcherd.config import (
    CONFIG_ENV_VAR,
    Secret,
    load_config,
    user_config_path,
    with_extra_watches,
)
from watcherd.configfile import REDACTED, effective_toml
from watcherd.errors import ConfigError
from watcherd.outputs import atomic_write

# The example's own watch: replaced by the folders given to `config init`.
_EXAMPLE_WATCH = '[[watch]]\n# The folder to watch (required).\npath = "/srv/inbox"\n'
# A password inside a URL (postgresql://user:secret@host/db) is a secret too.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)[^/@\s]*(?P<at>@)", re.I)


def example_text() -> str:
    """The commented example config shipped inside the package."""
    return resources.files("watcherd").joinpath("config.example.toml").read_text("utf-8")


def initial_config(watch_dirs: Sequence[Path]) -> str:
    """The example config with its ``[[watch]]`` set to ``watch_dirs`` (commented out if none)."""
    text = example_text()
    if _EXAMPLE_WATCH not in text:
        raise AssertionError("config.example.toml lost its example [[watch]] table")
    if watch_dirs:
        tables = "\n".join(
            f"[[watch]]\n# The folder to watch (required).\npath = {json.dumps(str(d))}\n"
            for d in watch_dirs
        )
    else:
        tables = ("# [[watch]]\n# The folder to watch (required); or pass --watch DIR to "
                  "`watcherd run`.\n# path = \"~/Transcribe\"\n")
    return text.replace(_EXAMPLE_WATCH, tables, 1)


def default_config_target() -> Path:
    """Where ``config init`` writes without --config: $WATCHERD_CONFIG, else the user file."""
    named = os.environ.get(CONFIG_ENV_VAR, "")
    return Path(os.path.expanduser(named)) if named else user_config_path()


def write_initial_config(path: Path, watch_dirs: Sequence[Path]) -> None:
    """Write the commented config to ``path`` (private: it may hold the API key later)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, initial_config(watch_dirs).encode("utf-8"), mode=0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


# -- show -----------------------------------------------------------------------------------


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret and every password inside a URL replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED + m["at"], text)


# -- the commands ---------------------------------------------------------------------------


@click.group("config")
def config_group() -> None:
    """Write a commented config file, or print the configuration watcherd would use."""


@config_group.command("init")
@config_option
@watch_option
@click.option("--force", is_flag=True, help="Replace a config file that exists.")
@handles_errors
def init(config_path: Path | None, watch_dirs: tuple[Path, ...], force: bool) -> None:
    """Write a commented config file watching the --watch folders.

    It goes to --config PATH, else $WATCHERD_CONFIG, else ~/.config/watcherd/config.toml.
    """
    target = (config_path or default_config_target()).expanduser()
    if target.exists() and not force:
        raise ConfigError(f"{target} exists; edit it, or pass --force to replace it")
    dirs = resolved_dirs(watch_dirs)
    write_initial_config(target, dirs)
    click.echo(f"wrote {target}")
    # As `run --watch` does: the folder named is the folder meant, so it exists from now on.
    for folder in create_watch_dirs(dirs):
        click.echo(f"created {folder}")
    if not watch_dirs:
        click.echo("it watches nothing yet: set a [[watch]] path in it, or run it again with "
                   "--watch DIR", err=True)


@config_group.command("show")
@config_option
@watch_option
@handles_errors
def show(config_path: Path | None, watch_dirs: tuple[Path, ...]) -> None:
    """Print the effective configuration (defaults applied, secrets as ***)."""
    config = load_config(config_path, need_key=False)
    extra = resolved_dirs(watch_dirs)
    if extra:
        config = with_extra_watches(config, extra)
    secrets = [s.reveal() for s in _secrets_of(config)]
    click.echo(redact(effective_toml(config), secrets), nl=False)
    sys.stdout.flush()


def _secrets_of(value: Any) -> list[Secret]:
    """Every :class:`Secret` inside ``value`` (a config or any part of one)."""
    if isinstance(value, Secret):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [s for f in dataclasses.fields(value) for s in _secrets_of(getattr(value, f.name))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _secrets_of(v)]
    return []
