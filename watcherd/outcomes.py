"""How an attempt ends for a source, the same for every engine: wait, fail, settle again, finish."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from watcherd import outputs, roots
from watcherd.errors import SourceError
from watcherd.fileops import run_on
from watcherd.fserrors import classify
from watcherd.journal import UNKNOWN_ID, FileStat, Journal, Source
from watcherd.retry import RetryPolicy

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


async def present(source: Source) -> bool:
    """Whether the source's path exists, asked off the loop in its storage's threads.

    An error other than "not there" (a hung or failing share) counts as present: the file is
    settled again, never declared gone because its storage hiccuped.
    """
    try:
        await run_on(source.watch_root, lambda: roots.current().locate(source.path).stat())
    except roots.LinkOutside:
        return True
    except OSError as exc:
        return classify(exc).kind != "missing"
    return True


def _resettle(journal: Journal, source_id: int, reason: str, *, present: bool) -> None:
    """The file vanished or changed under us: gone, or back to settling as a new version.

    ``present`` comes from :func:`present`, read off the loop by the caller.
    """
    source = journal.get(source_id)
    if not present:
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


# Errors writing an output that mean something is in the way, which a person can move.
_OBSTACLES = frozenset({errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENOTEMPTY})


async def file_trouble(journal: Journal, source_id: int,
                       exc: SourceError | OutputsNotWritten | OSError,
                       policy: RetryPolicy) -> None:
    """How an attempt ends when the file, or where its outputs go, is the trouble.

    A transient SourceError settles the file again (or marks it gone), a permanent one fails
    it; outputs that could not be written wait (the result is kept, so no new job or run is
    needed); any other file system error is classified by :func:`file_problem`.
    """
    if isinstance(exc, SourceError):
        if exc.transient:
            _resettle(journal, source_id, exc.message,
                     present=await present(journal.get(source_id)))
        else:
            fail(journal, source_id, exc.message)
    elif isinstance(exc, OutputsNotWritten):
        log.error("outputs_not_written", source=journal.get(source_id).path,
                  source_id=source_id, error=str(exc.error))
        file_problem(journal, source_id, exc.error,
                     doing="cannot write the transcript next to the source", policy=policy)
    else:
        # Reading the source or its folder failed in a way the steps did not foresee (the
        # folder became unreadable...): one classification decides.
        file_problem(journal, source_id, exc, doing="cannot read the source", policy=policy)


def file_problem(journal: Journal, source_id: int, exc: OSError, *, doing: str,
                 policy: RetryPolicy) -> None:
    """Decide for one file system error, the same way for every step and engine.

    ``doing`` says what failed in the user's words ("cannot write the transcript next to the
    source"). A vanished file is settled again (or gone); a permanent error fails the file; the
    rest wait with backoff, transient ones only for a budget of attempts.
    """
    problem = classify(exc)
    reading = doing.startswith("cannot read")
    if problem.kind == "missing" and reading:
        # The step already found the path missing; resettle checks nothing more.
        _resettle(journal, source_id, "disappeared", present=False)
        return
    source = journal.get(source_id)
    attempts = source.attempts + 1
    reason = f"{doing}: {problem.message}; {problem.hint}"
    obstacle = not reading and exc.errno in _OBSTACLES
    if obstacle:
        # Something sits where an output goes (a folder named NAME.txt): a person can move it.
        reason = (f"{doing}: {problem.message}; something in the folder is in the way of the "
                  "transcript's name (a folder named like it?): move it away")
    if problem.kind == "permanent" and not obstacle:
        fail(journal, source_id, reason, attempts=attempts)
        return
    if problem.kind == "transient" and attempts >= policy.file_error_budget:
        fail(journal, source_id, f"{reason} ({attempts} attempts failed; fix the storage and "
             "run `watcherd retry`)", attempts=attempts)
        return
    delay = policy.delay(attempts)
    wait(journal, source_id, f"{reason}; retrying later", delay, attempts=attempts)
    log.warning("source_file_error", source=source.path, error=problem.message,
                kind=problem.kind, retry_in=round(delay, 1))


class OutputsNotWritten(Exception):
    """The transcript could not be written next to the source (disk full, folder not writable)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


async def finish(
    journal: Journal, source: Source, job: Mapping[str, Any],
    formats: Sequence[str] | outputs.OutputSettings, *, engine: str,
) -> None:
    """Write a finished job's outputs (beside the source, or in its output_dir), then mark
    the source done.

    The output base is committed before any file is written, so a crash between the two
    rewrites the same files instead of claiming another name. A base that changed (another
    output_dir or output_name) keeps the old outputs on record until they are removed.
    """
    source, written = await render_outputs(journal, source, job, formats, engine=engine,
                                           record=False)
    journal.transition(
        source, "done", actor="worker", reason="transcript written",
        job_id=str(job.get("id")), done_at=time.time(), attempts=0, next_attempt_at=None,
        last_error=None, note=None, engine=engine, outputs_json=written,
    )


async def render_outputs(
    journal: Journal, source: Source, job: Mapping[str, Any],
    formats: Sequence[str] | outputs.OutputSettings, *, engine: str, record: bool = True,
) -> tuple[Source, str]:
    """Write the outputs of ``job`` for ``source`` as its watch now asks, remove the ones
    watcherd wrote before that are no longer among them, and record what was written
    (``record=False``: the caller records the returned ``outputs_json`` with its own change).

    Used by every engine's finish and by ``watcherd render`` / ``watcherd speakers``: the same
    names, the same walk beneath the roots, nothing sent anywhere.
    """
    settings = outputs.OutputSettings.of(formats)
    facts = outputs.Facts(source=source.path, engine=engine, date=_job_date(job))
    naming = outputs.naming_for(Path(source.path), Path(source.watch_root), settings,
                                lang=outputs.read_job(job).language, date=facts.date)
    kept = None if source.output_base is None else Path(source.output_base)
    if kept is not None and outputs.base_fits(kept) and naming.owns(Path(source.path), kept):
        base = kept  # still a name of this naming: kept, even if a better one freed up
    else:
        base = outputs.output_base(
            Path(source.path), naming=naming,
            taken=lambda b: journal.output_base_taken(str(b), by_other_than=source.path))
    if str(base) != source.output_base:
        # The intent first: the new name is ours before anything is written under it, and
        # the outputs still at the old one stay on record until they are removed.
        stale = list(source.written_outputs)
        source = journal.transition(
            source, source.state, actor="worker",  # type: ignore[arg-type]
            reason="outputs named", output_base=str(base),
            outputs_json=_stale_json(source, stale),
        )
    before = source.written_outputs
    written = await run_on(source.watch_root, _write_beside, source, base, settings, job, facts)
    gone: list[str] = [p for p in before if Path(p) not in set(written)]
    if gone:
        await run_on(source.watch_root, _remove_outputs, gone)
    if settings.output_dir is not None:
        gone += await _carry_along(journal, source, settings.output_dir, written)
    recorded = json.dumps([p.name[len(base.name) + 1:] for p in written])
    if record:
        source = journal.annotate(source, actor="user", reason="outputs written again",
                                  outputs_json=recorded)
    log.info("transcript_written", source=source.path, job_id=job.get("id"), engine=engine,
             outputs=[str(p) for p in written], removed=gone)
    return source, recorded


async def _carry_along(journal: Journal, source: Source, output_dir: Path,
                       written: Sequence[Path]) -> list[str]:
    """Remove the output-folder outputs of this content's sources that are no longer there.

    A file moved or renamed within the root is a new path with the same content; beside it,
    its outputs moved with it, but in an output folder they stay at the old mirrored place.
    Once the new place has its outputs, the old ones (only those watcherd wrote beneath the
    output folder, and only for a source whose file is gone) are removed. A copy still there
    keeps its own.
    """
    if source.content_key is None:
        return []
    removed: list[str] = []
    for other in journal.outputs_of_content(source.content_key, other_than=source.path):
        if await present(other):
            continue
        left = [p for p in other.written_outputs
                if Path(p).is_relative_to(output_dir) and Path(p) not in set(written)]
        if left:
            await run_on(other.watch_root, _remove_outputs, left)
            removed += left
        journal.annotate(other, actor="worker", outputs_json=None,
                         reason=f"outputs moved with the file to {source.path}")
    return removed


def _stale_json(source: Source, stale: Sequence[str]) -> str | None:
    """What is still written under the old base, as outputs_json records it."""
    if not stale or source.output_base is None:
        return None
    prefix = source.output_base + "."
    return json.dumps({"base": source.output_base,
                       "suffixes": [p[len(prefix):] for p in stale if p.startswith(prefix)]})


def _job_date(job: Mapping[str, Any]) -> str:
    """The job's date, YYYY-MM-DD (when it was created; today when it does not say)."""
    for key in ("created_at", "completed_at"):
        value = job.get(key)
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value[:10]):
            return value[:10]
    return time.strftime("%Y-%m-%d", time.gmtime())


def _remove_outputs(paths: Sequence[str]) -> None:
    """Remove outputs watcherd wrote that a re-render no longer writes (run it in the source's
    storage threads).

    Only files the journal recorded as written, only regular files with an output's suffix,
    and each through its folder opened beneath its root without following links: a link or
    folder now in an output's place is left alone, and so is anything already gone.
    """
    wall = roots.current()
    for text in paths:
        path = Path(text)
        if not outputs.is_output_or_temp(path):
            continue
        try:
            place = wall.locate_entry(path)
            with place.folder() as folder:
                st = os.stat(place.name, dir_fd=folder, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    os.unlink(place.name, dir_fd=folder)
                    log.info("old_output_removed", path=text)
        except (OSError, ValueError, roots.LinkOutside) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.warning("old_output_not_removed", path=text, error=str(exc))


def _write_beside(source: Source, base: Path, settings: outputs.OutputSettings,
                 job: Mapping[str, Any], facts: outputs.Facts | None = None) -> list[Path]:
    """Write the outputs into the source's folder as it is now, or beneath its output_dir,
    never through a link (run it in the source's storage threads).

    The folder is opened from its root (the watch root, or the output folder) down without
    following links (:mod:`watcherd.roots`); folders missing beneath an output folder are
    made, with its permissions. Right before writing, the source is looked up and must be the
    file that was hashed (device, inode, size, mtime). A folder swapped for a link, or moved,
    while the job ran fails that check, and the attempt settles again (the move is tracked,
    and the outputs then go where the source is now): nothing is ever written into another
    folder. Outputs take the source's permission bits: a private recording, a private
    transcript.
    """
    wall = roots.current()
    place, source_place = wall.locate_entry(base), wall.locate(source.path)
    beside = (source_place.top, source_place.parts[:-1]) == (place.top, place.parts[:-1])
    create = None if beside else _folder_mode(settings.output_dir)
    try:
        with place.folder(create=create) as folder:
            if beside:
                st = os.stat(source_place.name, dir_fd=folder, follow_symlinks=False)
            else:
                st = source_place.stat()
            if not _same_file(source, st):
                raise SourceError("moved or changed just before its transcript was written",
                                  transient=True)
            written = outputs.write_outputs(base, settings, job, mode=st.st_mode,
                                            folder=folder, facts=facts)
            _remove_stale_temps(folder, written)
    except roots.LinkOnPath:
        raise SourceError(roots.SWAPPED, transient=True) from None
    except FileNotFoundError:
        if create is not None and not source_place.path.exists():
            raise SourceError("disappeared before its transcript was written",
                              transient=True) from None
        if create is not None:
            raise OSError(errno.ENOENT, "the output folder does not exist; create it (or "
                          "fix output_dir)", str(settings.output_dir)) from None
        raise SourceError("disappeared before its transcript was written",
                          transient=True) from None
    return written


def _folder_mode(output_dir: Path | None) -> int:
    """The permission bits of folders made beneath an output folder: the folder's own."""
    if output_dir is None:
        return 0o777
    try:
        return stat.S_IMODE(os.stat(output_dir).st_mode)
    except OSError:
        return 0o777


def _remove_stale_temps(folder: int, written: Sequence[Path]) -> None:
    """Delete temp files of these outputs left by a crash in the middle of an earlier write.

    The output base belongs to one source, whose outputs are written by one task at a time, so
    once they are all in place any temp file named after them is a leftover. ``folder`` is
    the descriptor they were written in.
    """
    prefixes = {f".{path.name}{outputs.TEMP_MARKER}-" for path in written}
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if any(name.startswith(prefix) for prefix in prefixes):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder)
                log.info("stale_temp_removed", path=name)


def _same_file(source: Source, st: os.stat_result) -> bool:
    """Whether ``st`` is the file the journal hashed for this source.

    Size and mtime always; device and inode where this node recorded them (UNKNOWN_ID is
    another node's number, or a journal from before they were kept).
    """
    now = FileStat.of(st)
    if (now.size, now.mtime_ns) != (source.size, source.mtime_ns):
        return False
    if source.inode not in (None, UNKNOWN_ID) and now.inode != source.inode:
        return False
    return source.dev in (None, UNKNOWN_ID) or now.dev == source.dev


def check_unchanged(source: Source, when: str = "since it was hashed",
                    gone: str | None = None) -> None:
    """Raise a transient SourceError when the file is not the one that was hashed (run it in
    the source's storage threads: it stats the file)."""
    try:
        st = roots.current().locate(source.path).stat()
    except roots.LinkOnPath:
        raise SourceError(roots.SWAPPED, transient=True) from None
    except FileNotFoundError:
        raise SourceError(gone or f"disappeared {when}", transient=True) from None
    if not _same_file(source, st):
        raise SourceError(f"changed {when}", transient=True)


def check_present(source: Source) -> None:
    """Raise a transient SourceError when the source is gone before its outputs are written.

    The result is already stored by content, so a source that comes back later gets its
    transcript without a new job or run; one that stays away is simply gone.
    """
    try:
        roots.current().locate(source.path).stat()
    except roots.LinkOnPath:
        raise SourceError(roots.SWAPPED, transient=True) from None
    except OSError:
        raise SourceError("disappeared before its transcript was written",
                          transient=True) from None
