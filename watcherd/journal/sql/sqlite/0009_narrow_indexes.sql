-- watcherd journal, SQLite schema 9: indexes of sources that hold only the rows they serve.
-- A year of done files is nearly every row, and each index over all of them cost its share
-- of a short file's journal (issue 26). Each index below holds only the rows its query reads
-- (the query's WHERE names the same terms, so SQLite may use it: sql/queries.sql).
-- idx_sources_job_id: no query looks a source up by its job id (recovery reads it from the
-- row it already has), so nothing is lost.
DROP INDEX "idx_sources_job_id";
-- unsettled: pending files whose hash is not known yet, oldest change first.
DROP INDEX "sources_unsettled";
CREATE INDEX "sources_unsettled" ON "sources" ("changed_at", "id")
    WHERE state = 'pending' AND content_key IS NULL;
-- due_queued: pending files whose content key is known (done ones no longer count).
DROP INDEX "sources_queue";
CREATE INDEX "sources_queue" ON "sources" ("id")
    WHERE state = 'pending' AND content_key IS NOT NULL;
-- count_in_flight: jobs that exist or may exist, in IN_FLIGHT_STATES (watcherd/journal/_base.py:
-- the query's list is written from it, and must read as this one).
DROP INDEX "sources_inflight";
CREATE INDEX "sources_inflight" ON "sources" ("state")
    WHERE (job_id IS NOT NULL OR submit_started_at IS NOT NULL)
    AND state IN ('pending','uploading','uploaded','submitting','submitted','waiting');
-- due_started: pending files with remote work begun (a job, a create or an upload).
DROP INDEX "sources_started";
CREATE INDEX "sources_started" ON "sources" ("id")
    WHERE state = 'pending'
    AND (job_id IS NOT NULL OR submit_started_at IS NOT NULL OR audio_url IS NOT NULL);
