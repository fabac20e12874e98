-- Schema version 5: the owner's membership list (issue 15, docs/PROTOCOL.md "Swarms that
-- wire themselves").

-- Every downloader that said where others may dial it (HELLO's advertised address). The
-- owner hands out live members as neighbours; a member is live while its connection to
-- the owner is open, which the owner knows in memory, so these rows are the record of who
-- was in the swarm and what each last said it held. At most 4,096 rows: the member seen
-- longest ago with no connection open is dropped first.
CREATE TABLE members (
    name        TEXT    PRIMARY KEY,
    address     TEXT    NOT NULL,                                -- HOST:PORT as others dial it
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    held_count  INTEGER NOT NULL DEFAULT 0 CHECK (held_count >= 0),
    held        BLOB                                             -- what it last reported holding, as a CHUNK-LIST bitfield
) WITHOUT ROWID;
