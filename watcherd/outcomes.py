"""How an attempt ends for a source, the same for every engine: wait, fail, or settle again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import structlog

from watcherd.journal import Journal

log = structlog.get_logger("watcherd.outcomes")


def wait(journal: Journal, source_id: int, reason: str, delay: float, *,
         attempts: int | None = None) -> None:
    """Schedule another attempt in ``delay`` seconds; the reason shows in ``status``."""
    source = journal.get(source_id)
    changes: dict[str, Any] = {"next_attempt_at": time.time() + delay, "last_error": reason}
    if attempts is not None:
        changes["attempts"] = attempts
    journal.transition(source, "waiting", actor="worker", reason=reason, **changes)


def fail(journal: Journal, source_id: int, reason: str, *, attempts: int | None = None) -> None:
    """Give up on the source until a person acts; the reason says what to do."""
    source = journal.get(source_id)
    changes: dict[str, Any] = {} if attempts is None else {"attempts": attempts}
    journal.transition(
        source, "failed", actor="worker", reason=reason, last_error=reason,
        next_attempt_at=None, submit_started_at=None, **changes,
    )
    log.error("source_failed", source=source.path, reason=reason)


def resettle(journal: Journal, source_id: int, reason: str) -> None:
    """The file vanished or changed under us: gone, or back to settling as a new version."""
    source = journal.get(source_id)
    if not Path(source.path).exists():
        journal.transition(
            source, "gone", actor="worker", reason=f"source {reason}",
            last_error="the source disappeared before it was transcribed",
            submit_started_at=None,
        )
        log.warning("source_gone", source=source.path, reason=f"source {reason}")
        return
    # Start over from settling: new bytes mean a new content key, so nothing of the old
    # version's remote work applies (a job made for it stays findable by its own key).
    journal.transition(
        source, "pending", actor="worker", reason=f"source {reason}", sha256=None,
        content_key=None, audio_url=None, job_id=None, submit_started_at=None,
        note=f"the file {reason}; waiting for it to settle", changed_at=time.time(),
    )
    log.info("source_changed", source=source.path, reason=f"source {reason}")
