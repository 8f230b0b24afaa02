-- watcherd journal, SQLite schema 4.
-- The outputs written for a source, as a JSON list of their suffixes after output_base
-- (PostgreSQL's 0003_outputs.sql): a re-render with other names or another output folder
-- removes exactly those files, and never one watcherd did not write. NULL for rows written
-- before this column existed.
ALTER TABLE sources ADD COLUMN outputs_json TEXT;
