"""Several watcherd nodes on one PostgreSQL journal and one tree.

Journal level: paths stored relative to watch ids (nodes mount the share at different places),
stats compared per node, the Journal interface's shared-work methods on both backends.
Daemon level (real subprocesses, a real PostgreSQL, the simulator): a node name clash exits 2,
``status --json`` names the node holding a file, and failover: a node SIGKILLed with files in
flight has them finished by another node after its lease runs out, one job per content.
The node configs have the shape of the README's "Several machines" example.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.daemon_harness import DaemonProcess, wait_until, watcherd, write_config
from tests.sim import GladiaSimulator, expected_transcript, make_wav
from watcherd.config import default_watch_id, parse_config
from watcherd.errors import ConfigError
from watcherd.journal import UNKNOWN_ID, FileStat, Journal, PlanFull, SQLiteJournal
from watcherd.journal.postgres import PostgresJournal, from_stored, to_stored

pytest_plugins = ("tests.pg",)

KEY = "sk-test-multinode-0123456789"
#: Jobs long enough that a node is killed while they are in flight.
SIM_OPTIONS = {"job_seconds": 2.0, "concurrency": 10, "list_lag_seconds": 0.3}
LEASE = 2.0


# -- paths relative to watch ids ---------------------------------------------------------------


_names = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=["Cs"]),
                 min_size=1, max_size=12).filter(lambda n: n not in (".", ".."))


@settings(max_examples=200)
@given(parts=st.lists(_names, min_size=0, max_size=4), mount_a=st.sampled_from(
    ["/mnt/a/share", "/srv/x", "/"]), mount_b=st.sampled_from(["/mnt/b/share", "/data"]))
def test_stored_path_is_the_same_file_for_every_mount(parts: list[str], mount_a: str,
                                                      mount_b: str) -> None:
    """A path under a watch is stored as ``@id/rel``: the same text from every node's mount,
    and each node maps it back under its own mount; the round trip is exact."""
    rel = "/".join(parts)
    path_a = os.path.join(mount_a, rel) if rel else mount_a
    path_b = os.path.join(mount_b, rel) if rel else mount_b
    stored_a = to_stored(path_a, {"share": mount_a})
    stored_b = to_stored(path_b, {"share": mount_b})
    assert stored_a == stored_b
    assert from_stored(stored_a, {"share": mount_a}) == path_a
    assert from_stored(stored_b, {"share": mount_b}) == path_b


@settings(max_examples=200)
@given(path=st.text(min_size=1, max_size=30).map(lambda t: "/" + t.replace("\x00", "")))
def test_paths_under_no_watch_are_stored_absolute(path: str) -> None:
    """A path under no configured root is stored as it is, and read back unchanged."""
    roots = {"inbox": "/nowhere/inbox"}
    if path.startswith("/nowhere/inbox"):
        return
    assert to_stored(path, roots) == path
    assert from_stored(path, roots) == path


def test_innermost_root_wins_and_unknown_ids_stay_stored() -> None:
    """Nested watches: the innermost root names the file; a watch id this node lacks is
    another node's folder and is left in its stored form."""
    roots = {"outer": "/srv", "inner": "/srv/calls"}
    assert to_stored("/srv/calls/a.wav", roots) == "@inner/a.wav"
    assert to_stored("/srv/other/a.wav", roots) == "@outer/other/a.wav"
    assert to_stored("/srv", roots) == "@outer"
    assert to_stored("/srvx/a.wav", roots) == "/srvx/a.wav"
    assert from_stored("@gpu-only/a.wav", roots) == "@gpu-only/a.wav"


def test_two_mounts_one_row_and_another_nodes_stat_changes_nothing(pg_url: str) -> None:
    """Node A and node B mount the share at different places and see other device and inode
    numbers: they agree on the row, and B's scan never makes A's finished file look changed."""
    a = PostgresJournal.open(pg_url, node="a", roots={"share": "/mnt/a/share"})
    b = PostgresJournal.open(pg_url, node="b", roots={"share": "/mnt/b/share"})
    try:
        (seen,) = a.observe_many([("/mnt/a/share/x.wav", "/mnt/a/share",
                                   FileStat(10, 111, 1, 50), "{}")])
        assert seen.path == "/mnt/a/share/x.wav"
        from_b = b.by_path("/mnt/b/share/x.wav")
        assert from_b is not None and from_b.id == seen.id
        assert from_b.watch_root == "/mnt/b/share"
        assert (from_b.dev, from_b.inode) == (UNKNOWN_ID, UNKNOWN_ID)
        a.transition(a.get(seen.id), "done", actor="test", done_at=1.0)
        assert b.observe_many([("/mnt/b/share/x.wav", "/mnt/b/share",
                                FileStat(10, 111, 99, 7), "{}")]) == []
        assert a.get(seen.id).state == "done"
        assert (a.get(seen.id).dev, a.get(seen.id).inode) == (1, 50)
        # A real change (size) from either node is a new version.
        assert [s.id for s in b.observe_many([("/mnt/b/share/x.wav", "/mnt/b/share",
                                               FileStat(11, 222, 99, 7), "{}")])] == [seen.id]
    finally:
        a.close()
        b.close()


def test_filestat_agrees_ignores_unknown_numbers() -> None:
    """Size and mtime always count; device and inode only where both sides know them."""
    known = FileStat(1, 2, 3, 4)
    assert known.agrees(FileStat(1, 2, 3, 4))
    assert known.agrees(FileStat(1, 2, UNKNOWN_ID, UNKNOWN_ID))
    assert not known.agrees(FileStat(1, 2, 9, 4))
    assert not known.agrees(FileStat(1, 3, UNKNOWN_ID, UNKNOWN_ID))


def test_sqlite_keeps_one_machine_behaviour(tmp_path: Path) -> None:
    """The SQLite journal's shared-work methods keep today's behaviour: every claim is
    granted, nothing to renew or hold, and the create intent is the plain transition."""
    with SQLiteJournal.open(tmp_path / "j.db", exclusive=True) as journal:
        assert not journal.shared
        (source,) = journal.observe_many([(str(tmp_path / "a.wav"), str(tmp_path),
                                           FileStat(1, 1, 1, 1), "{}")])
        assert journal.claim([source.id, source.id], "n", 5) == [source.id]
        assert journal.renew("n", 5) == [] and journal.holders() == {}
        assert journal.wait_for_change(0.0) is False
        journal.settle_many([(source, "0" * 64, "k" * 64, FileStat(1, 1, 1, 1))])
        with pytest.raises(PlanFull):  # the budget is checked on one machine too
            journal.take_create_intent(journal.get(source.id), max_in_flight=0)
        moved = journal.take_create_intent(journal.get(source.id), max_in_flight=1,
                                           submit_started_at=5.0)
        assert moved.state == "submitting" and moved.submit_started_at == 5.0


# -- config ------------------------------------------------------------------------------------


def _parse(text_data: dict[str, Any]) -> Any:
    return parse_config(text_data, source=Path("/etc/watcherd/config.toml"), env={})


def test_config_shared_journal_keys(tmp_path: Path) -> None:
    """url, lease_seconds, node name and watch ids are read; path with url is refused."""
    config = _parse({
        "journal": {"url": "postgresql:///watcherd?host=/run/postgresql", "lease_seconds": 10},
        "node": {"name": "gpu-1"},
        "watch": [{"path": str(tmp_path / "a"), "id": "calls"}, {"path": str(tmp_path / "b")}],
    })
    assert config.journal_url == "postgresql:///watcherd?host=/run/postgresql"
    assert config.lease_seconds == 10 and config.node_name == "gpu-1"
    assert config.watches[0].watch_id == "calls"
    assert config.watches[1].watch_id == default_watch_id(tmp_path / "b")
    assert config.watches[1].watch_id.startswith("b-")
    with pytest.raises(ConfigError, match="both path and url"):
        _parse({"journal": {"url": "postgresql://h/db", "path": "/x.db"}})


@pytest.mark.parametrize(("data", "message"), [
    ({"journal": {"url": "mysql://h/db"}}, "expected a PostgreSQL URL"),
    ({"journal": {"url": "postgresql://u:secretpw@h/db", "lease_seconds": 0}},
     "lease_seconds"),
    ({"node": {"name": " padded"}}, "node.name"),
    ({"watch": [{"path": "/tmp/x", "id": "no spaces"}]}, "watch\\[1\\].id"),
    ({"watch": [{"path": "/tmp/x", "id": "same"}, {"path": "/tmp/y", "id": "same"}]},
     "already the id of watch\\[1\\]"),
])
def test_config_shared_journal_errors(data: dict[str, Any], message: str) -> None:
    """Bad values get a message naming the key; a URL's password never shows."""
    with pytest.raises(ConfigError, match=message) as info:
        _parse(data)
    assert "secretpw" not in str(info.value)


# -- daemons -----------------------------------------------------------------------------------


def node_config(tmp_path: Path, name: str, url: str, inbox: Path, sim: GladiaSimulator, *,
                max_concurrent_jobs: int = 3, queue_ahead: int | None = None) -> Path:
    """One node's config in the README example's shape: [journal] url + lease_seconds,
    [node] name, [[watch]] id."""
    state = tmp_path / f"state-{name}"
    state.mkdir(exist_ok=True)
    return write_config(
        tmp_path / f"{name}.toml", api_url=sim.base_url, api_key=KEY,
        journal=state / "unused.db", watches=[inbox], watch_ids=["inbox"],
        journal_url=url, node=name, lease_seconds=LEASE, settle_seconds=0.2,
        max_concurrent_jobs=max_concurrent_jobs, queue_ahead=queue_ahead,
    )


def transcribed(path: Path, data: bytes) -> bool:
    """The file's transcript and job JSON are there, with the right content."""
    try:
        job = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        text = " ".join(path.with_suffix(".txt").read_text(encoding="utf-8").split())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return bool(job["status"] == "done" and text == expected_transcript(data))


def test_node_name_clash_exits_2(tmp_path: Path, pg_url: str, sim: GladiaSimulator,
                                 inbox: Path, daemons: list[DaemonProcess]) -> None:
    """A second running node with the same name is refused with a clear message, exit 2."""
    config = node_config(tmp_path, "twin", pg_url, inbox, sim)
    first = DaemonProcess(config, tmp_path / "first.log").start()
    daemons.append(first)
    first.wait_for_event("watch_root_started")
    second = subprocess.run(
        [sys.executable, "-m", "watcherd", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )
    assert second.returncode == 2, second.stderr
    assert "another watcherd node named 'twin' is already running" in second.stderr
    assert first.terminate() == 0


@pytest.mark.timeout(180)
def test_failover_after_sigkill(tmp_path: Path, pg_url: str, sim: GladiaSimulator,
                                inbox: Path, daemons: list[DaemonProcess]) -> None:
    """Node A is SIGKILLed with files in flight; once its lease runs out node B finishes
    them: every file has its outputs and the simulator saw exactly one job per content."""
    files = {}
    a = DaemonProcess(node_config(tmp_path, "node-a", pg_url, inbox, sim),
                      tmp_path / "a.log").start()
    daemons.append(a)
    a.wait_for_event("watch_root_started")
    for i in range(4):
        path = inbox / f"call-{i}.wav"
        files[path] = make_wav(path, seconds=0.3, salt=f"failover-{i}")

    def held_by_a() -> list[dict[str, Any]]:
        return [r for r in a.status() if r["node"] == "node-a"
                and r["state"] in ("submitted", "submitting", "uploading", "uploaded")]

    held = wait_until(held_by_a, timeout=30, message="node-a holding files in flight")
    b = DaemonProcess(node_config(tmp_path, "node-b", pg_url, inbox, sim),
                      tmp_path / "b.log").start()
    daemons.append(b)
    b.wait_for_event("watch_root_started")
    a.kill()
    killed_at = time.monotonic()
    # A is dead: whatever is not transcribed now is left for B.
    left = {str(p) for p, d in files.items() if not transcribed(p, d)}
    assert left, "node-a should die with files in flight (jobs take 2 s)"
    wait_until(lambda: all(transcribed(p, d) for p, d in files.items()), timeout=90,
               message="node-b finishing every file")
    moved_on = time.monotonic() - killed_at
    rows = b.status()
    assert {r["state"] for r in rows} == {"done"}
    assert all(r["node"] is None for r in rows)
    assert b.terminate() == 0
    per_content = sim.creates_per_content()
    assert set(per_content) == {hashlib.sha256(d).hexdigest() for d in files.values()}
    assert sorted(per_content.values()) == [1] * len(files)
    assert b.tracebacks() == [] and sim.internal_errors() == []
    # B wrote the outputs of every file A left unfinished.
    finished_by_b = {line.get("source") for line in b.log_lines()
                     if line.get("event") == "transcript_written"}
    assert left <= finished_by_b
    print(f"failover: {len(held)} in flight on node-a, {len(left)} left at the kill, all "
          f"finished by node-b {moved_on:.1f}s after it (lease {LEASE}s)")


def test_journal_copy_cli(tmp_path: Path, pg_url: str) -> None:
    """``watcherd journal copy SQLITE URL`` prints the counts; a bad source exits 2."""
    db = tmp_path / "j.db"
    with SQLiteJournal.open(db, exclusive=True) as journal:
        journal.observe_many([(str(tmp_path / "a.wav"), str(tmp_path), FileStat(1, 1, 1, 1),
                               "{}")])
    result = watcherd("journal", "copy", str(db), pg_url)
    assert result.returncode == 0, result.stderr
    assert "copied 1 sources, 1 events, 0 results, 0 job times" in result.stdout
    with Journal.open(pg_url, readonly=True) as copied:
        assert [s.path for s in copied.all()] == [str(tmp_path / "a.wav")]
    missing = watcherd("journal", "copy", str(tmp_path / "none.db"), pg_url)
    assert missing.returncode == 2 and "no journal at" in missing.stderr
