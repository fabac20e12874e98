import PeerShareStore

/// How far a node is, read from its index: what `peershare demo` draws for each peer.
public struct IndexProgress: Sendable, Equatable {
    public var heldChunks: Int
    public var heldBytes: Int64
    /// From the manifest; nil until the node has received it.
    public var totalChunks: Int?
    public var totalBytes: Int64?
    public var isAssembled: Bool
}

extension InspectDatabase {
    /// Chunks and bytes held (rows in `chunks`: each one a durable, verified chunk file) out
    /// of the manifest's, from one snapshot.
    public func progress() throws -> IndexProgress {
        try read { db in
            let held = try db.query("SELECT count(*), coalesce(sum(size), 0) FROM chunks") { ($0.int(0), $0.int(1)) }.first ?? (0, 0)
            let manifest = try self.manifest(db)
            return IndexProgress(heldChunks: Int(held.0), heldBytes: held.1, totalChunks: manifest.map { Int($0.chunkCount) },
                                 totalBytes: manifest?.fileSize, isAssembled: manifest?.assembledAt != nil)
        }
    }
}
