-- watcherd journal, PostgreSQL schema 7: a transcript's text kept once (as SQLite's schema 8).
-- Schema 5 kept every utterance's text and words in search_utterances beside the same text
-- in results. Now search_fts holds only each utterance's tsvector, under an id that says
-- where it comes from: (search_docs.id << 20) | the utterance's place among
-- journal/search.py's utterance_rows of the result; a hit's time and text are read back
-- from the stored result. The old index is dropped and the stored results are indexed again
-- in the background after READY=1 (search_backlog, newest first).
DROP TABLE search_utterances;
DROP TABLE search_docs;
CREATE TABLE search_docs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    content_key TEXT NOT NULL UNIQUE,
    indexed_at  DOUBLE PRECISION NOT NULL,
    utterances  BIGINT NOT NULL
);
CREATE TABLE search_fts (
    id  BIGINT PRIMARY KEY,
    tsv TSVECTOR NOT NULL
);
CREATE INDEX search_fts_tsv ON search_fts USING GIN (tsv);
