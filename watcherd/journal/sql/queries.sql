-- The journal's statements, by name (read by watcherd/journal/queries.py), each written once.
--
-- `-- name: NAME` is one statement for SQLite and PostgreSQL alike; `-- name: NAME (postgres)`
-- is one only PostgreSQL runs (several nodes). Parameters are :name. {ACTIVE_STATES} and the
-- other {..._STATES} are filled from the state tuples in watcherd/journal/_base.py; {ANY:p},
-- {FOR_UPDATE}, {INDEXED_BY:index} and {LEASE_FREE} are where the databases really differ
-- (queries.FRAGMENTS). Comments go on their own lines.

-- name: get_source
SELECT * FROM sources WHERE id = :id;

-- name: source_by_path
SELECT * FROM sources WHERE path = :path;

-- name: sources_by_paths
SELECT * FROM sources WHERE path {ANY:paths} ORDER BY id {FOR_UPDATE};

-- name: lock_source_by_path
SELECT * FROM sources WHERE path = :path {FOR_UPDATE};

-- name: lock_sources_by_paths
-- In path order: two nodes scanning overlapping folders lock in the same order.
SELECT * FROM sources WHERE path {ANY:paths} ORDER BY path {FOR_UPDATE};

-- name: restart_settling
-- A pending file changed: its settle clock starts again, and its hash is forgotten.
UPDATE sources SET size = :size, mtime_ns = :mtime_ns, dev = :dev, inode = :inode,
    {STAT_NODE} changed_at = :now, sha256 = NULL, content_key = NULL, updated_at = :now
    WHERE id = :id;

-- name: insert_event
-- SQLite's: PostgreSQL writes the event in the statement that moves the row (see postgres.py).
INSERT INTO events (source_id, at, from_state, to_state, actor, reason)
    VALUES (:source_id, :at, :from_state, :to_state, :actor, :reason);

-- name: sources_failed
SELECT * FROM sources WHERE state = 'failed' ORDER BY id {FOR_UPDATE};

-- name: all_sources
SELECT * FROM sources ORDER BY id;

-- name: sources_by_ids
SELECT * FROM sources WHERE id {ANY:ids};

-- name: lock_sources_by_ids
SELECT * FROM sources WHERE id {ANY:ids} ORDER BY id {FOR_UPDATE};

-- name: lock_settling
-- What settle_many compares a hashed source with, not the whole row (a first start settles
-- 100,000 of them).
SELECT id, state, changed_at, options_json FROM sources WHERE id {ANY:ids} ORDER BY id
    {FOR_UPDATE};

-- name: sources_in_states
SELECT * FROM sources WHERE state {ANY:states} ORDER BY id;

-- name: state_since
-- When each source entered its current state: its last event into that state from another.
SELECT e.source_id AS id, MAX(e.at) AS at FROM events e JOIN sources s
    ON s.id = e.source_id AND e.to_state = s.state
    AND (e.from_state IS NULL OR e.from_state != s.state) GROUP BY e.source_id;

-- name: counts
SELECT state, count(*) AS n FROM sources GROUP BY state;

-- name: events
SELECT id, source_id, at, from_state, to_state, actor, reason FROM events
    WHERE source_id = :source_id ORDER BY id;

-- name: result_for
-- job_z when packed (stored.pack_job); job_json for a row written before results were packed.
SELECT job_json, job_z FROM results WHERE content_key = :content_key;

-- name: store_result
INSERT INTO results (content_key, job_id, job_json, job_z, created_at)
    VALUES (:content_key, :job_id, '', :job_z, :created_at)
    ON CONFLICT (content_key) DO UPDATE SET job_id = excluded.job_id,
    job_json = excluded.job_json, job_z = excluded.job_z, created_at = excluded.created_at;

-- name: results_after
-- The background pass over results in key order (a range of the primary key, never a scan
-- of what is already packed); whether each row still holds plain JSON.
SELECT content_key, job_json, job_z IS NULL AS plain FROM results
    WHERE content_key > :after ORDER BY content_key LIMIT :limit;

-- name: pack_result
UPDATE results SET job_z = :job_z, job_json = ''
    WHERE content_key = :content_key AND job_z IS NULL;

-- History folding (fold_history): events older than the cutoff, in id order from where the
-- last pass stopped.

-- name: events_after
SELECT id, source_id, at FROM events WHERE id > :after ORDER BY id LIMIT :limit;

-- name: entered_state
-- The event that brought a source into its current state (the one state_since reads).
SELECT MAX(e.id) AS id FROM events e JOIN sources s ON s.id = e.source_id
    WHERE e.source_id = :source_id AND e.to_state = s.state
    AND (e.from_state IS NULL OR e.from_state != s.state);

-- name: foldable_events
SELECT id, at, from_state, to_state, reason FROM events
    WHERE source_id = :source_id AND at < :before AND id < :keep ORDER BY id;

-- name: delete_events
DELETE FROM events WHERE source_id = :source_id AND at < :before AND id < :keep;

-- name: folded_history
SELECT source_id, first_seen, done_at, attempts, last_error, folded_events, folded_until
    FROM folded_history WHERE source_id = :source_id;

-- name: store_folded_history
INSERT INTO folded_history (source_id, first_seen, done_at, attempts, last_error,
    folded_events, folded_until)
    VALUES (:source_id, :first_seen, :done_at, :attempts, :last_error, :folded_events,
    :folded_until)
    ON CONFLICT (source_id) DO UPDATE SET first_seen = excluded.first_seen,
    done_at = excluded.done_at, attempts = excluded.attempts,
    last_error = excluded.last_error, folded_events = excluded.folded_events,
    folded_until = excluded.folded_until;

-- name: output_base_taken
-- A gone source that never finished owns no outputs.
SELECT 1 AS taken FROM sources WHERE output_base = :base AND path != :path
    AND NOT (state = 'gone' AND done_at IS NULL) LIMIT 1;

-- name: outputs_of_content
-- Other sources of one content whose outputs are on record: a moved file's old outputs.
SELECT * FROM sources WHERE content_key = :content_key AND path != :path
    AND outputs_json IS NOT NULL ORDER BY id;

-- name: leader_for
-- Jobs already created (or being created, or uploaded) lead; then the oldest.
SELECT * FROM sources WHERE content_key = :content_key AND state IN {ACTIVE_STATES}
    ORDER BY (job_id IS NULL), (submit_started_at IS NULL), (audio_url IS NULL), id LIMIT 1;

-- name: unsettled
-- sources_unsettled holds exactly these rows, in this order (the planner, told nothing, would
-- sort every pending row instead).
SELECT * FROM sources {INDEXED_BY:sources_unsettled} WHERE state = 'pending' AND content_key IS NULL
    ORDER BY changed_at NULLS FIRST, id LIMIT :limit;

-- The worker's queue (`due`): four reads on partial indexes instead of one sort of every
-- queued row.

-- name: due_remote
SELECT * FROM sources WHERE content_key IS NOT NULL AND state IN {REMOTE_STATES} {LEASE_FREE}
    LIMIT :limit;

-- name: due_waiting
SELECT * FROM sources WHERE state = 'waiting' AND content_key IS NOT NULL
    AND (next_attempt_at IS NULL OR next_attempt_at <= :now) {LEASE_FREE}
    ORDER BY next_attempt_at NULLS FIRST LIMIT :limit;

-- name: due_started
SELECT * FROM sources {INDEXED_BY:sources_started} WHERE state = 'pending'
    AND (job_id IS NOT NULL OR submit_started_at IS NOT NULL OR audio_url IS NOT NULL)
    AND content_key IS NOT NULL {LEASE_FREE} LIMIT :limit;

-- name: due_queued
SELECT * FROM sources {INDEXED_BY:sources_queue} WHERE state = 'pending'
    AND content_key IS NOT NULL {LEASE_FREE} ORDER BY id LIMIT :limit;

-- name: next_attempt_at
SELECT MIN(next_attempt_at) AS t FROM sources WHERE state IN {WAKE_STATES}
    AND next_attempt_at > :after;

-- name: count_in_flight
SELECT count(*) AS n FROM sources {INDEXED_BY:sources_inflight}
    WHERE (job_id IS NOT NULL OR submit_started_at IS NOT NULL)
    AND state IN {IN_FLIGHT_STATES} AND NOT (id {ANY:exclude});

-- name: reschedule_waiting
UPDATE sources SET next_attempt_at = :now WHERE state = 'waiting' AND next_attempt_at > :now;

-- name: insert_job_time
INSERT INTO job_times (at, options_class, audio_seconds, seconds)
    VALUES (:at, :kind, :audio_seconds, :seconds);

-- name: trim_job_times
-- The newest :keep of a kind are kept.
DELETE FROM job_times WHERE options_class = :kind AND id NOT IN
    (SELECT id FROM job_times WHERE options_class = :kind ORDER BY id DESC LIMIT :keep);

-- name: job_times
SELECT options_class, audio_seconds, seconds FROM job_times ORDER BY id;

-- name: get_meta
SELECT value FROM meta WHERE key = :key;

-- name: set_meta
INSERT INTO meta (key, value) VALUES (:key, :value)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- Finished jobs: hours used (status --usage, the monthly limit) and deletes at Gladia.

-- name: record_remote_job
-- Once per job: a result stored again (a duplicate, a recovered NAME.json) is not billed again.
INSERT INTO remote_jobs (job_id, engine, watch_root, content_key, model, billing_seconds,
    audio_seconds, finished_at, delete_wanted_at)
    VALUES (:job_id, :engine, :watch_root, :content_key, :model, :billing_seconds,
    :audio_seconds, :finished_at, :delete_wanted_at)
    ON CONFLICT (job_id) DO NOTHING;

-- name: usage_since
SELECT watch_root, engine, model, count(*) AS jobs, sum(billing_seconds) AS billing_seconds,
    sum(coalesce(audio_seconds, 0)) AS audio_seconds FROM remote_jobs
    WHERE finished_at >= :since GROUP BY watch_root, engine, model
    ORDER BY watch_root, engine, model;

-- name: billed_since
SELECT coalesce(sum(billing_seconds), 0) AS seconds FROM remote_jobs
    WHERE finished_at >= :since AND engine = :engine;

-- name: due_deletes
-- Deleted only once a source of its content is done: its outputs are written.
SELECT job_id, delete_attempts FROM remote_jobs r WHERE delete_wanted_at IS NOT NULL AND deleted_at IS NULL
    AND (next_delete_at IS NULL OR next_delete_at <= :now)
    AND EXISTS (SELECT 1 FROM sources s WHERE s.content_key = r.content_key
                AND s.state = 'done')
    ORDER BY finished_at LIMIT :limit;

-- name: next_delete_at
SELECT min(next_delete_at) AS t FROM remote_jobs
    WHERE delete_wanted_at IS NOT NULL AND deleted_at IS NULL AND next_delete_at > :now;

-- name: delete_deferred
UPDATE remote_jobs SET delete_attempts = delete_attempts + 1, next_delete_at = :at
    WHERE job_id = :job_id;

-- name: delete_done
UPDATE remote_jobs SET deleted_at = :at WHERE job_id = :job_id;

-- name: drop_remote_jobs
-- Rows that no longer serve (journal upkeep): finished before every billing month status
-- can show, and no delete at Gladia left to do (never wanted, or done). Oldest first, a batch
-- at a time, through remote_jobs_finished. A result stored again later (a recovered
-- NAME.json) records its job again in the month it finished: never in the current one.
DELETE FROM remote_jobs WHERE job_id IN (SELECT job_id FROM remote_jobs
    WHERE finished_at < :before AND (delete_wanted_at IS NULL OR deleted_at IS NOT NULL)
    ORDER BY finished_at LIMIT :limit);

-- name: delete_pending
SELECT count(*) AS n FROM remote_jobs WHERE delete_wanted_at IS NOT NULL
    AND deleted_at IS NULL;

-- Full-text search (sql/*/…_search_once.sql, …_search_in_results.sql): an indexed result
-- has a document id (results.doc_id, and how many utterances it indexed), and one index row
-- per utterance, whose id is (doc_id << 20) | its place among journal/search.py's
-- utterance_rows of the result. The text itself is only in results.

-- name: search_doc
-- What is indexed for a content key, and its stored result (to forget its words).
SELECT doc_id AS id, utterances, job_json, job_z FROM results
    WHERE content_key = :content_key AND doc_id IS NOT NULL;

-- name: search_forget_words (sqlite)
-- A contentless FTS5 table deletes a row given its words again.
INSERT INTO search_fts (search_fts, rowid, words) VALUES ('delete', :rowid, :words);

-- name: search_forget_range (postgres)
DELETE FROM search_fts WHERE id >= :lo AND id < :hi;

-- name: search_forget
UPDATE results SET doc_id = NULL, utterances = NULL WHERE content_key = :content_key;

-- name: search_new_doc (sqlite)
-- A new document id each time, never given twice (the last one is kept in meta): an
-- utterance's index row never points at another result's text, not even words left behind
-- by a result that could not be read again.
INSERT INTO meta (key, value) VALUES ('search_last_doc', '1')
    ON CONFLICT (key) DO UPDATE SET value = CAST(meta.value AS INTEGER) + 1
    RETURNING CAST(value AS INTEGER) AS id;

-- name: search_new_doc (postgres)
SELECT nextval('search_doc_ids') AS id;

-- name: search_mark
UPDATE results SET doc_id = :doc_id, utterances = :utterances
    WHERE content_key = :content_key;

-- name: search_add (sqlite)
INSERT INTO search_fts (rowid, words) VALUES (:rowid, :words);

-- name: search_add (postgres)
INSERT INTO search_fts (id, tsv) VALUES (:rowid, to_tsvector('simple', :words));

-- name: search_backlog
-- Stored results not indexed yet (journals from before the index, or a copy's).
-- (results_docs finds the rows with no document id; only those are sorted.)
SELECT content_key, job_json, job_z FROM results WHERE doc_id IS NULL
    ORDER BY created_at DESC LIMIT :limit;

-- name: search_state
-- Read from results_docs alone (it holds both columns).
SELECT count(*) AS results, count(doc_id) AS indexed,
    coalesce(sum(utterances), 0) AS utterances FROM results;

-- name: search (sqlite)
-- The matching utterances of done files, the newest indexed first: FTS5 walks its index
-- backwards and stops at the limit, so a word said in every transcript costs no more than a
-- rare one (a rank, bm25, would score every match first). :folder is a stored path prefix
-- ending in '/', or NULL; :since a time, or NULL; :before the utterance the last page ended
-- at, or NULL.
-- CROSS JOIN keeps this order (hit, its result by document id, its sources by content key):
-- told nothing, the planner would walk every done source for each hit.
SELECT s.*, search_fts.rowid AS utterance_id, r.content_key AS indexed_key FROM search_fts
    CROSS JOIN results r ON r.doc_id = (search_fts.rowid >> 20)
    CROSS JOIN sources s ON s.content_key = r.content_key AND s.state = 'done'
    WHERE search_fts MATCH :query AND (:before IS NULL OR search_fts.rowid < :before)
    AND (:folder IS NULL OR substr(s.path, 1, length(:folder)) = :folder)
    AND (:since IS NULL OR s.done_at >= :since)
    ORDER BY search_fts.rowid DESC LIMIT :limit;

-- name: search (postgres)
-- As SQLite's: the newest indexed first.
SELECT s.*, f.id AS utterance_id, r.content_key AS indexed_key FROM search_fts f
    JOIN results r ON r.doc_id = (f.id >> 20)
    JOIN sources s ON s.content_key = r.content_key AND s.state = 'done'
    WHERE f.tsv @@ to_tsquery('simple', :query)
    AND (CAST(:before AS BIGINT) IS NULL OR f.id < :before)
    AND (CAST(:folder AS TEXT) IS NULL OR substr(s.path, 1, length(:folder)) = :folder)
    AND (CAST(:since AS DOUBLE PRECISION) IS NULL OR s.done_at >= :since)
    ORDER BY f.id DESC LIMIT :limit;

-- Only PostgreSQL has several nodes: leases, node names, create intents, notifications.
-- {SERVER_NOW} is the server's clock in epoch seconds: nodes whose clocks disagree still agree
-- on when a lease ran out.

-- name: notify (postgres)
-- Delivered at commit, once per transaction; the payload names the writer, so a node can
-- ignore its own changes.
SELECT pg_notify(:channel, :writer);

-- name: server_time (postgres)
SELECT {SERVER_NOW} AS now;

-- name: try_lock (postgres)
SELECT pg_try_advisory_lock(:key) AS got;

-- name: lock_for_transaction (postgres)
SELECT pg_advisory_xact_lock(:key);

-- name: evict_lock_holder (postgres)
-- Disconnect the session that holds this advisory lock (a node whose heartbeat stopped).
SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'
    AND granted AND classid::bigint = :classid AND objid::bigint = :objid AND objsubid = 1
    AND database = (SELECT oid FROM pg_database WHERE datname = current_database());

-- name: node_holder (postgres)
SELECT host, pid, {SERVER_NOW} - heartbeat_at AS age FROM nodes WHERE name = :name;

-- name: register_node (postgres)
INSERT INTO nodes (name, host, pid, started_at, heartbeat_at)
    VALUES (:name, :host, :pid, {SERVER_NOW}, {SERVER_NOW}) ON CONFLICT (name) DO UPDATE SET
    host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = EXCLUDED.started_at,
    heartbeat_at = EXCLUDED.heartbeat_at;

-- name: heartbeat (postgres)
UPDATE nodes SET heartbeat_at = {SERVER_NOW} WHERE name = :name;

-- name: claim (postgres)
-- Rows nobody holds, whose lease ran out, or that this node holds; rows another node is
-- claiming this instant are skipped, not waited for.
WITH free AS (SELECT id FROM sources WHERE id = ANY(:ids) AND (node IS NULL
    OR node = :node OR lease_until IS NULL OR lease_until <= {SERVER_NOW})
    ORDER BY id FOR UPDATE SKIP LOCKED)
    UPDATE sources s SET node = :node, lease_until = {SERVER_NOW} + :secs
    FROM free WHERE s.id = free.id RETURNING s.id;

-- name: renew (postgres)
UPDATE sources SET lease_until = {SERVER_NOW} + :secs WHERE node = :node RETURNING id;

-- name: release (postgres)
UPDATE sources SET node = NULL, lease_until = NULL WHERE id = ANY(:ids) AND node = :node;

-- name: release_node_leases (postgres)
UPDATE sources SET node = NULL, lease_until = NULL WHERE node = :node;

-- name: leases (postgres)
SELECT id, node, lease_until FROM sources WHERE node IS NOT NULL
    AND lease_until > {SERVER_NOW};

-- name: lease_holder (postgres)
SELECT node FROM sources WHERE id = :id;

-- name: create_intent (postgres)
SELECT content_key, node, source_id, at FROM create_intents WHERE content_key = :content_key;

-- name: release_create_intent (postgres)
DELETE FROM create_intents WHERE content_key = :content_key AND source_id = :source_id;

-- name: table_sizes (postgres)
-- pg_total_relation_size = table_bytes (with TOAST) + index_bytes.
SELECT c.relname AS name, pg_table_size(c.oid) AS table_bytes,
    pg_indexes_size(c.oid) AS index_bytes FROM pg_class c
    WHERE c.oid = ANY(SELECT to_regclass(t) FROM unnest(CAST(:tables AS text[])) AS t);

-- name: take_create_intent (postgres)
-- Taken, or taken again by the same source, or taken over from a source no longer active.
INSERT INTO create_intents (content_key, node, source_id, at)
    VALUES (:content_key, :node, :source_id, :at) ON CONFLICT (content_key) DO UPDATE SET
    node = EXCLUDED.node, source_id = EXCLUDED.source_id, at = EXCLUDED.at
    WHERE create_intents.source_id = EXCLUDED.source_id OR NOT EXISTS (
    SELECT 1 FROM sources s WHERE s.id = create_intents.source_id
    AND s.content_key = create_intents.content_key AND s.state IN {ACTIVE_STATES})
    RETURNING source_id;
