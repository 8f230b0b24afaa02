-- watcherd journal, PostgreSQL schema 3.
-- The outputs written for a source, as a JSON list of their suffixes after output_base (the SQLite journal's schema 4):
-- a re-render with other names or another output folder removes exactly those files, and
-- never one watcherd did not write. NULL for rows written before this column existed.
ALTER TABLE sources ADD COLUMN outputs_json TEXT;
