-- watcherd journal, PostgreSQL schema 4. One row per finished job whose result was stored: the
-- hours it was billed (Gladia's billing_time) and its audio's length, by folder, engine and
-- model, for `status --usage` and the monthly limit; and whether it is to be deleted at Gladia
-- (the intent, committed with the result, before any DELETE) and whether it was.

CREATE TABLE remote_jobs (
   job_id TEXT PRIMARY KEY,
   engine TEXT NOT NULL,
   watch_root TEXT NOT NULL,
   content_key TEXT NOT NULL,
   model TEXT,
   billing_seconds DOUBLE PRECISION NOT NULL,
   audio_seconds DOUBLE PRECISION,
   finished_at DOUBLE PRECISION NOT NULL,
   delete_wanted_at DOUBLE PRECISION,
   delete_attempts BIGINT NOT NULL DEFAULT 0,
   next_delete_at DOUBLE PRECISION,
   deleted_at DOUBLE PRECISION
);
CREATE INDEX remote_jobs_finished ON remote_jobs(finished_at);
CREATE INDEX remote_jobs_deletes ON remote_jobs(next_delete_at)
    WHERE delete_wanted_at IS NOT NULL AND deleted_at IS NULL;
