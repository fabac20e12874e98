import PeerShareStore

/// One row of the `events` table.
public struct EventRow: Sendable, Equatable {
    public var id: Int64
    public var at: Int64
    public var kind: String
    public var chunkID: Int64?
    public var source: SourceInfo?
    public var message: String

    public var record: Record {
        Record([
            "id": .int(id), "at": .time(at), "kind": .string(kind), "chunk_id": .optional(chunkID),
            "source_kind": .optional(source?.kind), "source": .optional(source?.name), "message": .string(message),
        ])
    }

    static let header = ["id", "at", "kind", "chunk_id", "source_kind", "source", "message"]
}

/// `peershare-inspect events`: the node's timeline, filtered, and `--follow` to tail it live.
public struct EventLog: Sendable {
    public struct Filter: Sendable, Equatable {
        /// Event kinds (EventKind raw values); empty for every kind.
        public var kinds: [String] = []
        public var chunk: Int64?
        public var since: TimeArgument?
        public var until: TimeArgument?
        /// At most this many events: the first after `since` if it is given, else the latest.
        public var limit: Int?

        public init(kinds: [String] = [], chunk: Int64? = nil, since: TimeArgument? = nil, until: TimeArgument? = nil, limit: Int? = nil) {
            self.kinds = kinds
            self.chunk = chunk
            self.since = since
            self.until = until
            self.limit = limit
        }
    }

    public var rows: [EventRow]
    /// The highest event id in the snapshot (whether it matched or not): where following resumes.
    public var lastID: Int64

    public static var knownKinds: [String] { EventKind.allCases.map(\.rawValue) }

    public static func load(_ database: InspectDatabase, filter: Filter = Filter()) throws -> EventLog {
        try database.read { db in
            try query(db, sources: try database.sources(db), filter: filter)
        }
    }

    static let columns = "SELECT id, at, kind, chunk_id, source_id, message FROM events"

    static func query(_ db: Reader, sources: [Int64: SourceInfo], filter: Filter, after lastSeen: Int64? = nil) throws -> EventLog {
        var conditions: [String] = []
        var arguments: [SQLBindable] = []
        if !filter.kinds.isEmpty {
            conditions.append("kind IN (\(filter.kinds.map { _ in "?" }.joined(separator: ", ")))")
            arguments += filter.kinds as [SQLBindable]
        }
        if let chunk = filter.chunk {
            conditions.append("chunk_id = ?")
            arguments.append(chunk)
        }
        let latest = filter.since?.needsLatest == true || filter.until?.needsLatest == true
            ? try db.scalarInt("SELECT max(at) FROM events") : nil
        if let since = filter.since {
            conditions.append("at >= ?")
            arguments.append(try resolve(since, option: "--since", latest: latest))
        }
        if let until = filter.until {
            conditions.append("at < ?")
            arguments.append(try resolve(until, option: "--until", latest: latest))
        }
        let lastID = try db.scalarInt("SELECT max(id) FROM events") ?? 0
        var sql = columns
        var newestFirst = false
        if let lastSeen {
            // Following: everything committed since the last poll, in commit order.
            conditions.append("id > ?")
            arguments.append(lastSeen)
            if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
            sql += " ORDER BY id"
        } else {
            if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
            if let limit = filter.limit {
                newestFirst = filter.since == nil
                sql += newestFirst ? " ORDER BY at DESC, id DESC LIMIT \(limit)" : " ORDER BY at, id LIMIT \(limit)"
            } else {
                sql += " ORDER BY at, id"
            }
        }
        var rows = try db.query(sql, arguments: arguments) { row in
            EventRow(id: row.int(0), at: row.int(1), kind: row.text(2), chunkID: row.optionalInt(3),
                     source: row.optionalInt(4).flatMap { sources[$0] }, message: row.text(5))
        }
        if newestFirst { rows.reverse() }
        return EventLog(rows: rows, lastID: lastID)
    }

    /// A bare time of day is placed on the latest event's day; a damaged index's latest time
    /// (within a day of Int64.min or Int64.max) leaves no such time to compare with.
    static func resolve(_ time: TimeArgument, option: String, latest: Int64?) throws -> Int64 {
        guard let micros = time.resolve(latest: latest) else {
            throw InspectError("\(option) \(time.text) is outside the index's time range: its latest event is at \(Human.time(latest)) UTC")
        }
        return micros
    }

    public func render(_ format: OutputFormat) -> String {
        format.render(records: rows.map(\.record), header: EventRow.header) { rows.isEmpty ? "no events match\n" : Self.table(rows) }
    }

    static func table(_ rows: [EventRow]) -> String {
        var table = TextTable([.init("time"), .init("kind"), .init("chunk", .right), .init("source"), .init("message")])
        for e in rows {
            table.append([Timestamp.short(e.at), e.kind, e.chunkID.map(String.init) ?? "", e.source?.name ?? "", e.message])
        }
        return table.render()
    }

    // MARK: Following

    /// When following stops (besides a signal, which the command handles).
    public struct FollowLimits: Sendable {
        /// Stop once the node's latest run has recorded its stop (a clean exit).
        public var untilStopped = false
        /// Stop after this long (for tests and scripts).
        public var duration: Duration?
        /// How often the index is polled.
        public var interval: Duration = .milliseconds(200)

        public init(untilStopped: Bool = false, duration: Duration? = nil, interval: Duration = .milliseconds(200)) {
            self.untilStopped = untilStopped
            self.duration = duration
            self.interval = interval
        }
    }

    /// Prints the matching history, then every new matching event as the node commits it,
    /// polling the read-only index. Table rows have fixed column widths so that lines can be
    /// printed as they come; JSON becomes JSON Lines (one object per line).
    public static func follow(_ database: InspectDatabase, filter: Filter, format: OutputFormat, limits: FollowLimits,
                              write: (String) -> Void) async throws {
        let clock = ContinuousClock()
        let deadline = limits.duration.map { clock.now.advanced(by: $0) }
        var (history, stopped) = try database.read { db in
            (try query(db, sources: try database.sources(db), filter: filter), try latestRunStopped(db))
        }
        if format == .csv { write(CSV.line(EventRow.header) + "\n") }
        write(streamed(history.rows, format: format))
        var lastID = history.lastID
        var polled = false
        while true {
            if limits.untilStopped && stopped && polled { return }
            if let deadline, clock.now >= deadline { return }
            try await Task.sleep(for: limits.interval)
            (history, stopped) = try database.read { db in
                (try query(db, sources: try database.sources(db), filter: Filter(kinds: filter.kinds, chunk: filter.chunk, since: filter.since), after: lastID),
                 try latestRunStopped(db))
            }
            polled = true
            if !history.rows.isEmpty { write(streamed(history.rows, format: format)) }
            lastID = max(lastID, history.lastID)
        }
    }

    static func latestRunStopped(_ db: Reader) throws -> Bool {
        try db.query("SELECT stopped_at IS NOT NULL FROM runs ORDER BY id DESC LIMIT 1") { $0.int(0) != 0 }.first ?? false
    }

    static func streamed(_ rows: [EventRow], format: OutputFormat) -> String {
        var out = ""
        for e in rows {
            switch format {
            case .json: out += JSON.line(.record(e.record)) + "\n"
            case .csv: out += CSV.line(e.record.scalarValues.map(\.csvText)) + "\n"
            case .table:
                let chunk = e.chunkID.map(String.init) ?? ""
                out += "\(Timestamp.short(e.at))  \(e.kind.padded(to: 17))  \(String(repeating: " ", count: max(0, 6 - chunk.count)) + chunk)  \((e.source?.name ?? "").padded(to: 8))  \(e.message)\n"
            }
        }
        return out
    }
}

extension TimeArgument {
    var needsLatest: Bool {
        if case .timeOfDay = self { return true }
        return false
    }
}
