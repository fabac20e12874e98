import Crypto
import Logging
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareStore

/// Something that happened inside a node, broadcast to its sessions.
public enum NodeEvent: Sendable {
    /// A chunk became available locally; uploaders announce it with HAVE.
    case have(ChunkID)
    /// Anything else changed (a claim released, the manifest arrived, a neighbour completed).
    case stateChanged
}

/// The single owner of a node's state: its index, its chunk folder, what it holds and what
/// is being fetched. Sessions (one per connection) ask it to claim, accept and read chunks;
/// every change is broadcast to subscribers, so waiting is done on events, never on timers.
public actor Node {
    public let name: String
    public let role: ChunkIndex.Role
    public let directory: ChunkDirectory
    private let index: ChunkIndex
    private let io: NIOThreadPool
    private let logger: Logger

    public private(set) var manifest: Manifest?
    private(set) var held = ChunkSet(capacity: 0)
    private var inFlight: Set<ChunkID> = []
    private(set) var share: ChunkSet?
    private var assigner: ShareAssigner?
    private(set) var isAssembled = false
    private var completeDownloaders: Set<String> = []
    private var subscribers: [Int: AsyncStream<NodeEvent>.Continuation] = [:]
    private var nextSubscriberID = 0
    private var summaryDirty = false
    private var summaryWriter: Task<Void, Never>?
    private var assemblyTask: Task<Void, Never>?
    private var fatalError: String?

    public init(name: String, role: ChunkIndex.Role, directory: ChunkDirectory, databasePath: String, io: NIOThreadPool = .singleton, logger: Logger) throws {
        self.name = name
        self.role = role
        self.directory = directory
        self.io = io
        self.logger = logger
        self.index = try ChunkIndex(path: databasePath, role: role, nodeName: name)
        if let manifest = try index.manifest() {
            self.manifest = manifest
            self.held = try index.heldChunks(capacity: manifest.chunkCount)
            let share = try index.share()
            if !share.isEmpty || manifest.chunkCount == 0 {
                self.share = ChunkSet(capacity: manifest.chunkCount, share)
            }
            self.isAssembled = try index.assembledAt() != nil
        }
    }

    // MARK: Events and logging

    /// Logs one activity to the console and to the index's events table.
    public func log(_ kind: EventKind, chunk: ChunkID? = nil, source: ChunkIndex.Source? = nil, _ message: String, level: Logger.Level = .info) {
        logger.log(level: level, "\(message)")
        do {
            try index.record(EventRecord(kind: kind, chunk: chunk, source: source, message: message))
        } catch {
            logger.error("could not record event in the index: \(error)")
        }
    }

    public func subscribe() -> AsyncStream<NodeEvent> {
        let (stream, continuation) = AsyncStream<NodeEvent>.makeStream()
        let id = nextSubscriberID
        nextSubscriberID += 1
        subscribers[id] = continuation
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            Task { await self.unsubscribe(id) }
        }
        return stream
    }

    private func unsubscribe(_ id: Int) {
        subscribers[id] = nil
    }

    private func broadcast(_ event: NodeEvent) {
        for continuation in subscribers.values { continuation.yield(event) }
    }

    /// Suspends until `condition` holds, re-checking after every change.
    public func waitUntil(_ condition: @Sendable (isolated Node) -> Bool) async throws {
        let events = subscribe()
        if condition(self) { return }
        for await _ in events {
            if condition(self) { return }
        }
        try Task.checkCancellation()
    }

    // MARK: Manifest and shares

    /// Records the manifest the owner sent, or checks it against the one already indexed.
    public func adoptManifest(_ received: Manifest, share: [ChunkID]) throws {
        if let manifest {
            guard manifest == received else {
                throw NodeError.manifestChanged("the owner now serves \(received.fileName) (\(received.fileHash.short)), but this index holds \(manifest.fileName) (\(manifest.fileHash.short)); use a new --dir or --db")
            }
        } else {
            try index.saveManifest(received)
            manifest = received
            held = ChunkSet(capacity: received.chunkCount)
            log(.manifestReceived, "manifest: \(received.fileName), \(received.fileSize) bytes, \(received.chunkCount) chunks of \(received.chunkSize), file \(received.fileHash.short)")
        }
        if self.share?.sorted != share {
            try index.saveShare(share)
            self.share = ChunkSet(capacity: received.chunkCount, share)
        }
        broadcast(.stateChanged)
        scheduleSummary()
        assembleIfComplete()  // an empty file is complete as soon as its manifest is known
    }

    /// The owner's own manifest, after splitting the file.
    func adoptOwnedManifest(_ manifest: Manifest, expectedPeers: Int) throws {
        self.manifest = manifest
        self.held = ChunkSet.full(manifest.chunkCount)
        var assigner = ShareAssigner(chunkCount: manifest.chunkCount, expectedPeers: expectedPeers)
        for (peer, chunks) in try index.handouts().sorted(by: { $0.key < $1.key }) {
            assigner.restore(chunks, for: peer)
        }
        self.assigner = assigner
        broadcast(.stateChanged)
    }

    func assignShare(to peer: String) throws -> [ChunkID] {
        guard var assigner else { throw NodeError.notAnOwner }
        let share = assigner.share(for: peer)
        self.assigner = assigner
        try index.recordHandout(to: .init(kind: .peer, name: peer), chunks: share)
        return share
    }

    // MARK: Chunks

    public var heldCount: Int { held.count }
    public var isComplete: Bool { manifest != nil && held.isComplete }
    public var heldChunks: ChunkSet { held }

    /// True once every chunk of the owner's share is held.
    public var holdsShare: Bool {
        guard let share else { return false }
        return share.subtracting(held).isEmpty
    }

    /// Picks chunks to fetch from a source and marks them in flight, so that no other
    /// session requests the same chunk at the same time.
    func claim(offered: ChunkSet, shareOnly: Bool, limit: Int) -> [ChunkID] {
        guard manifest != nil, offered.capacity == held.capacity else { return [] }
        let picks = ChunkPicker.pick(held: held, offered: offered, inFlight: inFlight, wanted: shareOnly ? share : nil, limit: limit)
        inFlight.formUnion(picks)
        return picks
    }

    func release(_ ids: some Sequence<ChunkID>) {
        var any = false
        for id in ids where inFlight.remove(id) != nil { any = true }
        if any { broadcast(.stateChanged) }
    }

    public enum AcceptOutcome: Sendable, Equatable { case stored, rejected(String), duplicate }

    /// Verifies a received chunk against the manifest and, if it matches, makes it durable
    /// and indexes it: file first (fsync, rename, fsync), row second.
    func accept(_ id: ChunkID, data: ByteBuffer, from source: ChunkIndex.Source, startedAt: Int64) async -> AcceptOutcome {
        guard let manifest, manifest.contains(id) else { return .rejected("chunk \(id) is not in the manifest") }
        if held.contains(id) {
            inFlight.remove(id)
            return .duplicate
        }
        let directory = self.directory
        let verdict: Result<Void, any Error> = await runBlocking {
                let digest = data.withUnsafeReadableBytes { Digest32(SHA256.hash(data: $0)) }
                guard data.readableBytes == manifest.size(of: id) else {
                    throw NodeError.badChunk("\(data.readableBytes) bytes, expected \(manifest.size(of: id))")
                }
                guard digest == manifest.hash(of: id) else {
                    throw NodeError.badChunk("SHA-256 \(digest.short) does not match the manifest's \(manifest.hash(of: id).short)")
                }
                try directory.write(id, bytes: data)
        }
        let finishedAt = Clock.nowMicros()
        if case .failure(let error) = verdict {
            let reason = (error as? NodeError)?.description ?? "\(error)"
            inFlight.remove(id)
            try? index.recordTransfer(chunk: id, direction: "in", peer: source, startedAt: startedAt, finishedAt: finishedAt, bytes: data.readableBytes, outcome: .rejected, detail: reason)
            log(.chunkRejected, chunk: id, source: source, "rejected chunk \(id) from \(source.name): \(reason)", level: .warning)
            broadcast(.stateChanged)
            return .rejected(reason)
        }
        let millis = Double(finishedAt - startedAt) / 1000
        let message = "received chunk \(id) from \(source.name) (\(data.readableBytes) B in \(formatMillis(millis)) ms)"
        do {
            try index.commitChunks(
                [.init(id: id, size: data.readableBytes, sha256: manifest.hash(of: id), source: source, startedAt: startedAt, finishedAt: finishedAt)],
                events: [EventRecord(at: finishedAt, kind: .chunkReceived, chunk: id, source: source, message: message)])
        } catch {
            inFlight.remove(id)
            log(.error, chunk: id, "could not index chunk \(id): \(error)", level: .error)
            broadcast(.stateChanged)
            return .rejected("index write failed")
        }
        logger.info("\(message)")
        held.insert(id)
        inFlight.remove(id)
        broadcast(.have(id))
        scheduleSummary()
        if held.isComplete { startAssembly() }
        return .stored
    }

    func readChunk(_ id: ChunkID) async throws -> ByteBuffer {
        guard let manifest, held.contains(id) else { throw NodeError.notHeld(id) }
        let directory = self.directory
        let size = manifest.size(of: id)
        return try await io.runIfActive { try directory.read(id, expectedSize: size) }
    }

    func recordUpload(_ id: ChunkID, to peer: ChunkIndex.Source, startedAt: Int64, bytes: Int) {
        let finishedAt = Clock.nowMicros()
        do {
            try index.recordTransfer(chunk: id, direction: "out", peer: peer, startedAt: startedAt, finishedAt: finishedAt, bytes: bytes, outcome: .sent)
        } catch {
            logger.error("could not record upload in the index: \(error)")
        }
        log(.chunkSent, chunk: id, source: peer, "sent chunk \(id) to \(peer.name) (\(bytes) B)")
    }

    // MARK: Downloaders

    func downloaderCompleted(_ peer: String) {
        guard completeDownloaders.insert(peer).inserted else { return }
        log(.neighbourComplete, source: .init(kind: .peer, name: peer), "\(peer) now holds every chunk")
        broadcast(.stateChanged)
    }

    public var completeDownloaderCount: Int { completeDownloaders.count }

    // MARK: Summary file

    /// Rewrites the summary file from the index, coalescing bursts: at most one write runs,
    /// and one more follows if chunks arrived meanwhile.
    private func scheduleSummary() {
        summaryDirty = true
        guard summaryWriter == nil else { return }
        summaryWriter = Task { await self.writeSummaries() }
    }

    private func writeSummaries() async {
        while summaryDirty {
            summaryDirty = false
            do {
                let ids = try index.db.query("SELECT chunk_id FROM chunks ORDER BY chunk_id") { ChunkID(UInt32($0.int(0))) }
                let directory = self.directory
                try await io.runIfActive { try directory.writeSummary(ids) }
            } catch {
                log(.error, "could not write the summary file: \(error)", level: .error)
            }
        }
        summaryWriter = nil
        broadcast(.stateChanged)
    }

    public var summaryIsCurrent: Bool { !summaryDirty && summaryWriter == nil }

    // MARK: Assembly

    private func startAssembly() {
        guard !isAssembled, assemblyTask == nil, let manifest else { return }
        let directory = self.directory
        assemblyTask = Task {
            let started = Clock.nowMicros()
            let result = await self.runBlocking { try directory.assemble(manifest) }
            self.finishAssembly(result, startedAt: started)
        }
    }

    private func finishAssembly(_ result: Result<Digest32, any Error>, startedAt: Int64) {
        assemblyTask = nil
        guard let manifest else { return }
        switch result {
        case .success(let digest):
            let millis = Double(Clock.nowMicros() - startedAt) / 1000
            let message = "assembled \(manifest.fileName): \(manifest.fileSize) bytes, SHA-256 \(digest.short) verified (\(formatMillis(millis)) ms)"
            do {
                try index.markAssembled(event: EventRecord(kind: .assembled, message: message))
                isAssembled = true
                logger.info("\(message)")
            } catch {
                fail("could not record assembly: \(error)")
            }
        case .failure(let error):
            fail("assembly failed: \(error)")
        }
        broadcast(.stateChanged)
    }

    /// Starts assembly if every chunk is already held (a resumed peer).
    func assembleIfComplete() {
        if isComplete && !isAssembled { startAssembly() }
    }

    // MARK: Failure and shutdown

    func fail(_ message: String) {
        fatalError = message
        log(.error, message, level: .error)
        broadcast(.stateChanged)
    }

    public var failure: String? { fatalError }

    public func close(outcome: String) {
        log(.stopped, "stopped: \(outcome)")
        index.close(outcome: outcome)
        for continuation in subscribers.values { continuation.finish() }
        subscribers.removeAll()
    }

    func recordOwnedChunks(_ chunks: [ChunkIndex.ReceivedChunk], event: EventRecord) throws {
        try index.commitChunks(chunks, events: [event])
    }

    func ownedChunkHashes() throws -> [ChunkID: Digest32] {
        let rows = try index.db.query("SELECT chunk_id, sha256 FROM chunks") { ($0.int(0), $0.blob(1)) }
        var out: [ChunkID: Digest32] = [:]
        for (id, hash) in rows { out[ChunkID(UInt32(id))] = Digest32(bytes: hash) }
        return out
    }

    func saveOwnerManifest(_ manifest: Manifest) throws {
        if let existing = try index.manifest() {
            guard existing == manifest else {
                throw NodeError.manifestChanged("the index in \(directory.root) describes \(existing.fileName) (\(existing.fileSize) bytes, \(existing.fileHash.short)), not this file (\(manifest.fileSize) bytes, \(manifest.fileHash.short)); use a new --dir")
            }
        } else {
            try index.saveManifest(manifest)
        }
    }
}

func formatMillis(_ value: Double) -> String {
    let rounded = (value * 10).rounded() / 10
    return String(rounded)
}

public enum NodeError: Error, CustomStringConvertible {
    case manifestChanged(String)
    case badChunk(String)
    case notHeld(ChunkID)
    case notAnOwner
    case protocolViolation(String)
    case unreachable(String)
    case failed(String)

    public var description: String {
        switch self {
        case .manifestChanged(let s), .badChunk(let s), .protocolViolation(let s), .unreachable(let s), .failed(let s): s
        case .notHeld(let id): "chunk \(id) is not held"
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
