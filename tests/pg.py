"""A real PostgreSQL for the tests: a private cluster on a temporary folder and a Unix socket.

CI runs as root and PostgreSQL refuses to run as root, so as root the cluster is created and
started as the ``postgres`` user (Debian's package makes it); as anyone else it runs as that
user. It listens on no TCP port at all (``listen_addresses=''``), only on a socket in its own
folder, so it never collides with another server or another test run.

Import the fixtures into a test module with ``from tests.pg import pg_cluster, pg_url``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# The cluster is only for tests: durability off makes each CREATE DATABASE and commit cheap.
_SERVER_OPTIONS = (
    "-c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    " -c shared_buffers=16MB -c max_connections=100"
)


def find_bindir() -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl), newest version first."""
    override = os.environ.get("WATCHERD_PG_BINDIR")
    if override:
        return Path(override) if (Path(override) / "initdb").exists() else None
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit()
        else 0,
        reverse=True,
    )
    if candidates:
        return Path(candidates[0]).parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass(frozen=True)
class PgCluster:
    """A running private cluster: where it lives and how to reach it."""

    bindir: Path
    root: Path
    run_as: str | None  # the user the server runs as when the tests run as root

    @property
    def datadir(self) -> Path:
        """The cluster's data folder."""
        return self.root / "data"

    @property
    def sockdir(self) -> Path:
        """The folder holding the server's Unix socket."""
        return self.root / "sock"

    def url(self, dbname: str) -> str:
        """A libpq URL for one database of this cluster, over the socket."""
        return f"postgresql://postgres@/{dbname}?host={self.sockdir}"

    def admin_sql(self, statement: str) -> None:
        """Run one statement (CREATE/DROP DATABASE) outside a transaction."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(statement.encode())

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.admin_sql(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database`, closing what still uses it."""
        name = url.split("/")[3].split("?")[0]
        self.admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_server_user(run_as: str | None, *argv: str) -> list[str]:
    return ["runuser", "-u", run_as, "--", *argv] if run_as else list(argv)


def start_cluster(bindir: Path) -> PgCluster:
    """initdb a cluster in a new temporary folder and start it; raises when either fails."""
    run_as = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="watcherd-pg-"))
    cluster = PgCluster(bindir=bindir, root=root, run_as=run_as)
    cluster.sockdir.mkdir()
    if run_as:
        entry = pwd.getpwnam(run_as)
        for folder in (root, cluster.sockdir):
            os.chown(folder, entry.pw_uid, entry.pw_gid)
    try:
        subprocess.run(
            _as_server_user(run_as, str(bindir / "initdb"), "-D", str(cluster.datadir),
                            "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                            "--locale=C", "--no-sync"),
            check=True, capture_output=True, timeout=120,
        )
        start_server(cluster)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log = root / "server.log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        output = getattr(exc, "stderr", b"") or b""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(
            f"the test PostgreSQL did not start: {output.decode(errors='replace')}{detail}"
        ) from exc
    return cluster


def start_server(cluster: PgCluster) -> None:
    """Start the cluster's server (again) and wait until it accepts connections."""
    subprocess.run(
        _as_server_user(cluster.run_as, str(cluster.bindir / "pg_ctl"), "-D",
                        str(cluster.datadir), "-l", str(cluster.root / "server.log"), "-w",
                        "-t", "60", "-o", f"-k {cluster.sockdir} {_SERVER_OPTIONS}", "start"),
        check=True, capture_output=True, timeout=90,
    )


def stop_server(cluster: PgCluster) -> None:
    """Stop the server the way an administrator does (fast: sessions are ended), data kept."""
    subprocess.run(
        _as_server_user(cluster.run_as, str(cluster.bindir / "pg_ctl"), "-D",
                        str(cluster.datadir), "-m", "fast", "-w", "stop"),
        check=True, capture_output=True, timeout=60,
    )


def stop_cluster(cluster: PgCluster) -> None:
    """Stop the server (immediately: the data is thrown away) and delete its folder."""
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(
            _as_server_user(cluster.run_as, str(cluster.bindir / "pg_ctl"), "-D",
                            str(cluster.datadir), "-m", "immediate", "-w", "stop"),
            check=False, capture_output=True, timeout=60,
        )
    shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One private PostgreSQL for the whole test session (skipped when it is not installed)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[test]'")
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's server programs are not installed (initdb not found): "
                    "apt-get install postgresql, or set WATCHERD_PG_BINDIR")
    cluster = start_cluster(bindir)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    url = pg_cluster.create_database()
    try:
        yield url
    finally:
        pg_cluster.drop_database(url)
