"""Open the journal a configuration names: the SQLite file, or the shared PostgreSQL database.

Kept apart from the backends so that psycopg stays optional: it is imported only when
``[journal] url`` is set, and its absence is a configuration error that says what to install.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from watcherd.config import Config, watch_roots
from watcherd.errors import ConfigError
from watcherd.journal._base import Journal
from watcherd.journal.sqlite import open_or_recover

if TYPE_CHECKING:
    from watcherd.journal.postgres import PostgresJournal

#: What to tell a user whose [journal] url cannot be used for want of the driver.
INSTALL_HINT = "pip install 'watcherd[postgres]'"


def postgres_journal_class() -> type[PostgresJournal]:
    """The PostgreSQL backend, or a config error naming the package to install."""
    try:
        from watcherd.journal.postgres import PostgresJournal
    except ImportError as exc:
        raise ConfigError(
            f"[journal] url needs the PostgreSQL driver psycopg, which is not installed "
            f"({exc.name or exc}): {INSTALL_HINT}"
        ) from None
    return PostgresJournal


def display_location(config: Config) -> str:
    """The journal's location fit for logs: the file, or the URL without its password."""
    if config.journal_url is None:
        return str(config.journal_path)
    try:
        from watcherd.journal.postgres import redact_url
    except ImportError:
        return "<the [journal] url>"
    return redact_url(config.journal_url)


def journal_exists(config: Config) -> bool:
    """Whether there is a journal to read (a database always is: opening says if it is not)."""
    return config.journal_url is not None or config.journal_path.exists()


def open_for_node(config: Config, *, node: str | None = None) -> Journal:
    """The daemon's journal: this node's writer (SQLite: exclusive, recovered if damaged).

    With a URL the node registers under ``[node] name`` (a second live node with that name is
    refused) and paths are stored relative to the watch ids.
    """
    if config.journal_url is None:
        return open_or_recover(config.journal_path)
    return postgres_journal_class().open(
        config.journal_url, node=node or config.node_name, lease_seconds=config.lease_seconds,
        roots=watch_roots(config.watches),
    )


def open_for_command(config: Config, *, readonly: bool) -> Journal:
    """A journal for a command (status, retry): no node, paths mapped through the watches."""
    if config.journal_url is None:
        return Journal.open(config.journal_path, readonly=readonly)
    return postgres_journal_class().open(
        config.journal_url, readonly=readonly, lease_seconds=config.lease_seconds,
        roots=watch_roots(config.watches),
    )


def one_shot_node(config: Config) -> str:
    """The node name of a one-shot ``transcribe`` run: never the running daemon's own."""
    return f"{config.node_name}/transcribe-{os.getpid()}"


__all__ = [
    "INSTALL_HINT",
    "display_location",
    "journal_exists",
    "one_shot_node",
    "open_for_command",
    "open_for_node",
    "postgres_journal_class",
]
