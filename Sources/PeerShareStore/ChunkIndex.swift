import PeerShareCore

/// The node's durable state: manifest, held chunks with provenance, transfers and events.
///
/// A thin layer of named queries over one `SQLiteConnection`; the node confines it to an actor.
/// Schema: Schema/*.sql (001_initial.sql and the migrations after it).
public final class ChunkIndex {
    public enum Role: String, Sendable { case owner, peer }

    public enum SourceKind: String, Sendable {
        /// Local: the owner's chunks split from the source file, or a peer's chunk file found
        /// on disk at start-up and adopted after re-hashing.
        case file
        case owner
        case peer
    }

    public struct Source: Hashable, Sendable {
        public let kind: SourceKind
        public let name: String
        /// In a private swarm, the node ID TLS proved; the name then ends in `@` and its
        /// first 12 hex digits, so that provenance names the identity.
        public let nodeID: Digest32?
        public init(kind: SourceKind, name: String) {
            self.kind = kind
            self.name = name
            self.nodeID = nil
        }

        /// A remote as it named itself, qualified by its verified node ID if there is one.
        public init(kind: SourceKind, name: String, verified nodeID: Digest32?) {
            self.kind = kind
            self.name = nodeID.map { "\(name)@\($0.short)" } ?? name
            self.nodeID = nodeID
        }
        public static let splitFromFile = Source(kind: .file, name: "split from the file")
        /// A verified chunk file found at start-up without its row (a crash came between
        /// the rename and the commit), re-hashed and adopted.
        public static let foundOnDisk = Source(kind: .file, name: "found on disk at start-up")
    }

    public let db: SQLiteConnection
    public let role: Role
    public let nodeName: String
    private var sourceIDs: [Source: Int64] = [:]
    private(set) var runID: Int64 = 0

    /// Opens (creating if needed) the index of a node, migrating it to the current schema,
    /// and records the start of a run under the machine's `bootID`.
    public init(path: String, role: Role, nodeName: String, now: Int64 = Clock.nowMicros(), bootID: String = BootID.current()) throws {
        db = try SQLiteConnection(path: path, mode: .readWrite)
        self.role = role
        self.nodeName = nodeName
        try Migrations.migrate(db)
        try db.transaction {
            if let existing = try db.scalarText("SELECT role FROM node WHERE id = 1") {
                guard existing == role.rawValue else { throw IndexError.roleMismatch(expected: role.rawValue, found: existing) }
            } else {
                try db.run("INSERT INTO node (id, role, name, created_at) VALUES (1, ?, ?, ?)", role.rawValue, nodeName, now)
            }
            try db.run("INSERT INTO runs (started_at, pid, boot_id) VALUES (?, ?, ?)", now, Int64(ProcessID.current), bootID)
            runID = db.lastInsertRowID
        }
    }

    /// Records the node's folder (an absolute path), where its chunk files live. Tools such as
    /// `peershare-inspect verify` read it; it is rewritten only when it changes.
    public func recordDirectory(_ path: String) throws {
        try db.run("UPDATE node SET directory = ? WHERE id = 1 AND directory IS NOT ?", path, path)
    }

    /// The node's folder as last recorded, if any.
    public func recordedDirectory() throws -> String? {
        try db.scalarText("SELECT directory FROM node WHERE id = 1")
    }

    /// Records how the run ended and closes the database. The database is closed even when
    /// the record cannot be written; that failure is returned for the caller to log. A run
    /// that could not make its bytes durable at the end is not `cleanly` stopped: its
    /// `stopped_at` stays empty, so the next start treats it as one that went down.
    @discardableResult
    public func close(outcome: String, now: Int64 = Clock.nowMicros(), cleanly: Bool = true) -> (any Error)? {
        defer { db.close() }
        do {
            try db.run("UPDATE runs SET stopped_at = ?, outcome = ? WHERE id = ?", cleanly ? now : nil, outcome, runID)
            return nil
        } catch {
            return error
        }
    }

    // MARK: Sources

    public func sourceID(_ source: Source, address: String? = nil) throws -> Int64 {
        if let id = sourceIDs[source], address == nil { return id }
        try db.run("""
            INSERT INTO sources (kind, name, address, node_id) VALUES (?, ?, ?, ?)
            ON CONFLICT (kind, name) DO UPDATE SET address = coalesce(excluded.address, address), node_id = coalesce(excluded.node_id, node_id)
            """, source.kind.rawValue, source.name, address, source.nodeID?.bytes)
        guard let id = try db.scalarInt("SELECT id FROM sources WHERE kind = ? AND name = ?", source.kind.rawValue, source.name) else {
            throw IndexError.manifestMismatch("source \(source.name) vanished")
        }
        sourceIDs[source] = id
        return id
    }

    // MARK: Chunks

    public func heldChunks(capacity: Int) throws -> ChunkSet {
        var set = ChunkSet(capacity: capacity)
        for id in try db.query("SELECT chunk_id FROM chunks", row: { $0.int(0) }) where id >= 0 && id < capacity {
            set.insert(ChunkID(UInt32(id)))
        }
        return set
    }

    /// What the index knows about one chunk that has been received.
    public struct ReceivedChunk: Sendable {
        public let id: ChunkID
        public let size: Int
        public let sha256: Digest32
        public let source: Source
        public let startedAt: Int64
        public let finishedAt: Int64
        public init(id: ChunkID, size: Int, sha256: Digest32, source: Source, startedAt: Int64, finishedAt: Int64) {
            self.id = id
            self.size = size
            self.sha256 = sha256
            self.source = source
            self.startedAt = startedAt
            self.finishedAt = finishedAt
        }
    }

    /// Records chunks whose files are already durable, with their provenance and one event
    /// each, in a single transaction. Call only after the files are fsynced and renamed.
    public func commitChunks(_ chunks: [ReceivedChunk], events: [EventRecord], batch: Int64? = nil) throws {
        try db.transaction {
            try insertChunks(chunks, batch: batch)
            for event in events { try insert(event) }
        }
    }

    private func insertChunks(_ chunks: [ReceivedChunk], batch: Int64?) throws {
        for chunk in chunks {
            let source = try sourceID(chunk.source)
            let duration = max(0, chunk.finishedAt - chunk.startedAt)
            try db.run("INSERT INTO chunks (chunk_id, size, sha256, source_id, received_at, duration_us, batch) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       chunk.id.rawValue, chunk.size, chunk.sha256.bytes, source, chunk.finishedAt, duration, batch)
            if chunk.source.kind != .file {
                try db.run("INSERT INTO transfers (chunk_id, direction, source_id, started_at, finished_at, bytes, outcome) VALUES (?, 'in', ?, ?, ?, ?, 'verified')",
                           chunk.id.rawValue, source, chunk.startedAt, chunk.finishedAt, chunk.size)
            }
            }
    }

    /// Forgets chunks whose files turned out missing or damaged, one event each, so they are
    /// fetched again. Their transfer history stays.
    public func dropChunks(_ dropped: [(id: ChunkID, reason: String)], now: Int64 = Clock.nowMicros()) throws {
        try db.transaction {
            for (id, reason) in dropped {
                try db.run("DELETE FROM chunks WHERE chunk_id = ?", id.rawValue)
                try insert(EventRecord(at: now, kind: .chunkDropped, chunk: id, message: "dropped chunk \(id) from the index: \(reason); it will be fetched again"))
            }
        }
    }

    /// Records that a download neighbour was told this node holds every chunk, keyed by its
    /// address so that a restart knows before connecting.
    /// Returns the event it stored, for the console.
    @discardableResult
    public func recordToldComplete(neighbour: String, address: String, now: Int64 = Clock.nowMicros()) throws -> EventRecord {
        let source = Source(kind: .peer, name: neighbour)
        _ = try sourceID(source, address: address)
        let event = EventRecord(at: now, kind: .toldComplete, source: source, message: "told download neighbour \(neighbour) at \(address) that every chunk is held")
        try insert(event)
        return event
    }

    /// Addresses of download neighbours already told that this node is complete.
    public func addressesToldComplete() throws -> Set<String> {
        Set(try db.query("SELECT DISTINCT s.address FROM events e JOIN sources s ON s.id = e.source_id WHERE e.kind = ? AND s.address IS NOT NULL", EventKind.toldComplete.rawValue) { $0.text(0) })
    }

    /// Downloaders that have reported holding every chunk, in this run or an earlier one.
    public func completedDownloaders() throws -> [String] {
        try db.query("SELECT DISTINCT s.name FROM events e JOIN sources s ON s.id = e.source_id WHERE e.kind = ? ORDER BY s.name", EventKind.neighbourComplete.rawValue) { $0.text(0) }
    }

    public enum TransferOutcome: String, Sendable { case verified, rejected, sent }

    /// One upload or rejected download, for `commit(chunks:transfers:events:)`.
    public struct TransferRecord: Sendable {
        public let chunk: ChunkID
        public let direction: String
        public let peer: Source
        public let startedAt: Int64
        public let finishedAt: Int64
        public let bytes: Int
        public let outcome: TransferOutcome
        public let detail: String?

        public init(chunk: ChunkID, direction: String, peer: Source, startedAt: Int64, finishedAt: Int64, bytes: Int, outcome: TransferOutcome, detail: String? = nil) {
            self.chunk = chunk
            self.direction = direction
            self.peer = peer
            self.startedAt = startedAt
            self.finishedAt = finishedAt
            self.bytes = bytes
            self.outcome = outcome
            self.detail = detail
        }
    }

    /// Commits a batch in one transaction: chunk rows (whose files the caller has already made
    /// durable), transfer rows and events. One commit per batch, not per row, is what keeps
    /// SQLite's share of a transfer small.
    public func commit(chunks: [ReceivedChunk], transfers: [TransferRecord], events: [EventRecord], offers: [Offer] = [], batch: Int64? = nil) throws {
        try db.transaction {
            try insertChunks(chunks, batch: batch)
            for offer in offers { try saveOffer(offer) }
            for t in transfers {
                try recordTransfer(chunk: t.chunk, direction: t.direction, peer: t.peer, startedAt: t.startedAt, finishedAt: t.finishedAt,
                                   bytes: t.bytes, outcome: t.outcome, detail: t.detail)
            }
            for event in events { try insert(event) }
        }
    }

    public func recordTransfer(chunk: ChunkID, direction: String, peer: Source, startedAt: Int64, finishedAt: Int64, bytes: Int, outcome: TransferOutcome, detail: String? = nil) throws {
        try db.run("INSERT INTO transfers (chunk_id, direction, source_id, started_at, finished_at, bytes, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   chunk.rawValue, direction, try sourceID(peer), startedAt, finishedAt, bytes, outcome.rawValue, detail)
    }

    public func markAssembled(event: EventRecord) throws {
        try db.transaction {
            try db.run("UPDATE manifest SET assembled_at = ? WHERE id = 1", event.at)
            try insert(event)
        }
    }

    // MARK: Shares

    public func saveShare(_ share: [ChunkID]) throws {
        try db.transaction {
            try db.run("DELETE FROM share")
            for id in share { try db.run("INSERT INTO share (chunk_id) VALUES (?)", id.rawValue) }
        }
    }

    /// The share, each ID checked against the manifest's count: an index edited by hand or
    /// damaged is refused with the row it holds, not trusted.
    public func share(chunkCount: Int) throws -> [ChunkID] {
        try db.query("SELECT chunk_id FROM share ORDER BY chunk_id") { $0.int(0) }.map {
            try Self.chunkID($0, below: chunkCount, in: "share")
        }
    }

    /// A chunk ID from a row, which must lie in 0..<count.
    static func chunkID(_ value: Int64, below count: Int, in table: String) throws -> ChunkID {
        guard value >= 0, value < count else {
            throw IndexError.manifestMismatch("the index's \(table) table names chunk \(value), outside 0..<\(count)")
        }
        return ChunkID(UInt32(value))
    }

    public func recordHandout(to peer: Source, chunks: [ChunkID]) throws {
        try db.transaction {
            let source = try sourceID(peer)
            for id in chunks {
                try db.run("INSERT OR IGNORE INTO handouts (source_id, chunk_id) VALUES (?, ?)", source, id.rawValue)
            }
        }
    }

    /// Shares handed out so far, by peer name.
    public func handouts(chunkCount: Int) throws -> [String: [ChunkID]] {
        let rows = try db.query("SELECT s.name, h.chunk_id FROM handouts h JOIN sources s ON s.id = h.source_id ORDER BY s.name, h.chunk_id") {
            ($0.text(0), $0.int(1))
        }.map { ($0.0, try Self.chunkID($0.1, below: chunkCount, in: "handouts")) }
        return Dictionary(grouping: rows, by: \.0).mapValues { $0.map(\.1) }
    }

    // MARK: Events

    public func record(_ event: EventRecord) throws {
        try insert(event)
    }

    func insert(_ event: EventRecord) throws {
        let source = try event.source.map { try sourceID($0) }
        try db.run("INSERT INTO events (at, kind, chunk_id, source_id, message) VALUES (?, ?, ?, ?, ?)",
                   event.at, event.kind.rawValue, event.chunk?.rawValue, source, event.message)
    }
}

/// One logged activity, as printed to the console and stored in the events table.
public struct EventRecord: Sendable {
    public let at: Int64
    public let kind: EventKind
    public let chunk: ChunkID?
    public let source: ChunkIndex.Source?
    public let message: String

    public init(at: Int64 = Clock.nowMicros(), kind: EventKind, chunk: ChunkID? = nil, source: ChunkIndex.Source? = nil, message: String) {
        self.at = at
        self.kind = kind
        self.chunk = chunk
        self.source = source
        self.message = message
    }
}

/// The kinds of event in the events table. Names are stable: inspect filters on them.
public enum EventKind: String, Sendable, CaseIterable {
    case started, stopped
    case split
    case connecting, connectRetry = "connect_retry", connected, disconnected
    case manifestReceived = "manifest_received", shareReceived = "share_received", shareAssigned = "share_assigned"
    case listSent = "list_sent", listReceived = "list_received"
    case chunkRequested = "chunk_requested", chunkReceived = "chunk_received", chunkRejected = "chunk_rejected"
    case requestHandled = "request_handled", chunkSent = "chunk_sent"
    /// A request still unanswered when its connection ended (timed out, lost, refused).
    case requestAbandoned = "request_abandoned"
    case neighbourComplete = "neighbour_complete", toldComplete = "told_complete"
    case assembling, assembled
    case chunkDropped = "chunk_dropped", chunkAdopted = "chunk_adopted", chunkRehashed = "chunk_rehashed", cleanup
    case fallback
    /// A remote broke the protocol, belongs to another swarm, or sent bad chunks; or a
    /// connection was refused over the cap.
    case protocolError = "protocol_error"
    case error
}
