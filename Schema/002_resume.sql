-- Schema version 2: what a restart needs to resume without redoing work.

-- The owner's source file as it was when split: a restart that finds the same size and
-- modification time reuses the chunk files without reading the source again.
ALTER TABLE manifest ADD COLUMN source_mtime_ns INTEGER;
