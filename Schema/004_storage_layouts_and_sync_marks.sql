-- Schema version 4: two storage layouts, and crash consistency without an fsync per chunk
-- (docs/STORAGE.md, "Crash consistency").

-- The layout this node's folder was made with: 'chunk-files' (the seed's) or 'single-file'.
-- NULL in an index made before version 4, which means 'chunk-files'.
ALTER TABLE node ADD COLUMN storage TEXT CHECK (storage IN ('chunk-files', 'single-file'));

-- The owner's source file (absolute): a single-file owner serves it in place, and
-- peershare-inspect verify re-hashes its ranges there.
ALTER TABLE manifest ADD COLUMN source_path TEXT;

-- The machine's boot ID (/proc/sys/kernel/random/boot_id) when the run started: a run that
-- did not stop cleanly, followed by a run with another boot ID, means the machine went down.
ALTER TABLE runs ADD COLUMN boot_id TEXT;

-- The commit batch a chunk row was committed in. Rows are committed once their bytes are
-- written (the kernel holds them) but before they are synced; a sync mark says which
-- batches are durable. NULL: committed under version 3's rule, after its file was synced.
ALTER TABLE chunks ADD COLUMN batch INTEGER;
CREATE INDEX chunks_by_batch ON chunks (batch) WHERE batch IS NOT NULL;

-- One row per background sync: every chunk row of a batch up to through_batch has its bytes
-- on disk. Written after the sync returned, with the boot ID it happened under.
CREATE TABLE sync_marks (
    id             INTEGER PRIMARY KEY,
    at             INTEGER NOT NULL,
    boot_id        TEXT    NOT NULL,
    through_batch  INTEGER NOT NULL CHECK (through_batch >= 0)
);
