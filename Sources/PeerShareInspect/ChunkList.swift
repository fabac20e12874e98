import PeerShareStore

/// `peershare-inspect chunks`: one row per chunk of the manifest.
public struct ChunkList: Sendable {
    public struct Row: Sendable, Equatable {
        public var chunkID: Int64
        public var size: Int64
        /// The manifest's SHA-256 of the chunk.
        public var sha256: String
        public var held: Bool
        public var inShare: Bool
        public var source: SourceInfo?
        public var receivedAt: Int64?
        public var durationMicros: Int64?
        /// Attempts that failed verification (by any source), before or after it was held.
        public var rejected: Int64

        public var state: String { held ? "held" : "missing" }
        public var bytesPerSecond: Int64? { durationMicros.flatMap { Human.bytesPerSecond(bytes: size, micros: $0) } }

        public var record: Record {
            Record([
                "chunk_id": .int(chunkID), "size": .int(size), "sha256": .string(sha256), "state": .string(state),
                "in_share": .bool(inShare), "source_kind": .optional(source?.kind), "source": .optional(source?.name),
                "received_at": .time(receivedAt), "duration_us": .optional(durationMicros),
                "bytes_per_second": .optional(bytesPerSecond), "rejected": .int(rejected),
            ])
        }
    }

    public enum Filter: Sendable, Equatable {
        case all
        case missing
        /// Held chunks from sources with this name or of this kind (`file`, `owner`, `peer`).
        case from(String)
    }

    public var rows: [Row]
    public var filter: Filter

    static let header = ["chunk_id", "size", "sha256", "state", "in_share", "source_kind", "source", "received_at",
                         "duration_us", "bytes_per_second", "rejected"]

    public static func load(_ database: InspectDatabase, filter: Filter = .all) throws -> ChunkList {
        try database.read { db in
            let sources = try database.sources(db)
            let columns = """
                SELECT m.chunk_id, m.size, m.sha256, c.chunk_id IS NOT NULL, c.source_id, c.received_at, c.duration_us,
                       (SELECT count(*) FROM transfers t WHERE t.chunk_id = m.chunk_id AND t.outcome = 'rejected'),
                       EXISTS (SELECT 1 FROM share s WHERE s.chunk_id = m.chunk_id)
                """
            let sql: String
            var arguments: [SQLBindable] = []
            switch filter {
            case .all:
                sql = columns + " FROM manifest_chunks m LEFT JOIN chunks c ON c.chunk_id = m.chunk_id ORDER BY m.chunk_id"
            case .missing:
                sql = columns + " FROM manifest_chunks m LEFT JOIN chunks c ON c.chunk_id = m.chunk_id WHERE c.chunk_id IS NULL ORDER BY m.chunk_id"
            case .from(let name):
                let matching = sources.values.filter { $0.name == name || $0.kind == name }.map(\.id).sorted()
                guard !matching.isEmpty else {
                    let known = sources.values.sorted(by: sourceOrder).map(\.name)
                    throw InspectError("no source named \(name) in \(database.path); known: \(known.isEmpty ? "none" : known.joined(separator: ", ")) (or a kind: file, owner, peer)")
                }
                sql = columns + " FROM chunks c JOIN manifest_chunks m ON m.chunk_id = c.chunk_id WHERE c.source_id IN (\(matching.map { _ in "?" }.joined(separator: ", "))) ORDER BY c.chunk_id"
                arguments = matching
            }
            let rows = try db.query(sql, arguments: arguments) { row in
                Row(chunkID: row.int(0), size: row.int(1), sha256: Human.hex(row.blob(2)), held: row.int(3) != 0,
                    inShare: row.int(8) != 0, source: row.optionalInt(4).flatMap { sources[$0] },
                    receivedAt: row.optionalInt(5), durationMicros: row.optionalInt(6), rejected: row.int(7))
            }
            return ChunkList(rows: rows, filter: filter)
        }
    }

    public func render(_ format: OutputFormat) -> String {
        format.render(records: rows.map(\.record), header: Self.header, table: table)
    }

    func table() -> String {
        var table = TextTable([.init("chunk", .right), .init("size", .right), .init("sha256"), .init("state"), .init("share"),
                               .init("source"), .init("received"), .init("duration", .right), .init("rejected", .right)])
        for r in rows {
            table.append([String(r.chunkID), String(r.size), Human.shortHash(r.sha256), r.state, r.inShare ? "yes" : "",
                          r.source?.name ?? "-", Human.time(r.receivedAt), r.durationMicros.map(Human.duration) ?? "-",
                          r.rejected > 0 ? String(r.rejected) : ""])
        }
        let held = rows.filter(\.held).count
        let summary = switch filter {
        case .all: "\(rows.count) chunks: \(held) held, \(rows.count - held) missing"
        case .missing: "\(rows.count) chunks missing"
        case .from(let name): "\(rows.count) chunks held from \(name)"
        }
        return (rows.isEmpty ? "" : table.render()) + summary + "\n"
    }
}
