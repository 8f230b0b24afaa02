"""``watcherd purge-remote``: delete at Gladia the jobs this daemon made earlier.

For people who turn ``delete_after = "done"`` on later: Gladia keeps every job 12 months. The
jobs are found through the list (``GET /v2/pre-recorded``, every page, per the contract) and
recognised by watcherd's own ``custom_metadata`` keys (``wf_key`` and ``wf_file``); only done or
errored jobs whose result the journal no longer waits for are deleted, so a file in flight
never loses its job.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from watcherd.engines.gladia.client import GladiaClient
from watcherd.engines.gladia.config import GladiaConfig
from watcherd.errors import ConfigError, GladiaError, JobNotFound
from watcherd.journal import ACTIVE_STATES, Journal

__all__ = ["PurgeResult", "purge_client", "purge_remote"]

#: Key prefixes watcherd writes into custom_metadata.wf_key (identity.py).
_KEY_PREFIXES = ("wf2-", "wf1-")
#: Jobs per list page while purging, and at most this many pages (Gladia's own limit is not
#: documented; 50 a page keeps each answer small).
_PAGE = 50
_MAX_PAGES = 2000


@dataclass(frozen=True)
class PurgeResult:
    """What one run did (or, with dry_run, would do)."""

    deleted: int
    skipped: int
    failed: int


def _is_ours(job: Mapping[str, Any]) -> bool:
    """Whether a listed job was created by watcherd (its own custom_metadata keys)."""
    metadata = job.get("custom_metadata")
    if not isinstance(metadata, Mapping):
        return False
    key = metadata.get("wf_key")
    return isinstance(key, str) and key.startswith(_KEY_PREFIXES) and "wf_file" in metadata


def purge_client(gladia: GladiaConfig) -> Callable[[], GladiaClient]:
    """How ``watcherd usage purge-remote`` reaches Gladia; ConfigError (before the journal is
    opened) when there is no key to do it with."""
    key = gladia.api_key
    if key is None:
        raise ConfigError("purge-remote needs the Gladia API key: set [gladia] api_key or "
                          "api_key_file, or GLADIA_API_KEY")
    return functools.partial(GladiaClient, gladia.api_url, key)


async def purge_remote(journal: Journal, client: GladiaClient, *, older_than_days: float,
                       dry_run: bool, say: Callable[[str], None]) -> PurgeResult:
    """Delete (or list, with ``dry_run``) watcherd's jobs created over ``older_than_days``
    ago that are done or in error and that no file in the journal still waits on."""
    before = datetime.fromtimestamp(time.time() - older_than_days * 86400, tz=UTC)
    jobs = await client.list_jobs(before_date=before, limit=_PAGE, max_pages=_MAX_PAGES)
    waited = {s.job_id for s in journal.in_states(ACTIVE_STATES) if s.job_id}
    deleted = skipped = failed = 0
    for job in jobs:
        job_id = job.get("id")
        if not isinstance(job_id, str) or not _is_ours(job):
            continue
        name = job["custom_metadata"].get("wf_file", "?")
        created = job.get("created_at", "?")
        if job.get("status") not in ("done", "error") or job_id in waited:
            say(f"kept    {job_id} ({name}, created {created}): still {job.get('status')} "
                "or awaited by a file in the journal")
            skipped += 1
            continue
        if dry_run:
            say(f"would delete {job_id} ({name}, created {created})")
            deleted += 1
            continue
        try:
            await client.delete(job_id)
        except JobNotFound:
            pass  # gone already
        except GladiaError as exc:
            say(f"failed  {job_id} ({name}): {exc.describe()}")
            failed += 1
            continue
        journal.delete_done(job_id)
        say(f"deleted {job_id} ({name}, created {created})")
        deleted += 1
    return PurgeResult(deleted=deleted, skipped=skipped, failed=failed)
