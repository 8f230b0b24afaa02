-- watcherd journal, PostgreSQL schema 6: a journal that stays small (as SQLite's schema 7).
-- Job objects are kept compressed in results.job_z (stored.pack_job); job_json is then ''.
-- Already compressed, so TOAST keeps them out of line without compressing them again.
ALTER TABLE results ADD COLUMN job_z BYTEA;
ALTER TABLE results ALTER COLUMN job_z SET STORAGE EXTERNAL;
-- Events older than [journal] history_days, folded into one row per source.
CREATE TABLE folded_history (
    source_id  BIGINT PRIMARY KEY,
    first_seen DOUBLE PRECISION NOT NULL,
    done_at    DOUBLE PRECISION,
    attempts   BIGINT NOT NULL,
    last_error TEXT,
    folded_events BIGINT NOT NULL,
    folded_until  DOUBLE PRECISION NOT NULL
);
-- Autovacuum-friendly updates. A source row is rewritten at every transition and its lease
-- renewed every few seconds; room left in each page lets an update that changes no indexed
-- column (lease renewals, heartbeats, notes) stay on the page as a HOT update, with no new
-- index entries and nothing for vacuum to clean in the indexes. Only new pages get it.
ALTER TABLE sources SET (fillfactor = 80);
ALTER TABLE nodes SET (fillfactor = 50);
-- Folding deletes old events in small batches: vacuum them sooner than the 20% default, so
-- the space is reused by new events instead of growing the table.
ALTER TABLE events SET (autovacuum_vacuum_scale_factor = 0.05,
    autovacuum_vacuum_insert_scale_factor = 0.05);
