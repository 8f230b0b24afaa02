-- watcherd journal, PostgreSQL schema 2.
-- Which node recorded a source's device and inode numbers. Two machines see one file on a
-- share with different numbers, so a node compares them only when it recorded them itself
-- (size and mtime are compared always); NULL for rows written before this column existed.
ALTER TABLE sources ADD COLUMN stat_node TEXT;
