import PeerShareCore

/// The pure parts of `peershare-inspect why` (docs/WATCHING.md, "Why is it stuck?"): rows in,
/// findings out, no SQL, so the unit tests can feed them edge cases directly.
enum WhyAnalysis {
    // MARK: Missing chunks and their last holders

    /// One source's last offer, parsed.
    struct Offer {
        let source: SourceInfo
        let at: Int64
        let held: ChunkSet
    }

    /// Consecutive missing chunks sharing the same last holders (newest offer first).
    static func missingRanges(missing: ChunkSet, offers: [Offer]) -> [WhyReport.MissingRange] {
        let newestFirst = offers.sorted { $0.at != $1.at ? $0.at > $1.at : sourceOrder($0.source, $1.source) }
        var ranges: [WhyReport.MissingRange] = []
        var current: (first: Int, last: Int, holders: [Int])?
        func close() {
            guard let c = current else { return }
            let holders = c.holders.map { WhyReport.Holder(source: newestFirst[$0].source, offeredAt: newestFirst[$0].at) }
            ranges.append(.init(first: Int64(c.first), last: Int64(c.last), holders: holders))
        }
        for id in missing.members {
            let holders = newestFirst.indices.filter { newestFirst[$0].held.contains(id) }
            if let c = current, c.last + 1 == id.index, c.holders == holders {
                current?.last = id.index
            } else {
                close()
                current = (id.index, id.index, holders)
            }
        }
        close()
        return ranges
    }

    // MARK: Requests

    /// A request-related event: chunk_requested, chunk_received, chunk_rejected or request_abandoned.
    struct RequestEvent {
        let id: Int64
        let at: Int64
        let kind: String
        let chunk: Int64
        let source: Int64
    }

    struct PairKey: Hashable {
        let chunk: Int64
        let source: Int64
    }

    /// Requests with no later answer from the same source (received, rejected or
    /// abandoned) for a chunk still missing, made at or after `since` (the latest run's start).
    static func outstanding(_ events: [RequestEvent], held: (Int64) -> Bool, since: Int64) -> [(chunk: Int64, source: Int64, at: Int64)] {
        var lastRequest: [PairKey: Int64] = [:]
        var lastAnswer: [PairKey: Int64] = [:]
        for e in events {
            let key = PairKey(chunk: e.chunk, source: e.source)
            if e.kind == "chunk_requested" {
                lastRequest[key] = max(lastRequest[key] ?? e.at, e.at)
            } else {
                lastAnswer[key] = max(lastAnswer[key] ?? e.at, e.at)
            }
        }
        return lastRequest.compactMap { key, at in
            guard at >= since, !held(key.chunk), (lastAnswer[key] ?? .min) < at else { return nil }
            return (key.chunk, key.source, at)
        }.sorted { ($0.at, $0.chunk) < ($1.at, $1.chunk) }
    }

    /// Each request_abandoned event with how long its request had waited: the event's time
    /// minus the latest chunk_requested of that chunk to that source at or before it.
    static func abandonedWaits(_ events: [RequestEvent]) -> [(source: Int64, at: Int64, waited: Int64?)] {
        var lastRequest: [PairKey: Int64] = [:]
        var out: [(Int64, Int64, Int64?)] = []
        for e in events.sorted(by: { ($0.at, $0.id) < ($1.at, $1.id) }) {
            let key = PairKey(chunk: e.chunk, source: e.source)
            switch e.kind {
            case "chunk_requested": lastRequest[key] = e.at
            case "request_abandoned":
                out.append((e.source, e.at, lastRequest[key].flatMap { Bounded.difference(e.at, $0) }.map { max(0, $0) }))
                lastRequest[key] = nil
            default: break
            }
        }
        return out
    }

    // MARK: Connections

    /// A connection event (connect_retry, connected, disconnected, protocol_error),
    /// attributed to a source when it names one.
    struct ConnectionEvent {
        let id: Int64
        let at: Int64
        let kind: String
        let source: Int64?
        let message: String
    }

    /// Events the node logs for its uploads ("peer2 connected to download", "peer2
    /// disconnected (holds …)", "upload connection from … ended"): the same kinds, the other
    /// direction. `why` explains downloads, so these are left out.
    static func isUploadSide(_ message: String) -> Bool {
        message.contains(" connected to download") || message.contains(" disconnected (holds ")
            || message.hasPrefix("upload connection from ")
    }

    /// The source a connection event without a source_id is about: the one whose recorded
    /// address the message names ("download neighbour 127.0.0.1:4100 not reachable"), else
    /// the owner when the message is about the owner.
    static func attribute(_ message: String, addresses: [(id: Int64, address: String)], owner: Int64?) -> Int64? {
        for (id, address) in addresses where !address.isEmpty {
            var rest = Substring(message)
            while let range = rest.range(of: address) {
                let next = rest[range.upperBound...].first
                if next.map({ !$0.isNumber }) ?? true { return id }
                rest = rest[range.upperBound...]
            }
        }
        if message.hasPrefix("owner ") || message.contains("the owner") { return owner }
        return nil
    }

    /// Time lost waiting to reconnect, per source: from a disconnected or connect_retry
    /// event to the source's next connected event. An interval that stays open counts to the
    /// end of its run (`runEnd`) only if the node retried within it; a connection closed
    /// because nothing more was needed, and never retried, is no loss.
    static func retryTime(_ events: [ConnectionEvent], runEnd: (Int64) -> Int64) -> [Int64: Int64] {
        var open: [Int64: (since: Int64, retried: Bool)] = [:]
        var lost: [Int64: Int64] = [:]
        func add(_ source: Int64, _ from: Int64, _ to: Int64) {
            let span = Bounded.difference(to, from).map { max(0, $0) } ?? 0
            lost[source] = (lost[source] ?? 0).saturatingAdd(span)
        }
        for e in events.sorted(by: { ($0.at, $0.id) < ($1.at, $1.id) }) {
            guard let source = e.source else { continue }
            if let o = open[source], runEnd(o.since) < e.at {
                // The run it began in ended first: a new run starts afresh.
                if o.retried { add(source, o.since, runEnd(o.since)) }
                open[source] = nil
            }
            switch e.kind {
            case "connected":
                if let o = open[source] { add(source, o.since, e.at) }
                open[source] = nil
            case "connect_retry":
                open[source] = (open[source]?.since ?? e.at, true)
            case "disconnected":
                if open[source] == nil { open[source] = (e.at, false) }
            default: break
            }
        }
        for (source, o) in open where o.retried { add(source, o.since, runEnd(o.since)) }
        return lost
    }

    // MARK: Bandwidth and efficiency

    /// The most bytes whose transfers finished within any one second: the receive rate the
    /// link was seen to carry, in bytes per second.
    static func peakBytesPerSecond(_ transfers: [(finishedAt: Int64, bytes: Int64)]) -> Int64? {
        let sorted = transfers.sorted { $0.finishedAt < $1.finishedAt }
        guard !sorted.isEmpty else { return nil }
        var best: Int64 = 0
        var window: Int64 = 0
        var start = 0
        for end in sorted.indices {
            window = window.saturatingAdd(max(0, sorted[end].bytes))
            while let age = Bounded.difference(sorted[end].finishedAt, sorted[start].finishedAt), age >= 1_000_000 {
                window = window.saturatingAdd(-max(0, sorted[start].bytes))
                start += 1
            }
            best = max(best, window)
        }
        return best
    }

    /// T* = (N−1)·F/(N·B) in microseconds: the least time a peer of N with disjoint shares
    /// needs to fetch the (N−1)/N of the file it does not hold, at B bytes per second.
    static func lowerBoundMicros(peers n: Int64, fileSize f: Int64, bytesPerSecond b: Int64) -> Int64? {
        guard n >= 1, f >= 0, b > 0 else { return nil }
        return Bounded.int64(Double(n - 1) * Double(f) / (Double(n) * Double(b)) * 1_000_000)
    }

    /// N = round(chunk_count / share size), at least 1; nil without a share.
    static func peers(chunkCount: Int64, shareCount: Int64) -> Int64? {
        guard shareCount > 0, chunkCount > 0 else { return nil }
        return max(1, Bounded.int64(Double(chunkCount) / Double(shareCount)) ?? 1)
    }

    /// The median of the rates, and the rates under half of it ("slow").
    static func median(_ values: [Int64]) -> Int64? {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return nil }
        let mid = sorted.count / 2
        if sorted.count % 2 == 1 { return sorted[mid] }
        return sorted[mid - 1] / 2 + sorted[mid] / 2 + (sorted[mid - 1] % 2 + sorted[mid] % 2) / 2
    }
}
