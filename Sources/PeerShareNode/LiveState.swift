import PeerShareCore
import PeerShareStore
import PeerShareWire

/// What a node keeps only to report it (`GET /status`, the metrics' gauges): none of it
/// steers a transfer. Every collection here is bounded.
struct LiveState {
    /// Requests sent and not yet answered, by chunk and source, with when each was sent.
    private var requests: [ChunkID: [String: Int64]] = [:]
    /// The download neighbours connected now, by their registration.
    var neighbours: [Int: PeerAddress] = [:]
    var receiveRates = ReceiveRates()
    var openDownloadConnections = 0
    /// When the oldest batch not yet covered by a sync mark was committed (microseconds).
    var oldestUnsyncedCommit: Int64?

    mutating func requested(_ id: ChunkID, from source: String, atMicros now: Int64) {
        requests[id, default: [:]][source] = now
    }

    mutating func requestEnded(_ id: ChunkID, at source: String) {
        guard var sources = requests[id] else { return }
        sources[source] = nil
        requests[id] = sources.isEmpty ? nil : sources
    }

    /// Oldest first, at most `limit`.
    func requestsInFlight(nowMicros: Int64, limit: Int = 1_000) -> [NodeStatus.Request] {
        let all = requests.flatMap { id, sources in sources.map { (id: id, source: $0.key, sent: $0.value) } }
        return all.sorted { ($0.sent, $0.id.rawValue) < ($1.sent, $1.id.rawValue) }.prefix(limit).map {
            NodeStatus.Request(chunk: $0.id, source: $0.source, ageMicros: max(0, nowMicros - $0.sent))
        }
    }
}

/// Verified bytes received per source over the last few seconds, in one-second buckets.
struct ReceiveRates {
    static let seconds = 5
    private struct Window {
        var lastSecond: Int64
        var buckets = [Int](repeating: 0, count: ReceiveRates.seconds)

        /// Empties the buckets of the seconds passed since the last byte.
        mutating func advance(to second: Int64) {
            guard second > lastSecond else { return }
            let passed = min(second - lastSecond, Int64(ReceiveRates.seconds))
            for step in 1...passed { buckets[Int((lastSecond + step) % Int64(ReceiveRates.seconds))] = 0 }
            lastSecond = second
        }
    }
    private var windows: [String: Window] = [:]

    mutating func add(_ bytes: Int, from source: String, nowMicros: Int64) {
        let second = nowMicros / 1_000_000
        var window = windows[source] ?? Window(lastSecond: second)
        window.advance(to: second)
        window.buckets[Int(second % Int64(Self.seconds))] += bytes
        windows[source] = window
        // Sources long quiet are forgotten, so the table stays small in a churning swarm.
        if windows.count > 256 { windows = windows.filter { second - $0.value.lastSecond < Int64(Self.seconds) } }
    }

    func bytesPerSecond(of source: String, nowMicros: Int64) -> Int {
        guard var window = windows[source] else { return 0 }
        window.advance(to: nowMicros / 1_000_000)
        return window.buckets.reduce(0, +) / Self.seconds
    }
}
