-- watcherd journal, SQLite schema 1: sources, their events (every transition) and the
-- results by content key. The DDL is what sqlite-utils wrote for journals made before the
-- migrations were plain SQL, so old and new journals have the same schema, name for name.

CREATE TABLE "sources" (
   "id" INTEGER PRIMARY KEY,
   "path" TEXT NOT NULL,
   "watch_root" TEXT NOT NULL,
   "state" TEXT NOT NULL,
   "size" INTEGER,
   "mtime_ns" INTEGER,
   "dev" INTEGER,
   "inode" INTEGER,
   "changed_at" REAL,
   "sha256" TEXT,
   "options_json" TEXT NOT NULL,
   "content_key" TEXT,
   "audio_url" TEXT,
   "job_id" TEXT,
   "submit_started_at" REAL,
   "attempts" INTEGER NOT NULL,
   "job_errors" INTEGER NOT NULL,
   "next_attempt_at" REAL,
   "last_error" TEXT,
   "note" TEXT,
   "output_base" TEXT,
   "engine" TEXT,
   "done_at" REAL,
   "created_at" REAL NOT NULL,
   "updated_at" REAL NOT NULL
);
CREATE UNIQUE INDEX "idx_sources_path"
    ON "sources" ("path");
CREATE INDEX "idx_sources_state_next_attempt_at"
    ON "sources" ("state", "next_attempt_at");
CREATE INDEX "idx_sources_content_key"
    ON "sources" ("content_key");
CREATE INDEX "idx_sources_output_base"
    ON "sources" ("output_base");
CREATE TABLE "events" (
   "id" INTEGER PRIMARY KEY,
   "source_id" INTEGER NOT NULL,
   "at" REAL NOT NULL,
   "from_state" TEXT,
   "to_state" TEXT NOT NULL,
   "actor" TEXT NOT NULL,
   "reason" TEXT
);
CREATE INDEX "idx_events_source_id"
    ON "events" ("source_id");
CREATE TABLE "results" (
   "content_key" TEXT PRIMARY KEY,
   "job_id" TEXT NOT NULL,
   "job_json" TEXT NOT NULL,
   "created_at" REAL NOT NULL
);
