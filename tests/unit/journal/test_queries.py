"""The journal's named queries (watcherd/journal/sql/queries.sql): parsed once, fit for both."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from watcherd.journal import ACTIVE_STATES, Journal
from watcherd.journal.queries import QUERIES, adapt, parse


class _AnyParam(dict[str, Any]):
    """Every named parameter bound to NULL: enough for SQLite to compile a statement."""

    def __missing__(self, key: str) -> None:
        return None


def test_every_sqlite_query_compiles_against_a_real_journal(tmp_path: Path) -> None:
    """Each statement SQLite runs prepares on a journal at the current schema."""
    Journal.open(tmp_path / "j.db").close()
    conn = sqlite3.connect(tmp_path / "j.db")
    try:
        for name, sql in QUERIES["sqlite"].by_name.items():
            try:
                conn.execute(f"EXPLAIN {sql}", _AnyParam())
            except sqlite3.Error as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{name}: {exc}: {sql}")
    finally:
        conn.close()


def test_no_template_left_and_placeholders_in_each_drivers_style() -> None:
    for dialect, queries in QUERIES.items():
        for name, sql in queries.by_name.items():
            assert "{" not in sql and "}" not in sql, (dialect, name, sql)
            if dialect == "postgres":
                # Every :name became %(name)s; only ::type casts keep a colon.
                assert not re.search(r"(?<![:\w]):\w", sql), (name, sql)
            else:
                assert "%(" not in sql, (name, sql)


def test_state_sets_come_from_the_one_list() -> None:
    """The active states in SQL are exactly watcherd.journal.ACTIVE_STATES."""
    sql = QUERIES["sqlite"]["leader_for"]
    written = re.search(r"state IN \(([^)]*)\)", sql)
    assert written is not None
    assert tuple(s.strip("'") for s in written.group(1).split(",")) == ACTIVE_STATES


def test_only_postgres_gets_what_only_postgres_has() -> None:
    assert "claim" in QUERIES["postgres"].by_name
    assert "claim" not in QUERIES["sqlite"].by_name
    assert "FOR UPDATE" in QUERIES["postgres"]["lock_sources_by_ids"]
    assert "FOR UPDATE" not in QUERIES["sqlite"]["lock_sources_by_ids"]


def test_adapt_turns_named_parameters_and_keeps_casts() -> None:
    text = "SELECT x::bigint, 5 % 2 FROM t WHERE a = :a AND b {ANY:ids}"
    assert adapt("postgres", text) == (
        "SELECT x::bigint, 5 %% 2 FROM t WHERE a = %(a)s AND b = ANY(%(ids)s)")
    assert adapt("sqlite", text) == (
        "SELECT x::bigint, 5 % 2 FROM t WHERE a = :a AND b IN (SELECT CASE WHEN"
        " substr(value, 1, 1) = char(1) THEN char(0) || substr(value, 2) ELSE value END"
        " FROM json_each(:ids))")


def test_a_variant_replaces_the_shared_statement_and_unknown_dialects_are_refused() -> None:
    parsed = parse("-- name: q\nSELECT 1;\n-- name: q (postgres)\nSELECT 2;\n")
    assert parsed["sqlite"]["q"] == "SELECT 1"
    assert parsed["postgres"]["q"] == "SELECT 2"
    with pytest.raises(ValueError, match="unknown dialect"):
        parse("-- name: q (oracle)\nSELECT 1;\n")
