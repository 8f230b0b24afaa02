"""``watcherd status --usage`` (hours this month against the plan) and ``watcherd
purge-remote`` (delete the jobs watcherd made earlier at Gladia)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import click

from watcherd.cli._common import config_option, handles_errors
from watcherd.config import Config, load_config
from watcherd.errors import JournalError
from watcherd.journal.configured import journal_exists, open_for_command
from watcherd.usage import UsageReport, plan_of, read_report

__all__ = ["purge_remote_command", "show_usage"]


def show_usage(config: Config, *, as_json: bool) -> None:
    """Print this month's hours by folder and engine against [gladia] monthly_hours."""
    if not journal_exists(config):
        click.echo("no journal yet: no hours used")
        return
    with open_for_command(config, readonly=True) as journal:
        report: UsageReport = read_report(journal, plan_of(config.gladia), time.time())
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
        return
    for line in report.lines():
        click.echo(line)


@click.command("purge-remote")
@click.option("--older-than", "older_than", type=click.FloatRange(min=0), default=0.0,
              metavar="DAYS", help="Only jobs created more than DAYS days ago (default: all).")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@config_option
@handles_errors
def purge_remote_command(older_than: float, dry_run: bool, config_path: Path | None) -> None:
    """Delete at Gladia the jobs watcherd created (audio and results), done or in error.

    For turning [gladia] delete_after = "done" on later: Gladia keeps jobs 12 months. Jobs
    are recognised by watcherd's own custom_metadata keys; a job a file still waits on is
    kept. The transcripts beside your files (and NAME.json) are not touched.
    """
    from watcherd.engines.gladia.purge import purge_client, purge_remote

    config = load_config(config_path)
    client_for = purge_client(config.gladia)
    if not journal_exists(config):
        raise JournalError("no journal yet: start watcherd once, or there is nothing to purge")

    async def run() -> int:
        with open_for_command(config, readonly=False) as journal:
            async with client_for() as client:
                result = await purge_remote(journal, client, older_than_days=older_than,
                                            dry_run=dry_run, say=click.echo)
        verb = "would delete" if dry_run else "deleted"
        click.echo(f"{verb} {result.deleted} job{'s' if result.deleted != 1 else ''}, kept "
                   f"{result.skipped}, failed {result.failed}")
        return 1 if result.failed else 0

    raise SystemExit(asyncio.run(run()))
