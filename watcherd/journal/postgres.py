"""The PostgreSQL journal: the SQLite journal's interface, shared by several watcherd nodes.

A connector: the journal's logic is :class:`~watcherd.journal.sqljournal.SQLJournal`'s, its
statements are in ``sql/queries.sql``; here are the connection, its session settings, the
migrations (``sql/postgres/NNNN_*.sql``) and what several nodes need on top of it:

- leases: a node ``claim``\\s the sources it works on (``SELECT … FOR UPDATE SKIP LOCKED``,
  only rows nobody holds or whose lease expired), ``renew``\\s them while it works and
  ``release``\\s them when done; a node that dies loses them after ``lease_seconds``. Lease
  times are the server's clock, so the nodes' clocks need not agree. A transition on a source
  that another node holds a live lease on is refused (:class:`LeaseLost`).
- the create intent: :meth:`PostgresJournal.take_create_intent` moves a source to
  ``submitting`` and writes a row unique per content key in the same transaction, so two
  nodes that see the same content never both create its job (and, given ``max_in_flight``,
  the plan's concurrency is counted for the whole account under one lock);
- node names: a running node holds a session advisory lock on its name, so a second node with
  the same name is refused while the first one's connection lives;
- LISTEN/NOTIFY: every committed change that may make work is announced on
  :data:`NOTIFY_CHANNEL`; :meth:`PostgresJournal.wait_for_change` lets an idle node sleep
  until one arrives instead of polling.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import structlog
from psycopg.rows import dict_row

from watcherd.errors import JournalError
from watcherd.journal import migrations
from watcherd.journal._base import (
    UNKNOWN_ID,
    CreateIntentHeld,
    JournalSpace,
    LeaseLost,
    NodeNameTaken,
    PlanFull,
    Source,
)
from watcherd.journal.sqljournal import SQLJournal, _check_columns, assignments, insert_source
from watcherd.journal.stored import (
    PATH_COLUMNS,
    SOURCE_FIELDS,
    from_stored,
    pg_column_value,
    pg_decode_path,
    pg_encode_path,
    pg_local_path,
    pg_stored_path,
    pg_text,
    to_stored,
)
from watcherd.journal.unavailable import PG_UNREACHABLE, JournalUnavailable, postgres_reason

__all__ = ["NOTIFY_CHANNEL", "SCHEMA_VERSION", "CreateIntent", "CreateIntentHeld", "Lease",
           "LeaseLost", "NodeNameTaken", "PlanFull", "PostgresJournal", "from_stored",
           "pg_decode_path", "pg_encode_path", "redact_url", "to_stored"]

_log = structlog.get_logger("watcherd.journal")

# The channel every write that may make work for another node is announced on.
NOTIFY_CHANNEL = "watcherd_journal"

DbConn = psycopg.Connection[dict[str, Any]]


MIGRATIONS = migrations.load("postgres")
SCHEMA_VERSION = len(MIGRATIONS)


def _lock_key(text: str) -> int:
    """A stable signed 64-bit advisory lock key for a name."""
    digest = hashlib.blake2b(f"watcherd:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


_MIGRATION_LOCK = _lock_key("migrate")
_PLAN_LOCK = _lock_key("plan-concurrency")
_SEARCH_LOCK = _lock_key("search-backlog")


# -- values ------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The URL with any password replaced, fit for logs and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<the [journal] url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _scrub(message: str, url: str) -> str:
    """An error text with the URL's password (if any) cut out."""
    secrets = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        if parts.password:
            secrets.append(parts.password)
        secrets += [v for k, v in parse_qsl(parts.query) if k == "password" and v]
    for secret in secrets:
        message = message.replace(secret, "***")
    return message.strip().splitlines()[0] if message.strip() else message


# -- errors and records --------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    """A live lease: which node works on a source, until when (server clock, epoch seconds)."""

    source_id: int
    node: str
    until: float


@dataclass(frozen=True)
class CreateIntent:
    """The row that makes the intent to create a job unique per content key."""

    content_key: str
    node: str | None
    source_id: int
    at: float


# -- connecting and migrating --------------------------------------------------------------


def connect(url: str) -> DbConn:
    """A connection (autocommit, dict rows) to the journal database, errors made clear."""
    try:
        conn: DbConn = psycopg.connect(url, autocommit=True, row_factory=dict_row,
                                       connect_timeout=10)
    except psycopg.Error as exc:
        # `from None`: libpq may echo a malformed connection string, password included.
        raise JournalError(
            f"cannot reach the journal database {redact_url(url)}: {_scrub(str(exc), url)}; "
            "check [journal] url, that PostgreSQL is running and that it accepts this user"
        ) from None
    try:
        row = conn.execute("SHOW server_encoding").fetchone()
    except psycopg.Error as exc:
        conn.close()
        raise JournalError(f"the journal database {redact_url(url)} does not answer: "
                           f"{_scrub(str(exc), url)}") from None
    encoding = row["server_encoding"] if row else "?"
    if encoding.upper() not in ("UTF8", "UTF-8"):
        conn.close()
        raise JournalError(
            f"the journal database {redact_url(url)} uses the {encoding} encoding; watcherd "
            "needs UTF8: create it with CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0"
        )
    return conn


def schema_version(conn: DbConn) -> int:
    """The schema version of the journal in this database (0: none yet)."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL AS present").fetchone()
    if row is None or not row["present"]:
        return 0
    row = conn.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version").fetchone()
    return int(row["v"]) if row else 0


def migrate(conn: DbConn, display_url: str) -> None:
    """Bring the schema to SCHEMA_VERSION, one numbered SQL file at a time, under a lock.

    One transaction (PostgreSQL's DDL is transactional): nodes starting together wait for
    the first one's migration instead of racing it, and a failed step leaves nothing behind.
    """
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
            current = schema_version(conn)
            if current > SCHEMA_VERSION:
                raise JournalError(
                    f"the journal {display_url} was written by a newer watcherd (schema "
                    f"{current}, this one knows {SCHEMA_VERSION}); upgrade watcherd"
                )
            for step in MIGRATIONS:
                if step.version <= current:
                    continue
                conn.execute(step.text.encode())
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                    (step.version, step.name, time.time()),
                )
    except psycopg.Error as exc:
        raise JournalError(
            f"cannot create or update the journal schema in {display_url}: "
            f"{_scrub(str(exc), display_url)}; the database user needs CREATE rights on its "
            "schema (or let the database owner start watcherd once)"
        ) from None


def check_version(conn: DbConn, display_url: str) -> int:
    """For readers: the schema must exist and not be newer than this watcherd knows."""
    version = schema_version(conn)
    if version == 0:
        raise JournalError(
            f"no journal in {display_url} yet: start `watcherd run` with this [journal] url "
            "first, or pass the --config that names your journal"
        )
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"the journal {display_url} was written by a newer watcherd (schema {version}); "
            "upgrade watcherd"
        )
    return version


def _check_node_name(name: str) -> None:
    if not name or len(name) > 200 or not name.isprintable() or name != name.strip():
        raise JournalError(
            f"[node] name {name!r} is not usable: give a short printable name without "
            "leading or trailing spaces (the default is the host name)"
        )


#: The journal's tables, whose sizes ``status`` and ``doctor`` show.
_JOURNAL_TABLES = ("sources", "events", "results", "folded_history", "job_times", "meta",
                  "nodes", "create_intents")

# -- the journal ---------------------------------------------------------------------------


class PostgresJournal(SQLJournal):
    """The PostgreSQL journal. Open it with :meth:`open`; close it with :meth:`close`."""

    dialect = "postgres"
    notify_channel = NOTIFY_CHANNEL
    #: Several nodes work this journal together: the worker leases what it drives.
    shared = True

    def __init__(self, url: str, conn: DbConn, *, readonly: bool,
                 lease_seconds: float, roots: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.url = url  # may hold a password: show display_url instead
        self.display_url = redact_url(url)
        self.readonly = readonly
        self.lease_seconds = lease_seconds
        # This daemon's name once registered (None for commands like status and retry).
        self.node: str | None = None
        # Whether this node's previous run closed the journal (a crash leaves it False).
        self.stopped_cleanly = True
        self._conn: DbConn = conn
        self._listen_conn: psycopg.Connection[Any] | None = None
        # This node's {watch id: local root}: paths are stored relative to watch ids.
        self.roots: dict[str, str] = dict(roots or {})

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    def open(  # type: ignore[override]  # a factory: a URL and a node instead of a file
        cls, url: str, *, node: str | None = None, readonly: bool = False,
        lease_seconds: float = 30.0, roots: Mapping[str, str] | None = None,
    ) -> PostgresJournal:
        """Open (creating and migrating if needed) the journal in the database at ``url``.

        With ``node``, this process registers as that node (refused with
        :class:`NodeNameTaken` while another live node has the name) and starts listening
        for changes. ``readonly`` opens an existing journal for inspection. ``roots`` is this
        node's ``{watch id: local root}``: paths under a root are stored relative to its id.
        """
        if lease_seconds <= 0:
            raise JournalError(f"[journal] lease_seconds must be positive, not {lease_seconds}")
        conn = connect(url)
        try:
            display = redact_url(url)
            if readonly:
                conn.execute("SET default_transaction_read_only = on")
                check_version(conn, display)
            else:
                migrate(conn, display)
            journal = cls(url, conn, readonly=readonly, lease_seconds=lease_seconds,
                          roots=roots)
            if node is not None and not readonly:
                journal.register_node(node)
                # Listening from the start: a change committed between the worker's first read
                # and its first wait is not missed.
                journal._listener()
        except BaseException:
            conn.close()
            raise
        return journal

    # -- how this node's paths and stats are stored -----------------------------------------

    def map_roots(self, roots: Mapping[str, str]) -> None:
        """Adopt this node's ``{watch id: local root}`` (after a reload changed the watches)."""
        self.roots = dict(roots)

    def _enc(self, path: str) -> str:
        return pg_stored_path(path, self.roots)

    def _dec(self, stored: str) -> str:
        return pg_local_path(stored, self.roots)

    def _text(self, text: str) -> str:
        return pg_text(text)

    def _column_value(self, name: str, value: Any) -> Any:
        return pg_column_value(name, value, self.roots)

    def _row(self, row: Mapping[str, Any]) -> Source:
        """A source row as this node sees it: local paths, and its own stat only.

        Device and inode numbers recorded by another node mean nothing here (one file on a
        share has different ones on each machine): they read as UNKNOWN_ID.
        """
        values = {name: row[name] for name in SOURCE_FIELDS}
        for name in PATH_COLUMNS:
            if values[name] is not None:
                values[name] = self._dec(values[name])
        stat_node = row.get("stat_node")
        if stat_node is not None and stat_node != self.node:
            values["dev"] = values["inode"] = UNKNOWN_ID
        return Source(**values)

    @property
    def location(self) -> str:
        """The database URL (for opening another connection; its password is kept)."""
        return self.url

    def integrity_problem(self) -> str | None:
        """PostgreSQL checks its own pages; the schema version is what can be wrong here."""
        try:
            version = self.schema_version()
        except Exception as exc:  # a check: report, never raise
            return str(exc)
        if version != SCHEMA_VERSION:
            return f"schema {version}, expected {SCHEMA_VERSION}"
        return None

    def _table_missing(self, exc: BaseException) -> bool:
        # undefined_table, or undefined_column (results' doc_id before its migration).
        return getattr(exc, "sqlstate", None) in ("42P01", "42703")

    def _query_refused(self, exc: BaseException) -> bool:
        # 42601 syntax_error: to_tsquery's words for "this is no tsquery".
        return getattr(exc, "sqlstate", None) == "42601"

    def _backlog_lock(self) -> None:
        # Nodes index the backlog one at a time, so none indexes a result twice.
        self._run("lock_for_transaction", key=_SEARCH_LOCK)
    def space(self, *, detail: bool = True) -> JournalSpace:
        """Each journal table (with its TOAST data) and their indexes together, as
        pg_table_size and pg_indexes_size count them (cheap: no page is read)."""
        parts: dict[str, int] = {"indexes": 0}
        for row in self._run("table_sizes", tables=list(_JOURNAL_TABLES)):
            parts[row["name"]] = int(row["table_bytes"])
            parts["indexes"] += int(row["index_bytes"])
        ordered = tuple(sorted(parts.items(), key=lambda kv: -kv[1]))
        return JournalSpace(sum(parts.values()), ordered, "pg_total_relation_size")

    def _unavailable_reason(self, exc: BaseException) -> str | None:
        if self.readonly and getattr(exc, "sqlstate", None) == "25006":
            return None  # this connection was opened read-only: a write through it is a bug
        return postgres_reason(exc)

    def _error_detail(self, exc: BaseException) -> str:
        # The server's own words, without the URL's password: which host, what failed.
        return f"{self.display_url}: {_scrub(str(exc), self.url)}"[:300]

    def _storage_failed(self, exc: BaseException) -> None:
        # A connection that broke stays broken: probe_write opens a new one.
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and (
                self._conn.broken or self._conn.closed):
            with contextlib.suppress(psycopg.Error):
                self._conn.close()

    def probe_write(self) -> None:
        """Reconnect if the connection broke (taking this node's name again), then one
        small durable write."""
        if self._conn.closed or self._conn.broken:
            self._reconnect()
        with self._transaction():
            self._set_meta(f"write_probe:{self.node or ''}", repr(time.time()))

    def _reconnect(self) -> None:
        """A new connection after the server went away; this node registers again on it."""
        try:
            conn = connect(self.url)
        except JournalError as exc:
            raise JournalUnavailable(PG_UNREACHABLE, detail=str(exc)) from None
        if self.readonly:
            conn.execute("SET default_transaction_read_only = on")
        with contextlib.suppress(psycopg.Error):
            self._conn.close()
        self._conn = conn
        if self._listen_conn is not None:
            # Its session ended with the server too: wait_for_change listens again.
            with contextlib.suppress(psycopg.Error):
                self._listen_conn.close()
            self._listen_conn = None
        if self.node is not None:
            # The node's name lock lived in the old session; the leases it held are checked
            # by the worker's next renew, and the journal fences any that ran out.
            clean = self.stopped_cleanly
            self.register_node(self.node)
            self.stopped_cleanly = clean
        _log.info("journal_reconnected", journal=self.display_url)

    def close(self) -> None:
        """Release this node's leases, record a clean stop, close the connections."""
        if self._listen_conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._listen_conn.close()
            self._listen_conn = None
        if self._conn.closed:
            return
        if self.node is not None and not self.readonly:
            with contextlib.suppress(psycopg.Error), self._transaction(notify=True):
                # Its files move on now rather than after the lease runs out.
                self._run("release_node_leases", node=self.node)
                self._set_meta(f"clean_stop:{self.node}", "1")
        self._conn.close()

    @contextlib.contextmanager
    def _transaction(self, *, bulk: bool = False, notify: bool = False) -> Iterator[DbConn]:
        # A bulk transaction (files seen, files hashed) does not wait for its WAL flush, as
        # SQLite's bulk ones skip their fsync: after a server crash it may be lost, which
        # costs a re-scan or a re-hash. Every intent and result waits for it.
        with self._conn.transaction():
            if bulk:
                self._conn.execute("SET LOCAL synchronous_commit = off")
            yield self._conn
            if notify:
                # Delivered at commit, once per transaction; the payload names the writer so
                # a node can ignore its own changes.
                self._run("notify", channel=NOTIFY_CHANNEL, writer=self.node or "")

    # -- nodes ---------------------------------------------------------------------------

    def register_node(self, name: str) -> None:
        """Become the node ``name``; refused while another live node has that name.

        A running node holds a session advisory lock on its name, which the server drops the
        moment that node's connection ends (a crash included), so a restarted node gets its
        name back at once. A holder whose heartbeat stopped for three leases (a machine that
        vanished without closing its connection) is disconnected and the name taken over.
        """
        _check_node_name(name)
        key = _lock_key(f"node:{name}")
        if not self._try_lock(key):
            holder = self._run("node_holder", name=name).fetchone()
            age = float(holder["age"]) if holder else None
            if not (age is not None and age > 3 * self.lease_seconds
                    and self._evict_lock_holder(key)):
                where = (f" on {holder['host']} (pid {holder['pid']}, last heartbeat "
                         f"{age:.0f}s ago)" if holder and age is not None else "")
                raise NodeNameTaken(
                    f"another watcherd node named {name!r} is already running{where} on the "
                    f"journal {self.display_url}; give each node its own [node] name, or stop "
                    "the other one first",
                    name=name, host=holder["host"] if holder else None,
                    pid=int(holder["pid"]) if holder else None,
                )
        with self._transaction():
            row = self._run("get_meta", key=f"clean_stop:{name}").fetchone()
            self.stopped_cleanly = row is None or row["value"] == "1"
            self._set_meta(f"clean_stop:{name}", "0")
            self._run("register_node", name=name, host=socket.gethostname(), pid=os.getpid())
        self.node = name

    def _try_lock(self, key: int) -> bool:
        row = self._run("try_lock", key=key).fetchone()
        return bool(row and row["got"])

    def _evict_lock_holder(self, key: int) -> bool:
        """Disconnect the session holding this advisory lock; True once the lock is ours."""
        classid, objid = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
        self._run("evict_lock_holder", classid=classid, objid=objid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._try_lock(key):
                _log.warning("journal_node_taken_over", node_lock=key,
                             reason="the previous holder's heartbeat had stopped")
                return True
            time.sleep(0.05)  # the terminated backend exits within milliseconds
        return False

    def heartbeat(self) -> None:
        """Say this node is alive (``renew`` does it too)."""
        if self.node is not None:
            self._run("heartbeat", name=self.node)

    def server_time(self) -> float:
        """The database server's clock, in epoch seconds (leases are on this clock)."""
        row = self._run("server_time").fetchone()
        assert row is not None
        return float(row["now"])

    def clock_skew(self) -> float:
        """How far the server's clock is ahead of this machine's (seconds; for doctor)."""
        before = time.time()
        server = self.server_time()
        after = time.time()
        return server - (before + after) / 2

    def schema_version(self) -> int:
        """The schema version of this journal."""
        return schema_version(self._conn)

    # -- leases --------------------------------------------------------------------------

    def claim(self, source_ids: Iterable[int], node: str, lease_seconds: float) -> list[int]:
        """Lease these sources to ``node``; returns the ids it now holds, ascending.

        Only sources nobody holds, whose lease ran out, or that ``node`` holds already are
        taken; rows another node is claiming this instant are skipped, not waited for.
        """
        ids = sorted(set(source_ids))
        if not ids:
            return []
        rows = self._run("claim", ids=ids, node=node, secs=float(lease_seconds)).fetchall()
        return sorted(int(r["id"]) for r in rows)

    def renew(self, node: str, lease_seconds: float) -> list[int]:
        """Extend every lease ``node`` still holds (and its heartbeat); returns their ids.

        A source missing from the answer was taken over by another node after this one's
        lease ran out: stop working on it.
        """
        with self._transaction():
            rows = self._run("renew", node=node, secs=float(lease_seconds)).fetchall()
            self._run("heartbeat", name=node)
        return sorted(int(r["id"]) for r in rows)

    def release(self, source_ids: Iterable[int], node: str) -> None:
        """Give up ``node``'s leases on these sources (others may take them at once)."""
        ids = sorted(set(source_ids))
        if not ids:
            return
        with self._transaction(notify=True):
            self._run("release", ids=ids, node=node)

    def leases(self) -> dict[int, Lease]:
        """The live leases, by source id (for ``status``: which node holds what)."""
        rows = self._run("leases")
        return {int(r["id"]): Lease(int(r["id"]), r["node"], float(r["lease_until"]))
                for r in rows}

    def holders(self) -> dict[int, str]:
        """Which node holds a live lease on each source, by source id (for ``status``)."""
        return {i: lease.node for i, lease in self.leases().items()}

    # -- the create intent ---------------------------------------------------------------

    def take_create_intent(
        self, source: Source, *, actor: str = "worker", reason: str | None = "creating job",
        max_in_flight: int | None = None, **changes: Any,
    ) -> Source:
        """Move ``source`` to ``submitting`` holding the unique intent to create its job.

        One transaction writes the intent row (unique per content key) and the transition,
        so at most one active source, on any node, is ever creating the job for a content.
        The same source may take its intent again (a retry, or another node taking it over);
        an intent whose source is no longer active is free. Raises :class:`CreateIntentHeld`
        when another active source holds it, and with ``max_in_flight`` :class:`PlanFull`
        when the jobs in flight over every node already reach it (counted under one lock, so
        two nodes cannot both take the last slot).
        """
        key = source.content_key
        if key is None:
            raise ValueError(f"source {source.id} has no content key yet; settle it first")
        _check_columns(changes)
        with self._transaction(notify=True):
            if max_in_flight is not None:
                self._run("lock_for_transaction", key=_PLAN_LOCK)
                in_flight = self.count_in_flight(exclude={source.id})
                if in_flight >= max_in_flight:
                    raise PlanFull(
                        f"{in_flight} jobs are in flight over all nodes, the plan allows "
                        f"{max_in_flight}", in_flight=in_flight, limit=max_in_flight,
                    )
            row = self._run("take_create_intent", content_key=key, node=self.node,
                            source_id=source.id, at=time.time()).fetchone()
            if row is None:
                holder = self.create_intent(key)
                raise CreateIntentHeld(
                    f"source {holder.source_id if holder else '?'} on node "
                    f"{(holder.node if holder else None) or '?'} is already creating the job "
                    "for this content; waiting for its result",
                    content_key=key, node=holder.node if holder else None,
                    source_id=holder.source_id if holder else None,
                )
            self._move(source, "submitting", actor=actor, reason=reason, fence=True, **changes)
        return self._after_transition(source)

    def create_intent(self, content_key: str) -> CreateIntent | None:
        """The intent row for this content key, if one is recorded."""
        row = self._run("create_intent", content_key=content_key).fetchone()
        return None if row is None else CreateIntent(row["content_key"], row["node"],
                                                     int(row["source_id"]), float(row["at"]))

    def release_create_intent(self, source: Source) -> None:
        """Drop the intent this source holds (its job exists, or it gave up creating one)."""
        if source.content_key is not None:
            self._run("release_create_intent", content_key=source.content_key,
                      source_id=source.id)

    # -- waiting for other nodes ---------------------------------------------------------

    def _listener(self) -> psycopg.Connection[Any]:
        if self._listen_conn is None:
            conn = connect(self.url)
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._listen_conn = conn
        return self._listen_conn

    def wait_for_change(self, timeout: float) -> bool:
        """Sleep until another writer commits a change (True) or ``timeout`` passes (False).

        For idle nodes instead of polling the database. Leases that run out make no
        notification: keep ``timeout`` at most ``lease_seconds``.
        """
        conn = self._listener()
        pgconn = conn.pgconn
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            while True:
                if self._drain(pgconn):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                ready, _, _ = select.select([pgconn.socket], [], [], remaining)
                if ready:
                    pgconn.consume_input()
        except psycopg.Error as exc:
            with contextlib.suppress(psycopg.Error):
                conn.close()
            self._listen_conn = None
            raise JournalError(
                f"lost the connection to the journal {self.display_url}: "
                f"{_scrub(str(exc), self.url)}"
            ) from None

    def _drain(self, pgconn: Any) -> bool:
        changed = False
        while (note := pgconn.notifies()) is not None:
            writer = bytes(note.extra).decode("utf-8", "replace")
            if self.node is None or writer != self.node:
                changed = True
        return changed

    # -- transitions ---------------------------------------------------------------------

    def _create(self, path: str, root: str, state: str, *, now: float, actor: str,
                reason: str, **columns: Any) -> int | None:
        # The row and its first event in one statement; nothing when another node (or an
        # earlier item of the batch) inserted the path since it was read.
        if "dev" in columns:
            columns["stat_node"] = self.node
        text, values = insert_source(path, root, state, now, columns)
        row = self._run_text(
            f"WITH made AS ({text} RETURNING id) INSERT INTO events (source_id, at,"
            " from_state, to_state, actor, reason, node) SELECT id, :created_at, NULL,"
            " :state, :event_actor, :event_reason, :me FROM made RETURNING source_id",
            {**values, "event_actor": pg_text(actor), "event_reason": reason,
             "me": self.node},
        ).fetchone()
        return None if row is None else int(row["source_id"])

    def _move(self, source: Source, state: str, *, actor: str, reason: str | None,
              fence: bool = False, **changes: Any) -> None:
        """Update the row and append its event in one statement (inside a transaction).

        ``fence``: refuse when another node holds a live lease on the source, so a node that
        lost its lease (paused past it) cannot undo the work of the node that took over.
        """
        now = time.time()
        changes = {"state": state, "updated_at": now, **changes}
        if changes.get("dev") == UNKNOWN_ID or changes.get("inode") == UNKNOWN_ID:
            # Another node's stat handed back: keep what is stored rather than a placeholder.
            changes.pop("dev", None)
            changes.pop("inode", None)
        elif "dev" in changes or "inode" in changes:
            changes["stat_node"] = self.node  # whose device/inode numbers these are
        guard = "{LEASE_FREE}" if fence else ""
        row = self._run_text(
            f"WITH moved AS (UPDATE sources SET {assignments(changes)} WHERE id = :id {guard}"
            " RETURNING id) INSERT INTO events (source_id, at, from_state, to_state, actor,"
            " reason, node) SELECT id, :at, :from_state, :to_state, :actor, :reason, :me"
            " FROM moved RETURNING source_id", {
                **{f"set_{name}": self._column_value(name, value)
                   for name, value in changes.items()},
                "id": source.id, "at": now, "from_state": source.state, "to_state": state,
                "actor": pg_text(actor), "reason": None if reason is None else pg_text(reason),
                "me": self.node,
            },
        ).fetchone()
        if row is not None:
            return
        holder = self._run("lease_holder", id=source.id).fetchone()
        if holder is None:
            raise KeyError(source.id)
        raise LeaseLost(
            f"node {holder['node']!r} holds the lease on source {source.id} now; "
            "this node leaves it alone",
            source_id=source.id, holder=holder["node"],
        )
