"""The one place that chooses a journal backend: a ``postgresql://`` URL or a SQLite file.

psycopg stays optional: the PostgreSQL backend is imported only for a URL, and its absence is
a configuration error that says what to install. :meth:`watcherd.journal.Journal.open` calls
:func:`open_journal` (registered below), so the interface module imports no backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from watcherd.errors import ConfigError
from watcherd.journal._base import Journal, register_opener
from watcherd.journal.sqlite import SQLiteJournal, open_or_recover

if TYPE_CHECKING:
    from watcherd.journal.postgres import PostgresJournal

__all__ = ["INSTALL_HINT", "is_postgres_url", "open_journal", "postgres_journal_class"]

#: URL schemes of the PostgreSQL backend.
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
#: What to tell a user whose [journal] url cannot be used for want of the driver.
INSTALL_HINT = "pip install 'watcherd[postgres]'"


def is_postgres_url(target: Path | str) -> bool:
    """Whether ``target`` names a PostgreSQL journal (else it is a SQLite file)."""
    return isinstance(target, str) and target.startswith(_POSTGRES_SCHEMES)


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


def open_journal(
    target: Path | str, *, exclusive: bool = False, readonly: bool = False,
    recover: bool = False, node: str | None = None, lease_seconds: float = 30.0,
    roots: Mapping[str, str] | None = None,
) -> Journal:
    """Open the journal at ``target``: a SQLite file, or the database a URL names.

    SQLite: ``exclusive`` takes the one-writer lock, ``recover`` (a daemon's own journal)
    also moves a damaged file aside. PostgreSQL: ``node`` registers this daemon under that
    name, ``lease_seconds`` and ``roots`` (``{watch id: local root}``) as for
    :meth:`PostgresJournal.open`.
    """
    if is_postgres_url(target):
        return postgres_journal_class().open(
            str(target), node=node, readonly=readonly, lease_seconds=lease_seconds,
            roots=roots,
        )
    if recover:
        return open_or_recover(Path(target))
    return SQLiteJournal.open(Path(target), exclusive=exclusive, readonly=readonly)


def _open(path: Path | str, *, exclusive: bool, readonly: bool) -> Journal:
    return open_journal(path, exclusive=exclusive, readonly=readonly)


register_opener(_open)
