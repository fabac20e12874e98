import PeerShareCore
import PeerShareStore

/// `peershare-inspect why`: why a peer is stuck or slow, from its index alone
/// (docs/WATCHING.md, "Why is it stuck?"). Loading is here; the findings are computed by
/// `WhyAnalysis` and printed by WhyOutput.swift.
public struct WhyReport: Sendable {
    public enum Verdict: String, Sendable { case complete, stuck, downloading, owner, noManifest = "no_manifest" }

    public struct Holder: Sendable, Equatable {
        public var source: SourceInfo
        /// When its offer was last written (its list arrived, or its connection ended).
        public var offeredAt: Int64
    }

    public struct MissingRange: Sendable, Equatable {
        public var first: Int64
        public var last: Int64
        /// Newest offer first; empty when no source ever offered these chunks.
        public var holders: [Holder]
        public var count: Int64 { last - first + 1 }
    }

    public struct Request: Sendable, Equatable {
        public var chunk: Int64
        public var source: SourceInfo?
        public var requestedAt: Int64
    }

    public struct Abandoned: Sendable, Equatable {
        public var source: SourceInfo?
        public var count: Int64 = 0
        public var waitedMicros: Int64 = 0
        public var longestMicros: Int64 = 0
        public var lastAt: Int64 = .min
    }

    /// One source this node downloads from (kind owner or peer), incoming direction.
    public struct SourceLine: Sendable, Equatable {
        public var source: SourceInfo
        public var received: Int64 = 0
        public var receivedBytes: Int64 = 0
        public var busyMicros: Int64 = 0
        public var rejected: Int64 = 0
        public var protocolErrors: Int64 = 0
        public var connectRetries: Int64 = 0
        public var disconnects: Int64 = 0
        public var retryMicros: Int64 = 0
        public var timeoutMicros: Int64 = 0
        public var offered: Int64?
        public var slow = false
        public var rate: Int64? { Human.bytesPerSecond(bytes: receivedBytes, micros: busyMicros) }
        /// "slow", "refused", "rejected": what is wrong with it, if anything.
        public var marks: [String] {
            (slow ? ["slow"] : []) + (protocolErrors > 0 ? ["refused"] : []) + (rejected > 0 ? ["rejected"] : [])
        }
        var isIdle: Bool {
            received == 0 && rejected == 0 && protocolErrors == 0 && connectRetries == 0 && disconnects == 0 && offered == nil && timeoutMicros == 0
        }
    }

    public struct Efficiency: Sendable, Equatable {
        public var peers: Int64?
        /// "share" (chunk_count / share size) or "--peers".
        public var peersFrom: String?
        public var fileSize: Int64
        public var bytesPerSecond: Int64?
        /// B came from the mean over T, not the best second (a job shorter than a second).
        public var bandwidthIsMean = false
        public var lowerBoundMicros: Int64?
        public var startedAt: Int64?
        public var endedAt: Int64?
        public var soFar: Bool
        public var actualMicros: Int64? { startedAt.flatMap { s in endedAt.flatMap { Bounded.difference($0, s) } }.map { max(0, $0) } }
        /// T*/T, from 0 (nothing achieved) to 1 (the bound met).
        public var ratio: Double? {
            guard let lowerBoundMicros, let actualMicros, actualMicros > 0, lowerBoundMicros > 0 else { return nil }
            return Double(lowerBoundMicros) / Double(actualMicros)
        }
    }

    public var database: String
    public var node: NodeInfo
    public var manifest: ManifestInfo?
    /// The time everything is measured to: now while the latest run is open, else its stop.
    public var reference: Int64
    public var running: Bool
    public var verdict: Verdict = .noManifest
    public var reason = ""
    public var chunksHeld: Int64 = 0
    public var missing: Int64 = 0
    public var missingRanges: [MissingRange] = []
    public var outstanding: [Request] = []
    public var abandoned: [Abandoned] = []
    public var sources: [SourceLine] = []
    public var unattributedRetryMicros: Int64 = 0
    public var efficiency: Efficiency?
    public var lastProgressAt: Int64?

    public var lostToRetriesMicros: Int64 { sources.reduce(unattributedRetryMicros) { $0.saturatingAdd($1.retryMicros) } }
    public var lostToTimeoutsMicros: Int64 { abandoned.reduce(0) { $0.saturatingAdd($1.waitedMicros) } }

    /// - Parameters:
    ///   - peers: `--peers N`, instead of chunk_count / share size.
    ///   - stalledAfter: microseconds without progress after which a peer missing chunks is stuck.
    ///   - now: the current time (tests fix it).
    public static func load(_ database: InspectDatabase, peers: Int64? = nil, stalledAfter: Int64 = 10_000_000,
                            now: Int64 = Clock.nowMicros()) throws -> WhyReport {
        try database.read { db in
            let node = try database.node(db)
            let latestRun = try db.query("SELECT started_at, stopped_at FROM runs ORDER BY id DESC LIMIT 1") { ($0.int(0), $0.optionalInt(1)) }.first
            var report = WhyReport(database: database.path, node: node, manifest: try database.manifest(db),
                                   reference: latestRun?.1 ?? now, running: latestRun.map { $0.1 == nil } ?? false)
            let loader = WhyLoader(db: db, database: database, sources: try database.sources(db), report: report)
            report = try loader.load(peers: peers, runStart: latestRun?.0)
            report.decide(stalledAfter: stalledAfter, runStart: latestRun?.0)
            return report
        }
    }

    /// The verdict and its one-line reason.
    mutating func decide(stalledAfter: Int64, runStart: Int64?) {
        guard node.role != "owner" else {
            verdict = .owner
            reason = "this is an owner's index: it holds every chunk, and `why` explains peers"
            return
        }
        guard manifest != nil else {
            verdict = .noManifest
            reason = "no manifest yet: the peer has not heard from the owner"
            return
        }
        guard missing > 0 else {
            verdict = .complete
            reason = "every chunk is held"
            return
        }
        let lastProgress = [lastProgressAt, runStart].compactMap { $0 }.max()
        let idle = lastProgress.flatMap { Bounded.difference(reference, $0) }.map { max(0, $0) }
        let unoffered = missingRanges.filter(\.holders.isEmpty).reduce(Int64(0)) { $0 + $1.count }
        var parts = ["\(missing) chunk\(missing == 1 ? "" : "s") missing"]
        if !running {
            verdict = .stuck
            parts.append("the peer stopped")
        } else if let idle, idle >= stalledAfter {
            verdict = .stuck
            parts.append("nothing received for \(Human.duration(idle))")
        } else {
            verdict = .downloading
            if let idle { parts.append("last progress \(Human.duration(idle)) ago") }
        }
        parts.append(outstanding.isEmpty ? "no request outstanding" : "\(outstanding.count) request\(outstanding.count == 1 ? "" : "s") outstanding")
        if unoffered > 0 { parts.append("\(unoffered) of them offered by no source") }
        reason = parts.joined(separator: "; ")
    }
}
