"""Full-text search of stored transcripts: what is indexed, and a user's query made safe.

The index holds one row per utterance of each stored result (keyed by its content key), so a
hit knows where in the recording it is. Files are found through the sources that hold the
content key now and are ``done``: a file renamed, reprocessed or gone is found (or not) as the
journal says at the moment of the search, with nothing else to keep in step.

A query is what a person types: words, ``"a phrase"``, ``prefix*``, ``-word`` to leave out.
It is never handed to the database as syntax: every term becomes a quoted string of the
index's own query language (FTS5 in SQLite, ``tsquery`` in PostgreSQL), so ``NEAR``, ``OR``,
a lone ``-``, stray quotes or parentheses are words or nothing, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from watcherd.journal._base import Source
from watcherd.outputs.job import read_job

__all__ = [
    "HIGHLIGHT_END", "HIGHLIGHT_START", "Hit", "IndexState", "QueryError", "Term",
    "fts5_query", "parse_query", "tsquery", "utterance_rows",
]

#: Around each matched word of a snippet (control characters no transcript keeps: see
#: :func:`utterance_rows`); the CLI and the page turn them into their own highlight.
HIGHLIGHT_START = "\x02"
HIGHLIGHT_END = "\x03"

# A term finds something only if it holds a letter or a digit (what both indexes keep).
_WORDISH = re.compile(r"[^\W_]")
# The last word of a prefix term, which gets the prefix mark in PostgreSQL.
_LAST_WORD = re.compile(r"[^\W_]+$")
_MAX_TERMS = 32


class QueryError(ValueError):
    """A query that finds nothing by its form (empty, only left-out words); says what to do."""


@dataclass(frozen=True)
class Term:
    """One thing to find: a word or a phrase (``text``), maybe a prefix, maybe left out."""

    text: str
    prefix: bool = False
    negated: bool = False


@dataclass(frozen=True)
class Hit:
    """A file whose transcript matches: its best utterance and where it starts."""

    source: Source
    start: float
    end: float
    snippet: str  # the utterance's text around the match, matches between the HIGHLIGHT marks
    hits: int  # matching utterances of this file among those read


@dataclass(frozen=True)
class IndexState:
    """How far the index is: results stored, results indexed, rows in the index."""

    results: int
    indexed: int
    utterances: int

    @property
    def backlog(self) -> int:
        """Stored results not indexed yet (filled in the background after an upgrade)."""
        return max(0, self.results - self.indexed)


def parse_query(text: str) -> tuple[Term, ...]:
    """The terms of a typed query; QueryError when nothing in it can be looked for."""
    terms: list[Term] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        negated = False
        if ch == "-" and i + 1 < n and not text[i + 1].isspace():
            negated, i = True, i + 1
        if text[i] == '"':
            close = text.find('"', i + 1)
            end = n if close < 0 else close
            body = text[i + 1:end]
            i = n if close < 0 else close + 1
            prefix = i < n and text[i] == "*"
            if prefix:
                i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] != '"':
                i += 1
            body = text[start:i]
            prefix = body.endswith("*")
        body = " ".join(body.replace("*", " ").split())
        if _WORDISH.search(body):
            terms.append(Term(body, prefix=prefix, negated=negated))
    if not terms:
        raise QueryError("the search has no word to look for: type a word, a \"phrase\" "
                         "or the start of a word followed by *")
    if all(t.negated for t in terms):
        raise QueryError("the search only leaves words out (-word): add a word to look for")
    if len(terms) > _MAX_TERMS:
        raise QueryError(f"the search has {len(terms)} terms; use at most {_MAX_TERMS}")
    # Looked-for terms first: FTS5's NOT needs something on its left.
    return tuple(sorted(terms, key=lambda t: t.negated))


def fts5_query(terms: tuple[Term, ...]) -> str:
    """SQLite FTS5 query text: each term a quoted string (its own syntax is never used)."""
    parts = []
    for term in terms:
        quoted = '"' + term.text.replace('"', '""') + '"' + (" *" if term.prefix else "")
        parts.append(("NOT " if term.negated else ("AND " if parts else "")) + quoted)
    return " ".join(parts)


def tsquery(terms: tuple[Term, ...]) -> str:
    """PostgreSQL ``to_tsquery`` text: each term a quoted phrase, parsed by the index's own
    configuration (so it splits words exactly as the indexed text was split)."""
    parts = []
    for term in terms:
        text = term.text.replace("\\", " ").replace("'", "''")
        quoted = f"'{text}'"
        if term.prefix:
            last = _LAST_WORD.search(term.text)
            head = term.text[:last.start()].strip() if last else term.text
            if last is not None:
                tail = f"'{last.group(0)}':*"
                quoted = tail if not _WORDISH.search(head) else (
                    "'" + head.replace("\\", " ").replace("'", "''") + "' <-> " + tail)
        parts.append(("!" if term.negated else "") + f"({quoted})")
    return " & ".join(parts)


def utterance_rows(job: Mapping[str, Any]) -> list[tuple[float, float, str]]:
    """What one stored result puts in the index: ``(start, end, text)`` per utterance.

    The job's utterances (its timeline); a job with none but a full transcript is one row at
    0 s. Read leniently (:func:`watcherd.outputs.job.read_job`): odd JSON indexes what it can.
    The highlight marks are taken out of the text, so only a match can hold them.
    """
    try:
        transcription = read_job(job).transcription
    except ValueError:
        return []
    rows = [(u.start, u.end, _clean(u.text)) for u in transcription.utterances]
    rows = [r for r in rows if r[2].strip()]
    if not rows and transcription.full_transcript.strip():
        rows = [(0.0, 0.0, _clean(transcription.full_transcript))]
    return rows


def _clean(text: str) -> str:
    return text.replace(HIGHLIGHT_START, " ").replace(HIGHLIGHT_END, " ")
