"""``watcherd config init`` and ``watcherd config show``: write a commented config, print the
effective one.

The commented config is the example that ships inside the package
(``watcherd/config.example.toml``, also at the top of the repository), with its ``[[watch]]``
table set to the folders given. ``show`` prints every setting watcherd would use, after the
defaults, ``$GLADIA_API_KEY`` and ``--watch`` are applied, in the file's own terms
(:mod:`watcherd.configfile`), with every secret replaced by ``***``.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

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
    load_config,
    parse_config,
    secret_values,
    user_config_path,
    with_extra_watches,
)
from watcherd.configfile import effective_toml, toml_string
from watcherd.errors import ConfigError
from watcherd.log import REDACTED
from watcherd.log import redact as redact_secrets
from watcherd.outputs import atomic_write

# The example's own watch: replaced by the folders given to `config init`.
_EXAMPLE_WATCH = '[[watch]]\n# The folder to watch (required).\npath = "/srv/inbox"\n'
# A password inside a URL (postgresql://user:secret@host/db) is a secret too.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)[^/@\s]*(?P<at>@)", re.I)


def example_text() -> str:
    """The commented example config shipped inside the package."""
    return resources.files("watcherd").joinpath("config.example.toml").read_text("utf-8")


# What `config init` without --watch writes instead: a later `config init --watch DIR`
# puts the folder here.
_NO_WATCH = ("# [[watch]]\n# The folder to watch (required); or pass --watch DIR to "
             "`watcherd run`.\n# path = \"~/Transcribe\"\n")


def watch_tables(watch_dirs: Sequence[Path]) -> str:
    """One ``[[watch]]`` table per folder, as ``config init`` writes them."""
    return "\n".join(
        f"[[watch]]\n# The folder to watch (required).\npath = {toml_string(str(d))}\n"
        for d in watch_dirs
    )


def initial_config(watch_dirs: Sequence[Path]) -> str:
    """The example config with its ``[[watch]]`` set to ``watch_dirs`` (commented out if none)."""
    text = example_text()
    if _EXAMPLE_WATCH not in text:
        raise AssertionError("config.example.toml lost its example [[watch]] table")
    return text.replace(_EXAMPLE_WATCH, watch_tables(watch_dirs) if watch_dirs else _NO_WATCH,
                        1)


def with_watches_added(text: str, watch_dirs: Sequence[Path]) -> str:
    """``text`` (a config file) with a ``[[watch]]`` table for each folder, comments kept.

    Where ``config init`` left its commented-out watch, the tables go there (as if --watch had
    been given then); otherwise at the end, after whatever table the file ends with.
    """
    tables = watch_tables(watch_dirs)
    if _NO_WATCH in text:
        return text.replace(_NO_WATCH, tables, 1)
    return text + ("" if text.endswith("\n") or not text else "\n") + "\n" + tables


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
    text = redact_secrets(text, secrets)
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
    dirs = resolved_dirs(watch_dirs)
    if target.exists() and not force:
        if not dirs:
            raise ConfigError(f"{target} exists; edit it, add a folder with `watcherd config "
                              "init --watch DIR`, or pass --force to replace it")
        _add_watches(target, dirs)
        return
    write_initial_config(target, dirs)
    click.echo(f"wrote {target}")
    # As `run --watch` does: the folder named is the folder meant, so it exists from now on.
    for folder in create_watch_dirs(dirs):
        click.echo(f"created {folder}")
    if not dirs:
        click.echo(f"it watches nothing yet: add a folder with `watcherd config init --watch "
                   f"DIR{_config_flag(config_path)}` (it adds the folder to this file), or set "
                   "a [[watch]] path in it", err=True)


def _config_flag(config_path: Path | None) -> str:
    return f" --config {config_path}" if config_path is not None else ""


def _add_watches(target: Path, dirs: Sequence[Path]) -> None:
    """``config init --watch DIR`` on a file that exists: offer to add the folders to it.

    On a terminal it asks; otherwise it prints the lines to add and changes nothing (a
    script that meant to replace the file passes --force).
    """
    config = load_config(target, need_key=False)
    watched = {w.path for w in config.watches}
    new = [d for d in dirs if d not in watched]
    for folder in dirs:
        if folder in watched:
            click.echo(f"{target} already watches {folder}")
    if not new:
        return
    try:
        text = target.read_text("utf-8")
        mode = target.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read {target}: {exc.strerror or exc}") from None
    updated = with_watches_added(text, new)
    # The file as it would be must load (a folder inside another watch is refused here).
    parse_config(tomllib.loads(updated), source=target, env=os.environ, need_key=False)
    listed = ", ".join(str(d) for d in new)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        click.echo(f"{target} exists; to watch {listed} too, add these lines to it (or run "
                   "this command in a terminal, which offers to add them; --force replaces "
                   f"the file):\n\n{watch_tables(new)}", err=True)
        sys.exit(2)
    if not click.confirm(f"{target} exists; add {listed} to it as [[watch]]?", default=True):
        click.echo("nothing changed")
        sys.exit(1)
    try:
        atomic_write(target, updated.encode("utf-8"), mode=mode)
    except OSError as exc:
        raise ConfigError(f"cannot write {target}: {exc.strerror or exc}") from None
    click.echo(f"added {listed} to {target}")
    for folder in create_watch_dirs(list(new)):
        click.echo(f"created {folder}")


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
    click.echo(redact(effective_toml(config), secret_values(config)), nl=False)
    sys.stdout.flush()


