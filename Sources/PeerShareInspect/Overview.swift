import PeerShareStore

/// Chunks and bytes exchanged with one source, and the mean rate of those transfers.
public struct SourceTotal: Sendable, Equatable {
    public var source: SourceInfo
    public var chunks: Int64
    public var bytes: Int64
    /// The sum of the transfers' durations (request to verified arrival, or send).
    public var busyMicros: Int64

    /// Total bytes over total transfer time: the mean rate of one transfer from this source.
    public var bytesPerSecond: Int64? { Human.bytesPerSecond(bytes: bytes, micros: busyMicros) }

    var record: FieldValue {
        .record(Record([
            "source_kind": .string(source.kind), "source": .string(source.name),
            "chunks": .int(chunks), "bytes": .int(bytes), "busy_us": .int(busyMicros),
            "bytes_per_second": .optional(bytesPerSecond),
        ]))
    }
}

/// `peershare-inspect --db PATH`: what the node holds, where it came from, and how it went.
public struct Overview: Sendable {
    public var database: String
    public var schemaVersion: Int
    public var node: NodeInfo
    public var manifest: ManifestInfo?
    public var chunksHeld: Int64 = 0
    public var bytesHeld: Int64 = 0
    public var shareChunks: Int64 = 0
    public var shareHeld: Int64 = 0
    public var firstReceivedAt: Int64?
    public var lastReceivedAt: Int64?
    public var firstStartedAt: Int64?
    public var runs: Int64 = 0
    public var lastRunStartedAt: Int64?
    public var lastRunStoppedAt: Int64?
    public var lastRunOutcome: String?
    public var rejected: Int64 = 0
    /// Where the chunks held came from, per source (for an owner: "split from the file").
    public var receivedFrom: [SourceTotal] = []
    /// Chunks sent, per receiving peer.
    public var sentTo: [SourceTotal] = []

    public var isComplete: Bool { manifest.map { chunksHeld == $0.chunkCount } ?? false }

    /// `assembled`, `complete` (every chunk held; an owner always is), `partial` or `no_manifest`.
    public var state: String {
        guard let manifest else { return "no_manifest" }
        if manifest.assembledAt != nil { return "assembled" }
        return isComplete ? "complete" : "partial"
    }

    public var restarts: Int64 { max(0, runs - 1) }

    /// From the node's first start to the arrival of its last chunk, once it holds every
    /// chunk; nil too when the two times are too far apart for an Int64 (a damaged index).
    public var completeAfterMicros: Int64? {
        guard isComplete, let firstStartedAt, let lastReceivedAt else { return nil }
        return Bounded.difference(lastReceivedAt, firstStartedAt).map { max(0, $0) }
    }

    public static func load(_ database: InspectDatabase) throws -> Overview {
        try database.read { db in
            var o = Overview(database: database.path, schemaVersion: database.schemaVersion, node: try database.node(db))
            o.manifest = try database.manifest(db)
            let sources = try database.sources(db)
            // One pass over the chunk rows; the first and last arrival come from chunks_by_time.
            if let row = try db.query("SELECT count(*), coalesce(sum(size), 0) FROM chunks", row: { ($0.int(0), $0.int(1)) }).first {
                (o.chunksHeld, o.bytesHeld) = row
            }
            o.firstReceivedAt = try db.scalarInt("SELECT min(received_at) FROM chunks")
            o.lastReceivedAt = try db.scalarInt("SELECT max(received_at) FROM chunks")
            if let row = try db.query("SELECT count(*), count(c.chunk_id) FROM share s LEFT JOIN chunks c ON c.chunk_id = s.chunk_id", row: { ($0.int(0), $0.int(1)) }).first {
                (o.shareChunks, o.shareHeld) = row
            }
            if let row = try db.query("SELECT count(*), min(started_at) FROM runs", row: { ($0.int(0), $0.optionalInt(1)) }).first {
                (o.runs, o.firstStartedAt) = row
            }
            if let row = try db.query("SELECT started_at, stopped_at, outcome FROM runs ORDER BY id DESC LIMIT 1", row: { ($0.int(0), $0.optionalInt(1), $0.optionalText(2)) }).first {
                (o.lastRunStartedAt, o.lastRunStoppedAt, o.lastRunOutcome) = row
            }
            o.rejected = try db.scalarInt("SELECT count(*) FROM transfers WHERE outcome = 'rejected'") ?? 0
            o.receivedFrom = try db.query("SELECT source_id, count(*), sum(size), sum(duration_us) FROM chunks GROUP BY source_id") { row in
                (row.int(0), row.int(1), row.int(2), row.int(3))
            }.compactMap { id, chunks, bytes, busy in
                sources[id].map { SourceTotal(source: $0, chunks: chunks, bytes: bytes, busyMicros: busy) }
            }.sorted { sourceOrder($0.source, $1.source) }
            o.sentTo = try db.query("SELECT source_id, count(*), sum(bytes), sum(finished_at - started_at) FROM transfers WHERE direction = 'out' GROUP BY source_id") { row in
                (row.int(0), row.int(1), row.int(2), row.int(3))
            }.compactMap { id, chunks, bytes, busy in
                sources[id].map { SourceTotal(source: $0, chunks: chunks, bytes: bytes, busyMicros: busy) }
            }.sorted { sourceOrder($0.source, $1.source) }
            return o
        }
    }

    // MARK: Output

    public var record: Record {
        Record([
            "database": .string(database),
            "schema_version": .int(Int64(schemaVersion)),
            "role": .string(node.role),
            "name": .string(node.name),
            "directory": .optional(node.directory),
            "storage": .string(node.storage.rawValue),
            "file_name": .optional(manifest?.fileName),
            "is_folder": .bool(manifest?.isFolder ?? false),
            "file_size": .optional(manifest?.fileSize),
            "file_sha256": .optional(manifest?.sha256),
            "chunk_size": .optional(manifest?.chunkSize),
            "chunk_count": .optional(manifest?.chunkCount),
            "state": .string(state),
            "assembled_at": .time(manifest?.assembledAt),
            "chunks_held": .int(chunksHeld),
            "bytes_held": .int(bytesHeld),
            "share_chunks": .int(shareChunks),
            "share_held": .int(shareHeld),
            "first_received_at": .time(firstReceivedAt),
            "last_received_at": .time(lastReceivedAt),
            "first_started_at": .time(firstStartedAt),
            "complete_after_us": .optional(completeAfterMicros),
            "runs": .int(runs),
            "restarts": .int(restarts),
            "last_run_started_at": .time(lastRunStartedAt),
            "last_run_stopped_at": .time(lastRunStoppedAt),
            "last_run_outcome": .optional(lastRunOutcome),
            "rejected_chunks": .int(rejected),
            "received_from": .array(receivedFrom.map(\.record)),
            "sent_to": .array(sentTo.map(\.record)),
        ])
    }

    public func render(_ format: OutputFormat) -> String {
        switch format {
        case .json: JSON.encode(.record(record)) + "\n"
        case .csv: CSV.table([record], header: [])
        case .table: table()
        }
    }

    func table() -> String {
        var lines: [(String, String)] = []
        lines.append(("node", "\(node.role) \(node.name)"))
        lines.append(("index", "\(database) (schema \(schemaVersion))"))
        if let directory = node.directory { lines.append(("folder", directory)) }
        lines.append(("storage", node.storage == .chunkFiles ? "chunk files (DIR/chunks)" : "a single file, every chunk in place"))
        if let m = manifest {
            // A shared folder's size is its files' total (`peershare-inspect files` lists them).
            lines.append(("file", "\(m.fileName)\(m.isFolder ? "/ (a folder)" : ""), \(Human.exactBytes(m.fileSize)), \(m.chunkCount) chunks of \(Human.bytes(m.chunkSize))"))
            lines.append(("sha256", m.sha256))
            let stateText = switch state {
            case "assembled": "assembled at \(Human.time(m.assembledAt))"
            case "complete": node.role == "owner" ? "complete (the owner's own file)" : "complete, not yet assembled"
            // Both bounded: chunkCount by InspectDatabase.manifest, chunksHeld is a count(*).
            default: "partial: \(m.chunkCount - chunksHeld) chunks missing"
            }
            lines.append(("state", stateText))
            let percent = m.chunkCount > 0 ? " (\(Human.oneDecimal(Double(chunksHeld) * 100 / Double(m.chunkCount)))%)" : ""
            lines.append(("chunks", "\(chunksHeld) of \(m.chunkCount) held\(percent), \(Human.bytes(bytesHeld))"))
        } else {
            lines.append(("file", "no manifest yet (the node has not heard from the owner)"))
        }
        if shareChunks > 0 { lines.append(("share", "\(shareChunks) chunks from the owner, \(shareHeld) held")) }
        if firstReceivedAt != nil {
            var text = "first \(Human.time(firstReceivedAt)), last \(Human.time(lastReceivedAt))"
            if let completeAfterMicros { text += "; complete \(Human.duration(completeAfterMicros)) after the first start" }
            lines.append(("arrivals", text))
        }
        var runText = "\(runs) (\(restarts) restart\(restarts == 1 ? "" : "s"))"
        if let lastRunStartedAt {
            runText += "; last started \(Human.time(lastRunStartedAt)), "
            runText += lastRunStoppedAt.map { "stopped \(Human.time($0)): \(lastRunOutcome ?? "")" } ?? "still running (or killed)"
        }
        lines.append(("runs", runText))
        lines.append(("rejected", "\(rejected) chunk\(rejected == 1 ? "" : "s") failed verification"))
        var out = lines.map { "\($0.0.padded(to: 10))\($0.1)\n" }.joined()
        out += "\n" + Self.totals(receivedFrom, title: "received from", empty: "no chunks held yet")
        out += "\n" + Self.totals(sentTo, title: "sent to", empty: "no chunks sent")
        return out
    }

    static func totals(_ totals: [SourceTotal], title: String, empty: String) -> String {
        guard !totals.isEmpty else { return "\(title): \(empty)\n" }
        var table = TextTable([.init(title), .init("kind"), .init("chunks", .right), .init("bytes", .right), .init("busy", .right), .init("throughput", .right)])
        for t in totals {
            table.append([t.source.name, t.source.kind, String(t.chunks), Human.bytes(t.bytes),
                          t.busyMicros > 0 ? Human.duration(t.busyMicros) : "-", Human.rate(t.bytesPerSecond)])
        }
        return table.render()
    }
}
