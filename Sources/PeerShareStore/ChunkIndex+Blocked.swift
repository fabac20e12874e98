import PeerShareCore

/// Nodes refused across restarts (Schema/006_node_ids.sql): in a private swarm, a node that
/// sent a chunk failing its hash.
extension ChunkIndex {
    public struct BlockedNode: Sendable, Equatable {
        public let nodeID: Digest32
        public let name: String
        public let reason: String
        public let blockedAt: Int64

        public init(nodeID: Digest32, name: String, reason: String, blockedAt: Int64) {
            self.nodeID = nodeID
            self.name = name
            self.reason = reason
            self.blockedAt = blockedAt
        }
    }

    /// Records a block; a node blocked before keeps its first reason.
    public func block(_ node: BlockedNode) throws {
        try db.run("INSERT INTO blocked_nodes (node_id, name, reason, blocked_at) VALUES (?, ?, ?, ?) ON CONFLICT (node_id) DO NOTHING",
                   node.nodeID.bytes, node.name, node.reason, node.blockedAt)
    }

    public func blockedNodes() throws -> [BlockedNode] {
        try db.query("SELECT node_id, name, reason, blocked_at FROM blocked_nodes ORDER BY blocked_at") { row in
            (Digest32(bytes: row.blob(0)), row.text(1), row.text(2), row.int(3))
        }.compactMap { id, name, reason, at in id.map { BlockedNode(nodeID: $0, name: name, reason: reason, blockedAt: at) } }
    }
}

/// A private swarm's manifest signature (Schema/006_node_ids.sql).
extension ChunkIndex {
    public func saveManifestSignature(signerKey: [UInt8], signature: [UInt8]) throws {
        try db.run("INSERT INTO manifest_signature (id, signer_key, signature) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET signer_key = excluded.signer_key, signature = excluded.signature",
                   signerKey, signature)
    }

    public func manifestSignature() throws -> (signerKey: [UInt8], signature: [UInt8])? {
        try db.query("SELECT signer_key, signature FROM manifest_signature WHERE id = 1") { ($0.blob(0), $0.blob(1)) }.first
    }
}
