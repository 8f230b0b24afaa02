"""Open the journal a configuration names: the SQLite file, or the shared PostgreSQL database.

The configuration's side of opening; the backend itself is chosen in
:mod:`watcherd.journal.backends`.
"""

from __future__ import annotations

import os

from watcherd.config import Config, watch_roots
from watcherd.journal._base import Journal
from watcherd.journal.backends import INSTALL_HINT, open_journal, postgres_journal_class


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
    return open_journal(
        config.journal_url or config.journal_path, recover=True,
        node=node or config.node_name, lease_seconds=config.lease_seconds,
        roots=watch_roots(config.watches),
    )


def open_for_command(config: Config, *, readonly: bool) -> Journal:
    """A journal for a command (status, retry): no node, paths mapped through the watches."""
    return open_journal(
        config.journal_url or config.journal_path, readonly=readonly,
        lease_seconds=config.lease_seconds, roots=watch_roots(config.watches),
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
