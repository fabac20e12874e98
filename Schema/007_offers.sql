-- Schema version 7: what `peershare-inspect why` needs to explain a stuck or slow peer
-- (issue 17, docs/WATCHING.md "Why is it stuck?").

-- What each source this node downloaded from last offered: its latest CHUNK-LIST with
-- the HAVEs that followed, as a CHUNK-LIST bitfield. Written when a list arrives and when
-- the connection ends, so a stopped peer's index still says who held a missing chunk.
CREATE TABLE offers (
    source_id   INTEGER PRIMARY KEY REFERENCES sources (id),
    at          INTEGER NOT NULL,
    held_count  INTEGER NOT NULL CHECK (held_count >= 0),
    held        BLOB    NOT NULL
);
