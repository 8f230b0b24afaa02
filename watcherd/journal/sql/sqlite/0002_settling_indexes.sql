-- watcherd journal, SQLite schema 2. Settling asks for unsettled pending sources oldest
-- change first, and recovery finds a source by its job id: index both.

CREATE INDEX "sources_unsettled"
    ON "sources" ("state", "content_key", "changed_at");
CREATE INDEX "idx_sources_job_id"
    ON "sources" ("job_id");
