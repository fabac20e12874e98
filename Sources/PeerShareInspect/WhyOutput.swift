import PeerShareCore

/// How `why` prints: one JSON object (snake_case, times ISO 8601, durations in µs), or
/// sections of text and tables for people. Long lists are bounded and say what they left out.
extension WhyReport {
    /// Missing ranges and outstanding requests a table shows; JSON lists many more.
    static let tableLimit = 30
    static let jsonLimit = 5_000

    public func render(_ format: OutputFormat) -> String {
        switch format {
        case .json: JSON.encode(.record(record)) + "\n"
        // The command refuses csv: the report is nested, not one table.
        case .csv, .table: table()
        }
    }

    static func sourceValue(_ source: SourceInfo?) -> FieldValue { .optional(source?.name) }

    func missingRecords(limit: Int) -> (items: [Record], leftOut: Int) {
        let items = missingRanges.prefix(limit).map { r in
            Record([
                "first": .int(r.first), "last": .int(r.last), "count": .int(r.count),
                "holders": .array(r.holders.map { h in
                    .record(Record(["source": .string(h.source.name), "source_kind": .string(h.source.kind), "offered_at": .time(h.offeredAt)]))
                }),
            ])
        }
        return (items, max(0, missingRanges.count - limit))
    }

    public var record: Record {
        let missing = missingRecords(limit: Self.jsonLimit)
        let requests = outstanding.prefix(Self.jsonLimit).map { r in
            FieldValue.record(Record([
                "chunk": .int(r.chunk), "source": Self.sourceValue(r.source), "requested_at": .time(r.requestedAt),
                "age_us": .optional(Bounded.difference(reference, r.requestedAt).map { max(0, $0) }),
            ]))
        }
        return Record([
            "database": .string(database), "role": .string(node.role), "name": .string(node.name),
            "verdict": .string(verdict.rawValue), "reason": .string(reason),
            "running": .bool(running), "measured_at": .time(reference), "last_progress_at": .time(lastProgressAt),
            "chunk_count": .optional(manifest?.chunkCount), "chunks_held": .int(chunksHeld), "chunks_missing": .int(self.missing),
            "missing_ranges": .array(missing.items.map { .record($0) }), "missing_ranges_left_out": .int(Int64(missing.leftOut)),
            "outstanding_requests": .array(requests), "outstanding_left_out": .int(Int64(max(0, outstanding.count - Self.jsonLimit))),
            "abandoned_requests": .array(abandoned.map { a in
                .record(Record(["source": Self.sourceValue(a.source), "count": .int(a.count), "waited_us": .int(a.waitedMicros),
                                "longest_us": .int(a.longestMicros), "last_at": .time(a.lastAt)]))
            }),
            "sources": .array(sources.map { .record($0.record) }),
            "lost_to_retries_us": .int(lostToRetriesMicros), "lost_to_retries_unattributed_us": .int(unattributedRetryMicros),
            "lost_to_timeouts_us": .int(lostToTimeoutsMicros),
            "efficiency": efficiency.map { .record($0.record) } ?? .null,
        ])
    }

    func table() -> String {
        var out = "\(verdict.rawValue): \(reason)\n"
        out += "node      \(node.role) \(node.name), \(running ? "running (or killed)" : "stopped"); measured at \(Human.time(reference))\n"
        if node.role == "owner" { out += sourcesTable() + efficiencyText(); return out }
        guard let manifest else { return out }
        out += "chunks    \(chunksHeld) of \(manifest.chunkCount) held, \(missing) missing\n"
        out += missingTable() + requestsText() + sourcesTable()
        out += "\ntime lost: \(Human.duration(lostToRetriesMicros)) to reconnecting"
        if unattributedRetryMicros > 0 { out += " (\(Human.duration(unattributedRetryMicros)) of it to no known source)" }
        out += ", \(Human.duration(lostToTimeoutsMicros)) to abandoned requests\n"
        return out + efficiencyText()
    }

    private func missingTable() -> String {
        guard !missingRanges.isEmpty else { return "" }
        var table = TextTable([.init("missing"), .init("count", .right), .init("last offered by (newest first)")])
        for r in missingRanges.prefix(Self.tableLimit) {
            let holders = r.holders.isEmpty ? "no source ever offered it"
                : r.holders.map { "\($0.source.name) (\($0.source.kind), \(Human.time($0.offeredAt)))" }.joined(separator: ", ")
            table.append([r.first == r.last ? "\(r.first)" : "\(r.first)-\(r.last)", String(r.count), holders])
        }
        var out = "\n" + table.render()
        let left = missingRanges.count - Self.tableLimit
        if left > 0 { out += "… and \(left) more ranges (--format json lists up to \(Self.jsonLimit))\n" }
        return out
    }

    private func requestsText() -> String {
        var out = ""
        if !outstanding.isEmpty {
            var table = TextTable([.init(running ? "outstanding" : "unanswered at stop"), .init("to"), .init("requested"), .init("age", .right)])
            for r in outstanding.prefix(Self.tableLimit) {
                let age = Bounded.difference(reference, r.requestedAt).map { Human.duration(max(0, $0)) } ?? "-"
                table.append(["chunk \(r.chunk)", r.source?.name ?? "?", Human.time(r.requestedAt), age])
            }
            out += "\n" + table.render()
            if outstanding.count > Self.tableLimit { out += "… and \(outstanding.count - Self.tableLimit) more\n" }
        }
        if !abandoned.isEmpty {
            var table = TextTable([.init("abandoned at"), .init("requests", .right), .init("waited", .right), .init("longest", .right), .init("last")])
            for a in abandoned {
                table.append([a.source?.name ?? "?", String(a.count), Human.duration(a.waitedMicros), Human.duration(a.longestMicros), Human.time(a.lastAt)])
            }
            out += "\n" + table.render()
        }
        return out
    }

    private func sourcesTable() -> String {
        guard !sources.isEmpty else { return "\nno sources to download from yet\n" }
        var table = TextTable([.init("source"), .init("kind"), .init("received", .right), .init("rate", .right), .init("rejected", .right),
                               .init("errors", .right), .init("retries", .right), .init("drops", .right), .init("reconnecting", .right),
                               .init("offers", .right), .init("marks")])
        for s in sources {
            table.append([s.source.name, s.source.kind, s.received > 0 ? "\(s.received) (\(Human.bytes(s.receivedBytes)))" : "0",
                          Human.rate(s.rate), String(s.rejected), String(s.protocolErrors), String(s.connectRetries), String(s.disconnects),
                          s.retryMicros > 0 ? Human.duration(s.retryMicros) : "-", s.offered.map(String.init) ?? "-", s.marks.joined(separator: ", ")])
        }
        return "\n" + table.render()
    }

    private func efficiencyText() -> String {
        guard let e = efficiency else { return "" }
        var out = "\nefficiency "
        guard let n = e.peers else { return out + "unknown: no share to count the peers from (give --peers N)\n" }
        guard let b = e.bytesPerSecond, let bound = e.lowerBoundMicros else {
            return out + "unknown: no chunk received yet to measure the bandwidth B\n"
        }
        let actual = e.actualMicros.map(Human.duration) ?? "-"
        out += e.ratio.map { "\(Human.oneDecimal($0 * 100))%" } ?? "-"
        out += ": T* = (N−1)·F/(N·B) = \(Human.duration(bound)) for N = \(n) (from \(e.peersFrom ?? "?")), F = \(Human.bytes(e.fileSize)), "
        out += "B = \(Human.rate(b)) (\(e.bandwidthIsMean ? "mean over T" : "best second")); T = \(actual)\(e.soFar ? " so far" : "")\n"
        return out
    }
}

extension WhyReport.SourceLine {
    var record: Record {
        Record([
            "source": .string(source.name), "source_kind": .string(source.kind), "address": .optional(source.address),
            "received": .int(received), "received_bytes": .int(receivedBytes), "receive_busy_us": .int(busyMicros),
            "receive_bytes_per_second": .optional(rate), "rejected": .int(rejected), "protocol_errors": .int(protocolErrors),
            "connect_retries": .int(connectRetries), "disconnects": .int(disconnects), "reconnecting_us": .int(retryMicros),
            "abandoned_wait_us": .int(timeoutMicros), "offered": .optional(offered), "marks": .array(marks.map { .string($0) }),
        ])
    }
}

extension WhyReport.Efficiency {
    var record: Record {
        Record([
            "peers": .optional(peers), "peers_from": .optional(peersFrom), "file_size": .int(fileSize),
            "bandwidth_bytes_per_second": .optional(bytesPerSecond), "bandwidth_from": .optional(bytesPerSecond.map { _ in bandwidthIsMean ? "mean" : "best_second" }),
            "lower_bound_us": .optional(lowerBoundMicros),
            "started_at": .time(startedAt), "ended_at": .time(endedAt), "actual_us": .optional(actualMicros), "so_far": .bool(soFar),
            "efficiency_percent": .optional(ratio.flatMap { Bounded.int64($0 * 100) }),
        ])
    }
}
