-- watcherd journal, SQLite schema 7: a journal that stays small.
-- Job objects are kept compressed in results.job_z (stored.pack_job); job_json is then ''.
-- (Its NOT NULL stays: dropping it would rewrite the whole table before READY=1 on a big
-- journal; an empty text costs one byte.) Rows written before keep their JSON text until the
-- daemon's background pass packs them, a batch at a time.
ALTER TABLE "results" ADD COLUMN "job_z" BLOB;
-- Events older than [journal] history_days, folded into one row per source: when it was
-- first seen, last done, how many times work on it started, its last error, and how many
-- events up to when were folded. The event that entered a source's current state is kept.
CREATE TABLE "folded_history" (
   "source_id" INTEGER PRIMARY KEY,
   "first_seen" REAL NOT NULL,
   "done_at" REAL,
   "attempts" INTEGER NOT NULL,
   "last_error" TEXT,
   "folded_events" INTEGER NOT NULL,
   "folded_until" REAL NOT NULL
);
