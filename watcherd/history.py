"""``watcherd status PATH``: one file's story from the journal, every transition with why.

Names and reasons go through :func:`watcherd.display.printable` for people (one line each,
whatever the name holds); the JSON form keeps them lossless for programs.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watcherd.display import printable
from watcherd.journal import STATES, Source


class UnknownState(ValueError):
    """``--state`` named no state; the message lists them (and the likely one)."""


def check_state(value: str) -> str:
    """``value`` when it is a journal state; UnknownState with the choices otherwise."""
    if value in STATES:
        return value
    close = difflib.get_close_matches(value.lower(), STATES, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise UnknownState(f"unknown state {printable(value)!r}{hint}; expected one of "
                       + ", ".join(STATES))


def _iso(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def history_lines(source: Source, events: Sequence[dict[str, Any]],
                  outputs: Sequence[Path] = (), folded: Mapping[str, Any] | None = None
                  ) -> list[str]:
    """The lines ``status PATH`` prints for one source: a summary, then each event.

    ``outputs`` are the files it wrote that are on disk (a pattern such as ``NAME.*`` would
    match the source itself too); ``folded`` is the summary of its events older than
    ``[journal] history_days`` (Journal.folded_history), said before the events kept.
    """
    lines = [printable(source.path), f"  state: {source.state}"]
    details = []
    if source.job_id:
        details.append(f"job {printable(source.job_id)}")
    if source.engine:
        details.append(f"engine {source.engine}")
    if source.attempts:
        details.append(f"attempts {source.attempts}")
    if source.state == "waiting" and source.next_attempt_at:
        details.append(f"next attempt {_iso(source.next_attempt_at)}")
    if details:
        lines[-1] += f" ({'; '.join(details)})"
    if source.last_error and source.state != "done":
        lines.append(f"  reason: {printable(source.last_error)}")
    elif source.note and source.state != "done":
        lines.append(f"  note: {printable(source.note)}")
    if outputs:
        lines.append("  outputs: " + ", ".join(printable(str(p)) for p in outputs))
    elif source.output_base and source.state == "done":
        lines.append(f"  outputs: none on disk (they were written as "
                     f"{printable(source.output_base)}.EXT)")
    lines.append(f"  first seen {_iso(source.created_at)}; history:")
    if folded is not None:
        lines.append(_folded_line(folded))
    for event in events:
        before = event.get("from_state") or "(new)"
        after = event.get("to_state") or "?"
        move = f"{before} -> {after}" if before != after else f"{after} (note)"
        reason = event.get("reason")
        actor = event.get("actor") or ""
        text = f"    {_iso(event.get('at'))}  {move:26} {actor:8}"
        if reason:
            text += f" {printable(str(reason))}"
        lines.append(text.rstrip())
    return lines


def _folded_line(folded: Mapping[str, Any]) -> str:
    """The line that stands for a source's events folded away (older than history_days)."""
    count = int(folded["folded_events"])
    text = (f"    (until {_iso(folded['folded_until'])}: {count} older event"
            f"{'' if count == 1 else 's'} folded; first seen {_iso(folded['first_seen'])}")
    if folded.get("done_at"):
        text += f", done {_iso(folded['done_at'])}"
    text += f", attempts {int(folded['attempts'])}"
    if folded.get("last_error"):
        text += f", last error: {printable(str(folded['last_error']))}"
    return text + ")"


def history_json(source: Source, events: Sequence[dict[str, Any]],
                 folded: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The same history for programs (``status PATH --json``), lossless; ``folded`` (the
    summary of events older than history_days) under "folded", only when there is one."""
    extra: dict[str, Any] = {} if folded is None else {"folded": {
        "until": _iso(folded["folded_until"]), "events": int(folded["folded_events"]),
        "first_seen": _iso(folded["first_seen"]),
        "done_at": _iso(folded["done_at"]) if folded.get("done_at") else None,
        "attempts": int(folded["attempts"]), "last_error": folded.get("last_error")}}
    return {
        "path": source.path, "state": source.state, "job_id": source.job_id,
        "engine": source.engine, "attempts": source.attempts, "error": source.last_error,
        "note": source.note, "outputs": source.output_base,
        "created_at": _iso(source.created_at), "done_at": _iso(source.done_at)
        if source.done_at else None,
        "events": [{"at": _iso(e.get("at")), "from_state": e.get("from_state"),
                    "to_state": e.get("to_state"), "actor": e.get("actor"),
                    "reason": e.get("reason")} for e in events],
    } | extra
