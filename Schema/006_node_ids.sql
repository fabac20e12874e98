-- Schema version 6: verified identities and signed manifests in private swarms (issue 16, docs/PROTOCOL.md
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

-- A private swarm's manifest signature, as the owner made it: its public key (DER
-- SubjectPublicKeyInfo, hashing to the owner's node ID in the ticket) and an ECDSA P-256
-- signature. Kept so that a peer can pass the manifest on, still signed, to peers joining
-- through it. At most one row.
CREATE TABLE manifest_signature (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    signer_key  BLOB    NOT NULL CHECK (length(signer_key) BETWEEN 1 AND 200),
    signature   BLOB    NOT NULL CHECK (length(signature) BETWEEN 1 AND 128)
);
