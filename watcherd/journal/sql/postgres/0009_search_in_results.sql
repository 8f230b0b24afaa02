-- watcherd journal, PostgreSQL schema 9: which results are indexed for search is said by the
-- results row itself (as SQLite's schema 10): its document id, from the search_doc_ids
-- sequence, and how many utterances it indexed; search_docs, which kept each content key a
-- second time with an index on it, goes. The index is built again in the background after
-- READY=1 (search_backlog, newest first).
DROP TABLE search_docs;
TRUNCATE search_fts;
CREATE SEQUENCE search_doc_ids;
ALTER TABLE results ADD COLUMN doc_id BIGINT;
ALTER TABLE results ADD COLUMN utterances BIGINT;
CREATE INDEX results_docs ON results (doc_id) INCLUDE (utterances);
