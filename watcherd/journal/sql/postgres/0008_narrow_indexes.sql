-- watcherd journal, PostgreSQL schema 8: indexes of sources that hold only the rows they
-- serve (as SQLite's schema 9). A year of done files is nearly every row; each index below
-- holds only the rows its query in sql/queries.sql reads. sources_job_id served no query.
DROP INDEX sources_job_id;
DROP INDEX sources_unsettled;
CREATE INDEX sources_unsettled ON sources (changed_at NULLS FIRST, id)
    WHERE state = 'pending' AND content_key IS NULL;
DROP INDEX sources_queue;
CREATE INDEX sources_queue ON sources (id) WHERE state = 'pending' AND content_key IS NOT NULL;
-- IN_FLIGHT_STATES (watcherd/journal/_base.py).
DROP INDEX sources_inflight;
CREATE INDEX sources_inflight ON sources (state)
    WHERE (job_id IS NOT NULL OR submit_started_at IS NOT NULL)
    AND state IN ('pending', 'uploading', 'uploaded', 'submitting', 'submitted', 'waiting');
DROP INDEX sources_started;
CREATE INDEX sources_started ON sources (id) WHERE state = 'pending'
    AND (job_id IS NOT NULL OR submit_started_at IS NOT NULL OR audio_url IS NOT NULL);
