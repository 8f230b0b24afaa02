-- watcherd journal, SQLite schema 3. How long finished Gladia jobs took, by kind (the poll
-- schedule learns from it); the worker's queue and the jobs that count against the plan as
-- partial indexes (both read on every pass, so they hold only the rows they are about); and
-- small facts about the journal itself (whether the last writer stopped cleanly).

CREATE TABLE "job_times" (
   "id" INTEGER PRIMARY KEY,
   "at" REAL NOT NULL,
   "options_class" TEXT NOT NULL,
   "audio_seconds" REAL,
   "seconds" REAL NOT NULL
);
CREATE INDEX "idx_job_times_options_class_id"
    ON "job_times" ("options_class", "id");
CREATE INDEX sources_queue ON sources(state, id) WHERE content_key IS NOT NULL;
CREATE INDEX sources_inflight ON sources(state) WHERE job_id IS NOT NULL OR submit_started_at IS NOT NULL;
CREATE INDEX sources_started ON sources(state) WHERE job_id IS NOT NULL OR submit_started_at IS NOT NULL OR audio_url IS NOT NULL;
CREATE TABLE "meta" (
   "key" TEXT PRIMARY KEY,
   "value" TEXT
);
