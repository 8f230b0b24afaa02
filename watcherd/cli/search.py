"""``watcherd search QUERY``: the finished transcripts that say something, and where.

Registered on the main group in :mod:`watcherd.cli`. Exit codes as grep's: 0 when something
was found, 1 when nothing was, 2 for a query or an option that cannot be used.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click

from watcherd.cli._common import config_option, handles_errors
from watcherd.config import load_config
from watcherd.display import json_safe, printable
from watcherd.errors import ConfigError
from watcherd.journal.configured import journal_exists, open_for_command
from watcherd.journal.search import (
    Hit,
    QueryError,
    format_time,
    hit_json,
    marked_spans,
)

_LINE_BREAKS = str.maketrans("\n\r\t\v\f\u2028\u2029", " " * 7)


def parse_since(text: str) -> float:
    """``--since``: a date or a date and time (local time, ISO 8601) as epoch seconds."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM (local time)"
        ) from None
    return when.timestamp()


def hit_line(hit: Hit, *, color: bool) -> str:
    """One hit on one line: time in the recording, the file, the snippet."""
    start, end = (("\x1b[1m", "\x1b[0m") if color else ("[", "]"))
    plain, spans = marked_spans(hit.snippet)
    plain = plain.translate(_LINE_BREAKS)  # one line per hit; same length, same spans
    # Each part made printable on its own (a transcript may hold escape sequences), the
    # highlight added after.
    parts, pos = [], 0
    for a, b in spans:
        parts += [printable(plain[pos:a]), start, printable(plain[a:b]), end]
        pos = b
    parts.append(printable(plain[pos:]))
    text = " ".join("".join(parts).split())
    more = f" (+{hit.hits - 1} more)" if hit.hits > 1 else ""
    return f"{format_time(hit.start):>8}  {printable(hit.source.path)}{more}\n          {text}"


@click.command()
@click.argument("query", nargs=-1, required=True)
@click.option("--folder", "folder", type=click.Path(path_type=Path, file_okay=False),
              default=None, help="Only files under this folder.")
@click.option("--since", "since", default=None, metavar="DATE",
              help="Only files transcribed since this date (YYYY-MM-DD[THH:MM], local time).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="At most this many files.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per file.")
@config_option
@handles_errors
def search(query: tuple[str, ...], folder: Path | None, since: str | None, limit: int,
           as_json: bool, config_path: Path | None) -> None:
    """Find finished transcripts that say QUERY: words, "a phrase", prefix*, -left-out.

    Prints each file with the time in the recording where it is said and the words around it.
    """
    after = None if since is None else parse_since(since)
    config = load_config(config_path, need_key=False)
    if not journal_exists(config):
        raise ConfigError(f"no journal at {config.journal_path}: nothing transcribed yet")
    text = " ".join(query)
    where = None if folder is None else str(folder.expanduser().resolve())
    with open_for_command(config, readonly=True) as journal:
        try:
            hits = journal.search(text, folder=where, since=after, limit=limit)
        except QueryError as exc:
            click.echo(f"watcherd: {exc}", err=True)
            sys.exit(2)
        backlog = journal.search_state().backlog
    if as_json:
        click.echo(json_safe(json.dumps([hit_json(h) for h in hits], ensure_ascii=False,
                                        indent=2)))
    else:
        color = sys.stdout.isatty()
        for hit in hits:
            click.echo(hit_line(hit, color=color))
        if not hits:
            click.echo(f"nothing found for {printable(text)}")
    if backlog:
        click.echo(f"({backlog} older transcripts are not indexed yet: the running daemon "
                   "indexes them in the background; search again shortly)", err=True)
    sys.exit(0 if hits else 1)
