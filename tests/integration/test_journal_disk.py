"""The journal's own disk (issue 19, item 7): when the journal cannot be written, all work
pauses, says so, and resumes by itself; no file is failed or set aside, nothing paid twice.

The SQLite case runs the real daemon with its journal on a real 2 MB tmpfs, filled by a filler
file at the worst instant (a job just created at Gladia, its ``submitted`` row not committed
yet) and freed again. The PostgreSQL case stops and restarts a private server under a running
daemon. The classification of errors into "the journal's storage" and "this call's own" is
checked over SQLite's result codes, errno values and SQLSTATEs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.daemon_harness import DaemonProcess, free_port, wait_until, watcherd, write_config
from tests.sim import GladiaSimulator, expected_transcript
from tests.sim.media import make_wav
from watcherd.journal import FileStat, JournalUnavailable, SQLiteJournal
from watcherd.journal.unavailable import (
    STORAGE_ERRNOS,
    errno_reason,
    postgres_reason,
    sqlite_reason,
)

KEY = "sk-journal-disk-secret-737373"

# SQLite's primary result codes (https://www.sqlite.org/rescode.html) and which of them mean
# the storage: the expectation is written out here, not read from the code under test.
SQLITE_PRIMARY = range(0, 29)
SQLITE_STORAGE = {
    sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN,
}


@pytest.fixture
def sim() -> Iterator[GladiaSimulator]:
    """A running simulator with fast jobs."""
    with GladiaSimulator(api_key=KEY, job_seconds=0.2) as s:
        yield s


# -- the classification ------------------------------------------------------------------


def _sqlite_error(code: int) -> sqlite3.Error:
    exc = sqlite3.OperationalError("some message that must not matter")
    exc.sqlite_errorcode = code
    exc.sqlite_errorname = f"CODE_{code}"
    return exc


@given(primary=st.sampled_from(SQLITE_PRIMARY), extended=st.integers(0, 0xFF))
def test_only_sqlite_storage_codes_pause(primary: int, extended: int) -> None:
    """Any extended code of IOERR, FULL, READONLY or CANTOPEN is the storage; every other code
    (a constraint, a busy lock, corruption, a bug) stays the call's own."""
    reason = sqlite_reason(_sqlite_error(primary | extended << 8))
    assert (reason is not None) == (primary in SQLITE_STORAGE)
    if reason is not None:
        assert "resumes by itself" in reason


@given(code=st.sampled_from(sorted(errno.errorcode)))
def test_only_storage_errnos_pause(code: int) -> None:
    """ENOSPC, EROFS, EIO and their like pause; EACCES, ENOENT, EINVAL... do not."""
    storage = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.ENXIO,
               errno.ENODEV, errno.ESTALE}
    assert set(STORAGE_ERRNOS) == storage
    assert (errno_reason(code) is not None) == (code in storage)
    assert (sqlite_reason(OSError(code, os.strerror(code))) is not None) == (code in storage)


@given(sqlstate=st.from_regex(r"[0-9A-Z]{5}", fullmatch=True))
def test_only_postgres_availability_sqlstates_pause(sqlstate: str) -> None:
    """Connection (08), resources (53), system (58) classes, shutdown and start-up (57P01-3)
    and read-only transactions pause; a syntax error, a unique violation... do not."""
    psycopg = pytest.importorskip("psycopg")
    exc = psycopg.errors.lookup(sqlstate)("x") if _known(psycopg, sqlstate) else None
    if exc is None:
        return
    storage = sqlstate[:2] in ("08", "53", "58") or sqlstate in (
        "57P01", "57P02", "57P03", "25006")
    assert (postgres_reason(exc) is not None) == storage


def _known(psycopg: object, sqlstate: str) -> bool:
    try:
        psycopg.errors.lookup(sqlstate)  # type: ignore[attr-defined]
    except KeyError:
        return False
    return True


def test_a_lost_postgres_connection_pauses_and_a_bug_does_not() -> None:
    """psycopg's errors without an SQLSTATE: a broken or closed connection pauses, a
    programming error stays visible."""
    psycopg = pytest.importorskip("psycopg")
    assert postgres_reason(psycopg.OperationalError("server closed the connection")) is not None
    assert postgres_reason(psycopg.InterfaceError("the connection is closed")) is not None
    assert postgres_reason(psycopg.ProgrammingError("bad query")) is None
    assert postgres_reason(ValueError("not a database error")) is None


def test_a_real_full_sqlite_journal_raises_journal_unavailable(tmp_path: Path) -> None:
    """A real SQLITE_FULL (the journal capped at its current size) comes out of every
    backend method as JournalUnavailable with a reason; the journal stays sound."""
    path = tmp_path / "journal.db"
    journal = SQLiteJournal.open(path, exclusive=True)
    try:
        pages = journal._conn.execute("PRAGMA page_count").fetchone()[0]
        journal._conn.execute(f"PRAGMA max_page_count = {pages}")
        st_ = os.stat(path)
        stat = FileStat(st_.st_size, st_.st_mtime_ns, st_.st_dev, st_.st_ino)
        batch = [(str(tmp_path / f"f{i:04d}-{'x' * 200}.wav"), str(tmp_path), stat, "{}")
                 for i in range(500)]
        with pytest.raises(JournalUnavailable) as caught:
            journal.observe_many(batch)
        assert "disk is full" in caught.value.reason
        with pytest.raises(JournalUnavailable):
            journal.observe_many(batch)  # the connection still works: the same answer
        journal._conn.execute("PRAGMA max_page_count = 1073741823")
        journal.probe_write()  # room again: the probe works, as the worker's resume needs
        assert journal.observe_many(batch[:3])
    finally:
        journal.close()
    assert _integrity(path) == "ok"


# -- the daemon on a small disk ------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only), always unmounted afterwards."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700",
                              "tmpfs", str(where)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {where} (needs root): "
                    f"{mounted.stderr.strip() or mounted.returncode}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte with one file; returns it."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1):
            chunk = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, chunk)
    finally:
        os.close(fd)
    assert os.statvfs(folder).f_bavail == 0
    return filler


def healthz(port: int) -> httpx.Response | None:
    """GET /healthz, or None while the page does not answer."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    except httpx.HTTPError:
        return None


def transcribed(path: Path, data: bytes) -> bool:
    """Whether the transcript next to ``path`` is the one the simulator makes for ``data``."""
    txt = path.with_suffix(".txt")
    return txt.exists() and " ".join(txt.read_text().split()) == expected_transcript(data)


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def _events(daemon: DaemonProcess, name: str) -> list[dict[str, object]]:
    return [line for line in daemon.log_lines() if line.get("event") == name]


def test_a_full_journal_disk_pauses_all_work_and_resumes(tmp_path: Path,
                                                         sim: GladiaSimulator) -> None:
    """The disk fills right after a job was created at Gladia and before its ``submitted`` row
    is committed, while more files arrive. The daemon pauses (one warning; /healthz 503 with
    the reason; `status` says so), fails and sets aside nothing, and once the filler is gone
    finishes every file, adopting the job it had created instead of creating another."""
    # 4 MiB: room for the journal and its WAL, which grows to ~1 MB over these three files
    # (every commit appends its pages; SQLite reuses the file after a checkpoint but keeps its
    # size) and must leave /healthz's 1 MB of free space once the filler is gone.
    with small_tmpfs(tmp_path / "disk", size="4m") as disk:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        port = free_port()
        journal = disk / "journal.db"
        config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                              journal=journal, watches=[inbox],
                              http_listen=f"127.0.0.1:{port}")
        daemon = DaemonProcess(config, tmp_path / "daemon.log")
        try:
            sim.hold_create_responses()
            daemon.start()
            daemon.wait_for_event("ready")
            files = {inbox / "first.wav": make_wav(inbox / "first.wav", salt="disk-first")}
            wait_until(lambda: sim.jobs(), message="the first job created at the simulator")

            filler = fill(disk)
            for name in ("second", "third"):
                path = inbox / f"{name}.wav"
                files[path] = make_wav(path, salt=f"disk-{name}")
            sim.release_create_responses()  # the daemon now hears of a job it cannot record

            def paused() -> httpx.Response | None:
                answer = healthz(port)
                return answer if answer is not None and "paused" in answer.text else None

            answer = wait_until(paused, timeout=60, message="/healthz saying work is paused")
            assert answer.status_code == 503
            assert "journal cannot be written" in answer.text and "full" in answer.text
            shown = watcherd("status", "--config", str(config))
            assert shown.returncode == 0, shown.stderr
            assert "journal cannot be written" in shown.stdout
            assert "full" in shown.stdout
            assert "pauses all work" in shown.stdout or "paused" in shown.stdout
            states = {row["state"] for row in daemon.status()}
            assert not states & {"failed", "gone"}, states
            page = httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text
            assert 'id="paused"' in page
            filler.unlink()
            wait_until(lambda: all(transcribed(p, d) for p, d in files.items()), timeout=90,
                       message="every file transcribed after the disk was freed")
            wait_until(lambda: (a := healthz(port)) is not None and a.status_code == 200,
                       timeout=30, message="/healthz healthy again")
            rows = daemon.status()
            assert {row["state"] for row in rows} == {"done"}, rows
            # Nothing paid twice: one job per content. The first one's job is either adopted
            # (its `submitted` row did not fit) or was recorded as created: SQLite writes a
            # commit into WAL pages it already has, so a full disk does not always refuse it.
            assert sorted(sim.creates_per_content().values()) == [1, 1, 1]
            assert len(sim.jobs()) == 3
            first = str(inbox / "first.wav")
            adopted = {line.get("source") for line in _events(daemon, "job_adopted")}
            assert adopted <= {first}
            created = [line for line in _events(daemon, "job_created")
                       if line.get("source") == first]
            assert len(created) + len(adopted) == 1, (created, adopted)
            # The probes while full stayed quiet: one warning for the whole pause.
            assert len(_events(daemon, "journal_unavailable")) == 1
            assert _events(daemon, "journal_writable_again")
            assert not _events(daemon, "source_quarantined")
            assert not _events(daemon, "source_not_recorded")
            assert not daemon.tracebacks()
            assert daemon.terminate() == 0
        finally:
            daemon.stop()
        assert _integrity(journal) == "ok"
        assert not (disk / "journal.db.paused.json").exists()


def test_status_reads_the_pause_file(tmp_path: Path) -> None:
    """When the disk took the daemon's pause file (an I/O error, not a full disk), `status`
    prints its reason; a file left by a dead daemon is ignored."""
    from watcherd.pause import JournalPause, pause_path, write_pause

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    journal = tmp_path / "journal.db"
    SQLiteJournal.open(journal, exclusive=True).close()
    config = write_config(tmp_path / "config.toml", api_url=None, api_key=KEY,
                          journal=journal, watches=[inbox])
    write_pause(journal, JournalPause("the journal's disk reports I/O errors (EIO)", 1e9))
    shown = watcherd("status", "--config", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "all work is paused since" in shown.stdout
    assert "I/O errors" in shown.stdout
    raw = json.loads(pause_path(journal).read_text())
    raw["pid"] = 2 ** 22 + 12345  # no such process
    pause_path(journal).write_text(json.dumps(raw))
    shown = watcherd("status", "--config", str(config))
    assert "paused" not in shown.stdout


# -- a shared journal whose server goes away -------------------------------------------------


def test_postgres_going_away_pauses_all_work_and_resumes(tmp_path: Path,
                                                         sim: GladiaSimulator) -> None:
    """The journal's PostgreSQL server is stopped under a running node while a file arrives:
    the node pauses (one warning; /healthz 503 with the reason), reconnects by itself when the
    server is back, and finishes the file; nothing failed, one job per content."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[test]'")
    from tests.pg import find_bindir, start_cluster, start_server, stop_cluster, stop_server

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's server programs are not installed (initdb not found)")
    # A private server: stopping the session's shared one would disturb other tests.
    cluster = start_cluster(bindir)
    daemon: DaemonProcess | None = None
    try:
        url = cluster.create_database()
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        port = free_port()
        config = write_config(tmp_path / "config.toml", api_url=sim.base_url, api_key=KEY,
                              journal=tmp_path / "unused.db", watches=[inbox], journal_url=url,
                              node="pg-node", lease_seconds=3, watch_ids=["inbox"],
                              http_listen=f"127.0.0.1:{port}")
        daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
        daemon.wait_for_event("ready")
        files = {inbox / "before.wav": make_wav(inbox / "before.wav", salt="pg-before")}
        wait_until(lambda: all(transcribed(p, d) for p, d in files.items()), timeout=60,
                   message="the first file transcribed")

        stop_server(cluster)
        files[inbox / "during.wav"] = make_wav(inbox / "during.wav", salt="pg-during")

        def paused() -> httpx.Response | None:
            answer = healthz(port)
            return answer if answer is not None and "paused" in answer.text else None

        answer = wait_until(paused, timeout=60, message="/healthz saying work is paused")
        assert answer.status_code == 503
        assert "journal database" in answer.text
        # The unauthenticated answer names no host, socket or database; the log does.
        assert str(cluster.sockdir) not in answer.text and "postgresql://" not in answer.text
        warning = _events(daemon, "journal_unavailable")[0]
        assert str(cluster.sockdir) in str(warning["detail"])

        start_server(cluster)
        wait_until(lambda: all(transcribed(p, d) for p, d in files.items()), timeout=90,
                   message="the file dropped while the server was away, transcribed")
        wait_until(lambda: (a := healthz(port)) is not None and a.status_code == 200,
                   timeout=30, message="/healthz healthy again")
        assert {row["state"] for row in daemon.status()} == {"done"}
        assert sorted(sim.creates_per_content().values()) == [1, 1]
        assert len(_events(daemon, "journal_unavailable")) == 1
        assert _events(daemon, "journal_reconnected")
        assert not _events(daemon, "source_quarantined")
        assert not daemon.tracebacks()
        assert daemon.terminate() == 0
    finally:
        if daemon is not None:
            daemon.stop()
        stop_cluster(cluster)


def test_a_write_through_a_read_only_journal_stays_an_error(tmp_path: Path) -> None:
    """SQLITE_READONLY from a journal opened read-only on purpose is the caller's bug, not the
    storage: it is not turned into a pause."""
    path = tmp_path / "journal.db"
    SQLiteJournal.open(path, exclusive=True).close()
    st_ = os.stat(path)
    stat = FileStat(st_.st_size, st_.st_mtime_ns, st_.st_dev, st_.st_ino)
    with SQLiteJournal.open(path, readonly=True) as journal, pytest.raises(sqlite3.Error) as info:
        journal.observe_many([(str(tmp_path / "a.wav"), str(tmp_path), stat, "{}")])
    assert not isinstance(info.value, JournalUnavailable)


def test_the_pause_backs_off_from_one_to_thirty_seconds_and_resumes(tmp_path: Path) -> None:
    """A real journal that refuses writes (SQLite's query_only: SQLITE_READONLY): a hinted file
    pauses the worker, each failed probe doubles the wait (1, 2, 4 ... 30 s, no further), one
    warning in all; when writes work the next probe resumes, and the hint kept through the pause
    is recorded then."""
    import asyncio

    import structlog

    from watcherd.config import Config, GladiaConfig, WatchConfig
    from watcherd.worker import JOURNAL_RETRY_MAX, EngineRoutes, Worker

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = inbox / "a.wav"
    make_wav(source, salt="backoff")
    config = Config(source=None, gladia=GladiaConfig(api_key=None), engine="auto",
                    local_model="base", journal_path=tmp_path / "journal.db", log_format="json",
                    log_level="info", watches=(WatchConfig(path=inbox, settle_seconds=60),))

    async def scenario() -> tuple[list[float], list[str]]:
        journal = SQLiteJournal.open(config.journal_path, exclusive=True)
        worker = Worker(config, journal, EngineRoutes())
        seen: list[str] = []
        worker.on_pause_change(lambda p: seen.append("paused" if p else "resumed"))
        journal._conn.execute("PRAGMA query_only = ON")
        try:
            worker.hint(source)
            await worker.tick()
            await asyncio.sleep(0.1)
            for _ in range(20):  # the look at the file runs in a task
                if worker.journal_pause is not None:
                    break
                await asyncio.sleep(0.1)
            pause = worker.journal_pause
            assert pause is not None and "read-only" in pause.reason
            delays = [worker.guard.delay]
            for _ in range(7):
                worker.guard.try_resume()
                delays.append(worker.guard.delay)
            await worker.tick()  # paused: records nothing
            assert journal.by_path(str(source)) is None
            journal._conn.execute("PRAGMA query_only = OFF")
            worker.guard.try_resume()
            assert worker.journal_pause is None
            await worker.tick()
            for _ in range(20):
                if journal.by_path(str(source)) is not None:
                    break
                await asyncio.sleep(0.1)
            assert journal.by_path(str(source)) is not None
            return delays, seen
        finally:
            await worker.shutdown()
            journal.close()

    with structlog.testing.capture_logs() as logs:
        delays, seen = asyncio.run(scenario())
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, JOURNAL_RETRY_MAX, 30.0, 30.0]
    assert seen == ["paused", "resumed"]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["journal_unavailable"]
    assert not [e for e in logs if e["log_level"] == "error"]
