-- Schema version 6: verified identities in private swarms (issue 16, docs/PROTOCOL.md
-- "Private swarms").

-- A source's node ID: the SHA-256 of the key it proved in TLS. Set only in a private swarm,
-- where a source's name is also suffixed with the ID's first 12 hex digits, so that
-- provenance names a verified identity, not whatever the sender called itself.
ALTER TABLE sources ADD COLUMN node_id BLOB CHECK (node_id IS NULL OR length(node_id) = 32);

-- Nodes this node refuses, across restarts: in a private swarm, a node that sent a chunk
-- failing its hash. Connections from and to them are closed once TLS names them.
CREATE TABLE blocked_nodes (
    node_id     BLOB    PRIMARY KEY CHECK (length(node_id) = 32),
    name        TEXT    NOT NULL,                -- the name it used when it was blocked
    reason      TEXT    NOT NULL,
    blocked_at  INTEGER NOT NULL
) WITHOUT ROWID;
