import PeerShareCore
import PeerShareStore

/// The queries of `why`, all in one snapshot. Each reads a table once (no query per chunk):
/// events by kind through events_by_kind, the verified transfers in one pass, the offers
/// and sources whole (a row per source). docs/INSPECT-NOTES.md lists their plans.
struct WhyLoader {
    let db: Reader
    let database: InspectDatabase
    let sources: [Int64: SourceInfo]
    var report: WhyReport

    init(db: Reader, database: InspectDatabase, sources: [Int64: SourceInfo], report: WhyReport) {
        self.db = db
        self.database = database
        self.sources = sources
        self.report = report
    }

    consuming func load(peers: Int64?, runStart: Int64?) throws -> WhyReport {
        var lines: [Int64: WhyReport.SourceLine] = [:]
        for (id, source) in sources where source.kind == "owner" || source.kind == "peer" {
            lines[id] = WhyReport.SourceLine(source: source)
        }
        let capacity = report.manifest.flatMap { Int(exactly: $0.chunkCount) } ?? 0
        let held = try chunkIDs(in: "chunks", capacity: capacity)
        report.chunksHeld = Int64(held.count)
        if report.manifest != nil {
            let missing = try chunkIDs(in: "manifest_chunks", capacity: capacity).subtracting(held)
            report.missing = Int64(missing.count)
            let offers = try offers(capacity: capacity)
            for offer in offers { lines[offer.source.id]?.offered = Int64(offer.held.count) }
            report.missingRanges = WhyAnalysis.missingRanges(missing: missing, offers: offers)
        }
        let transfers = try verifiedTransfers(into: &lines)
        try requests(held: held, runStart: runStart ?? .min, into: &lines)
        try connections(into: &lines)
        try rejections(into: &lines)
        let rates = lines.values.compactMap(\.rate)
        if let median = WhyAnalysis.median(rates) {
            for id in lines.keys where (lines[id]?.rate).map({ $0 < median / 2 }) ?? false { lines[id]?.slow = true }
        }
        report.sources = lines.values.filter { !$0.isIdle }.sorted { sourceOrder($0.source, $1.source) }
        report.lastProgressAt = transfers.map(\.finishedAt).max()
        if let shared = try db.scalarInt("SELECT min(at) FROM events WHERE kind = 'share_received'") {
            report.lastProgressAt = max(report.lastProgressAt ?? shared, shared)
        }
        try efficiency(peers: peers, transfers: transfers)
        return report
    }

    /// The chunk IDs of `table` (`chunks`: held; `manifest_chunks`: the file's), bounded.
    private func chunkIDs(in table: StaticString, capacity: Int) throws -> ChunkSet {
        var set = ChunkSet(capacity: capacity)
        for id in try db.query("SELECT chunk_id FROM \(table)", row: { $0.int(0) }) {
            if let i = Bounded.chunkIndex(id), i < capacity { set.insert(ChunkID(UInt32(i))) }
        }
        return set
    }

    /// Each source's last offer; a bitfield of the wrong length (another manifest, damage) is skipped.
    private func offers(capacity: Int) throws -> [WhyAnalysis.Offer] {
        guard database.schemaVersion >= 7 else { return [] }
        return try db.query("SELECT source_id, at, held FROM offers") { ($0.int(0), $0.int(1), $0.blob(2)) }.compactMap { id, at, bits in
            guard let source = sources[id], let held = ChunkSet(capacity: capacity, bitfield: bits) else { return nil }
            return WhyAnalysis.Offer(source: source, at: at, held: held)
        }
    }

    /// Verified transfers in: per-source totals, and the rows for the bandwidth and times.
    private func verifiedTransfers(into lines: inout [Int64: WhyReport.SourceLine]) throws -> [(finishedAt: Int64, bytes: Int64)] {
        let rows = try db.query("SELECT source_id, started_at, finished_at, bytes FROM transfers WHERE direction = 'in' AND outcome = 'verified'") {
            ($0.int(0), $0.int(1), $0.int(2), $0.int(3))
        }
        for (id, started, finished, bytes) in rows {
            guard var line = lines[id] else { continue }
            line.received = line.received.saturatingAdd(1)
            line.receivedBytes = line.receivedBytes.saturatingAdd(max(0, bytes))
            line.busyMicros = line.busyMicros.saturatingAdd(Bounded.difference(finished, started).map { max(0, $0) } ?? 0)
            lines[id] = line
        }
        return rows.map { ($0.2, $0.3) }
    }

    private func events(_ kind: String) throws -> [WhyAnalysis.RequestEvent] {
        try db.query("SELECT id, at, chunk_id, source_id FROM events WHERE kind = ?", kind) { row in
            (row.int(0), row.int(1), row.optionalInt(2), row.optionalInt(3))
        }.compactMap { id, at, chunk, source in
            guard let chunk, let source else { return nil }
            return WhyAnalysis.RequestEvent(id: id, at: at, kind: kind, chunk: chunk, source: source)
        }
    }

    /// Outstanding requests, and abandoned ones grouped by source.
    private mutating func requests(held: ChunkSet, runStart: Int64, into lines: inout [Int64: WhyReport.SourceLine]) throws {
        let requested = try events("chunk_requested")
        let abandoned = try events("request_abandoned")
        let answers = try events("chunk_received") + events("chunk_rejected") + abandoned
        let isHeld = { (id: Int64) in Bounded.chunkIndex(id).map { held.contains(ChunkID(UInt32($0))) } ?? false }
        report.outstanding = WhyAnalysis.outstanding(requested + answers, held: isHeld, since: runStart).map {
            WhyReport.Request(chunk: $0.chunk, source: sources[$0.source], requestedAt: $0.at)
        }
        var groups: [Int64: WhyReport.Abandoned] = [:]
        for (source, at, waited) in WhyAnalysis.abandonedWaits(requested + abandoned) {
            var group = groups[source] ?? WhyReport.Abandoned(source: sources[source])
            group.count += 1
            group.waitedMicros = group.waitedMicros.saturatingAdd(waited ?? 0)
            group.longestMicros = max(group.longestMicros, waited ?? 0)
            group.lastAt = max(group.lastAt, at)
            groups[source] = group
            lines[source]?.timeoutMicros = group.waitedMicros
        }
        report.abandoned = groups.values.sorted { $0.waitedMicros != $1.waitedMicros ? $0.waitedMicros > $1.waitedMicros : $0.lastAt > $1.lastAt }
    }

    /// Retries, disconnects, protocol errors and the time spent reconnecting, per source.
    private mutating func connections(into lines: inout [Int64: WhyReport.SourceLine]) throws {
        let addresses = sources.values.compactMap { s in s.address.map { (id: s.id, address: $0) } }
        let owner = sources.values.filter { $0.kind == "owner" }.map(\.id).min()
        var events: [WhyAnalysis.ConnectionEvent] = []
        var unattributed: [WhyAnalysis.ConnectionEvent] = []
        for kind in ["connect_retry", "connected", "disconnected", "protocol_error"] {
            let rows = try db.query("SELECT id, at, source_id, message FROM events WHERE kind = ?", kind) {
                ($0.int(0), $0.int(1), $0.optionalInt(2), $0.text(3))
            }
            for (id, at, source, message) in rows where !WhyAnalysis.isUploadSide(message) {
                let who = source ?? WhyAnalysis.attribute(message, addresses: addresses, owner: owner)
                let event = WhyAnalysis.ConnectionEvent(id: id, at: at, kind: kind, source: who, message: message)
                if who == nil { unattributed.append(event) } else { events.append(event) }
                guard let who else { continue }
                switch kind {
                case "connect_retry": lines[who]?.connectRetries += 1
                case "disconnected": lines[who]?.disconnects += 1
                case "protocol_error": lines[who]?.protocolErrors += 1
                default: break
                }
            }
        }
        let runs = try db.query("SELECT started_at, stopped_at FROM runs ORDER BY started_at") { ($0.int(0), $0.optionalInt(1)) }
        let reference = report.reference
        let runEnd = { (t: Int64) -> Int64 in
            // The run `t` fell in ends at its stop, else where the next run starts, else now.
            guard let i = runs.lastIndex(where: { $0.0 <= t }) else { return reference }
            return runs[i].1 ?? (i + 1 < runs.count ? runs[i + 1].0 : reference)
        }
        for (source, micros) in WhyAnalysis.retryTime(events, runEnd: runEnd) { lines[source]?.retryMicros = micros }
        // Events naming no known source share one pseudo-source: their time is still lost.
        let pooled = unattributed.map { WhyAnalysis.ConnectionEvent(id: $0.id, at: $0.at, kind: $0.kind, source: -1, message: $0.message) }
        report.unattributedRetryMicros = WhyAnalysis.retryTime(pooled, runEnd: runEnd)[-1] ?? 0
    }

    /// Bad chunks: rejected transfers, or chunk_rejected events (which also cover unrequested
    /// chunks, never stored as transfers), whichever counts more.
    private func rejections(into lines: inout [Int64: WhyReport.SourceLine]) throws {
        let transfers = try db.query("SELECT source_id, count(*) FROM transfers WHERE outcome = 'rejected' AND direction = 'in' GROUP BY source_id") { ($0.int(0), $0.int(1)) }
        let events = try db.query("SELECT source_id, count(*) FROM events WHERE kind = 'chunk_rejected' AND source_id IS NOT NULL GROUP BY source_id") { ($0.int(0), $0.int(1)) }
        for (id, count) in transfers + events {
            guard var line = lines[id] else { continue }
            line.rejected = max(line.rejected, count)
            lines[id] = line
        }
    }

    private mutating func efficiency(peers: Int64?, transfers: [(finishedAt: Int64, bytes: Int64)]) throws {
        guard let manifest = report.manifest else { return }
        let shareCount = try db.scalarInt("SELECT count(*) FROM share") ?? 0
        let n = peers ?? WhyAnalysis.peers(chunkCount: manifest.chunkCount, shareCount: shareCount)
        let shared = try db.scalarInt("SELECT min(at) FROM events WHERE kind = 'share_received'")
        let firstIn = transfers.map(\.finishedAt).min()
        let complete = report.missing == 0
        var e = WhyReport.Efficiency(
            peers: n, peersFrom: peers != nil ? "--peers" : (n != nil ? "share" : nil), fileSize: manifest.fileSize, bytesPerSecond: nil,
            lowerBoundMicros: nil, startedAt: shared ?? firstIn, endedAt: complete ? transfers.map(\.finishedAt).max() : report.reference, soFar: !complete)
        // The best second; or the mean over T when higher (a job shorter than a second,
        // whose every byte fits in one window, ran faster than its window says).
        let total = transfers.reduce(Int64(0)) { $0.saturatingAdd(max(0, $1.bytes)) }
        let mean = e.actualMicros.flatMap { Human.bytesPerSecond(bytes: total, micros: $0) }
        let peak = WhyAnalysis.peakBytesPerSecond(transfers)
        let b = [peak, mean].compactMap { $0 }.max()
        e.bytesPerSecond = b
        e.bandwidthIsMean = b != nil && b != peak
        e.lowerBoundMicros = n.flatMap { n in b.flatMap { WhyAnalysis.lowerBoundMicros(peers: n, fileSize: manifest.fileSize, bytesPerSecond: $0) } }
        report.efficiency = e
    }
}
