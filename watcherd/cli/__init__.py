"""The ``watcherd`` command line, all in this package: run, transcribe, status and retry here;
doctor and service in :mod:`watcherd.cli.ops`; shared options in :mod:`watcherd.cli._common`.

Exit codes: 0 success, 1 work failed, 2 bad usage or bad config (click's own usage errors
already exit 2).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import structlog

from watcherd import __version__
from watcherd.cli._common import (
    config_option,
    create_watch_dirs,
    handles_errors,
    resolved_dirs,
    watch_option,
)
from watcherd.cli.configcmd import config_group
from watcherd.cli.ops import doctor, logs, service
from watcherd.cli.progressbar import TerminalBar
from watcherd.cli.search import search
from watcherd.cli.usagecmd import purge_remote_command, show_usage
from watcherd.config import (
    Config,
    WatchConfig,
    load_config,
    reject_file_roots,
    secret_values,
    with_extra_watches,
)
from watcherd.display import json_safe, printable
from watcherd.engines.registry import default_model
from watcherd.errors import ConfigError, JournalError
from watcherd.history import UnknownState, check_state, history_json, history_lines
from watcherd.identity import options_json
from watcherd.journal import STATES, JournalLocked, JournalNotReady, Source, human_bytes
from watcherd.journal.configured import (
    journal_exists,
    open_for_command,
)
from watcherd.log import configure_logging
from watcherd.pause import read_pause
from watcherd.progress import ProgressBoard
from watcherd.usage import model_of
from watcherd.watcher import watch_for
from watcherd.web.health import journal_problem
from watcherd.web.state import read_state
from watcherd.web.transcripts import existing_outputs


def _load(config_path: Path | None, *, need_key: bool = True) -> Config:
    return load_config(config_path, need_key=need_key)


def _with_service_journal(config: Config) -> Config:
    """Read the system service's journal when this user has none of their own.

    A system-wide unit keeps its journal in its StateDirectory (/var/lib/watcherd); a person
    running `watcherd status` without a config would otherwise look in their own state dir
    and find nothing.
    """
    from dataclasses import replace

    from watcherd.cli.ops import SYSTEM_JOURNAL
    from watcherd.config import default_journal_path

    if (config.journal_path == default_journal_path() and not config.journal_path.exists()
            and SYSTEM_JOURNAL.exists()):
        click.echo(f"(reading the system service's journal {SYSTEM_JOURNAL})", err=True)
        return replace(config, journal_path=SYSTEM_JOURNAL)
    return config


#: The entry point (``watcherd = "watcherd.cli:main"``); the commands are its subcommands.
__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="watcherd")
def main() -> None:
    """watcherd: drop a recording into a folder, get its transcript next to it."""


@main.command()
@config_option
@watch_option
@handles_errors
def run(config_path: Path | None, watch_dirs: tuple[Path, ...]) -> None:
    """Run the daemon in the foreground until SIGTERM/SIGINT."""
    # Until the daemon's own handlers are installed nothing is under way: stop cleanly.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))
    from watcherd.daemon import Daemon

    extra = resolved_dirs(watch_dirs)

    def load() -> Config:
        loaded = _load(config_path)
        reject_file_roots(loaded)
        return with_extra_watches(loaded, extra) if extra else loaded

    config = load()
    if not config.watches:
        raise ConfigError(
            f"{config.source or 'no config file found'}: nothing to watch: add a [[watch]] "
            "table with a path, or pass --watch DIR"
        )
    configure_logging(fmt=config.log_format, level=config.log_level, secrets=secret_values(config),
                      roots=[w.path for w in config.watches])
    for folder in create_watch_dirs(extra):
        structlog.get_logger("watcherd.cli").info("watch_root_created", root=str(folder))
    sys.exit(asyncio.run(Daemon(config, reload_config=load).run()))


@main.command()
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option
@handles_errors
def transcribe(files: tuple[Path, ...], config_path: Path | None) -> None:
    """Transcribe FILES now, through the same pipeline and journal; wait for them."""
    from watcherd.daemon import transcribe as run_transcribe

    config = _load(config_path)
    resolved = [f.expanduser().resolve() for f in files]
    board = ProgressBoard()
    bar = TerminalBar(board, sys.stderr,
                      resolved[0].name if len(resolved) == 1 else f"{len(resolved)} files")
    # Log lines and the bar share the terminal: each line erases the bar, the next draw
    # puts it back below.
    configure_logging(fmt=config.log_format, level=config.log_level, stream=sys.stderr,
                      secrets=secret_values(config), before_line=bar.clear)
    template = with_extra_watches(_without_watches(config), [resolved[0].parent]).watches[0]
    # Named files skip the settle wait: the user says they are complete.
    from dataclasses import replace

    template = replace(template, settle_seconds=0.0)
    try:
        states = asyncio.run(run_transcribe(config, resolved, template, progress=board,
                                            on_wait=bar.draw))
    except JournalLocked:
        # A daemon drives this journal: it does the work, this command waits for it.
        states = _through_daemon(config, resolved, template, bar)
    finally:
        bar.clear()
    with open_for_command(config, readonly=True) as journal:
        for path, state in states.items():
            source = journal.by_path(path)
            detail = ""
            written = [] if source is None else existing_outputs(journal, source)
            if source is not None and source.state == "done" and written:
                # The files themselves: a pattern (NAME.*) would match the source too.
                detail = " -> " + ", ".join(printable(str(o.path)) for o in written)
            elif source is not None and source.last_error:
                detail = f": {printable(source.last_error)}"
            click.echo(f"{state:8} {printable(path)}{detail}")
    sys.exit(0 if all(s == "done" for s in states.values()) else 1)


def _through_daemon(config: Config, files: list[Path], template: WatchConfig,
                    bar: TerminalBar) -> dict[str, str]:
    """Hand ``files`` to the running daemon; finish them here if it stops meanwhile.

    The bar shows each file's state in the journal, and the daemon's progress when its
    status page is up.
    """
    from watcherd.daemon import transcribe as run_transcribe
    from watcherd.handoff import hand_to_daemon
    from watcherd.web.remote import PageProgress

    feed = PageProgress(bar.board, config.journal_path, config.http.token)

    def waited(working: Mapping[int, str]) -> None:
        feed(working)
        bar.draw()

    result = hand_to_daemon(config.journal_path, files, template, on_wait=waited)
    states = dict(result.states)
    if result.unfinished:
        bar.board.retain(())
        states.update(asyncio.run(run_transcribe(config, list(result.unfinished), template,
                                                 progress=bar.board, on_wait=bar.draw)))
    return {str(f): states.get(str(f), "ignored") for f in files}


def _without_watches(config: Config) -> Config:
    from dataclasses import replace

    return replace(config, watches=())


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _status_row(source: Source, since: float | None, node: str | None = None
                ) -> dict[str, Any]:
    return {
        "path": source.path,
        "state": source.state,
        "job_id": source.job_id,
        "error": source.last_error,
        "note": source.note,
        "attempts": source.attempts,
        "next_attempt_at": _iso(source.next_attempt_at) if source.state == "waiting" else None,
        "updated_at": _iso(source.updated_at),
        "since": _iso(since),
        "sha256": source.sha256,
        "engine": source.engine,
        "model": model_of(source.options, source.engine),
        "outputs": source.output_base,
        # The node holding a file in flight (a shared journal); None when nobody does.
        "node": node,
    }


def _state_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return check_state(value)
    except UnknownState as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per file.")
@click.option("--state", "only_state", callback=_state_option, metavar="STATE",
              help="List only the files in this state (pending, failed, done, ...).")
@click.option("--usage", "usage", is_flag=True,
              help="Show the hours used this billing month, by folder and engine, against "
              "[gladia] monthly_hours.")
@config_option
@handles_errors
def status(paths: tuple[Path, ...], as_json: bool, only_state: str | None, usage: bool,
           config_path: Path | None) -> None:
    """Show what the journal knows: counts by state, then one row per file.

    With PATH..., show each file's history instead: every transition, when and why.
    """
    if paths and only_state:
        raise click.UsageError("--state filters the table; leave it out when naming files")
    if usage and (paths or only_state):
        raise click.UsageError("--usage shows the month's hours; leave out PATH and --state")
    config = _with_service_journal(_load(config_path, need_key=False))
    if usage:
        show_usage(config, as_json=as_json)
        return
    if paths:
        sys.exit(_histories(config, paths, as_json=as_json))
    if not journal_exists(config):
        if as_json:
            click.echo("[]")
            return
        click.echo(f"no journal yet at {config.journal_path}: nothing has been seen")
        return
    paused = journal_pause_line(config)
    if paused is not None and as_json:
        click.echo(paused, err=True)  # stdout stays the JSON array programs read
    try:
        journal = open_for_command(config, readonly=True)
    except JournalNotReady:
        click.echo("[]" if as_json else "no files yet")
        return
    except JournalError:
        if paused is not None and not as_json:
            click.echo(paused, err=True)
        raise
    with journal:
        sources = journal.all()
        counts = journal.counts()
        since = journal.state_since()
        holders = journal.holders()
        # What the journal takes: with the whole table only (--state lists files alone).
        space = journal.space(detail=False) if not as_json and only_state is None else None
    rows = [_status_row(s, since.get(s.id), holders.get(s.id)) for s in sources
            if only_state is None or s.state == only_state]
    if as_json:
        # Lossless for programs: a name that is not UTF-8 keeps its bytes as \udcXX escapes.
        click.echo(json_safe(json.dumps(rows, ensure_ascii=False, indent=2)))
        return
    click.echo("  ".join(f"{state}: {counts[state]}" for state in STATES if counts[state])
               or "no files yet")
    if only_state and not rows:
        click.echo(f"no files in state {only_state}")
    for row in rows:
        extra = []
        if row["job_id"]:
            extra.append(f"job {row['job_id']}")
        if row["attempts"]:
            extra.append(f"attempts {row['attempts']}")
        if row["state"] == "waiting" and row["since"]:
            extra.append(f"since {row['since']}")
        if row["next_attempt_at"]:
            extra.append(f"next {row['next_attempt_at']}")
        if row["node"]:
            extra.append(f"on node {printable(row['node'])}")
        if row["model"] and row["model"] != default_model(row["engine"]):
            extra.append(f"model {printable(row['model'])}")
        reason = row["error"] or row["note"]
        if reason and row["state"] != "done":
            extra.append(printable(reason))
        suffix = f"  ({'; '.join(extra)})" if extra else ""
        # One line per file whatever its name holds (newlines, escape sequences, bytes).
        click.echo(f"{row['state']:10} {printable(row['path'])}{suffix}")
    if space is not None:
        click.echo(f"journal: {space.describe(len(sources))}")
    page = read_state(config.journal_path)
    if page is not None:
        click.echo(page.describe())
    if paused is not None:
        click.echo(paused)


def journal_pause_line(config: Config) -> str | None:
    """What `status` says when the journal cannot be written, or None.

    The daemon's pause file says it when the disk took that file; a full or read-only disk
    takes none, so the journal's file system is looked at here too.
    """
    if config.journal_url is not None:
        return None  # a database that is away: opening it says so
    pause = read_pause(config.journal_path)
    if pause is not None:
        return pause.describe()
    problem = journal_problem(config.journal_path)
    if problem is None:
        return None
    return (f"the journal cannot be written: {problem}; a running watcherd pauses all work "
            "until it can, and resumes by itself: free space or fix the disk")


def _histories(config: Config, paths: tuple[Path, ...], *, as_json: bool) -> int:
    """Print the history of each named file; 1 when one is not in the journal."""
    if not journal_exists(config):
        raise JournalError(f"no journal at {config.journal_path}: nothing has been seen yet")
    found: list[dict[str, Any]] = []
    missing = []
    with open_for_command(config, readonly=True) as journal:
        for given in paths:
            source = journal.by_path(str(given.expanduser().resolve())) or journal.by_path(
                str(given))
            if source is None:
                missing.append(given)
                continue
            events = journal.events(source.id)
            folded = journal.folded_history(source.id)
            if as_json:
                found.append(history_json(source, events, folded))
            else:
                written = [o.path for o in existing_outputs(journal, source)]
                click.echo("\n".join(history_lines(source, events, written, folded)))
    if as_json:
        click.echo(json_safe(json.dumps(found, ensure_ascii=False, indent=2)))
    for given in missing:
        click.echo(f"not in the journal: {printable(given)}", err=True)
    return 1 if missing else 0


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--all-failed", is_flag=True,
              help="Retry every failed file (what no PATH does too).")
@click.option("--reprocess", is_flag=True,
              help="Transcribe these files again with their folder's current options "
              "(also done ones); unchanged options reuse the stored result.")
@config_option
@handles_errors
def retry(paths: tuple[Path, ...], all_failed: bool, reprocess: bool,
          config_path: Path | None) -> None:
    """Put failed files back in the queue (a running daemon picks them up).

    Without PATH, every failed file goes back.
    """
    if reprocess and (all_failed or not paths):
        raise click.UsageError("--reprocess takes the names of the files to transcribe again")
    if paths and all_failed:
        raise click.UsageError("name the files to retry, or pass --all-failed, not both")
    all_failed = all_failed or not paths
    config = _with_service_journal(_load(config_path, need_key=False))
    if not journal_exists(config):
        raise JournalError(f"no journal at {config.journal_path}: nothing to retry")
    wanted = [str(p.expanduser().resolve()) for p in paths]
    with open_for_command(config, readonly=False) as journal:
        unknown = [p for p in wanted if journal.by_path(p) is None]
        if reprocess:
            moved = []
            for path in wanted:
                watch = watch_for(Path(path), config.watches) or _defaults_watch(config, path)
                source = journal.reprocess(path, options_json(watch.options))
                if source is not None:
                    moved.append(source)
        else:
            moved = journal.retry(wanted, all_failed=all_failed)
    for source in moved:
        click.echo(f"queued again: {printable(source.path)}")
    for path in unknown:
        click.echo(f"not in the journal: {printable(path)}", err=True)
    if all_failed:
        count = len(moved)
        click.echo(f"queued {count} failed file{'' if count == 1 else 's'} again"
                   if moved else "nothing to retry: no file has failed")
    elif not moved:
        click.echo("nothing to retry (only failed or waiting files can be retried; "
                   "--reprocess also takes done ones)")
    sys.exit(1 if unknown else 0)


def _defaults_watch(config: Config, path: str) -> WatchConfig:
    return with_extra_watches(_without_watches(config), [Path(path).parent]).watches[0]


def _quiet_logging(config: Config) -> None:
    """Warnings only, on stderr: the command says itself what it wrote."""
    configure_logging(fmt=config.log_format, level="warning", stream=sys.stderr,
                      secrets=secret_values(config))


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@config_option
@handles_errors
def render(paths: tuple[Path, ...], config_path: Path | None) -> None:
    """Write the outputs of done files again from their stored results (no new job).

    After changing output_dir, output_name, subtitle_names, md_template, outputs or
    [watch.speakers]: each file's outputs are written as its watch now says, and the ones
    watcherd wrote before that are no longer among them are removed. Without PATH, every
    done file of this config's watches.
    """
    from watcherd.rerender import render_sources, shown_outputs

    config = _with_service_journal(_load(config_path, need_key=False))
    _quiet_logging(config)
    if not journal_exists(config):
        raise JournalError(f"no journal at {config.journal_path}: nothing to render")
    wanted = [str(p.expanduser().resolve()) for p in paths]
    with open_for_command(config, readonly=False) as journal:
        results = render_sources(config, journal, wanted)
    for result in results:
        if result.problem is None:
            click.echo(f"rendered {shown_outputs(result)}")
        else:
            click.echo(f"not rendered: {printable(result.path)}: {result.problem}", err=True)
    if not results:
        click.echo("nothing to render: no file is done yet")
    sys.exit(1 if any(r.problem for r in results) else 0)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.argument("names", nargs=-1, required=True)
@config_option
@handles_errors
def speakers(file: Path, names: tuple[str, ...], config_path: Path | None) -> None:
    """Name the speakers of a done FILE (1=Alice 2=Bob) and rewrite its outputs.

    The numbers are those of "Speaker 1", "Speaker 2"... in its transcript; NUMBER= forgets
    a name. The outputs are written again from the stored result: nothing is sent, nothing
    is paid for again.
    """
    from watcherd.rerender import parse_names, rename_speakers, shown_outputs

    try:
        given = parse_names(names)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    config = _with_service_journal(_load(config_path, need_key=False))
    _quiet_logging(config)
    if not journal_exists(config):
        raise JournalError(f"no journal at {config.journal_path}: no file is done yet")
    with open_for_command(config, readonly=False) as journal:
        result = rename_speakers(config, journal, str(file.expanduser().resolve()), given)
    if result.problem is not None:
        click.echo(f"not renamed: {printable(result.path)}: {result.problem}", err=True)
        sys.exit(1)
    click.echo(f"renamed the speakers of {shown_outputs(result)}")


@main.group()
def journal() -> None:
    """Journal tools: copy a journal between SQLite and PostgreSQL, compact it."""


@journal.command("copy")
@click.argument("src")
@click.argument("dst")
@config_option
@handles_errors
def journal_copy(src: str, dst: str, config_path: Path | None) -> None:
    """Copy the journal SRC into DST (each a SQLite file or a postgresql:// URL).

    Ids, events, stored results and job times are kept, so the installation that moves pays
    nothing twice. Paths go into PostgreSQL relative to the config's watch ids (as the nodes
    store them). Stop every daemon using either journal first.
    """
    from watcherd.config import watch_roots
    from watcherd.journal.backends import is_postgres_url, postgres_journal_class
    from watcherd.journal.copy import copy_journal

    if is_postgres_url(src) or is_postgres_url(dst):
        postgres_journal_class()  # psycopg missing: a config error that says what to install
    config = _load(config_path, need_key=False)
    report = copy_journal(src, dst, roots=watch_roots(config.watches))
    click.echo(f"copied {report.sources} sources, {report.events} events, "
               f"{report.results} results, {report.job_times} job times, "
               f"{report.remote_jobs} finished jobs (hours, deletes)")


@journal.command("compact")
@config_option
@handles_errors
def journal_compact(config_path: Path | None) -> None:
    """Give the SQLite journal's free space back to the disk (a full VACUUM).

    Stop the daemon first. Needs free disk space about the size of the compacted journal.
    Journals made before 0.2 also switch to giving free pages back by themselves.
    """
    from watcherd.journal.sqlite import SQLiteJournal

    config = _with_service_journal(_load(config_path, need_key=False))
    if config.journal_url is not None:
        raise click.UsageError(
            "compact is for a SQLite journal: PostgreSQL's autovacuum reuses the space (a "
            "VACUUM FULL by the database's owner gives it back to the disk)")
    if not journal_exists(config):
        raise JournalError(f"no journal at {config.journal_path}: nothing to compact")
    journal = SQLiteJournal.open(config.journal_path, exclusive=True)
    shown = [-1]

    def progress(done: float) -> None:
        percent = int(done * 100)
        if percent != shown[0]:
            shown[0] = percent
            click.echo(f"\rcompacting {config.journal_path}: {percent:3d}%", nl=False, err=True)

    try:
        before, after = journal.compact(progress)
    finally:
        journal.close()
    click.echo("", err=True)
    click.echo(f"compacted {config.journal_path}: {human_bytes(before)} -> "
               f"{human_bytes(after)}")


main.add_command(doctor)
main.add_command(purge_remote_command)
main.add_command(config_group)
main.add_command(service)
main.add_command(logs)
main.add_command(search)
