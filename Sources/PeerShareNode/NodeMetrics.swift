import NIOConcurrencyHelpers
import PeerShareStore
import Prometheus

/// A node's Prometheus metrics (`GET /metrics`, docs/WATCHING.md "Metrics"). Counters and
/// histograms are updated as things happen, from any thread; gauges are set from a
/// `NodeStatus` at each scrape. Each node has a registry of its own instead of a global
/// bootstrap, so that several nodes in one process (the tests) keep theirs apart.
public final class NodeMetrics: Sendable {
    let registry: PrometheusCollectorRegistry

    enum Direction: String, CaseIterable { case inbound = "in", outbound = "out" }

    let chunksRejected: Counter
    let webSeedSent: Counter
    let requestDuration: DurationHistogram
    let commitDuration: DurationHistogram
    let syncDuration: DurationHistogram
    private let connectionsOpened: [Direction: Counter]
    private let received: PerRemoteCounters
    private let sent: PerRemoteCounters
    private let gauges: Gauges

    init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        let latencyBuckets: [Duration] = [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                                          .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                                          .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30)]
        func histogram(_ name: String, _ help: String) -> DurationHistogram {
            registry.makeDurationHistogram(descriptor: Self.name(name, "seconds", help), buckets: latencyBuckets)
        }
        chunksRejected = registry.makeCounter(descriptor: Self.name("chunks_rejected", "total", "Chunks received that failed their hash or did not fit the manifest."))
        webSeedSent = registry.makeCounter(descriptor: Self.name("web_seed_sent_bytes", "total", "File bytes sent over HTTP from /files (BEP 19 web seeding)."))
        requestDuration = histogram("request_duration", "From a chunk request sent to its chunk verified and stored.")
        commitDuration = histogram("commit_duration", "One group commit of chunk rows (with the events waiting) to the index.")
        syncDuration = histogram("sync_duration", "One background sync of the store, before its sync mark is recorded.")
        let opened = Self.name("connections_opened", "total", "Connections opened, by direction: in (accepted) or out (dialled).")
        connectionsOpened = Dictionary(uniqueKeysWithValues: Direction.allCases.map {
            ($0, registry.makeCounter(descriptor: opened, labels: [("direction", $0.rawValue)]))
        })
        received = PerRemoteCounters(registry, "received_bytes", "Verified chunk bytes received, by source kind and source (at most 32 sources by name; the rest as other).")
        sent = PerRemoteCounters(registry, "sent_bytes", "Chunk bytes uploaded, by the receiver's kind and name (at most 32 by name; the rest as other).")
        gauges = Gauges(registry)
    }

    static func name(_ base: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "peershare", metricName: base, unitName: unit, helpText: help)
    }

    func connectionOpened(_ direction: Direction) {
        connectionsOpened[direction]?.increment()
    }

    func received(_ bytes: Int, from source: ChunkIndex.Source) {
        received.add(bytes, kind: source.kind.rawValue, remote: source.name)
    }

    func sent(_ bytes: Int, to receiver: ChunkIndex.Source) {
        sent.add(bytes, kind: receiver.kind.rawValue, remote: receiver.name)
    }

    /// The exposition for one scrape: gauges from `status`, then the process's own metrics.
    public func exposition(of status: NodeStatus) -> [UInt8] {
        gauges.set(from: status)
        var bytes = registry.emitToBuffer()
        bytes += Array(ProcessMetrics.read().exposition.utf8)
        return bytes
    }
}

/// Byte counters labelled by remote, with the label's cardinality bounded: remote names come
/// from the network, and a churning swarm must not grow the scrape without end.
private final class PerRemoteCounters: Sendable {
    static let namedLimit = 32
    private let registry: PrometheusCollectorRegistry
    private let name: String
    private let help: String
    private let counters = NIOLockedValueBox([String: Counter]())

    init(_ registry: PrometheusCollectorRegistry, _ name: String, _ help: String) {
        self.registry = registry
        self.name = name
        self.help = help
    }

    func add(_ bytes: Int, kind: String, remote: String) {
        let counter = counters.withLockedValue { counters -> Counter in
            let key = kind + "\u{0}" + remote
            if let known = counters[key] { return known }
            let named = counters.count < Self.namedLimit
            let label = named ? Self.labelValue(remote) : "other"
            let counter = registry.makeCounter(descriptor: NodeMetrics.name(name, "total", help), labels: [("kind", kind), ("remote", label)])
            if named { counters[key] = counter }
            return counter
        }
        counter.increment(by: Int64(bytes))
    }

    /// Names are bounded and printable already (HELLO); this keeps a label short whatever comes.
    static func labelValue(_ name: String) -> String {
        String(name.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.prefix(64).map(Character.init))
    }
}

/// The gauges set from a node's status at each scrape.
private struct Gauges: Sendable {
    let chunksHeld, chunksTotal, requestsInFlight, neighbours, ownerFallback: Gauge
    let connectionsOpen: [NodeMetrics.Direction: Gauge]
    let uploadSlotsInUse, uploadSlots, uploadsWaiting: Gauge
    let unsyncedBatches, unsyncedBytes, syncLag: Gauge

    init(_ registry: PrometheusCollectorRegistry) {
        func gauge(_ name: String, unit: String = "", _ help: String) -> Gauge {
            registry.makeGauge(descriptor: NodeMetrics.name(name, unit, help))
        }
        chunksHeld = gauge("chunks_held", "Chunks this node holds, verified and indexed.")
        chunksTotal = gauge("chunks", "Chunks in the file (0 until the manifest is known).")
        requestsInFlight = gauge("requests_in_flight", "Chunk requests sent and not yet answered, over every connection.")
        neighbours = gauge("download_neighbours", "Download neighbours connected right now.")
        ownerFallback = gauge("owner_fallback", "1 while the owner is asked for everything missing because no neighbour can supply it.")
        let open = NodeMetrics.name("connections_open", "", "Connections open now, by direction: in (accepted) or out (dialled).")
        connectionsOpen = Dictionary(uniqueKeysWithValues: NodeMetrics.Direction.allCases.map {
            ($0, registry.makeGauge(descriptor: open, labels: [("direction", $0.rawValue)]))
        })
        uploadSlotsInUse = gauge("upload_slots_in_use", "Owner uploads being sent now, out of --upload-slots.")
        uploadSlots = gauge("upload_slots", "The owner's --upload-slots (0: no cap, or not an owner).")
        uploadsWaiting = gauge("uploads_waiting", "Owner uploads waiting for a slot.")
        unsyncedBatches = gauge("unsynced_batches", "Chunk batches committed to the index whose bytes no sync mark covers yet.")
        unsyncedBytes = gauge("unsynced", unit: "bytes", "Chunk bytes written since the last sync began.")
        syncLag = gauge("sync_lag", unit: "seconds", "How long the oldest committed batch has waited for its sync mark (0: all covered).")
    }

    func set(from status: NodeStatus) {
        chunksHeld.set(Int64(status.heldCount))
        chunksTotal.set(Int64(status.file?.chunkCount ?? 0))
        requestsInFlight.set(Int64(status.inFlight.count))
        neighbours.set(Int64(status.neighbours.count))
        ownerFallback.set(Int64(status.ownerFallback == nil ? 0 : 1))
        connectionsOpen[.inbound]?.set(Int64(status.connectionsIn))
        connectionsOpen[.outbound]?.set(Int64(status.connectionsOut))
        uploadSlotsInUse.set(Int64(status.uploadSlots?.inUse ?? 0))
        uploadSlots.set(Int64(status.uploadSlots?.capacity ?? 0))
        uploadsWaiting.set(Int64(status.uploadSlots?.waiting ?? 0))
        unsyncedBatches.set(status.sync.unsyncedBatches)
        unsyncedBytes.set(Int64(status.sync.unsyncedBytes))
        syncLag.set(Double(status.sync.lagMicros) / 1e6)
    }
}
