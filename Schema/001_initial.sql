-- PeerShare chunk index, schema version 1.
-- This folder is the only copy of the schema: tools/generate-schema embeds it into
-- Sources/PeerShareStore/Schema.generated.swift, and a test fails if the two differ.
-- A shipped migration is never edited; changes go into a new, higher-numbered file.
-- Times are integer microseconds since the Unix epoch (UTC).

-- 'PSHR': lets peershare-inspect tell a PeerShare index from any other SQLite file.
PRAGMA application_id = 1347635282;

-- Who this database belongs to. Exactly one row.
CREATE TABLE node (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    role        TEXT    NOT NULL CHECK (role IN ('owner', 'peer')),
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- The shared file as the owner described it. At most one row.
CREATE TABLE manifest (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    file_name     TEXT    NOT NULL,
    file_size     INTEGER NOT NULL CHECK (file_size >= 0),
    chunk_size    INTEGER NOT NULL CHECK (chunk_size > 0),
    chunk_count   INTEGER NOT NULL CHECK (chunk_count >= 0),
    file_sha256   BLOB    NOT NULL CHECK (length(file_sha256) = 32),
    recorded_at   INTEGER NOT NULL,
    assembled_at  INTEGER            -- set once the whole file is assembled and verified
);

-- The expected size and hash of every chunk, from the manifest.
CREATE TABLE manifest_chunks (
    chunk_id  INTEGER PRIMARY KEY CHECK (chunk_id >= 0),
    size      INTEGER NOT NULL CHECK (size > 0),
    sha256    BLOB    NOT NULL CHECK (length(sha256) = 32)
);

-- Where chunks come from and go to: the source file itself (owner), the owner, or a peer.
CREATE TABLE sources (
    id       INTEGER PRIMARY KEY,
    kind     TEXT NOT NULL CHECK (kind IN ('file', 'owner', 'peer')),
    name     TEXT NOT NULL,
    address  TEXT,
    UNIQUE (kind, name)
);

-- One row per chunk held. Invariant: a row exists only once chunks/<id> is durable and verified.
CREATE TABLE chunks (
    chunk_id     INTEGER PRIMARY KEY REFERENCES manifest_chunks (chunk_id),
    size         INTEGER NOT NULL,
    sha256       BLOB    NOT NULL CHECK (length(sha256) = 32),
    source_id    INTEGER NOT NULL REFERENCES sources (id),
    received_at  INTEGER NOT NULL,
    duration_us  INTEGER NOT NULL CHECK (duration_us >= 0)
);
CREATE INDEX chunks_by_source ON chunks (source_id);

-- A peer's share as handed out by the owner.
CREATE TABLE share (
    chunk_id  INTEGER PRIMARY KEY
);

-- The owner's record of which share went to which peer, so a returning peer gets the same one.
CREATE TABLE handouts (
    source_id  INTEGER NOT NULL REFERENCES sources (id),
    chunk_id   INTEGER NOT NULL,
    PRIMARY KEY (source_id, chunk_id)
) WITHOUT ROWID;

-- Every chunk transfer attempt, in either direction: the provenance trail.
CREATE TABLE transfers (
    id           INTEGER PRIMARY KEY,
    chunk_id     INTEGER NOT NULL,
    direction    TEXT    NOT NULL CHECK (direction IN ('in', 'out')),
    source_id    INTEGER NOT NULL REFERENCES sources (id),  -- the sender for 'in', the receiver for 'out'
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,
    bytes        INTEGER NOT NULL CHECK (bytes >= 0),
    outcome      TEXT    NOT NULL CHECK (outcome IN ('verified', 'rejected', 'sent')),
    detail       TEXT
);
CREATE INDEX transfers_by_chunk ON transfers (chunk_id, started_at);
CREATE INDEX transfers_by_source ON transfers (source_id, direction, outcome);

-- The activity log: every line printed to the console is also a row here.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    chunk_id   INTEGER,
    source_id  INTEGER REFERENCES sources (id),
    message    TEXT    NOT NULL
);
CREATE INDEX events_by_time ON events (at);
CREATE INDEX events_by_kind ON events (kind, at);
CREATE INDEX events_by_chunk ON events (chunk_id, at) WHERE chunk_id IS NOT NULL;

-- One row per process start, so restarts can be counted and stalls placed in time.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    started_at  INTEGER NOT NULL,
    pid         INTEGER NOT NULL,
    stopped_at  INTEGER,
    outcome     TEXT
);
