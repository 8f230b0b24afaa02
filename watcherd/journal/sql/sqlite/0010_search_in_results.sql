-- watcherd journal, SQLite schema 10: which results are indexed for search is said by the
-- results row itself (its document id, and how many utterances it indexed), no longer by
-- search_docs, which kept each content key a second time, with an index on it (~130 B of a
-- short file's 2 KB, issue 26). results_docs finds a result by its document id (a hit),
-- counts what is indexed (doctor) and finds the rows not indexed yet (the backlog); the last
-- document id given is kept in meta (search_last_doc), so none is given twice.
-- The index is built again in the background after READY=1 (search_backlog, newest first),
-- as when it first came (schema 6): its rows name search_docs' ids, which go.
DROP TABLE "search_docs";
DROP TABLE "search_fts";
CREATE VIRTUAL TABLE "search_fts" USING fts5(
   words, content='', columnsize=0,
   tokenize='unicode61 remove_diacritics 0'
);
ALTER TABLE "results" ADD COLUMN "doc_id" INTEGER;
ALTER TABLE "results" ADD COLUMN "utterances" INTEGER;
CREATE INDEX "results_docs" ON "results" ("doc_id", "utterances");
