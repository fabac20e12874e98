import Crypto
import Logging
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareStore
import PeerShareTrust
import PeerShareWire

/// Something that happened inside a node, broadcast to its sessions.
public enum NodeEvent: Sendable {
    /// Chunks became available locally (one commit batch, ascending); uploaders announce
    /// them with HAVE. One event per batch, not per chunk: every session wakes once for it
    /// and writes its HAVEs with one flush.
    case held([ChunkID])
    /// Anything else changed (a claim released, the manifest arrived, a neighbour completed).
    case stateChanged
}

/// The single owner of a node's state: its index, its chunk folder, what it holds and what
/// is being fetched. Sessions (one per connection) ask it to claim, accept and read chunks;
/// every change is broadcast to subscribers, so waiting is done on events, never on timers.
public actor Node {
    public let name: String
    public let role: ChunkIndex.Role
    /// Where the chunk bytes are: one of the two layouts (docs/STORAGE.md).
    public let store: any ChunkStore
    /// The SQLite index, on a thread of its own.
    let index: IndexQueue
    /// Event and upload rows on their way to the index.
    let recorder: EventRecorder
    let io: NIOThreadPool
    /// Its own thread for syncing batches to disk: a sync can take tens of milliseconds, and
    /// must not hold up hashing, chunk writes and reads for uploads on `io`.
    let durability: NIOThreadPool
    let logger: Logger

    public internal(set) var manifest: Manifest?
    var held = ChunkSet(capacity: 0)
    /// Requests outstanding per chunk, from every source (more than one only in the endgame).
    var inFlight: [ChunkID: Int] = [:]
    /// Chunks being verified, or verified and waiting for their batch to be made durable:
    /// neither asked for again nor accepted twice.
    var storing: Set<ChunkID> = []
    /// What each connected download neighbour offers (as of its session's last claim), and
    /// per chunk how many of them offer it: the rarity the picker works from.
    var neighbourOffers: [Int: ChunkSet] = [:]
    var availability: [Int] = []
    var nextNeighbourID = 0
    /// Download neighbours not given up on (unreachable, misbehaving). At zero, the owner
    /// serves everything missing.
    public internal(set) var liveNeighbours = 0
    /// The neighbours being dialled and connected, for the owner-as-last-resort rule.
    var neighbourBook = NeighbourBook()
    /// Set while the owner is asked for everything missing because no neighbour is reachable.
    var ownerIsLastResort = false
    /// False for a peer that joined through another peer (`--download-from` without
    /// `--owner`): nothing is ever asked of an owner, and with no neighbour left it stops.
    public internal(set) var hasOwner = true
    /// The file ID this peer was told to expect (`--file-id`); a manifest hashing to any
    /// other is refused.
    public internal(set) var expectedFileID: Digest32?
    /// The private swarm this node belongs to (TLS and the join secret); nil for a public one.
    public internal(set) var security: PrivateSwarm?
    public var isPrivate: Bool { security != nil }
    /// In a private swarm, the owner's node ID from the ticket: the only signer of a manifest taken.
    public internal(set) var expectedOwner: NodeID?
    /// In a private swarm, the owner's signature over the manifest: made by the owner, kept
    /// by peers (in the index) to pass the manifest on to peers joining through them.
    public internal(set) var manifestSignature: (signerKey: [UInt8], signature: [UInt8])?
    /// Nodes refused across restarts, by node ID (Schema/006_node_ids.sql).
    var blockedNodes: [Digest32: ChunkIndex.BlockedNode] = [:]
    /// Set while the first manifest readies the store: a second one waits, then is compared.
    var isAdoptingManifest = false
    /// Since when the neighbours of a peer without an owner offer none of some missing chunk.
    var lackingSourcesSince: ContinuousClock.Instant?
    /// Downloaders that said where they listen: the owner's membership list, a peer's peer exchange.
    var memberBook = MemberBook()
    /// Where this peer tells others to dial it, in its HELLO: port 0 for nowhere, an empty
    /// host for "where you see me connect from".
    var advertisedPort: UInt16 = 0
    var advertisedHost = ""
    var share: ChunkSet?
    var assigner: ShareAssigner?
    var isAssembled = false
    var completeDownloaders: Set<String> = []
    var subscribers: [Int: AsyncStream<NodeEvent>.Continuation] = [:]
    var nextSubscriberID = 0
    /// Sessions hear the node's events through these: each injects the event into its own
    /// connection's input stream (see `withSession`), with no task in between.
    var sinks: [Int: @Sendable (NodeEvent) -> Void] = [:]
    /// Chunks this process received and stored: their files were written moments ago, so
    /// opening one to upload it is a lookup in the kernel's caches (see `handleRequest`).
    var storedThisRun = ChunkSet(capacity: 0)
    /// Verified chunks whose bytes are written, waiting to be indexed together.
    var pendingChunks: [PendingChunk] = []
    /// Crash consistency (docs/STORAGE.md): rows are committed in numbered batches once their
    /// bytes are written; a background sync makes them durable and records a sync mark.
    var nextBatch: Int64 = 1
    var committedThrough: Int64 = 0
    var syncedThrough: Int64 = 0
    var unsyncedBytes = 0
    var syncInFlight: Task<Void, Never>?
    var syncTimer: Task<Void, Never>?
    /// How stale committed chunks may get before a sync: a second by default.
    var syncInterval = Duration.seconds(1)
    /// The machine's boot ID, recorded with each run and each sync mark.
    let bootID: String
    let databasePath: String
    var chunkCommitter: Task<Void, Never>?
    /// When the last group commit started (see `commitPendingChunks`).
    var lastCommitAt: ContinuousClock.Instant?
    /// Event and transfer rows waiting for the next commit: rows are written in batches,
    /// since one transaction per row was most of SQLite's cost.
    var lastSummaryWrite = ContinuousClock.now - .seconds(1)
    var summaryDirty = false
    var summaryTimer: Task<Void, Never>?
    var summaryWriter: Task<Void, Never>?
    /// Where the assembled copy stands, and the step running on it (awaited by `close`).
    var assembly = AssemblyPlan()
    var assemblyStep: Task<Void, Never>?
    /// Set by `close`: no new assembly step starts.
    var isClosing = false
    var fatalError: String?
    static let summaryInterval = Duration.milliseconds(250)
    /// Set once this peer stopped waiting for downloaders that never connected (see
    /// `stopWaitingForDownloaders`).
    public internal(set) var gaveUpOnDownloaders = false
    /// Download-neighbour connections that are over: each either told its uploader that this
    /// peer is complete, or gave up on it. A peer exits only after all of them, so that no
    /// uploader is left waiting to hear it may stop.
    public internal(set) var finishedNeighbourFetches = 0
    static let recordFlushDelay = Duration.milliseconds(20)
    /// Timeouts and caps for every connection.
    public internal(set) var limits = SessionLimits()
    var openUploadConnections = 0
    /// What is kept only to be reported (`status()`), and the Prometheus metrics.
    var live = LiveState()
    public let metrics = NodeMetrics()

    /// Upload pacing: bytes per second across all uploads, and when the next may start.
    var uploadRate: Int?
    var nextUploadSlot = ContinuousClock.now

    /// The owner's cap on uploads sent at once (`--upload-slots`); nil for none.
    var uploadSlots: UploadSlots?

    /// Set when the download neighbours are given up on: the owner then serves everything missing.
    var ownerFallback: String?

    public init(name: String, role: ChunkIndex.Role, store: any ChunkStore, databasePath: String, io: NIOThreadPool = .singleton, logger: Logger) throws {
        self.name = name
        self.role = role
        self.store = store
        self.io = io
        self.durability = NIOThreadPool(numberOfThreads: 1)
        self.durability.start()
        self.logger = logger
        self.bootID = BootID.current()
        self.databasePath = databasePath
        // What the node starts from is read here, before the index moves to its thread.
        let index = try ChunkIndex(path: databasePath, role: role, nodeName: name, bootID: bootID)
        // So that `peershare-inspect verify` finds the chunk files even when --db puts the index elsewhere.
        try index.recordDirectory(PosixFiles.absolutePath(store.root))
        try Self.checkLayout(of: index, against: store)
        nextBatch = try index.nextBatch()
        // Rows of an earlier run not yet covered by a mark are synced by this run's first sync.
        committedThrough = nextBatch - 1
        syncedThrough = try index.syncedThrough()
        if let manifest = try index.manifest() {
            self.manifest = manifest
            self.held = try index.heldChunks(capacity: manifest.chunkCount)
            let share = try index.share(chunkCount: manifest.chunkCount)
            if !share.isEmpty || manifest.chunkCount == 0 {
                self.share = ChunkSet(capacity: manifest.chunkCount, share)
            }
            self.isAssembled = try index.assembledAt() != nil
        }
        // A downloader that finished before a restart will not come back to say so again.
        self.completeDownloaders = Set(try index.completedDownloaders())
        self.manifestSignature = try index.manifestSignature()
        self.blockedNodes = Dictionary(try index.blockedNodes().map { ($0.nodeID, $0) }, uniquingKeysWith: { first, _ in first })
        self.index = IndexQueue(index)
        self.recorder = EventRecorder(index: self.index, logger: logger)
    }

    // MARK: Manifest and shares

    /// Records the manifest the owner sent, or checks it against the one already indexed.
    /// A new manifest readies the store first (a single file is allocated at its full size).
    /// `share` is nil for a manifest from a neighbour: only the owner hands out shares, and
    /// one it sent must not be overwritten by a neighbour's manifest arriving later.
    public func adoptManifest(_ received: Manifest, share: [ChunkID]?) async throws {
        if let manifest {
            guard manifest == received else {
                throw NodeError.manifestChanged("the owner now serves \(received.fileName) (\(received.fileHash.short)), but this index holds \(manifest.fileName) (\(manifest.fileHash.short)); use a new --dir or --db")
            }
        } else if isAdoptingManifest {
            // Another session is readying the store for a manifest: one at a time, then compare.
            try await waitUntil { !$0.isAdoptingManifest }
            return try await adoptManifest(received, share: share)
        } else {
            isAdoptingManifest = true
            defer {
                isAdoptingManifest = false
                broadcast(.stateChanged)
            }
            try checkFileName(received)
            let store = self.store
            // No other manifest can be adopted meanwhile: `isAdoptingManifest` holds them off.
            try await io.runIfActive { try store.prepare(for: received, assembled: false) }
            try await index.run { try $0.saveManifest(received) }
            startSyncing()
            manifest = received
            held = ChunkSet(capacity: received.chunkCount)
            log(.manifestReceived, "manifest: \(received.fileName), \(received.fileSize) bytes, \(received.chunkCount) chunks of \(received.chunkSize), file \(received.fileHash.short)")
        }
        if let share, self.share?.sorted != share {
            try await index.run { try $0.saveShare(share) }
            self.share = ChunkSet(capacity: received.chunkCount, share)
        }
        reviewLastResort()
        broadcast(.stateChanged)
        scheduleSummary()
        advanceAssembly()  // an empty file is complete as soon as its manifest is known
    }

    /// The owner's own manifest, after splitting the file.
    func adoptOwnedManifest(_ manifest: Manifest, expectedPeers: Int) async throws {
        let handouts = try await index.run { try $0.handouts(chunkCount: manifest.chunkCount) }
        self.manifest = manifest
        self.held = ChunkSet.full(manifest.chunkCount)
        var assigner = ShareAssigner(chunkCount: manifest.chunkCount, expectedPeers: expectedPeers)
        for (peer, chunks) in handouts.sorted(by: { $0.key < $1.key }) {
            assigner.restore(chunks, for: peer)
        }
        self.assigner = assigner
        broadcast(.stateChanged)
    }

    func assignShare(to peer: String, findsNeighbours: Bool) async throws -> [ChunkID] {
        guard var assigner else { throw NodeError.notAnOwner }
        let share = assigner.share(for: peer, findsNeighbours: findsNeighbours)
        self.assigner = assigner
        try await index.run { try $0.recordHandout(to: .init(kind: .peer, name: peer), chunks: share) }
        return share
    }

    // MARK: Failure and shutdown

    func fail(_ message: String) {
        fatalError = message
        log(.error, message, level: .error)
        broadcast(.stateChanged)
    }

    public var failure: String? { fatalError }

    public func close(outcome: String) async {
        // The batch being indexed is finished; the rest of the events follow. Chunks not yet
        // in a batch are abandoned: at most their bytes stay, without a row.
        isClosing = true
        syncTimer?.cancel()
        await chunkCommitter?.value
        // A step in flight finishes (and may still record the assembly); an unfinished
        // draft is deleted now rather than at the next start.
        await assemblyStep?.value
        if let draft = assembly.takeDraft() { store.abandon(draft) }
        // A clean stop leaves every committed row durable, so the next start trusts them all.
        let durable = await syncEverything()
        log(.stopped, "stopped: \(outcome)")
        await recorder.flush()
        if let error = await index.close(outcome: outcome, cleanly: durable) {
            // The events table is what failed, so this goes to the console only.
            logger.error("could not record the end of this run in the index: \(error)")
        }
        try? await durability.shutdownGracefully()
        for continuation in subscribers.values { continuation.finish() }
        subscribers.removeAll()
        sinks.removeAll()
    }

}

func formatMillis(_ value: Double) -> String {
    let rounded = (value * 10).rounded() / 10
    return String(rounded)
}

/// A snapshot of how far a node is, for progress lines.
public struct NodeProgress: Sendable {
    public let heldChunks: Int
    public let heldBytes: Int64
    /// Chunks and bytes in the manifest; nil until it is known.
    public let total: (chunks: Int, bytes: Int64)?
    public let isAssembled: Bool
}

extension EventRecord {
    /// The fields of the event's row, keyed by `LogField`, for structured log handlers.
    public var logMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = [LogField.at: "\(at)", LogField.kind: "\(kind.rawValue)"]
        if let chunk { metadata[LogField.chunkID] = "\(chunk.rawValue)" }
        if let source {
            metadata[LogField.sourceKind] = "\(source.kind.rawValue)"
            metadata[LogField.source] = "\(source.name)"
        }
        return metadata
    }
}

/// A chunk an upload session has written to its socket, waiting to be recorded with the
/// session's next visit to the node.
struct CompletedUpload: Sendable {
    let id: ChunkID
    let startedAt: Int64
    let finishedAt: Int64
    let bytes: Int
}

/// A verified chunk whose bytes are written, waiting for its batch to be indexed.
struct PendingChunk: Sendable {
    let id: ChunkID
    let size: Int
    let source: ChunkIndex.Source
    let startedAt: Int64
    let finishedAt: Int64
}

public enum NodeError: Error, CustomStringConvertible {
    case manifestChanged(String)
    case badChunk(String)
    case notAnOwner
    /// The connection ended under the session: closed, or silent past a timeout.
    case lost(String)
    case protocolViolation(String)
    /// A remote that cannot serve this node: another swarm, a forged manifest, bad chunks.
    case misbehaving(String)
    /// A HELLO that ends the connection; the string names the remote ("peer2 at HOST:PORT").
    case refusedHello(String, HandshakeError)
    case unreachable(String)
    case failed(String)

    public var description: String {
        switch self {
        case .manifestChanged(let s), .badChunk(let s), .lost(let s), .protocolViolation(let s), .misbehaving(let s), .unreachable(let s), .failed(let s): s
        case .refusedHello(let remote, let error): "\(remote) \(error)"
        case .notAnOwner: "only the owner hands out shares"
        }
    }
}

extension Node {
    /// Runs blocking file work on the I/O thread pool, off the actor and the event loops.
    func runBlocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async -> Result<T, any Error> {
        do {
            return .success(try await io.runIfActive(body))
        } catch {
            return .failure(error)
        }
    }
}
