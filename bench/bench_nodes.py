"""Several nodes: throughput with 1, 2, 3 daemons on one PostgreSQL journal, and failover time.

Usage: python bench/bench_nodes.py [--files 24] [--concurrency 6] [--job-seconds 3]
       [--nodes 1,2,3] [--settle 2.0] [--leases 5,30] [--failover-files 6] [--no-throughput]
       [--no-failover] [--timeout 300]
Every node is a real ``watcherd run`` subprocess with ``[journal] url`` on a private PostgreSQL
cluster (started here as in tests/pg.py: a temporary folder, a Unix socket, no TCP port; as the
``postgres`` user when run as root), ``[node] name`` and one ``[[watch]]`` with ``id = "inbox"``
on the same folder; the Gladia simulator runs C jobs at once, T seconds each, and every node has
``max_concurrent_jobs = C``, a limit the nodes share through the database. Figures are printed,
never asserted.

Throughput: the N recordings are copied in once every node is READY; makespan runs from the
first copy to the last ``transcript_written`` line over all nodes' logs; efficiency =
(N*T/C) / makespan. Failover: two nodes, files dropped; the first node seen holding a file in
flight (job being created or created) is SIGKILLed; the journal is read every 50 ms for the
files it held: when the other node first holds one (the lease ran out), when the first moves
to another state, when all are done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import common

from tests.pg import PgCluster, find_bindir, start_cluster, stop_cluster

#: States in which a file has a job at Gladia (or is getting one): "in flight".
IN_FLIGHT = ("submitting", "submitted", "transcribing")


def node_config(path: Path, *, api_url: str, url: str, name: str, inbox: Path,
                concurrency: int, settle: float, lease: float | None) -> Path:
    """One node's config, the README's "Several machines" shape: journal url, node, watch id."""
    lines = [
        "[gladia]",
        f"api_key = {json.dumps(common.API_KEY)}",
        f"api_url = {json.dumps(api_url)}",
        f"max_concurrent_jobs = {concurrency}",
        "",
        "[journal]",
        f"url = {json.dumps(url)}",
    ]
    if lease is not None:
        lines.append(f"lease_seconds = {lease!r}")
    lines += [
        "",
        "[node]",
        f"name = {json.dumps(name)}",
        "",
        "[log]",
        'format = "json"',
        'level = "info"',
        "",
        "[defaults]",
        f"settle_seconds = {settle!r}",
        "",
        "[[watch]]",
        f"path = {json.dumps(str(inbox))}",
        'id = "inbox"',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def daemons(configs: Sequence[Path], workdir: Path) -> Iterator[list[common.Daemon]]:
    """Start a daemon per config, wait for every READY; every one is stopped on the way out."""
    started: list[common.Daemon] = []
    try:
        for config in configs:
            started.append(common.Daemon(config, workdir).start())
        for daemon in started:
            daemon.wait_ready()
        yield started
    finally:
        for daemon in started:
            daemon.stop()


def written(nodes: Sequence[common.Daemon]) -> dict[str, tuple[float, int]]:
    """source -> (time its transcript was written, index of the node that wrote it)."""
    out: dict[str, tuple[float, int]] = {}
    for i, node in enumerate(nodes):
        for line in node.log.events("transcript_written"):
            at = common.log_time(line)
            source = str(line["source"])
            if source not in out or at < out[source][0]:
                out[source] = (at, i)
    return out


@dataclass(frozen=True)
class NodesRun:
    """One throughput run with K nodes."""

    nodes: int
    makespan: float
    efficiency: float
    gets_per_job: float
    per_node: list[int]
    jobs: int
    contents: int
    peak: int
    problems: int
    cpu: list[float]
    plan_full: int


def throughput(cluster: PgCluster, tmp: Path, k: int, args: argparse.Namespace) -> NodesRun:
    """N recordings through K nodes on a fresh database and a fresh simulator."""
    n, c, t = args.files, args.concurrency, args.job_seconds
    work = tmp / f"nodes{k}"
    inbox = work / "inbox"
    inbox.mkdir(parents=True)
    recordings = common.make_recordings(work / "recordings", n, seconds=2.5 * t,
                                        salt=f"nodes{k}")
    url = cluster.create_database()
    try:
        with common.GladiaSimulator(api_key=common.API_KEY, job_seconds=t,
                                    concurrency=c) as sim:
            configs = [node_config(work / f"node-{i}.toml", api_url=sim.base_url, url=url,
                                   name=f"node-{i}", inbox=inbox, concurrency=c,
                                   settle=args.settle, lease=None) for i in range(k)]
            with daemons(configs, work) as nodes:
                started = time.time()
                common.copy_in(recordings, inbox)

                def finished() -> dict[str, tuple[float, int]] | None:
                    for node in nodes:
                        node.check_alive()
                    done = written(nodes)
                    return done if len(done) >= n else None

                done = common.wait_until(finished, timeout=args.timeout, interval=0.1,
                                         message=f"{n} transcripts from {k} nodes")
                problems = sum(len(node.problems()) for node in nodes)
                cpu = [common.cpu_seconds(node.pid) or float("nan") for node in nodes]
            requests = sim.requests()
            per_content = sim.creates_per_content()
            peak = sim.peak_processing
        plan_full = plan_full_waits(url)
    finally:
        cluster.drop_database(url)
    makespan = max(at for at, _ in done.values()) - started
    return NodesRun(
        nodes=k, makespan=makespan, efficiency=n * t / c / makespan,
        gets_per_job=sum(1 for r in requests if r.endpoint == "get") / n,
        per_node=[sum(1 for _, i in done.values() if i == node) for node in range(k)],
        jobs=sum(per_content.values()), contents=len(per_content), peak=peak,
        problems=problems, cpu=cpu, plan_full=plan_full,
    )


def plan_full_waits(url: str) -> int:
    """How many times a node found the shared plan full and put a file back to wait."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM events WHERE to_state = 'waiting'"
                           " AND reason LIKE '%%concurrent jobs are in use%%'").fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Failover:
    """Kill -> the other node taking over the killed node's files, for one lease."""

    lease: float | None
    held: int
    in_flight: int
    first_claim: float
    first_moved: float
    all_done: float
    per_file: list[str]
    jobs: int
    contents: int


def held_rows(conn: Any, ids: Sequence[int]) -> dict[int, tuple[str, str | None]]:
    """state and holding node of these sources."""
    rows = conn.execute("SELECT id, state, node FROM sources WHERE id = ANY(%s)",
                        (list(ids),)).fetchall()
    return {int(r[0]): (str(r[1]), r[2]) for r in rows}


def failover(cluster: PgCluster, tmp: Path, lease: float | None,
             args: argparse.Namespace) -> Failover:
    """Two nodes; one SIGKILLed with files in flight; how long until the other moves them on."""
    import psycopg

    n, c, t = args.failover_files, args.concurrency, args.job_seconds
    work = tmp / f"failover{lease}"
    inbox = work / "inbox"
    inbox.mkdir(parents=True)
    recordings = common.make_recordings(work / "recordings", n, seconds=2.5 * t,
                                        salt=f"failover{lease}")
    url = cluster.create_database()
    try:
        with common.GladiaSimulator(api_key=common.API_KEY, job_seconds=t,
                                    concurrency=c) as sim, \
                psycopg.connect(url, autocommit=True) as conn:
            configs = [node_config(work / f"{name}.toml", api_url=sim.base_url, url=url,
                                   name=name, inbox=inbox, concurrency=c,
                                   settle=args.settle, lease=lease)
                       for name in ("node-a", "node-b")]
            with daemons(configs, work) as (a, b):
                common.copy_in(recordings, inbox)

                def in_flight() -> str | None:
                    a.check_alive()
                    b.check_alive()
                    rows = conn.execute("SELECT node FROM sources WHERE node IS NOT NULL"
                                        " AND state = ANY(%s)", (list(IN_FLIGHT),)).fetchall()
                    return str(rows[0][0]) if rows else None

                # Whichever node first holds a file in flight is the victim (one node often
                # claims a whole small batch); the other must take its files over.
                victim_name = common.wait_until(in_flight, timeout=args.timeout,
                                                interval=0.02,
                                                message="a node holding a file in flight")
                victim, survivor = (a, b) if victim_name == "node-a" else (b, a)
                survivor_name = "node-b" if victim_name == "node-a" else "node-a"
                assert victim.proc is not None
                victim.proc.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                victim.proc.wait(timeout=10)
                # What the victim held at its death (read after it is dead: nothing moves it).
                at_kill = {int(r[0]): str(r[1]) for r in conn.execute(
                    "SELECT id, state FROM sources WHERE node = %s", (victim_name,)).fetchall()}
                ids = list(at_kill)
                first_claim = first_moved = float("nan")
                claimed: dict[int, float] = {}
                finished: dict[int, float] = {}
                deadline = killed + args.timeout
                while time.monotonic() < deadline:
                    survivor.check_alive()
                    now = time.monotonic() - killed
                    rows = held_rows(conn, ids)
                    for i, (state, node) in rows.items():
                        if node == survivor_name:
                            claimed.setdefault(i, now)
                        if state == "done":
                            finished.setdefault(i, now)
                    if first_claim != first_claim and any(
                            node == survivor_name for _, node in rows.values()):
                        first_claim = now
                    if first_moved != first_moved and any(
                            state != at_kill[i] for i, (state, _) in rows.items()):
                        first_moved = now
                    if all(state == "done" for state, _ in rows.values()):
                        all_done = now
                        break
                    time.sleep(0.05)
                else:
                    raise TimeoutError(f"{survivor_name} did not finish {victim_name}'s files in "
                                       f"{args.timeout:.0f} s")
            per_content = sim.creates_per_content()
    finally:
        cluster.drop_database(url)
    return Failover(lease=lease, held=len(at_kill),
                    in_flight=sum(1 for s in at_kill.values() if s in IN_FLIGHT),
                    first_claim=first_claim, first_moved=first_moved, all_done=all_done,
                    per_file=[f"{at_kill[i]}: held {claimed.get(i, float('nan')):.1f} s, "
                              f"done {finished.get(i, float('nan')):.1f} s" for i in ids],
                    jobs=sum(per_content.values()), contents=len(per_content))


def main() -> None:
    """Run the throughput series and the failover runs; print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=24, help="N recordings (default 24)")
    parser.add_argument("--concurrency", type=int, default=6,
                        help="C: the simulator's concurrency and max_concurrent_jobs (6)")
    parser.add_argument("--job-seconds", type=float, default=3.0,
                        help="T: how long the simulator takes per job (3)")
    parser.add_argument("--nodes", default="1,2,3", help="node counts to run (1,2,3)")
    parser.add_argument("--settle", type=float, default=2.0, help="settle_seconds (2.0)")
    parser.add_argument("--leases", default="5,default",
                        help="lease_seconds of the failover runs; 'default' leaves it unset "
                             "(the config default, 30)")
    parser.add_argument("--failover-files", type=int, default=6,
                        help="recordings in each failover run (6)")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--no-failover", action="store_true")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="bound on each run's wait, seconds (300)")
    args = parser.parse_args()
    common.stop_on_signals()
    common.print_machine()
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL's server programs are not installed (initdb not found): "
                         "apt-get install postgresql, or set WATCHERD_PG_BINDIR")
    n, c, t = args.files, args.concurrency, args.job_seconds
    cluster = start_cluster(bindir)
    try:
        with tempfile.TemporaryDirectory(prefix="wd-bench-nodes-") as tmp_name:
            tmp = Path(tmp_name)
            if not args.no_throughput:
                print(f"throughput: N={n} files of {2.5 * t:g} s, C={c} (shared by all nodes), "
                      f"T={t:g} s, settle {args.settle:g} s; ideal makespan {n * t / c:.1f} s")
                print("| nodes | makespan | efficiency | GETs/job | files per node | jobs / "
                      "contents | peak jobs at once | plan-full waits | daemon CPU s | problems |")
                print("|---:|---:|---:|---:|---|---:|---:|---:|---|---:|")
                for k in (int(x) for x in args.nodes.split(",")):
                    r = throughput(cluster, tmp, k, args)
                    print(f"| {r.nodes} | {r.makespan:.1f} s | {r.efficiency:.2f} | "
                          f"{r.gets_per_job:.2f} | {'/'.join(map(str, r.per_node))} | "
                          f"{r.jobs} / {r.contents} | {r.peak} of {c} | {r.plan_full} | "
                          f"{'/'.join(f'{x:.1f}' for x in r.cpu)} | {r.problems} |",
                          flush=True)
            if not args.no_failover:
                print(f"failover: 2 nodes, {args.failover_files} files, C={c}, T={t:g} s; "
                      "the first node holding a file in flight is SIGKILLed")
                print("| lease_seconds | held by the killed node (in flight) | kill -> other "
                      "node holds one | kill -> first moves on | kill -> all done | jobs / "
                      "contents |")
                print("|---:|---:|---:|---:|---:|---:|")
                for text in args.leases.split(","):
                    lease = None if text == "default" else float(text)
                    f = failover(cluster, tmp, lease, args)
                    print(f"| {'default (30)' if lease is None else f'{lease:g}'} | "
                          f"{f.held} ({f.in_flight}) | {f.first_claim:.1f} s | "
                          f"{f.first_moved:.1f} s | {f.all_done:.1f} s | "
                          f"{f.jobs} / {f.contents} |", flush=True)
                    print("  per file (state at kill: kill -> other node holds it, -> done): "
                          + "; ".join(f.per_file), flush=True)
    finally:
        stop_cluster(cluster)


if __name__ == "__main__":
    main()
