"""``watcherd doctor``: check everything the daemon depends on and say how to fix what is wrong.

Each check returns findings (OK, WARN or FAIL, with the fix for anything not OK). Nothing here
changes anything: the journal is opened read-only and the API call is a one-item list.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from watcherd.config import Config, WatchConfig
from watcherd.engines import ENGINES, computes_here, engine_class, engine_for, engines_needed
from watcherd.errors import ConfigError
from watcherd.findings import Finding, ok
from watcherd.journal import SCHEMA_VERSION, JournalSpace
from watcherd.journal.sqlite import measure_space
from watcherd.web.state import read_state

# Below this much free space a root (or the journal's folder) is worth a warning: outputs are
# small, but a full disk turns every transcript into a failure.
_LOW_SPACE_BYTES = 100 * 1024 * 1024
_INOTIFY_DIR = Path("/proc/sys/fs/inotify")
# Counting folders under a huge tree (or a slow network mount) must not make doctor hang.
_WALK_SECONDS = 10.0


# -- config and engine -----------------------------------------------------------------------


def check_config(config: Config) -> list[Finding]:
    """The config file was found and loaded, and it names something to watch."""
    if config.source is not None:
        found = [ok("config", f"loaded {config.source}")]
    elif config.watches:
        # The quick start (`run --watch DIR`) needs no file: that is not a problem.
        found = [ok("config", "no config file: the defaults and --watch")]
    else:
        found = [Finding("WARN", "config", "no config file found; using the defaults",
                         "write one with `watcherd config init --watch DIR`, or pass "
                         "--config PATH")]
    for warning in config.warnings:
        # Loads, but probably a mistake (an option watcherd does not know is passed through).
        found.append(Finding("WARN", "options", warning,
                             "check the name against Gladia's current API reference; if "
                             "Gladia does not know it either, its files fail with a 400"))
    if not config.watches:
        found.append(Finding(
            "FAIL", "watches", "nothing to watch: `watcherd run` would refuse to start",
            "pass --watch DIR (to run and to doctor), or add a [[watch]] table with "
            "path = \"/folder/to/watch\" (`watcherd config init --watch DIR` writes one)",
        ))
    return found


def local_engine_installed() -> bool | None:
    """Whether the local engine is installed; None when this watcherd has no local engine."""
    try:
        module = importlib.import_module("watcherd.engines.local.model")
    except ImportError:
        return None
    probe = getattr(module, "local_engine_installed", None)
    if probe is None:
        return None
    return bool(cast(Callable[[], bool], probe)())


_NO_KEY_FIX = (
    "set [gladia] api_key_file (or api_key) in the config, or the environment variable "
    "GLADIA_API_KEY; get a key at https://app.gladia.io"
)
_LOCAL_FIX = "install it with: pip install 'watcherd[local]'"


def check_engine(config: Config, *, local_installed: bool | None) -> list[Finding]:
    """The engine the daemon would choose, and whether the optional local engine is there."""
    found: list[Finding] = []
    # An engine named in [engine] that runs here (the offline one) must be installed.
    offline_chosen = config.engine in ENGINES and computes_here(config.engine)
    try:
        # The daemon's own choice, so doctor can never disagree with what `run` would do.
        engine = engine_for(config, local_installed=local_installed)
    except ConfigError as exc:
        found.append(Finding("FAIL", "engine", f"`watcherd run` would refuse: {exc}",
                             _NO_KEY_FIX))
    else:
        if engine is None:
            found.append(Finding(
                "FAIL", "engine",
                "none available: files are recorded but wait in the journal",
                _NO_KEY_FIX if local_installed or not offline_chosen
                else f"{_LOCAL_FIX}, or {_NO_KEY_FIX}",
            ))
        else:
            found.append(ok("engine", engine_class(engine).describe(config)))
    if local_installed:
        found.append(ok("local engine", "installed"))
    elif offline_chosen:
        found.append(Finding("FAIL", "local engine", "not installed", _LOCAL_FIX))
    elif local_installed is not None:
        found.append(ok("local engine", "not installed (optional, for offline use)"))
    return found


async def _check_api(config: Config) -> list[Finding]:
    """What the engines that talk to a remote API say about it (nothing to check: [])."""
    try:
        names = sorted(engines_needed(config))
    except ConfigError:
        return []  # check_engine already says why no engine can run
    found: list[Finding] = []
    for name in names:
        found += await engine_class(name).doctor(config)
    return found


# -- watch roots -----------------------------------------------------------------------------


def _network_probe() -> Callable[[Path], tuple[bool, str]] | None:
    try:
        module = importlib.import_module("watcherd.watcher")
    except ImportError:
        return None
    probe = getattr(module, "is_network_filesystem", None)
    return None if probe is None else cast(Callable[[Path], tuple[bool, str]], probe)


def _free_space(path: Path, topic: str) -> Finding | None:
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return None
    if free < _LOW_SPACE_BYTES:
        return Finding("WARN", topic, f"only {free // (1024 * 1024)} MiB free on {path}",
                       "free some space: outputs and the journal cannot be written on a full "
                       "disk")
    return None


def check_root(watch: WatchConfig, *, created: bool = False) -> list[Finding]:
    """One watch root: exists, is a readable and writable folder, where it lives, free space.

    ``created``: the root was named with ``--watch``, which ``watcherd run`` creates, so its
    absence is fine when the nearest existing folder above it is writable.
    """
    root = watch.path
    topic = f"watch {root}"
    if not root.exists() and created:
        parent = _nearest_existing(root)
        if os.access(parent, os.W_OK | os.X_OK):
            return [ok(topic, "does not exist yet: `watcherd run --watch` creates it")]
        return [Finding("FAIL", topic, f"does not exist and cannot be created: {parent} is not "
                        "writable", f"create it as a user who can (sudo mkdir -p {root}) and "
                        "give this user write access")]
    if not root.exists():
        return [Finding("FAIL", topic, "does not exist",
                        f"create it (mkdir -p {root}) or fix its [[watch]] path; a running "
                        "watcherd starts watching it within a second of its creation")]
    if not root.is_dir():
        return [Finding("FAIL", topic, "is not a folder", "point [[watch]] path at a folder")]
    found: list[Finding] = []
    if not os.access(root, os.R_OK | os.X_OK):
        found.append(Finding("FAIL", topic, "cannot be read by this user",
                             f"give this user read access: chmod u+rx {root} (or run watcherd "
                             "as its owner)"))
    if watch.output_dir is not None:
        found += _check_output_dir(watch.output_dir, topic)
    elif not os.access(root, os.W_OK | os.X_OK):
        found.append(Finding("FAIL", topic,
                             "is not writable: transcripts are written next to the sources",
                             f"give this user write access to {root} and its subfolders, or "
                             "set output_dir to a folder it can write"))
    probe = _network_probe()
    if probe is not None:
        network, fstype = probe(root)
        if network and watch.poll == "never":
            found.append(Finding(
                "WARN", topic,
                f"is on a network file system ({fstype}) but poll = \"never\": change events "
                "from other machines are missed",
                "set poll = \"auto\" (or \"always\") for this watch; the periodic rescan "
                "still catches files, only later",
            ))
        elif network:
            found.append(ok(topic, f"on a network file system ({fstype}): watched by polling"))
    space = _free_space(root, topic)
    if space is not None:
        found.append(space)
    if not any(f.level != "OK" for f in found):
        found.insert(0, ok(topic, "exists and readable; it is only read: transcripts go to "
                            f"{watch.output_dir}" if watch.output_dir is not None
                            else "exists, readable and writable"))
    return found


def _check_output_dir(output_dir: Path, topic: str) -> list[Finding]:
    """The output folder of a watch: it must exist and be writable (the root need not be)."""
    if not output_dir.is_dir():
        return [Finding("FAIL", topic, f"its output_dir {output_dir} does not exist",
                        f"create it (mkdir -p {output_dir}) or fix output_dir")]
    if not os.access(output_dir, os.W_OK | os.X_OK):
        return [Finding("FAIL", topic, f"its output_dir {output_dir} is not writable",
                        f"give this user write access to {output_dir}")]
    return []


# -- inotify ---------------------------------------------------------------------------------


def count_folders(root: Path, *, limit: int, deadline: float) -> tuple[int, bool]:
    """Folders under ``root`` (itself included), counting no further than ``limit`` + 1.

    Returns (count, complete); ``complete`` is False when the limit or the ``deadline``
    (a ``time.monotonic()`` value) stopped the walk. Symlinks are not followed.
    """
    count = 0
    stack = [root]
    while stack:
        if count > limit or time.monotonic() > deadline:
            return count, False
        folder = stack.pop()
        count += 1
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                    except OSError:
                        continue
        except OSError:
            continue
    return count, True


def _uses_inotify(watch: WatchConfig, probe: Callable[[Path], tuple[bool, str]] | None) -> bool:
    if watch.poll == "always" or not watch.path.is_dir():
        return False
    return not (watch.poll == "auto" and probe is not None and probe(watch.path)[0])


def check_inotify(
    watches: Sequence[WatchConfig],
    *,
    limits_dir: Path = _INOTIFY_DIR,
    walk_seconds: float = _WALK_SECONDS,
) -> Finding:
    """The per-user inotify watch limit covers every folder watched natively."""
    try:
        limit = int((limits_dir / "max_user_watches").read_text().strip())
    except (OSError, ValueError):
        return ok("inotify", "no inotify limit on this system")
    probe = _network_probe()
    deadline = time.monotonic() + walk_seconds
    needed = 0
    complete = True
    for watch in watches:
        if not _uses_inotify(watch, probe):
            continue
        if not watch.recursive:
            needed += 1
            continue
        count, done = count_folders(watch.path, limit=limit - needed, deadline=deadline)
        needed += count
        complete = complete and done
    key = "fs.inotify.max_user_watches"
    wanted = max(524288, needed * 2)
    fix = (f"raise it: sudo sysctl {key}={wanted}, and keep it across reboots with the line "
           f"{key}={wanted} in /etc/sysctl.d/90-watcherd.conf")
    noun = "folder" if needed == 1 else "folders"
    counted = f"{needed}{'' if complete else '+'} {noun} to watch"
    if needed > limit:
        return Finding("FAIL", "inotify", f"{counted}, but {key} is {limit}", fix)
    if needed * 2 > limit:
        return Finding("WARN", "inotify",
                       f"{counted} of {key} = {limit}; other programs share this limit", fix)
    if not complete:
        return Finding("WARN", "inotify",
                       f"stopped counting after {walk_seconds:.0f}s at {counted} "
                       f"({key} = {limit})",
                       f"if `watcherd run` logs an inotify limit error, {fix}")
    return ok("inotify", f"{counted}, {key} = {limit}")


# -- journal ---------------------------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_journal(path: Path) -> list[Finding]:
    """The journal is sound (PRAGMA quick_check, read-only), or its folder can be created."""
    topic = "journal"
    if not path.exists():
        base = _nearest_existing(path.parent)
        if not os.access(base, os.W_OK | os.X_OK):
            return [Finding("FAIL", topic, f"{path} does not exist and {base} is not writable",
                            "set [journal] path to a writable place, or create the folder "
                            f"{path.parent} for this user")]
        return [ok(topic, f"{path} will be created on first run")]
    fix = ("restart watcherd: it moves a damaged journal aside by itself (as "
           f"{path.name}.corrupt-TIME) and starts a fresh one; sources whose NAME.json is "
           "still next to them are recognised as done, the others are transcribed again")
    unreadable_fix = ("check the permissions of the journal and its folder; run doctor as the "
                      "user watcherd runs as")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        return [Finding("FAIL", topic, f"{path} cannot be read: {exc}", unreadable_fix)]
    try:
        rows = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        sources = 0
        if version >= 1:
            sources = conn.execute("SELECT count(*) FROM sources").fetchone()[0]
        # Measured only on a sound file (dbstat reads every page).
        size = measure_space(conn, path) if rows == ["ok"] else None
        auto_vacuum = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
    except sqlite3.OperationalError as exc:
        # Locked, unreadable, or its folder forbids the shared-memory file: not damage.
        return [Finding("FAIL", topic, f"{path} cannot be read: {exc}", unreadable_fix)]
    except sqlite3.DatabaseError as exc:
        return [Finding("FAIL", topic, f"{path} is damaged: {exc}", fix)]
    finally:
        conn.close()
    if rows != ["ok"]:
        # SQLite packs many problems into one row, with a banner line first.
        problems = [line for row in rows for line in str(row).splitlines()
                    if line and not line.startswith("***")]
        shown = "; ".join(problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return [Finding("FAIL", topic, f"{path} failed its integrity check: {shown}{more}",
                        fix)]
    if version > SCHEMA_VERSION:
        return [Finding("FAIL", topic,
                        f"{path} was written by a newer watcherd (schema {version})",
                        "upgrade watcherd")]
    assert size is not None
    found = [ok(topic, f"{path} is sound ({sources} files known)"),
             _journal_size(size, sources, compactable=auto_vacuum != 2)]
    space = _free_space(path.parent, topic)
    if space is not None:
        found.append(space)
    return found


#: Free pages worth a `journal compact`, as a share of the file.
_COMPACT_WORTH = 0.25


def _journal_size(size: JournalSpace, files: int, *, compactable: bool = False) -> Finding:
    """How big the journal is and what takes the space; a warning when much of it is free
    pages that only a compaction gives back (``compactable``: the file has no incremental
    auto-vacuum yet, as journals made before 0.2)."""
    free = dict(size.parts).get("free pages", 0)
    detail = f"{size.describe(files or None)}; measured by {size.how}"
    if size.total and free / size.total > _COMPACT_WORTH and compactable:
        return Finding("WARN", "journal size", detail + f", {free * 100 // size.total}% free",
                       "stop watcherd and run `watcherd journal compact` to give the free "
                       "pages back (new free pages are then returned as they appear)")
    return ok("journal size", detail)


# -- the whole report ------------------------------------------------------------------------


def diagnose(
    config: Config,
    *,
    limits_dir: Path = _INOTIFY_DIR,
    walk_seconds: float = _WALK_SECONDS,
    created: frozenset[Path] = frozenset(),
    notify_test: bool = False,
) -> list[Finding]:
    """Every check, in the order a person would fix things (``created``: --watch roots;
    ``notify_test``: send a test notification to each route)."""
    found = check_config(config)
    found += check_engine(config, local_installed=local_engine_installed())
    found += asyncio.run(_check_api(config))
    for watch in config.watches:
        found += check_root(watch, created=watch.path in created)
    found.append(check_inotify(config.watches, limits_dir=limits_dir,
                               walk_seconds=walk_seconds))
    if config.journal_url is not None:
        found += _check_database(config)
    else:
        found += check_journal(config.journal_path)
    found += _check_search(config)
    found += _check_notify(config, send=notify_test)
    found.append(check_page(config))
    return found


def _check_search(config: Config) -> list[Finding]:
    """The search index is there and in step with the stored transcripts."""
    from watcherd.journal.configured import journal_exists, open_for_command
    from watcherd.journal.search import NoSearchIndex

    topic = "search index"
    if not journal_exists(config):
        return []
    fill = ("start the daemon (`watcherd run` or the service): it adds the index and "
            "indexes stored transcripts in the background")
    try:
        with open_for_command(config, readonly=True) as journal:
            state = journal.search_state()
            journal.search("watcherd", limit=1)  # the index answers a query
    except NoSearchIndex:
        return [Finding("WARN", topic, "none yet: the journal was made by an older watcherd",
                        fill)]
    except Exception as exc:  # the journal check above already says why it cannot be read
        return [Finding("WARN", topic, f"cannot be read: {type(exc).__name__}: {exc}")]
    if state.backlog:
        return [Finding("WARN", topic, f"{state.backlog} of {state.results} stored "
                        "transcripts are not indexed yet", "a running daemon indexes them in "
                        "the background; " + fill)]
    return [ok(topic, f"in step with the journal: {state.results} transcripts, "
                       f"{state.utterances} utterances")]


def _check_notify(config: Config, *, send: bool) -> list[Finding]:
    """The notification routes; with ``send``, a test message to each one."""
    topic = "notifications"
    notify = config.notify
    if not notify.enabled:
        return [ok(topic, "off (no [notify] urls)")] if send else []
    if not send:
        return [ok(topic, f"on for {', '.join(notify.on) or 'nothing'}; "
                           "`watcherd doctor --notify` sends a test")]
    from watcherd.notify import send_test

    return [ok(topic, f"test sent through {label}") if delivered else
            Finding("FAIL", topic, f"the test through {label} was not delivered",
                    "check the URL (https://github.com/caronc/apprise/wiki) and that its "
                    "service is reachable from this machine")
            for label, delivered in send_test(notify)]


#: Clock skew with the database server that doctor warns about. Leases use the server's
#: clock, so skew never breaks them; it only makes logs and ``status`` times disagree.
_SKEW_WARN_SECONDS = 5.0


def _check_database(config: Config) -> list[Finding]:
    """The shared journal: the database is reachable, its schema known, the clocks agree."""
    from watcherd.errors import JournalError
    from watcherd.journal.configured import display_location, postgres_journal_class

    topic = "journal"
    where = display_location(config)
    try:
        cls = postgres_journal_class()
    except ConfigError as exc:
        return [Finding("FAIL", topic, str(exc), "install the PostgreSQL extra")]
    from watcherd.journal.postgres import SCHEMA_VERSION as PG_SCHEMA_VERSION

    try:
        journal = cls.open(config.journal_url or "", readonly=True,
                           lease_seconds=config.lease_seconds)
    except JournalError as exc:
        return [Finding("FAIL", topic, f"the database {where} cannot be used: {exc}",
                        "check [journal] url, that PostgreSQL runs and accepts this user; "
                        "start `watcherd run` once to create the schema")]
    try:
        version = journal.schema_version()
        skew = journal.clock_skew()
        nodes = len(journal.leases())
        size = journal.space() if version >= PG_SCHEMA_VERSION else None
        files = sum(journal.counts().values()) if size is not None else 0
    except Exception as exc:  # a check: report, never raise
        return [Finding("FAIL", topic, f"the database {where} does not answer: {exc}",
                        "check the database server and the network")]
    finally:
        journal.close()
    found = []
    if version != PG_SCHEMA_VERSION:
        found.append(Finding(
            "WARN" if version < PG_SCHEMA_VERSION else "FAIL", topic,
            f"{where} has schema {version}, this watcherd knows {PG_SCHEMA_VERSION}",
            "start `watcherd run` (it migrates)" if version < PG_SCHEMA_VERSION
            else "upgrade watcherd on this node"))
    else:
        found.append(ok(topic, f"{where} reachable, schema {version} ({nodes} files leased "
                                f"now), node name {config.node_name!r}"))
    if size is not None:
        found.append(_journal_size(size, files))
    if abs(skew) > _SKEW_WARN_SECONDS:
        found.append(Finding(
            "WARN", "clock", f"this machine's clock is {abs(skew):.1f}s "
            f"{'behind' if skew > 0 else 'ahead of'} the database server's",
            "run NTP (chrony, systemd-timesyncd) on every node and the database server; "
            "leases use the server's clock, but logs and status times will disagree"))
    else:
        found.append(ok("clock", f"within {abs(skew):.2f}s of the database server"))
    return found


def check_page(config: Config) -> Finding:
    """The status page: served by the running daemon, or its address free for the next run."""
    if config.http.address is None:
        return ok("status page", "off ([http] listen = \"\")")
    page = read_state(config.journal_path)
    if page is not None:
        if page.serving:
            return ok("status page", f"served at {page.url}")
        return Finding("WARN", "status page", f"not served: {page.listen} is taken",
                       "set [http] listen to a free address (or \"\" to turn the page off) "
                       "and restart watcherd")
    host, port = config.http.address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return Finding("WARN", "status page",
                           f"{config.http.listen} is not free ({exc.strerror}): watcherd would "
                           "run without its page",
                           "stop what uses it, or set [http] listen to another address")
    return ok("status page", f"{config.http.listen} is free (the page starts with the daemon)")


def format_report(findings: Sequence[Finding]) -> str:
    """The findings as text: one line each, the fix indented below, a summary at the end."""
    lines: list[str] = []
    for finding in findings:
        lines.append(f"{finding.level:<4}  {finding.topic}: {finding.detail}")
        if finding.fix and finding.level != "OK":
            lines.append(f"      fix: {finding.fix}")
    fails = sum(1 for f in findings if f.level == "FAIL")
    warns = sum(1 for f in findings if f.level == "WARN")
    if fails or warns:
        lines.append(f"{fails} failed, {warns} warning{'s' if warns != 1 else ''}")
    else:
        lines.append("all checks passed")
    return "\n".join(lines)


def exit_code(findings: Sequence[Finding]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 1 if any(f.level == "FAIL" for f in findings) else 0
