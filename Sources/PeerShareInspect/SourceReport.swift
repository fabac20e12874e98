import PeerShareStore

/// `peershare-inspect sources`: per neighbour, owner or local file, what went each way.
public struct SourceReport: Sendable {
    public struct Row: Sendable, Equatable {
        public var source: SourceInfo
        /// Chunks currently held that came from this source.
        public var held: Int64 = 0
        /// Verified transfers in: chunks, bytes, summed durations.
        public var received: Int64 = 0
        public var receivedBytes: Int64 = 0
        public var receiveMicros: Int64 = 0
        /// Transfers in that failed verification.
        public var rejected: Int64 = 0
        public var sent: Int64 = 0
        public var sentBytes: Int64 = 0
        public var sendMicros: Int64 = 0
        /// Share chunks handed out to this peer (an owner's index).
        public var handedOut: Int64 = 0
        public var firstAt: Int64?
        public var lastAt: Int64?

        public var receiveRate: Int64? { Human.bytesPerSecond(bytes: receivedBytes, micros: receiveMicros) }
        public var sendRate: Int64? { Human.bytesPerSecond(bytes: sentBytes, micros: sendMicros) }

        public var record: Record {
            Record([
                "source_kind": .string(source.kind), "source": .string(source.name), "address": .optional(source.address),
                "held": .int(held), "received": .int(received), "received_bytes": .int(receivedBytes),
                "receive_busy_us": .int(receiveMicros), "receive_bytes_per_second": .optional(receiveRate),
                "rejected": .int(rejected), "sent": .int(sent), "sent_bytes": .int(sentBytes),
                "send_busy_us": .int(sendMicros), "send_bytes_per_second": .optional(sendRate),
                "handed_out": .int(handedOut), "first_transfer_at": .time(firstAt), "last_transfer_at": .time(lastAt),
                "node_id": .optional(source.nodeID), "blocked": .optional(source.blocked),
            ])
        }

        mutating func widen(_ first: Int64, _ last: Int64) {
            firstAt = min(firstAt ?? first, first)
            lastAt = max(lastAt ?? last, last)
        }
    }

    public var rows: [Row]

    static let header = ["source_kind", "source", "address", "held", "received", "received_bytes", "receive_busy_us",
                         "receive_bytes_per_second", "rejected", "sent", "sent_bytes", "send_busy_us", "send_bytes_per_second",
                         "handed_out", "first_transfer_at", "last_transfer_at", "node_id", "blocked"]

    public static func load(_ database: InspectDatabase) throws -> SourceReport {
        try database.read { db in
            let sources = try database.sources(db)
            var rows = sources.mapValues { Row(source: $0) }
            for (id, count) in try db.query("SELECT source_id, count(*) FROM chunks GROUP BY source_id", row: { ($0.int(0), $0.int(1)) }) {
                rows[id]?.held = count
            }
            // One grouped pass over the transfers (transfers_by_source gives the groups in order).
            let totals = try db.query("""
                SELECT source_id, direction, outcome, count(*), sum(bytes), sum(finished_at - started_at), min(started_at), max(finished_at)
                FROM transfers GROUP BY source_id, direction, outcome
                """) { ($0.int(0), $0.text(1), $0.text(2), $0.int(3), $0.int(4), $0.int(5), $0.int(6), $0.int(7)) }
            // Each group's sums fit (SQLite checks them), but several groups of one source can
            // add up past Int64.max in a damaged index: the totals saturate.
            for (id, direction, outcome, count, bytes, busy, first, last) in totals {
                guard var row = rows[id] else { continue }
                switch (direction, outcome) {
                case ("in", "verified"):
                    row.received = row.received.saturatingAdd(count)
                    row.receivedBytes = row.receivedBytes.saturatingAdd(bytes)
                    row.receiveMicros = row.receiveMicros.saturatingAdd(busy)
                case ("in", _):
                    row.rejected = row.rejected.saturatingAdd(count)
                default:
                    row.sent = row.sent.saturatingAdd(count)
                    row.sentBytes = row.sentBytes.saturatingAdd(bytes)
                    row.sendMicros = row.sendMicros.saturatingAdd(busy)
                }
                row.widen(first, last)
                rows[id] = row
            }
            for (id, count) in try db.query("SELECT source_id, count(*) FROM handouts GROUP BY source_id", row: { ($0.int(0), $0.int(1)) }) {
                rows[id]?.handedOut = count
            }
            return SourceReport(rows: rows.values.sorted { sourceOrder($0.source, $1.source) })
        }
    }

    public func render(_ format: OutputFormat) -> String {
        format.render(records: rows.map(\.record), header: Self.header, table: table)
    }

    func table() -> String {
        guard !rows.isEmpty else { return "no sources yet\n" }
        let showHandouts = rows.contains { $0.handedOut > 0 }
        var columns: [TextTable.Column] = [.init("source"), .init("kind"), .init("held", .right), .init("received", .right),
                                           .init("in rate", .right), .init("rejected", .right), .init("sent", .right), .init("out rate", .right)]
        if showHandouts { columns.append(.init("share", .right)) }
        columns.append(.init("last transfer"))
        let showBlocks = rows.contains { $0.source.blocked != nil }
        if showBlocks { columns.append(.init("blocked")) }
        var table = TextTable(columns)
        for r in rows {
            var cells = [r.source.name, r.source.kind, String(r.held),
                         r.received > 0 ? "\(r.received) (\(Human.bytes(r.receivedBytes)))" : "0", Human.rate(r.receiveRate),
                         String(r.rejected), r.sent > 0 ? "\(r.sent) (\(Human.bytes(r.sentBytes)))" : "0", Human.rate(r.sendRate)]
            if showHandouts { cells.append(String(r.handedOut)) }
            cells.append(Human.time(r.lastAt))
            if showBlocks { cells.append(r.source.blocked ?? "") }
            table.append(cells)
        }
        return table.render()
    }
}
