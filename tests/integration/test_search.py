"""Full-text search of stored transcripts, on both journal backends (SQLite FTS5, PostgreSQL
tsvector): what is found, where in the recording, and that the index follows the journal
(reprocessing, renames, gone files, copies, journals from before the index). Odd text and odd
queries come from Hypothesis."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import journal_release01
from tests.integration import test_journal_backends as backends
from tests.integration.test_journal_backends import AnyJournal, on_fixture
from watcherd import upkeep
from watcherd.journal import FileStat, Journal, Source
from watcherd.journal.copy import copy_journal
from watcherd.journal.postgres import PostgresJournal
from watcherd.journal.search import (
    HIGHLIGHT_END,
    HIGHLIGHT_START,
    QueryError,
    Term,
    fts5_query,
    parse_query,
    snippet,
)

pytest_plugins = ("tests.pg",)
# The journal suite's fixture: each test runs on a SQLite file and on a real PostgreSQL.
journal = backends.journal


def _job(*utterances: tuple[float, str]) -> dict[str, Any]:
    return {"id": "job", "status": "done", "result": {"transcription": {
        "full_transcript": " ".join(t for _, t in utterances),
        "utterances": [{"start": s, "end": s + 2.0, "text": t} for s, t in utterances],
    }}}


_counter = iter(range(1_000_000))


def _done(journal: AnyJournal, path: str, key: str, job: dict[str, Any], *,
          done_at: float = 100.0) -> Source:
    """A file seen, settled, its result stored and finished, as the worker does it."""
    [s] = journal.observe_many([(path, str(Path(path).parent), FileStat(10, next(_counter), 1, 2),
                                 "{}")])
    s = journal.transition(s, "pending", actor="w", sha256=key, content_key=key)
    journal.store_result(s, job)
    return journal.transition(s, "done", actor="w", done_at=done_at,
                              output_base=path.rsplit(".", 1)[0])


def _paths(journal: AnyJournal, query: str, **kw: Any) -> list[str]:
    return [h.source.path for h in journal.search(query, **kw)]


class TestFinding:
    def test_a_stored_transcript_is_found_with_its_time_and_highlight(
            self, journal: AnyJournal) -> None:
        """The hit names the file, the utterance's start and the matched word marked."""
        _done(journal, "/in/meeting.mp3", "k1", _job(
            (0.0, "Good morning everyone"), (754.5, "Now let us talk about the budget")))
        _done(journal, "/in/other.mp3", "k2", _job((3.0, "Nothing to see here")))
        [hit] = journal.search("budget")
        assert hit.source.path == "/in/meeting.mp3"
        assert hit.start == 754.5
        assert f"{HIGHLIGHT_START}budget{HIGHLIGHT_END}" in hit.snippet
        assert journal.search("BUDGET")[0].source.path == "/in/meeting.mp3"  # any case

    def test_phrases_prefixes_and_left_out_words(self, journal: AnyJournal) -> None:
        _done(journal, "/in/a.mp3", "ka", _job((1.0, "the annual budget review")))
        _done(journal, "/in/b.mp3", "kb", _job((1.0, "review the budget annually")))
        assert sorted(_paths(journal, "budget")) == ["/in/a.mp3", "/in/b.mp3"]
        assert _paths(journal, '"annual budget"') == ["/in/a.mp3"]
        assert sorted(_paths(journal, "annu*")) == ["/in/a.mp3", "/in/b.mp3"]
        assert _paths(journal, "budget -annually") == ["/in/a.mp3"]
        assert _paths(journal, '"the budg"*') == ["/in/b.mp3"]

    def test_query_syntax_is_plain_words(self, journal: AnyJournal) -> None:
        """NEAR, OR, column filters and parentheses are words to find, not syntax."""
        _done(journal, "/in/a.mp3", "ka", _job((1.0, "meet me near the station or not")))
        for query in ("NEAR", "near OR", "(station)", "station:", '"station', "-x near",
                      "near -", "station^", "NEAR( station )", "NEAR/", "{station}"):
            assert _paths(journal, query) == ["/in/a.mp3"], query

    def test_queries_with_nothing_to_find_say_what_to_type(self, journal: AnyJournal) -> None:
        for query in ("", "   ", "-", "*", '""', "-budget", "- - -", "!!!"):
            with pytest.raises(QueryError, match="search"):
                journal.search(query)

    def test_folder_and_since(self, journal: AnyJournal) -> None:
        _done(journal, "/in/a/x.mp3", "ka", _job((1.0, "budget")), done_at=100.0)
        _done(journal, "/in/ab/y.mp3", "kb", _job((1.0, "budget")), done_at=200.0)
        assert _paths(journal, "budget", folder="/in/a") == ["/in/a/x.mp3"]
        assert _paths(journal, "budget", folder="/in/a/") == ["/in/a/x.mp3"]
        assert _paths(journal, "budget", since=150.0) == ["/in/ab/y.mp3"]
        assert _paths(journal, "budget", folder="/elsewhere") == []

    def test_one_hit_per_file_counting_its_utterances(self, journal: AnyJournal) -> None:
        _done(journal, "/in/a.mp3", "ka", _job(*[(float(i), f"budget item {i}")
                                                 for i in range(5)]))
        [hit] = journal.search("budget")
        assert hit.hits == 5

    def test_limit_counts_files(self, journal: AnyJournal) -> None:
        for i in range(6):
            _done(journal, f"/in/{i}.mp3", f"k{i}", _job((1.0, "budget")))
        assert len(journal.search("budget", limit=4)) == 4


class TestInStep:
    """The index follows the journal: what is found is what the journal says is done now."""

    def test_reprocessed_file_is_found_by_its_new_transcript(
            self, journal: AnyJournal) -> None:
        done = _done(journal, "/in/a.mp3", "k-old", _job((1.0, "old words")))
        journal.reprocess(done.path, '{"diarization": true}')
        assert _paths(journal, "old") == []  # pending again: not a finished transcript
        [s] = [x for x in journal.all() if x.path == "/in/a.mp3"]
        s = journal.transition(s, "pending", actor="w", sha256="k-new", content_key="k-new")
        journal.store_result(s, _job((4.0, "new words")))
        journal.transition(s, "done", actor="w", done_at=1.0)
        assert _paths(journal, "new") == ["/in/a.mp3"]
        assert _paths(journal, "old") == []

    def test_a_result_stored_again_replaces_its_rows(self, journal: AnyJournal) -> None:
        s = _done(journal, "/in/a.mp3", "k", _job((1.0, "first take")))
        journal.store_result(s, _job((2.0, "second take")))
        assert _paths(journal, "first") == []
        assert journal.search("second")[0].start == 2.0
        assert journal.search_state().utterances == 1

    def test_gone_files_are_not_found_and_come_back(self, journal: AnyJournal) -> None:
        s = _done(journal, "/in/a.mp3", "k", _job((1.0, "budget")))
        journal.transition(s, "gone", actor="watcher")
        assert _paths(journal, "budget") == []

    def test_a_renamed_file_is_found_at_its_new_name(self, journal: AnyJournal) -> None:
        """A rename is the old path gone and the new one done with the same content."""
        s = _done(journal, "/in/a.mp3", "k", _job((1.0, "budget")))
        journal.transition(s, "gone", actor="watcher")
        [moved] = journal.observe_many([("/in/b.mp3", "/in", FileStat(10, 1, 1, 2), "{}")])
        moved = journal.transition(moved, "pending", actor="w", sha256="k", content_key="k")
        journal.transition(moved, "done", actor="w", done_at=1.0)  # the stored result reused
        assert _paths(journal, "budget") == ["/in/b.mp3"]

    def test_backlog_is_indexed_in_batches(self, journal: AnyJournal) -> None:
        """Results the index lacks (as after an upgrade) are counted and then indexed."""
        for i in range(5):
            _done(journal, f"/in/{i}.mp3", f"k{i}", _job((1.0, "budget")))
        # As after an upgrade: the index rows name documents no result has any more.
        journal._run_text("UPDATE results SET doc_id = NULL, utterances = NULL",  # type: ignore[union-attr]
                          {})
        assert journal.search_state().backlog == 5
        assert _paths(journal, "budget") == []
        assert journal.index_backlog(limit=3) == 3
        assert journal.index_backlog(limit=3) == 2
        assert journal.index_backlog(limit=3) == 0
        assert journal.search_state().backlog == 0
        assert len(_paths(journal, "budget")) == 5

    def test_the_upkeep_loop_fills_the_backlog(self, journal: AnyJournal) -> None:
        """The one after-READY loop (watcherd.upkeep) indexes the backlog among its passes."""
        for i in range(upkeep.INDEX_BATCH + 3):
            _done(journal, f"/in/{i}.mp3", f"k{i}", _job((1.0, "budget")))
        journal._run_text("UPDATE results SET doc_id = NULL, utterances = NULL",  # type: ignore[union-attr]
                          {})
        assert journal.search_state().backlog == upkeep.INDEX_BATCH + 3
        assert upkeep.step(journal, 365, now=time.time()) is True
        assert journal.search_state().backlog == 3
        while upkeep.step(journal, 365, now=time.time()):
            pass
        assert journal.search_state().backlog == 0
        assert len(_paths(journal, "budget", limit=100)) == upkeep.INDEX_BATCH + 3


def test_a_journal_from_before_the_index_opens_at_once_and_fills_later(tmp_path: Path) -> None:
    """Migrating adds the empty index (opening does not index); the backlog then fills it."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    journal_release01.build(conn, 3)
    conn.execute(
        "INSERT INTO sources (path, watch_root, state, options_json, content_key, attempts,"
        " job_errors, done_at, created_at, updated_at) VALUES"
        " ('/in/a.wav', '/in', 'done', '{}', 'k', 0, 0, 1, 1, 1)")
    conn.execute("INSERT INTO results VALUES ('k', 'job', ?, 1)",
                 ('{"result": {"transcription": {"utterances": '
                  '[{"start": 9.0, "end": 10.0, "text": "an old budget"}]}}}',))
    conn.commit()
    conn.close()
    with Journal.open(path, exclusive=True) as j:
        assert j.search_state().backlog == 1
        assert j.search("budget") == []
        j.index_backlog()
        [hit] = j.search("budget")
        assert (hit.source.path, hit.start) == ("/in/a.wav", 9.0)


def test_a_copied_journal_is_searchable_both_ways(tmp_path: Path, pg_url: str) -> None:
    src = tmp_path / "journal.db"
    with Journal.open(src, exclusive=True) as j:
        _done(j, "/in/a.mp3", "k", _job((5.0, "copied budget")))
    copy_journal(src, pg_url)
    with PostgresJournal.open(pg_url) as pg:
        assert pg.search_state().backlog == 0
        assert [(h.source.path, h.start) for h in pg.search("budget")] == [("/in/a.mp3", 5.0)]
    back = tmp_path / "back.db"
    copy_journal(pg_url, back)
    with Journal.open(back, readonly=True) as j:
        assert [h.source.path for h in j.search("copied")] == ["/in/a.mp3"]


# -- odd text and odd queries -------------------------------------------------------------

# Words as people's transcripts hold them: Latin with accents, Cyrillic, Greek, RTL scripts
# (Hebrew, Arabic), CJK, digits.
_ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyzéàüñçø",
    "абвгдежзийклмнопрстуфхцчшщыэюя",
    "αβγδεζηθικλμνξοπρστυφχψω",
    "אבגדהוזחטיכלמנסעפצקרשת",
    "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "日本語中文字漢東京北京会議予算",
    "0123456789",
]
words = st.sampled_from(_ALPHABETS).flatmap(
    lambda a: st.text(st.sampled_from(a), min_size=2, max_size=8))
# Between words: spaces, punctuation, emoji, RTL marks, lone surrogates (a backend that cut a
# string mid-emoji), control characters.
separators = st.lists(st.sampled_from(
    [" ", "  ", ", ", ". ", " 🎉 ", " 👩‍💻 ", " \u200f", "\u200e ", " \ud83d ", " \udc00 ", "\n",
     "\t", " \x00 ", " \x02 ", " — ", " ¿", "? "]), min_size=1, max_size=3).map("".join)


@settings(on_fixture, max_examples=40, deadline=None)
@given(data=st.data())
def test_any_word_of_odd_text_is_found(journal: AnyJournal, data: st.DataObject) -> None:
    """Whatever surrounds a word (emoji, RTL marks, lone surrogates, NUL), it is found."""
    said = data.draw(st.lists(words, min_size=1, max_size=8))
    text = "".join(w + data.draw(separators) for w in said)
    key = f"odd-{next(_counter)}"
    path = f"/in/{key}.mp3"
    _done(journal, path, key, _job((7.0, text)))
    wanted = data.draw(st.sampled_from(said))
    hits = {h.source.path: h for h in journal.search(f'"{wanted}"', limit=1000)}
    assert path in hits
    assert hits[path].start == 7.0
    assert HIGHLIGHT_START in hits[path].snippet


odd_queries = st.lists(st.one_of(
    st.sampled_from(['"', "*", "-", "NEAR", "OR", "AND", "NOT", "(", ")", ":", "^", "'", "\\",
                     "&", "|", "!", "<->", " ", "\x00", "\ud800", "🎉", "ש", "日本", "near",
                     "budget"]),
    st.characters(codec=None),
), max_size=20).map("".join)


@settings(on_fixture, max_examples=150, deadline=None)
@given(query=odd_queries)
def test_any_query_finds_or_says_why(journal: AnyJournal, query: str) -> None:
    """Any typed query gives hits (maybe none) or a QueryError, never a database error."""
    if not journal.search_state().results:
        _done(journal, "/in/q.mp3", "kq", _job((1.0, "near the budget or not")))
    try:
        journal.search(query)
    except QueryError as exc:
        assert str(exc)


@given(query=odd_queries)
def test_fts5_text_is_only_quoted_strings(query: str) -> None:
    """Every term reaches FTS5 inside a quoted string; only AND/NOT/* between them."""
    try:
        terms = parse_query(query)
    except QueryError:
        return
    assert terms and not terms[0].negated
    text = fts5_query(terms)
    outside = "".join(part for i, part in enumerate(text.split('"')) if i % 2 == 0)
    assert set(outside.split()) <= {"AND", "NOT", "*"}


def test_parse_query_examples() -> None:
    assert parse_query('budget "The plan" rev* -draft') == (
        Term(("budget",)), Term(("the", "plan")), Term(("rev",), prefix=True),
        Term(("draft",), negated=True))
    assert parse_query('"unclosed phrase') == (Term(("unclosed", "phrase")),)
    assert parse_query("Café-Straße") == (Term(("cafe", "strasse")),)


def test_snippets_mark_the_words_found_and_cut_long_text() -> None:
    text = " ".join(f"w{i}" for i in range(60)) + " the Budget, finally."
    shown = snippet(text, parse_query("budget"))
    assert f"{HIGHLIGHT_START}Budget{HIGHLIGHT_END}" in shown
    assert shown.startswith("…") and "w0 " not in shown
    assert snippet("Ça coûte cher", parse_query("cout*")) == \
        f"Ça {HIGHLIGHT_START}coûte{HIGHLIGHT_END} cher"


def test_a_journal_made_by_main_before_the_text_was_kept_once_migrates_and_searches(
        tmp_path: Path) -> None:
    """Issue 26: a journal at schema 7 (search_utterances holding each utterance's text)
    opens at once at the current schema; its results are indexed again in the background
    and found as before, with their text kept only in results (no table of the index holds
    it)."""
    from watcherd.journal.stored import pack_job

    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path)
    journal_release01.migrated_to(conn, 7)
    conn.execute(
        "INSERT INTO sources (path, watch_root, state, options_json, content_key, attempts,"
        " job_errors, done_at, created_at, updated_at) VALUES"
        " ('/in/a.wav', '/in', 'done', '{}', 'k', 0, 0, 1, 1, 1)")
    conn.execute("INSERT INTO results (content_key, job_id, job_json, job_z, created_at)"
                 " VALUES ('k', 'job', '', ?, 1)",
                 (pack_job(_job((3.0, "the quarterly budget review"))),))
    conn.execute("INSERT INTO search_utterances (content_key, start_s, end_s, text, words)"
                 " VALUES ('k', 3.0, 5.0, 'the quarterly budget review',"
                 " 'the quarterly budget review')")
    conn.execute("INSERT INTO search_docs VALUES ('k', 1)")
    conn.commit()
    conn.close()
    with Journal.open(path, exclusive=True) as journal:
        assert journal.search_state().backlog == 1  # opening indexes nothing
        assert journal.index_backlog() == 1
        [hit] = journal.search("budget")
        assert (hit.source.path, hit.start, hit.end) == ("/in/a.wav", 3.0, 5.0)
        assert hit.snippet == f"the quarterly {HIGHLIGHT_START}budget{HIGHLIGHT_END} review"
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert "search_utterances" not in tables
    for table in tables:  # the index keeps its words' postings, never the text as said
        if table not in ("results", "search_fts") and not table.startswith("sqlite_"):
            dump = repr(conn.execute(f'SELECT * FROM "{table}"').fetchall())
            assert "quarterly budget" not in dump, table
    conn.close()


def test_the_index_keeps_no_content_key_of_its_own(journal: AnyJournal) -> None:
    """Issue 26: which results are indexed is said by the results row (its document id):
    no table of the search index keeps a result's content key a second time."""
    _done(journal, "/in/a.mp3", "k-once-0123456789", _job((1.0, "budget")))
    assert _paths(journal, "budget") == ["/in/a.mp3"]
    assert journal.search_state().backlog == 0
    sql = journal._run_text  # type: ignore[union-attr]
    if isinstance(journal, PostgresJournal):
        tables = [r["tablename"] for r in sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()", {})]
    else:
        tables = [r["name"] for r in sql(
            "SELECT name FROM sqlite_master WHERE type = 'table'", {})]
    for table in tables:
        if table.startswith("search_") and table != "search_fts":
            assert "k-once" not in repr(sql(f"SELECT * FROM {table}", {}).fetchall()), table


def test_a_journal_made_by_main_with_search_docs_migrates_and_searches(tmp_path: Path) -> None:
    """A journal at schema 8 (search_docs by content key) opens at once at the current
    schema; its stored results are indexed again in the background and found as before."""

    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    journal_release01.migrated_to(conn, 8)
    conn.execute(
        "INSERT INTO sources (path, watch_root, state, options_json, content_key, attempts,"
        " job_errors, done_at, created_at, updated_at) VALUES"
        " ('/in/a.wav', '/in', 'done', '{}', 'k', 0, 0, 1, 1, 1)")
    job = _job((3.0, "the quarterly budget review"))
    conn.execute("INSERT INTO results (content_key, job_id, job_json, job_z, created_at)"
                 " VALUES ('k', 'job', ?, NULL, 1)", (json.dumps(job),))
    # As schema 8 indexed it: a search_docs row and its words under its id.
    conn.execute("INSERT INTO search_docs (content_key, indexed_at, utterances)"
                 " VALUES ('k', 1, 1)")
    conn.execute("INSERT INTO search_fts (rowid, words) VALUES (1 << 20,"
                 " 'the quarterly budget review')")
    conn.commit()
    conn.close()
    with Journal.open(path, exclusive=True) as journal:
        assert journal.search_state().backlog == 1  # opening indexes nothing
        assert journal.search("budget") == []
        assert journal.index_backlog() == 1
        [hit] = journal.search("budget")
        assert (hit.source.path, hit.start, hit.end) == ("/in/a.wav", 3.0, 5.0)
        assert journal.search_state().backlog == 0
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert "search_docs" not in tables
