"""Full-text search of stored transcripts: what is indexed, and a user's query made safe.

The index holds one row per utterance of each stored result (keyed by its content key), so a
hit knows where in the recording it is. Files are found through the sources that hold the
content key now and are ``done``: a file renamed, reprocessed or gone is found (or not) as the
journal says at the moment of the search, with nothing else to keep in step.

A query is what a person types: words, ``"a phrase"``, ``prefix*``, ``-word`` to leave out.
It is never handed to the database as syntax: every term becomes a quoted string of the
index's own query language (FTS5 in SQLite, ``tsquery`` in PostgreSQL), so ``NEAR``, ``OR``,
a lone ``-``, stray quotes or parentheses are words or nothing, never an error.

Words are cut here, not by the databases (:func:`words`): the index holds each utterance's
words folded (case, accents, compatibility forms) and separated by single spaces, and a
query's terms are folded alike, so both backends find exactly the same things whatever the
text holds (emoji, direction marks, lone surrogates, scripts a server's locale does not know),
and the snippet's highlight is computed from the same words.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from watcherd.errors import JournalError
from watcherd.journal._base import Source
from watcherd.outputs.job import read_job

__all__ = ["HIGHLIGHT_END", "HIGHLIGHT_START", "Hit", "IndexState", "NoSearchIndex", "QueryError",
           "Term", "format_time", "fts5_query", "hit_json", "marked_spans", "parse_query",
           "snippet", "tsquery", "utterance_rows", "words"]

#: Around each matched word of a snippet (control characters no transcript keeps: see
#: :func:`utterance_rows`); the CLI and the page turn them into their own highlight.
HIGHLIGHT_START = "\x02"
HIGHLIGHT_END = "\x03"

# A word is a run of letters and digits (any script); everything else separates words.
_RUN = re.compile(r"[^\W_]+")
_NOT_WORD = re.compile(r"[\W_]+")
_MAX_TERMS = 32
# A snippet shows this many words before the first match and in all.
_SNIPPET_BEFORE, _SNIPPET_WORDS = 8, 28


class QueryError(ValueError):
    """A query that finds nothing by its form (empty, only left-out words); says what to do."""


class NoSearchIndex(JournalError):
    """The journal predates the index and was opened read-only, so it has none yet."""


@dataclass(frozen=True)
class Term:
    """One thing to find: folded words in a row (one word, or a phrase), maybe ending in a
    prefix, maybe left out."""

    words: tuple[str, ...]
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


# -- words ---------------------------------------------------------------------------------


@lru_cache(maxsize=65536)
def _fold(run: str) -> tuple[str, ...]:
    """The index's words for one run of letters and digits (folding may split it)."""
    if run.isascii():
        return (run.lower(),)
    decomposed = unicodedata.normalize("NFKD", run)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return tuple(_NOT_WORD.sub(" ", bare).split())


def words(text: str) -> list[tuple[str, int, int]]:
    """The words of ``text``: (folded word, start, end) with offsets into ``text``."""
    found = []
    for match in _RUN.finditer(text):
        for word in _fold(match.group(0)):
            found.append((word, match.start(), match.end()))
    return found


def _index_words(text: str) -> str:
    """What the index holds for ``text``: its folded words, one space between."""
    if text.isascii():
        return " ".join(_RUN.findall(text.lower()))
    return " ".join(w for w, _, _ in words(text))


# -- queries -------------------------------------------------------------------------------


def parse_query(text: str) -> tuple[Term, ...]:
    """The terms of a typed query; QueryError when nothing in it can be looked for."""
    terms: list[Term] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        negated = False
        if text[i] == "-" and i + 1 < n and not text[i + 1].isspace():
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
        found = tuple(w for w, _, _ in words(body))
        if found:
            terms.append(Term(found, prefix=prefix, negated=negated))
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
    """SQLite FTS5 query text: each term a quoted string (words hold no quote)."""
    parts: list[str] = []
    for term in terms:
        quoted = '"' + " ".join(term.words) + '"' + (" *" if term.prefix else "")
        parts.append(("NOT " if term.negated else ("AND " if parts else "")) + quoted)
    return " ".join(parts)


def tsquery(terms: tuple[Term, ...]) -> str:
    """PostgreSQL ``to_tsquery`` text: each word quoted, a phrase's joined by ``<->``."""
    parts: list[str] = []
    for term in terms:
        quoted = [f"'{w}'" for w in term.words]
        if term.prefix:
            quoted[-1] += ":*"
        parts.append(("!" if term.negated else "") + "(" + " <-> ".join(quoted) + ")")
    return " & ".join(parts)


# -- what is stored and shown --------------------------------------------------------------


def utterance_rows(job: Mapping[str, Any]) -> list[tuple[float, float, str, str]]:
    """What one stored result puts in the index: ``(start, end, text, words)`` per utterance.

    The job's utterances (its timeline); a job with none but a full transcript is one row at
    0 s. Read leniently (:func:`watcherd.outputs.job.read_job`): odd JSON indexes what it can.
    """
    try:
        transcription = read_job(job).transcription
    except ValueError:
        return []
    said = [(u.start, u.end, u.text) for u in transcription.utterances]
    if not any(_index_words(t) for _, _, t in said) and transcription.full_transcript:
        said = [(0.0, 0.0, transcription.full_transcript)]
    rows = []
    for start, end, text in said:
        folded = _index_words(text)
        if folded:
            # The marks are taken out of the shown text, so only a match holds them.
            shown = text.replace(HIGHLIGHT_START, " ").replace(HIGHLIGHT_END, " ")
            rows.append((start, end, shown, folded))
    return rows


def snippet(text: str, terms: tuple[Term, ...]) -> str:
    """``text`` around its first match, each matched word between the HIGHLIGHT marks."""
    found = words(text)
    folded = [w for w, _, _ in found]
    marked: set[int] = set()
    for term in terms:
        if term.negated:
            continue
        size = len(term.words)
        for i in range(len(folded) - size + 1):
            if _matches(folded[i:i + size], term):
                marked.update(range(i, i + size))
    if not marked:
        return text
    first = min(marked)
    lo = max(0, first - _SNIPPET_BEFORE)
    hi = min(len(found), lo + _SNIPPET_WORDS)
    out = ["…"] if lo > 0 else []
    pos = found[lo][1] if lo > 0 else 0
    end = found[hi - 1][2] if hi < len(found) else len(text)
    i = lo
    while i < hi:
        if i not in marked:
            i += 1
            continue
        j = i  # a phrase's words are marked as one
        while j + 1 < hi and j + 1 in marked:
            j += 1
        a, b = found[i][1], found[j][2]
        if a >= pos:
            out += [text[pos:a], HIGHLIGHT_START, text[a:b], HIGHLIGHT_END]
            pos = b
        i = j + 1
    out.append(text[pos:end])
    if hi < len(found):
        out.append("…")
    return "".join(out).strip()


def format_time(seconds: float) -> str:
    """A time in the recording as people read it: ``M:SS`` or ``H:MM:SS``."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def marked_spans(snippet_text: str) -> tuple[str, list[tuple[int, int]]]:
    """A snippet without its marks, and where the marked parts are in that plain text."""
    plain: list[str] = []
    spans: list[tuple[int, int]] = []
    length, opened = 0, None
    for part in re.split(f"([{HIGHLIGHT_START}{HIGHLIGHT_END}])", snippet_text):
        if part == HIGHLIGHT_START:
            opened = length
        elif part == HIGHLIGHT_END:
            if opened is not None:
                spans.append((opened, length))
            opened = None
        else:
            plain.append(part)
            length += len(part)
    return "".join(plain), spans


def hit_json(hit: Hit) -> dict[str, Any]:
    """One hit as ``--json`` prints it (and the status page serves it)."""
    plain, spans = marked_spans(hit.snippet)
    done = hit.source.done_at
    return {
        "id": hit.source.id,
        "path": hit.source.path,
        "start": hit.start,
        "end": hit.end,
        "time": format_time(hit.start),
        "snippet": plain,
        "matches": [list(span) for span in spans],
        "hits": hit.hits,
        "done_at": None if done is None else datetime.fromtimestamp(done).astimezone()
        .isoformat(timespec="seconds"),
    }


def _matches(window: list[str], term: Term) -> bool:
    *whole, last = term.words
    if window[:-1] != whole:
        return False
    return window[-1].startswith(last) if term.prefix else window[-1] == last
