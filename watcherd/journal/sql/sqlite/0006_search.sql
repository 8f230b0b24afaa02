-- watcherd journal, SQLite schema 6: full-text search of stored transcripts.
-- One row per utterance of each stored result (so a hit knows its time in the recording),
-- keyed by content key like the results: its text as said, and its words as watcherd cuts
-- and folds them (journal/search.py: the same for both databases). An FTS5 index over the
-- words (external content: kept once, in search_utterances; triggers keep it in step). Which
-- results are indexed is search_docs: results stored before this version are indexed in the
-- background after the upgrade, never while the journal opens.

CREATE TABLE "search_utterances" (
   "id" INTEGER PRIMARY KEY,
   "content_key" TEXT NOT NULL,
   "start_s" REAL NOT NULL,
   "end_s" REAL NOT NULL,
   "text" TEXT NOT NULL,
   "words" TEXT NOT NULL
);
CREATE INDEX "search_utterances_key" ON "search_utterances" ("content_key");
CREATE TABLE "search_docs" (
   "content_key" TEXT PRIMARY KEY,
   "indexed_at" REAL NOT NULL
);
CREATE VIRTUAL TABLE "search_fts" USING fts5(
   words, content='search_utterances', content_rowid='id',
   tokenize='unicode61 remove_diacritics 0'
);
CREATE TRIGGER "search_utterances_ai" AFTER INSERT ON "search_utterances" BEGIN
   INSERT INTO search_fts (rowid, words) VALUES (new.id, new.words);
END;
CREATE TRIGGER "search_utterances_ad" AFTER DELETE ON "search_utterances" BEGIN
   INSERT INTO search_fts (search_fts, rowid, words) VALUES ('delete', old.id, old.words);
END;
