"""Pieces every ``watcherd`` command shares: the --config option and error handling."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from watcherd.errors import (
    AuthError,
    ConfigError,
    GladiaError,
    JournalError,
    TransientGladiaError,
)

P = ParamSpec("P")
R = TypeVar("R")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Config file (default: $WATCHERD_CONFIG, ~/.config/watcherd/config.toml, "
    "/etc/watcherd/config.toml).",
)


def _fail(message: str, code: int) -> None:
    click.echo(f"watcherd: {message}", err=True)
    sys.exit(code)


def handles_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn watcherd's errors into one clear line on stderr and the documented exit code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            _fail(str(exc), 2)
        except JournalError as exc:
            _fail(str(exc), 2)
        except AuthError as exc:
            _fail(exc.describe(), 2)
        except TransientGladiaError as exc:
            _fail(f"{exc.describe()}; check the network and [gladia] api_url", 1)
        except GladiaError as exc:
            _fail(exc.describe(), 1)
        raise AssertionError("unreachable")

    return wrapper

watch_option = click.option(
    "--watch", "watch_dirs", multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Watch this folder too (repeatable; created if missing); needs no config file.",
)


def resolved_dirs(watch_dirs: tuple[Path, ...]) -> list[Path]:
    """The ``--watch`` folders as absolute paths (``~`` expanded, links resolved)."""
    return [d.expanduser().resolve() for d in watch_dirs]


def create_watch_dirs(dirs: list[Path]) -> list[Path]:
    """Create the ``--watch`` folders that do not exist yet; returns those it created.

    A quick-start user names a folder that a fresh machine lacks; making it is what they mean.
    A folder that cannot be made is a usage error that says why.
    """
    created = []
    for folder in dirs:
        if folder.is_dir():
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"--watch {folder}: cannot create the folder ({exc.strerror or exc}); create "
                "it yourself or pick another folder"
            ) from None
        created.append(folder)
    return created
