"""Keeping the search index: a stored result's utterances put in it and taken out again.

Each function runs inside the caller's transaction on any connection (``execute`` is its
method): the journal's own when a result is stored or the backlog is filled, a copy's when
results arrive in bulk (:mod:`watcherd.journal.copy`). Both databases, dialect by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from watcherd.journal.queries import QUERIES, Dialect
from watcherd.journal.search import utterance_rows
from watcherd.journal.stored import unpack_job

__all__ = ["MAX_UTTERANCES", "forget_indexed", "index_result", "index_stored", "stored_job"]

# An index row's id is (results.doc_id << _UTTERANCE_BITS) | the utterance's place among the
# result's utterance_rows: a hit finds its text in the stored result, which alone keeps it.
_UTTERANCE_BITS = 20
MAX_UTTERANCES = 1 << _UTTERANCE_BITS  # a million utterances: days of speech in one file


def index_result(execute: Callable[..., Any], dialect: Dialect, content_key: str,
                 job: Mapping[str, Any]) -> None:
    """Put one stored result's utterances in the search index, under a new document id.

    Runs inside the caller's transaction on any connection (``execute`` is its method):
    the journal's own when a result is stored, a copy's when results arrive in bulk. What
    the content key had indexed must be forgotten first (:func:`forget_indexed`, while the
    result it was indexed from is still stored). Only the words are indexed: a hit reads its
    time and text back from the stored result.
    """
    queries = QUERIES[dialect]
    rows = utterance_rows(job)[:MAX_UTTERANCES]
    doc = int(execute(queries["search_new_doc"], {}).fetchone()["id"])
    execute(queries["search_mark"], {"content_key": content_key, "doc_id": doc,
                                     "utterances": len(rows)})
    for place, (_, _, _, folded) in enumerate(rows):
        execute(queries["search_add"], {"rowid": doc << _UTTERANCE_BITS | place,
                                        "words": folded})


def forget_indexed(execute: Callable[..., Any], dialect: Dialect, content_key: str) -> None:
    """Take what a content key has in the search index out of it (nothing: a no-op).

    PostgreSQL deletes the document's range of ids. SQLite's contentless FTS5 table (its
    ``contentless_delete`` needs SQLite 3.43) deletes a row only when given its words again:
    they are cut again from the result still stored. Words it cannot give again (a result
    unreadable now) stay in the index under an id no document has any more, found by no
    search (document ids are never given twice: ``search_new_doc``).
    """
    queries = QUERIES[dialect]
    doc = execute(queries["search_doc"], {"content_key": content_key}).fetchone()
    if doc is None:
        return
    low = int(doc["id"]) << _UTTERANCE_BITS
    if dialect == "sqlite":
        rows = utterance_rows(stored_job(doc))[:int(doc["utterances"])]
        for place, (_, _, _, folded) in enumerate(rows):
            execute(queries["search_forget_words"], {"rowid": low | place, "words": folded})
    else:
        execute(queries["search_forget_range"], {"lo": low, "hi": low + MAX_UTTERANCES})
    execute(queries["search_forget"], {"content_key": content_key})


def index_stored(execute: Callable[..., Any], dialect: Dialect, row: Mapping[str, Any]) -> None:
    """:func:`index_result` for a results row as stored (``content_key``, ``job_json``,
    ``job_z``): an object that cannot be read is indexed as having no utterances."""
    index_result(execute, dialect, row["content_key"], stored_job(row))


def stored_job(row: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The job object of a stored results row, read leniently: {} when there is none or it
    cannot be read."""
    if row is None or (row["job_json"] is None and row["job_z"] is None):
        return {}
    try:
        job: Any = unpack_job(row["job_json"], row["job_z"])
    except ValueError:
        return {}
    return job if isinstance(job, Mapping) else {}
