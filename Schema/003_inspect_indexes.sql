-- Schema version 3: what peershare-inspect needs to find the chunk files and to answer
-- every command in well under a second on a 10,000-chunk, 100,000-event index.
-- The query plans these indexes serve are in docs/INSPECT-NOTES.md.

-- The node's folder (absolute), recorded at every start: `peershare-inspect verify` finds
-- DIR/chunks/ from it even when --db put the index somewhere else.
ALTER TABLE node ADD COLUMN directory TEXT;

-- First and last arrival (overview) without scanning every chunk row.
CREATE INDEX chunks_by_time ON chunks (received_at);

-- Rejected attempts are rare: a small partial index answers the overview's count and the
-- per-chunk counts of `chunks` without scanning every transfer.
CREATE INDEX transfers_rejected ON transfers (chunk_id) WHERE outcome = 'rejected';
