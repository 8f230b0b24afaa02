-- watcherd journal, SQLite schema 8: a transcript's text kept once, in its packed result.
-- Schema 6 kept every utterance's text and words in search_utterances (and the key of its
-- result on each row), beside the same text in results: about 0.7 KB of a short file's
-- 3 KB. Now the index is a contentless FTS5 table: it holds the words' postings only, and a
-- row's id says where the words come from, (search_docs.id << 20) | the utterance's place
-- among journal/search.py's utterance_rows of the result. A hit's time and text are read
-- back from the packed result (only the results of the hits shown). SQLite before 3.43 has
-- no contentless_delete: a row is deleted by giving its words again, which the stored result
-- gives back (indexing.forget_indexed). AUTOINCREMENT: a document id is never given twice,
-- so words left behind by a result that could not be read again never find another file.
-- The old index is dropped and the stored results are indexed again in the background after
-- READY=1 (search_backlog, newest first), as when the index first came (schema 6).
DROP TRIGGER "search_utterances_ai";
DROP TRIGGER "search_utterances_ad";
DROP TABLE "search_fts";
DROP TABLE "search_utterances";
DROP TABLE "search_docs";
CREATE TABLE "search_docs" (
   "id" INTEGER PRIMARY KEY AUTOINCREMENT,
   "content_key" TEXT NOT NULL UNIQUE,
   "indexed_at" REAL NOT NULL,
   "utterances" INTEGER NOT NULL
);
-- columnsize=0: no per-row token counts (they serve only bm25 ranking; hits are read newest
-- first, never ranked).
CREATE VIRTUAL TABLE "search_fts" USING fts5(
   words, content='', columnsize=0,
   tokenize='unicode61 remove_diacritics 0'
);
