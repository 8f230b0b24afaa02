"""Outputs written again from the stored results: ``watcherd render`` and ``watcherd speakers``.

The journal keeps every finished job (by content), so the outputs of a done file can be
rewritten whenever the config's output folder, names or templates change, or its speakers get
names: no request is sent, nothing is paid for again. Each file goes through the same
:func:`watcherd.outcomes.render_outputs` as a finished job, so names, folders, the walk beneath
the roots and the removal of the outputs watcherd wrote before are the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from watcherd import outcomes
from watcherd.config import Config
from watcherd.display import printable
from watcherd.errors import SourceError
from watcherd.folders import Folders
from watcherd.journal import Journal, Source
from watcherd.outputs.job import (
    SPEAKER_NAME_MAX,
    speaker_name,
    speaker_number,
    stored_names,
    with_names,
)

__all__ = ["Rendered", "parse_names", "rename_speakers", "render_sources", "shown_outputs"]


@dataclass(frozen=True)
class Rendered:
    """What rendering one file did: its outputs now, or why it was not rendered."""

    path: str
    written: tuple[str, ...] = ()
    problem: str | None = None


def _render_one(journal: Journal, folders: Folders, source: Source,
                job: Mapping[str, object] | None = None) -> Rendered:
    if source.state != "done" or source.content_key is None:
        return Rendered(source.path, problem=f"not done yet ({source.state}): its outputs "
                        "are written when it is")
    stored = job if job is not None else journal.result_for(source.content_key)
    if stored is None:
        return Rendered(source.path, problem="no stored result in the journal; run `watcherd "
                        "retry --reprocess` on it (a new job)")
    settings = folders.outputs_for(source)
    try:
        source, _ = asyncio.run(outcomes.render_outputs(
            journal, source, dict(stored), settings, engine=source.engine or ""))
    except (OSError, ValueError, SourceError) as exc:
        message = exc.message if isinstance(exc, SourceError) else str(exc)
        return Rendered(source.path, problem=f"cannot write its outputs: {message}")
    return Rendered(source.path, written=source.written_outputs)


def render_sources(config: Config, journal: Journal, paths: Sequence[str]) -> list[Rendered]:
    """Render the done files among ``paths`` again (every done file of the config's watches
    when ``paths`` is empty); a path the journal does not know is reported, not raised."""
    folders = Folders(config.watches, defaults=config.defaults)
    if paths:
        chosen: list[Source | str] = [journal.by_path(p) or p for p in paths]
    else:
        chosen = [s for s in journal.in_states(["done"])
                  if folders.watch_of_source(s) is not None]
    found: list[Rendered] = []
    for entry in chosen:
        if isinstance(entry, str):
            found.append(Rendered(entry, problem="not in the journal"))
        else:
            found.append(_render_one(journal, folders, entry))
    return found


def parse_names(pairs: Sequence[str]) -> dict[int, str | None]:
    """``1=Alice 2=Bob`` as {0: "Alice", 1: "Bob"}; ``3=`` (no name) as {2: None}: forget it.

    ValueError says which pair is wrong and how it should look.
    """
    found: dict[int, str | None] = {}
    for pair in pairs:
        label, sep, name = pair.partition("=")
        number = speaker_number(label.strip())
        if not sep or number is None:
            raise ValueError(f"{printable(pair)}: expected NUMBER=NAME, such as 1=Alice (the "
                             "number of \"Speaker 1\"; NUMBER= forgets a name)")
        if not name.strip():
            found[number] = None
            continue
        clean = speaker_name(name)
        if clean is None:
            raise ValueError(f"{printable(pair)}: a name is one line of printable text of at "
                             f"most {SPEAKER_NAME_MAX} characters")
        found[number] = clean
    return found


def rename_speakers(config: Config, journal: Journal, path: str,
                    names: Mapping[int, str | None]) -> Rendered:
    """Give the speakers of one done file these names and write its outputs again.

    The names are kept with the stored result (in its ``watcherd`` block, which NAME.json
    carries too), so every later render, and a journal rebuilt from NAME.json, keeps them.
    """
    source = journal.by_path(path)
    if source is None:
        return Rendered(path, problem="not in the journal")
    if source.state != "done" or source.content_key is None:
        return Rendered(path, problem=f"not done yet ({source.state}): name its speakers "
                        "once it is")
    job = journal.result_for(source.content_key)
    if job is None:
        return Rendered(path, problem="no stored result in the journal; run `watcherd retry "
                        "--reprocess` on it (a new job)")
    merged: dict[int, str] = dict(stored_names(job))
    for number, name in names.items():
        if name is None:
            merged.pop(number, None)
        else:
            merged[number] = name
    named = with_names(job, merged)
    journal.store_result(source, named)
    return _render_one(journal, Folders(config.watches, defaults=config.defaults), source,
                       named)


def shown_outputs(rendered: Rendered) -> str:
    """One line for people: the file and its outputs now."""
    names = ", ".join(printable(Path(p).name) for p in rendered.written)
    return f"{printable(rendered.path)}: {names}"
