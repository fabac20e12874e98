import PeerShareStore

/// One row of the `transfers` table: a chunk received (verified or rejected) or sent.
public struct TransferRow: Sendable, Equatable {
    public var id: Int64
    public var chunkID: Int64
    /// `in` or `out`.
    public var direction: String
    /// The sender for `in`, the receiver for `out`.
    public var source: SourceInfo?
    public var startedAt: Int64
    public var finishedAt: Int64
    public var bytes: Int64
    /// `verified`, `rejected` or `sent`.
    public var outcome: String
    public var detail: String?

    /// nil when the two times are too far apart for an Int64 (a damaged index): shown as "-".
    public var durationMicros: Int64? { Bounded.difference(finishedAt, startedAt).map { max(0, $0) } }

    public var record: Record {
        Record([
            "chunk_id": .int(chunkID), "direction": .string(direction),
            "source_kind": .optional(source?.kind), "source": .optional(source?.name),
            "started_at": .time(startedAt), "finished_at": .time(finishedAt), "duration_us": .optional(durationMicros),
            "bytes": .int(bytes), "outcome": .string(outcome), "detail": .optional(detail),
        ])
    }

    static let header = ["chunk_id", "direction", "source_kind", "source", "started_at", "finished_at", "duration_us", "bytes", "outcome", "detail"]
}

/// `peershare-inspect chunk ID`: one chunk's whole story.
public struct ChunkStory: Sendable {
    public var chunkID: Int64
    public var chunkCount: Int64
    public var size: Int64
    public var sha256: String
    public var inShare: Bool
    public var held: Bool
    /// Where the held copy came from, when and how fast.
    public var source: SourceInfo?
    public var receivedAt: Int64?
    public var durationMicros: Int64?
    /// Every attempt to receive it (verified or rejected), oldest first.
    public var attempts: [TransferRow]
    /// Every time it was sent, oldest first.
    public var uploads: [TransferRow]
    /// Every event about it, oldest first.
    public var events: [EventRow]

    public static func load(_ database: InspectDatabase, chunk id: Int64) throws -> ChunkStory {
        try database.read { db in
            guard let manifest = try database.manifest(db) else {
                throw InspectError("\(database.path) has no manifest yet, so no chunks")
            }
            // manifest() has bounded chunkCount to 0...ChunkID.maximumCount.
            guard id >= 0, id < manifest.chunkCount else {
                let range = manifest.chunkCount == 0 ? "no chunks" : "chunks 0 to \(manifest.chunkCount - 1)"
                throw InspectError("chunk \(id) is not in the manifest: \(manifest.fileName) has \(range)")
            }
            let sources = try database.sources(db)
            let (size, hash) = try db.query("SELECT size, sha256 FROM manifest_chunks WHERE chunk_id = ?", id) { ($0.int(0), Human.hex($0.blob(1))) }.first ?? (0, "")
            var story = ChunkStory(chunkID: id, chunkCount: manifest.chunkCount, size: size, sha256: hash,
                                   inShare: try db.scalarInt("SELECT count(*) FROM share WHERE chunk_id = ?", id) ?? 0 > 0,
                                   held: false, attempts: [], uploads: [], events: [])
            for row in try db.query("SELECT source_id, received_at, duration_us FROM chunks WHERE chunk_id = ?", id, row: { ($0.int(0), $0.int(1), $0.int(2)) }) {
                story.held = true
                story.source = sources[row.0]
                story.receivedAt = row.1
                story.durationMicros = row.2
            }
            let transfers = try db.query("SELECT id, chunk_id, direction, source_id, started_at, finished_at, bytes, outcome, detail FROM transfers WHERE chunk_id = ? ORDER BY started_at, id", id) { row in
                TransferRow(id: row.int(0), chunkID: row.int(1), direction: row.text(2), source: sources[row.int(3)], startedAt: row.int(4),
                            finishedAt: row.int(5), bytes: row.int(6), outcome: row.text(7), detail: row.optionalText(8))
            }
            story.attempts = transfers.filter { $0.direction == "in" }
            story.uploads = transfers.filter { $0.direction == "out" }
            story.events = try EventLog.query(db, sources: sources, filter: EventLog.Filter(chunk: id)).rows
            return story
        }
    }

    public var record: Record {
        Record([
            "chunk_id": .int(chunkID), "size": .int(size), "sha256": .string(sha256),
            "state": .string(held ? "held" : "missing"), "in_share": .bool(inShare),
            "source_kind": .optional(source?.kind), "source": .optional(source?.name),
            "received_at": .time(receivedAt), "duration_us": .optional(durationMicros),
            "attempts": .array(attempts.map { .record($0.record) }),
            "uploads": .array(uploads.map { .record($0.record) }),
            "events": .array(events.map { .record($0.record) }),
        ])
    }

    public func render(_ format: OutputFormat) -> String {
        switch format {
        case .json: JSON.encode(.record(record)) + "\n"
        // CSV carries the transfers, both directions, one per row; the events are in `events --chunk`.
        case .csv: CSV.table((attempts + uploads).sorted { ($0.startedAt, $0.id) < ($1.startedAt, $1.id) }.map(\.record), header: TransferRow.header)
        case .table: table()
        }
    }

    func table() -> String {
        var out = "chunk     \(chunkID) of \(chunkCount): \(Human.exactBytes(size))\(inShare ? ", in this peer's share from the owner" : "")\n"
        out += "sha256    \(sha256)\n"
        if held {
            let rate = durationMicros.flatMap { Human.bytesPerSecond(bytes: size, micros: $0) }
            let origin = source.map { $0.kind == "file" ? $0.label : "from \($0.label)" } ?? "from an unknown source"
            var text = "held: \(origin), at \(Human.time(receivedAt))"
            if let durationMicros, durationMicros > 0 { text += ", in \(Human.duration(durationMicros)) (\(Human.rate(rate)))" }
            out += "state     \(text)\n"
        } else {
            out += "state     missing\n"
        }
        out += "\n"
        if attempts.isEmpty {
            out += "received: \(source?.kind == "file" ? "no transfer, \(source!.label)" : "no attempt yet")\n"
        } else {
            var table = TextTable([.init("received from"), .init("requested/started"), .init("finished"), .init("duration", .right),
                                   .init("bytes", .right), .init("outcome"), .init("detail")])
            for t in attempts {
                table.append([t.source?.name ?? "?", Human.time(t.startedAt), Human.time(t.finishedAt), t.durationMicros.map(Human.duration) ?? "-",
                              String(t.bytes), t.outcome, t.detail ?? ""])
            }
            out += table.render()
        }
        out += "\n"
        if uploads.isEmpty {
            out += "sent: to nobody yet\n"
        } else {
            var table = TextTable([.init("sent to"), .init("started"), .init("finished"), .init("duration", .right), .init("bytes", .right)])
            for t in uploads {
                table.append([t.source?.name ?? "?", Human.time(t.startedAt), Human.time(t.finishedAt), t.durationMicros.map(Human.duration) ?? "-", String(t.bytes)])
            }
            out += table.render()
        }
        out += "\n"
        out += events.isEmpty ? "events: none\n" : EventLog.table(events)
        return out
    }
}
