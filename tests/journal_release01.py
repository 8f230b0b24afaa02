"""The SQLite journal's schema as watcherd 0.1 built it (with sqlite-utils, step by step).

Kept as it was so the tests can make journals "by the current release" and check that the
numbered SQL migrations open them unchanged and build new journals with the same schema.
"""

from __future__ import annotations

import sqlite3

import sqlite_utils


def build(conn: sqlite3.Connection, version: int) -> None:
    """Create the schema up to ``version`` (1..3) as 0.1 did, and record the version."""
    db = sqlite_utils.Database(conn, execute_plugins=False)
    steps = {1: _schema_v1, 2: _schema_v2, 3: _schema_v3}
    for target in range(1, version + 1):
        steps[target](db)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()


def _schema_v1(db: sqlite_utils.Database) -> None:
    db["sources"].create(  # type: ignore[union-attr]
        {
            "id": int, "path": str, "watch_root": str, "state": str,
            "size": int, "mtime_ns": int, "dev": int, "inode": int, "changed_at": float,
            "sha256": str, "options_json": str, "content_key": str,
            "audio_url": str, "job_id": str, "submit_started_at": float,
            "attempts": int, "job_errors": int, "next_attempt_at": float,
            "last_error": str, "note": str, "output_base": str, "engine": str,
            "done_at": float, "created_at": float, "updated_at": float,
        },
        pk="id",
        not_null={"path", "watch_root", "state", "options_json", "attempts", "job_errors",
                  "created_at", "updated_at"},
    )
    db["sources"].create_index(["path"], unique=True)  # type: ignore[union-attr]
    db["sources"].create_index(["state", "next_attempt_at"])  # type: ignore[union-attr]
    db["sources"].create_index(["content_key"])  # type: ignore[union-attr]
    db["sources"].create_index(["output_base"])  # type: ignore[union-attr]
    db["events"].create(  # type: ignore[union-attr]
        {"id": int, "source_id": int, "at": float, "from_state": str, "to_state": str,
         "actor": str, "reason": str},
        pk="id",
        not_null={"source_id", "at", "to_state", "actor"},
    )
    db["events"].create_index(["source_id"])  # type: ignore[union-attr]
    db["results"].create(  # type: ignore[union-attr]
        {"content_key": str, "job_id": str, "job_json": str, "created_at": float},
        pk="content_key",
        not_null={"job_id", "job_json", "created_at"},
    )


def _schema_v2(db: sqlite_utils.Database) -> None:
    """Settling asks for unsettled pending sources oldest-change first: index that order."""
    db["sources"].create_index(  # type: ignore[union-attr]
        ["state", "content_key", "changed_at"], index_name="sources_unsettled"
    )
    db["sources"].create_index(["job_id"])  # type: ignore[union-attr]


def _schema_v3(db: sqlite_utils.Database) -> None:
    """How long finished Gladia jobs took, by kind: the poll schedule learns from it."""
    db["job_times"].create(  # type: ignore[union-attr]
        {"id": int, "at": float, "options_class": str, "audio_seconds": float,
         "seconds": float},
        pk="id",
        not_null={"at", "options_class", "seconds"},
    )
    db["job_times"].create_index(["options_class", "id"])  # type: ignore[union-attr]
    # The worker's queue in order, and the jobs that count against the plan: both read on
    # every pass, so both are partial indexes that hold only the rows they are about.
    db.execute("CREATE INDEX sources_queue ON sources(state, id) WHERE content_key IS NOT NULL")
    db.execute("CREATE INDEX sources_inflight ON sources(state)"
               " WHERE job_id IS NOT NULL OR submit_started_at IS NOT NULL")
    db.execute("CREATE INDEX sources_started ON sources(state) WHERE job_id IS NOT NULL"
               " OR submit_started_at IS NOT NULL OR audio_url IS NOT NULL")
    # Small facts about the journal itself (whether the last writer stopped cleanly).
    db["meta"].create({"key": str, "value": str}, pk="key")  # type: ignore[union-attr]



def migrated_to(conn: sqlite3.Connection, version: int) -> None:
    """Create the schema up to ``version`` with today's numbered migrations (a journal as an
    earlier watcherd at that schema left it), and record the version."""
    from watcherd.journal import migrations
    from watcherd.journal.sqlite import MIGRATIONS

    for step in MIGRATIONS[:version]:
        for statement in migrations.statements(step.text):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
