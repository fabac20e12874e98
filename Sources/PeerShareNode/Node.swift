import Crypto
import Logging
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareStore
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
    public let directory: ChunkDirectory
    private let index: ChunkIndex
    private let io: NIOThreadPool
    /// Its own thread for syncing batches to disk: a sync can take tens of milliseconds, and
    /// must not hold up hashing, chunk writes and reads for uploads on `io`.
    private let durability: NIOThreadPool
    private let logger: Logger

    public private(set) var manifest: Manifest?
    private(set) var held = ChunkSet(capacity: 0)
    /// Requests outstanding per chunk, from every source (more than one only in the endgame).
    private var inFlight: [ChunkID: Int] = [:]
    /// Chunks being verified, or verified and waiting for their batch to be made durable:
    /// neither asked for again nor accepted twice.
    private var storing: Set<ChunkID> = []
    /// What each connected download neighbour offers (as of its session's last claim), and
    /// per chunk how many of them offer it: the rarity the picker works from.
    private var neighbourOffers: [Int: ChunkSet] = [:]
    private var availability: [Int] = []
    private var nextNeighbourID = 0
    /// Download neighbours not given up on (unreachable, misbehaving). At zero, the owner
    /// serves everything missing.
    public private(set) var liveNeighbours = 0
    private(set) var share: ChunkSet?
    private var assigner: ShareAssigner?
    private(set) var isAssembled = false
    private var completeDownloaders: Set<String> = []
    private var subscribers: [Int: AsyncStream<NodeEvent>.Continuation] = [:]
    private var nextSubscriberID = 0
    /// Chunks this process received and stored: their files were written moments ago, so
    /// opening one to upload it is a lookup in the kernel's caches (see `handleRequest`).
    private var storedThisRun = ChunkSet(capacity: 0)
    /// Verified chunks in temporary files, waiting to be made durable and indexed together.
    private var pendingChunks: [PendingChunk] = []
    private var chunkCommitter: Task<Void, Never>?
    /// Event and transfer rows waiting for the next commit: rows are written in batches,
    /// since one transaction per row was most of SQLite's cost.
    private var pendingEvents: [EventRecord] = []
    private var pendingTransfers: [ChunkIndex.TransferRecord] = []
    private var recordFlusher: Task<Void, Never>?
    private var lastSummaryWrite = ContinuousClock.now - .seconds(1)
    private var summaryDirty = false
    private var summaryTimer: Task<Void, Never>?
    private var summaryWriter: Task<Void, Never>?
    /// The assembled file so far (nil while a step has it), the step appending to it, how
    /// many chunks it holds, and when the last chunk came.
    private var assemblyDraft: AssemblyDraft?
    private var assemblyStep: Task<Void, Never>?
    private var chunksInDraft = 0
    private var completeAt: Int64?
    /// Set by `close`: no new assembly step starts.
    private var isClosing = false
    private var fatalError: String?
    /// Timeouts and caps for every connection.
    public private(set) var limits = SessionLimits()
    private var openUploadConnections = 0

    public func setLimits(_ limits: SessionLimits) {
        self.limits = limits
    }

    /// Admits one more inbound connection unless the cap is reached.
    func admitConnection() -> Bool {
        guard openUploadConnections < limits.maxConnections else { return false }
        openUploadConnections += 1
        if openUploadConnections == 1 { broadcast(.stateChanged) }
        return true
    }

    func connectionClosed() {
        openUploadConnections -= 1
        if openUploadConnections == 0 { broadcast(.stateChanged) }
    }

    /// Connections from downloaders (and anyone else) open right now.
    public var openUploadConnectionCount: Int { openUploadConnections }

    /// Upload pacing: bytes per second across all uploads, and when the next may start.
    private var uploadRate: Int?
    private var nextUploadSlot = ContinuousClock.now

    /// Limits the total upload rate; nil for no limit.
    public func limitUploads(toBytesPerSecond rate: Int?) {
        uploadRate = rate
    }

    /// When an upload of `bytes` may start so that all uploads together stay within the
    /// limit: each one books the next slot in turn.
    func uploadSlot(for bytes: Int) -> ContinuousClock.Instant? {
        guard let uploadRate, uploadRate > 0 else { return nil }
        let start = max(ContinuousClock.now, nextUploadSlot)
        nextUploadSlot = start.advanced(by: .nanoseconds(Int64(Double(bytes) / Double(uploadRate) * 1e9)))
        return start
    }

    /// Set when the download neighbours are given up on: the owner then serves everything missing.
    private(set) var ownerFallback: String?

    public init(name: String, role: ChunkIndex.Role, directory: ChunkDirectory, databasePath: String, io: NIOThreadPool = .singleton, logger: Logger) throws {
        self.name = name
        self.role = role
        self.directory = directory
        self.io = io
        self.durability = NIOThreadPool(numberOfThreads: 1)
        self.durability.start()
        self.logger = logger
        self.index = try ChunkIndex(path: databasePath, role: role, nodeName: name)
        // So that `peershare-inspect verify` finds the chunk files even when --db puts the index elsewhere.
        try index.recordDirectory(PosixFiles.absolutePath(directory.root))
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
    }

    // MARK: Events and logging

    /// Logs one activity to the console and to the index's events table.
    public func log(_ kind: EventKind, chunk: ChunkID? = nil, source: ChunkIndex.Source? = nil, _ message: String, level: Logger.Level = .info) {
        let event = EventRecord(kind: kind, chunk: chunk, source: source, message: message)
        pendingEvents.append(event)
        scheduleRecordFlush()
        emit(event, level: level)
    }

    /// The console half of an event: its message, with the row's fields as metadata (for
    /// `--log-format json`), taken from the very record that goes into the index.
    private func emit(_ event: EventRecord, level: Logger.Level = .info) {
        logger.log(level: level, "\(event.message)", metadata: event.logMetadata)
    }

    /// Commits waiting event and transfer rows once the actor is free: everything logged
    /// meanwhile goes into the same transaction.
    private func scheduleRecordFlush() {
        guard recordFlusher == nil else { return }
        recordFlusher = Task {
            // Gather a few milliseconds of rows into one transaction: each commit rewrites
            // the B-tree pages it touched into the WAL, so fewer, larger commits write far less.
            try? await Task.sleep(for: recordFlushDelay)
            self.flushRecords()
        }
    }

    private let recordFlushDelay = Duration.milliseconds(20)

    private func flushRecords() {
        recordFlusher = nil
        guard !pendingEvents.isEmpty || !pendingTransfers.isEmpty else { return }
        let events = pendingEvents, transfers = pendingTransfers
        pendingEvents.removeAll(keepingCapacity: true)
        pendingTransfers.removeAll(keepingCapacity: true)
        do {
            try index.commit(chunks: [], transfers: transfers, events: events)
        } catch {
            logger.error("could not record \(events.count) events and \(transfers.count) transfers in the index: \(error)")
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
        advanceAssembly()  // an empty file is complete as soon as its manifest is known
    }

    /// The owner's own manifest, after splitting the file.
    func adoptOwnedManifest(_ manifest: Manifest, expectedPeers: Int) throws {
        self.manifest = manifest
        self.held = ChunkSet.full(manifest.chunkCount)
        var assigner = ShareAssigner(chunkCount: manifest.chunkCount, expectedPeers: expectedPeers)
        for (peer, chunks) in try index.handouts(chunkCount: manifest.chunkCount).sorted(by: { $0.key < $1.key }) {
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

    /// Chunks and bytes held out of the manifest's, for a progress line.
    public var progress: NodeProgress {
        guard let manifest else { return NodeProgress(heldChunks: held.count, heldBytes: 0, total: nil, isAssembled: false) }
        // Every chunk is full-size but the last: no need to add up sizes one by one.
        let last = ChunkID(UInt32(max(0, manifest.chunkCount - 1)))
        var bytes = Int64(held.count) * Int64(manifest.chunkSize)
        if manifest.chunkCount > 0, held.contains(last) { bytes -= Int64(manifest.chunkSize - manifest.size(of: last)) }
        return NodeProgress(heldChunks: held.count, heldBytes: bytes, total: (manifest.chunkCount, manifest.fileSize), isAssembled: isAssembled)
    }
    public var isComplete: Bool { manifest != nil && held.isComplete }
    public var heldChunks: ChunkSet { held }

    /// True once every chunk of the owner's share is held.
    public var holdsShare: Bool {
        guard let share else { return false }
        return share.subtracting(held).isEmpty
    }

    /// Whether a connection to the owner is needed now: for the manifest, for the share,
    /// or for everything missing once the neighbours have been given up on.
    public var needsOwner: Bool {
        guard manifest != nil else { return true }
        if isComplete { return false }
        return !holdsShare || ownerServesEverything
    }

    /// Whether the owner is asked for any missing chunk, not only the share: after falling
    /// back, or with no download neighbour left (or none to begin with).
    var ownerServesEverything: Bool { ownerFallback != nil || liveNeighbours == 0 }

    /// Sets how many download neighbours the peer starts with.
    public func expectNeighbours(_ count: Int) {
        liveNeighbours = count
    }

    /// A download neighbour is given up on. The others carry on; only when none is left is
    /// the owner asked for everything missing.
    func neighbourGaveUp(_ neighbour: Endpoint, because reason: String) {
        liveNeighbours = max(0, liveNeighbours - 1)
        guard !isComplete else { return }
        if liveNeighbours == 0 {
            fallBackToOwner(because: "\(reason), and no other download neighbour is left")
        } else {
            log(.disconnected, "gave up on download neighbour \(neighbour): \(reason); carrying on with \(liveNeighbours) other(s)", level: .warning)
            broadcast(.stateChanged)
        }
    }

    func fallBackToOwner(because reason: String) {
        guard ownerFallback == nil, !isComplete else { return }
        ownerFallback = reason
        log(.fallback, "falling back to the owner for the \(held.capacity - held.count) missing chunks: \(reason)", level: .warning)
        broadcast(.stateChanged)
    }

    /// Picks chunks to fetch from a source and marks them in flight, so that no other
    /// session requests the same chunk at the same time.
    /// Each pick is logged as a `chunk_requested` event from `source` (in the same visit to
    /// the actor: a request costs the session one hop, not two).
    /// `neighbour` (from `registerNeighbour`) records the source's offer for the rarity
    /// counts; `requestedHere` is what the session already awaits from it.
    func claim(offered: ChunkSet, fromOwner: Bool, limit: Int, source: ChunkIndex.Source,
               neighbour: Int? = nil, requestedHere: Set<ChunkID> = []) -> [ChunkID] {
        guard manifest != nil, offered.capacity == held.capacity else { return [] }
        if let neighbour { updateOffer(of: neighbour, to: offered) }
        // The owner is asked only for the share, unless the neighbours were given up on.
        let wanted = fromOwner && !ownerServesEverything ? share : nil
        var have = held
        for id in storing { have.insert(id) }
        let picks = ChunkPicker.pick(held: have, offered: offered, availability: availability, inFlight: inFlight,
                                     requestedHere: requestedHere, wanted: wanted, limit: limit)
        for id in picks {
            inFlight[id, default: 0] += 1
            let again = inFlight[id, default: 0] > 1 ? " (endgame: also requested elsewhere)" : ""
            log(.chunkRequested, chunk: id, source: source, "requested chunk \(id) from \(source.name)\(again)")
        }
        return picks
    }

    func release(_ ids: some Sequence<ChunkID>) {
        var any = false
        for id in ids where releaseOne(id) { any = true }
        if any { broadcast(.stateChanged) }
    }

    /// Ends one request for `id`; true if one was outstanding.
    @discardableResult
    private func releaseOne(_ id: ChunkID) -> Bool {
        guard let count = inFlight[id] else { return false }
        inFlight[id] = count > 1 ? count - 1 : nil
        return true
    }

    // MARK: Neighbours' offers

    /// A download-neighbour session starts: its offers count towards chunk rarity.
    func registerNeighbour() -> Int {
        nextNeighbourID += 1
        return nextNeighbourID
    }

    /// The session ended: its offer no longer counts.
    func unregisterNeighbour(_ neighbour: Int) {
        guard let old = neighbourOffers.removeValue(forKey: neighbour) else { return }
        for id in old.members where id.index < availability.count { availability[id.index] -= 1 }
    }

    /// Applies only what changed since the last claim, so a claim stays cheap for big files.
    private func updateOffer(of neighbour: Int, to offered: ChunkSet) {
        if availability.count != offered.capacity {
            availability = Array(repeating: 0, count: offered.capacity)
            neighbourOffers.removeAll()
        }
        let old = neighbourOffers[neighbour] ?? ChunkSet(capacity: offered.capacity)
        guard old != offered else { return }
        for id in offered.subtracting(old).members { availability[id.index] += 1 }
        for id in old.subtracting(offered).members { availability[id.index] -= 1 }
        neighbourOffers[neighbour] = offered
    }

    /// Whether the connected download neighbours between them offer every chunk still missing.
    var neighboursCoverMissing: Bool {
        guard manifest != nil, availability.count == held.capacity else { return false }
        for index in availability.indices where availability[index] == 0 {
            if !held.contains(ChunkID(UInt32(index))) { return false }
        }
        return true
    }

    public enum AcceptOutcome: Sendable, Equatable { case stored, rejected(String), duplicate }

    /// Verifies a received chunk against the manifest and, if it matches, makes it durable
    /// and indexes it: file first (fsync, rename, fsync), row second.
    func accept(_ id: ChunkID, data: ByteBuffer, from source: ChunkIndex.Source, startedAt: Int64) async -> AcceptOutcome {
        guard let manifest, manifest.contains(id) else { return .rejected("chunk \(id) is not in the manifest") }
        if held.contains(id) || storing.contains(id) {
            // An endgame copy of a chunk another source delivered first.
            releaseOne(id)
            return .duplicate
        }
        storing.insert(id)
        let directory = self.directory
        let verdict: Result<String, any Error> = await runBlocking {
            guard data.readableBytes == manifest.size(of: id) else {
                throw NodeError.badChunk("\(data.readableBytes) bytes, expected \(manifest.size(of: id))")
            }
            let digest = data.withUnsafeReadableBytes { Digest32(SHA256.hash(data: $0)) }
            guard digest == manifest.hash(of: id) else {
                throw NodeError.badChunk("SHA-256 \(digest.short) does not match the manifest's \(manifest.hash(of: id).short)")
            }
            return try directory.writeTemporary(id, bytes: data)
        }
        let finishedAt = Clock.nowMicros()
        switch verdict {
        case .failure(let error):
            let reason = (error as? NodeError)?.description ?? "\(error)"
            storing.remove(id)
            releaseOne(id)
            pendingTransfers.append(.init(chunk: id, direction: "in", peer: source, startedAt: startedAt, finishedAt: finishedAt,
                                          bytes: data.readableBytes, outcome: .rejected, detail: reason))
            log(.chunkRejected, chunk: id, source: source, "rejected chunk \(id) from \(source.name): \(reason)", level: .warning)
            broadcast(.stateChanged)
            return .rejected(reason)
        case .success(let temporary):
            // Verified. It stays claimed (in flight) until its batch is durable and indexed;
            // only then is it held, announced, and served.
            pendingChunks.append(PendingChunk(id: id, temporary: temporary, size: data.readableBytes, source: source,
                                              startedAt: startedAt, finishedAt: finishedAt))
            if chunkCommitter == nil { chunkCommitter = Task { await self.commitPendingChunks() } }
            return .stored
        }
    }

    /// Group commit: while one batch is being made durable, the next gathers. Per batch, one
    /// sync of the file system, the renames, one fsync of the folder, then one transaction
    /// with the chunks' rows and every waiting event: a row never precedes its durable file.
    private func commitPendingChunks() async {
        while !pendingChunks.isEmpty {
            let batch = pendingChunks
            pendingChunks.removeAll(keepingCapacity: true)
            let directory = self.directory
            let durable: Result<Void, any Error>
            do {
                durable = .success(try await durability.runIfActive { try directory.makeDurable(batch.map { ($0.id, $0.temporary) }) })
            } catch {
                durable = .failure(error)
            }
            var failure: String?
            if case .failure(let error) = durable {
                failure = "could not make \(batch.count) chunks durable: \(error)"
            } else {
                guard let manifest else { break }
                let received = batch.map { chunk in
                    EventRecord(at: chunk.finishedAt, kind: .chunkReceived, chunk: chunk.id, source: chunk.source,
                                message: "received chunk \(chunk.id) from \(chunk.source.name) (\(chunk.size) B in \(formatMillis(Double(chunk.finishedAt - chunk.startedAt) / 1000)) ms)")
                }
                let events = pendingEvents + received, transfers = pendingTransfers
                do {
                    try index.commit(
                        chunks: batch.map { .init(id: $0.id, size: $0.size, sha256: manifest.hash(of: $0.id), source: $0.source, startedAt: $0.startedAt, finishedAt: $0.finishedAt) },
                        transfers: transfers, events: events)
                    pendingEvents.removeAll(keepingCapacity: true)
                    pendingTransfers.removeAll(keepingCapacity: true)
                    for event in received { emit(event) }
                } catch {
                    failure = "could not index \(batch.count) chunks: \(error)"
                }
            }
            if let failure {
                // Nothing was indexed: the chunks are released and will be fetched again.
                for chunk in batch {
                    storing.remove(chunk.id)
                    releaseOne(chunk.id)
                }
                log(.error, failure, level: .error)
                broadcast(.stateChanged)
                continue
            }
            if storedThisRun.capacity != held.capacity { storedThisRun = ChunkSet(capacity: held.capacity) }
            for chunk in batch {
                held.insert(chunk.id)
                storedThisRun.insert(chunk.id)
                storing.remove(chunk.id)
                inFlight[chunk.id] = nil
            }
            broadcast(.held(batch.map(\.id).sorted()))
            scheduleSummary()
            if held.isComplete { noteComplete() }
            advanceAssembly()
        }
        chunkCommitter = nil
        broadcast(.stateChanged)
    }

    /// One request from a downloader, in one visit to the actor: records the uploads the
    /// session finished since its last visit, logs the request, and returns the chunk file,
    /// open for sending, and, under --max-upload-rate, when it may be sent; nil if not held.
    /// A chunk this process stored itself is opened right here: its file was written moments
    /// ago, so the open is a lookup in the kernel's caches, cheaper than two thread hand-offs.
    /// Any other chunk file (the owner's split, a resumed peer's) may need the disk, so it is
    /// opened on the I/O pool, where a slow open holds up no other session.
    func handleRequest(for id: ChunkID, from peer: ChunkIndex.Source, recording sent: [CompletedUpload]) async throws -> (ChunkFile, ContinuousClock.Instant?)? {
        recordUploads(sent, to: peer)
        guard let manifest, held.contains(id) else {
            log(.requestHandled, chunk: id, source: peer, "rejected request from \(peer.name) for chunk \(id): not held")
            return nil
        }
        log(.requestHandled, chunk: id, source: peer, "handling request from \(peer.name) for chunk \(id)")
        let size = manifest.size(of: id)
        let directory = self.directory
        let file = storedThisRun.contains(id)
            ? try directory.openForSending(id, expectedSize: size)
            : try await io.runIfActive { try directory.openForSending(id, expectedSize: size) }
        return (file, uploadSlot(for: size))
    }

    /// Chunks an upload session has written to its socket: a `transfers` row and a
    /// `chunk_sent` event each, timed when the write finished.
    func recordUploads(_ sent: [CompletedUpload], to peer: ChunkIndex.Source) {
        for upload in sent {
            pendingTransfers.append(.init(chunk: upload.id, direction: "out", peer: peer, startedAt: upload.startedAt, finishedAt: upload.finishedAt,
                                          bytes: upload.bytes, outcome: .sent))
            // The owner's share rule counts copies sent outside shares too (see ShareAssigner).
            assigner?.noteSent(upload.id, to: peer.name)
            let event = EventRecord(at: upload.finishedAt, kind: .chunkSent, chunk: upload.id, source: peer,
                                    message: "sent chunk \(upload.id) to \(peer.name) (\(upload.bytes) B)")
            pendingEvents.append(event)
            emit(event)
        }
        if !sent.isEmpty { scheduleRecordFlush() }
    }

    /// What a download session does next, decided in one visit: stop, because everything it
    /// was for is held, or send these requests (possibly none, when nothing is wanted from
    /// this source right now).
    enum DownloadStep: Sendable {
        case finished
        case request([ChunkID])
    }

    func nextDownloadStep(fromOwner: Bool, offered: ChunkSet, room: Int, source: ChunkIndex.Source,
                          neighbour: Int?, requestedHere: Set<ChunkID>) -> DownloadStep {
        if fromOwner ? !needsOwner : isComplete { return .finished }
        guard room > 0 else { return .request([]) }
        return .request(claim(offered: offered, fromOwner: fromOwner, limit: room, source: source,
                              neighbour: neighbour, requestedHere: requestedHere))
    }

    // MARK: Downloaders

    func downloaderCompleted(_ peer: String) {
        guard completeDownloaders.insert(peer).inserted else { return }
        log(.neighbourComplete, source: .init(kind: .peer, name: peer), "\(peer) now holds every chunk")
        broadcast(.stateChanged)
    }

    public var completeDownloaderCount: Int { completeDownloaders.count }

    /// Set once this peer stopped waiting for downloaders that never connected (see
    /// `stopWaitingForDownloaders`).
    public private(set) var gaveUpOnDownloaders = false

    /// No downloader has connected for `patience` while this peer holds the whole file. The
    /// usual cause: a downloader finished and left while this peer was down, so the news
    /// that it was complete died with the old process. Waiting longer cannot help; a
    /// downloader that does come back later still finds its other sources and the owner.
    func stopWaitingForDownloaders(after patience: Duration) {
        guard !gaveUpOnDownloaders else { return }
        gaveUpOnDownloaders = true
        log(.disconnected, "stopped waiting for downloaders: \(completeDownloaders.count) reported complete, and none has connected for \(patience.seconds) s", level: .warning)
        broadcast(.stateChanged)
    }

    /// Download-neighbour connections that are over: each either told its uploader that this
    /// peer is complete, or gave up on it. A peer exits only after all of them, so that no
    /// uploader is left waiting to hear it may stop.
    public private(set) var finishedNeighbourFetches = 0

    /// Remembers that the neighbour at `address` knows this peer is complete.
    func toldComplete(neighbour: String, address: Endpoint) {
        do {
            emit(try index.recordToldComplete(neighbour: neighbour, address: address.description))
        } catch {
            logger.error("could not record in the index: \(error)")
        }
    }

    /// Whether an earlier run already told the neighbour at `address` that this peer is complete.
    func hasToldComplete(_ address: Endpoint) -> Bool {
        guard isComplete else { return false }
        do {
            return try index.addressesToldComplete().contains(address.description)
        } catch {
            // Not knowing means connecting once more, which is harmless; say why.
            log(.error, "could not read which neighbours were told this peer is complete: \(error)", level: .warning)
            return false
        }
    }

    func neighbourFetchFinished() {
        finishedNeighbourFetches += 1
        broadcast(.stateChanged)
    }

    // MARK: Summary file

    /// Rewrites the summary file from the index, coalescing bursts: at most one write runs,
    /// and one more follows if chunks arrived meanwhile.
    /// Rewrites the summary file soon: at once if the last rewrite was long enough ago or
    /// this node just became complete, otherwise when the interval is up. Each rewrite is a
    /// durable write, so while chunks stream in there are at most a few a second.
    private func scheduleSummary() {
        summaryDirty = true
        guard summaryWriter == nil else { return }
        let due = lastSummaryWrite + summaryInterval
        if isComplete || ContinuousClock.now >= due {
            summaryTimer?.cancel()
            summaryTimer = nil
            summaryWriter = Task { await self.writeSummary() }
        } else if summaryTimer == nil {
            summaryTimer = Task {
                do { try await Task.sleep(until: due, clock: .continuous) } catch { return }
                self.summaryTimer = nil
                self.scheduleSummary()
            }
        }
    }

    private func writeSummary() async {
        lastSummaryWrite = .now
        summaryDirty = false
        do {
            // The committed rows, each ID checked against the manifest (heldChunks filters them).
            let ids = try index.heldChunks(capacity: held.capacity).sorted
            let directory = self.directory
            try await io.runIfActive { try directory.writeSummary(ids) }
        } catch {
            log(.error, "could not write the summary file: \(error)", level: .error)
        }
        summaryWriter = nil
        if summaryDirty { scheduleSummary() }
        broadcast(.stateChanged)
    }

    private let summaryInterval = Duration.milliseconds(250)

    public var summaryIsCurrent: Bool { !summaryDirty && summaryWriter == nil }

    // MARK: Assembly

    /// The assembled file grows while chunks arrive: whenever the chunks after its end are
    /// held, they are appended in order, a step of at most `assemblyStepChunks` at a time so
    /// that hashing and uploads on the same threads are not held up for long. When the last
    /// chunk is in, the whole-file hash is checked and the file made durable under its name.
    /// So once the last chunk arrives only the tail is left to copy, and the disk has been
    /// writing the rest all along instead of all of it at the final fsync.
    private func advanceAssembly() {
        guard role == .peer, !isAssembled, assemblyStep == nil, fatalError == nil, !isClosing, let manifest else { return }
        let start = chunksInDraft
        var end = start
        while end < manifest.chunkCount, end - start < Self.assemblyStepChunks, held.contains(ChunkID(UInt32(end))) { end += 1 }
        let finishing = end == manifest.chunkCount
        guard end > start || finishing else { return }
        if finishing && completeAt == nil { noteComplete() }
        // The step owns the draft (and its descriptor) until it hands it back.
        let directory = self.directory, draft = assemblyDraft, stepEnd = end
        assemblyDraft = nil
        assemblyStep = Task {
            let result: Result<AssemblyStep, any Error> = await self.runBlocking {
                var draft = try draft ?? directory.beginAssembly()
                try directory.append(to: &draft, upTo: stepEnd, of: manifest)
                return finishing ? .finished(try directory.finish(draft, of: manifest)) : .appended(draft)
            }
            self.assemblyStepDone(result)
        }
    }

    private static let assemblyStepChunks = 64

    private enum AssemblyStep: Sendable {
        case appended(AssemblyDraft)
        case finished(Digest32)
    }

    /// Every chunk is held: says so, and times the rest of the assembly from here.
    private func noteComplete() {
        guard completeAt == nil, let manifest else { return }
        completeAt = Clock.nowMicros()
        log(.assembling, "assembling \(manifest.fileName) from \(manifest.chunkCount) chunks (\(chunksInDraft) already in place)")
    }

    private func assemblyStepDone(_ result: Result<AssemblyStep, any Error>) {
        assemblyStep = nil
        guard let manifest else { return }
        switch result {
        case .success(.appended(let draft)):
            assemblyDraft = draft
            chunksInDraft = draft.nextChunk
            advanceAssembly()
        case .success(.finished(let digest)):
            chunksInDraft = 0
            let millis = Double(Clock.nowMicros() - (completeAt ?? Clock.nowMicros())) / 1000
            let message = "assembled \(manifest.fileName): \(manifest.fileSize) bytes, SHA-256 \(digest.short) verified (\(formatMillis(millis)) ms after the last chunk)"
            do {
                let event = EventRecord(kind: .assembled, message: message)
                try index.markAssembled(event: event)
                isAssembled = true
                emit(event)
            } catch {
                fail("could not record assembly: \(error)")
            }
        case .failure(AssemblyError.corruptChunk(let id, let digest)):
            // Damaged on disk since it was verified: forget it, fetch it again, start over.
            chunksInDraft = 0
            completeAt = nil
            forget([(id, "its file now hashes to \(digest.short)")])
        case .failure(let error):
            chunksInDraft = 0
            fail("assembly failed: \(error)")
        }
        broadcast(.stateChanged)
    }

    // MARK: Start-up

    /// Reconciles the folder with the index before serving anything (see StartupCheck), then
    /// regenerates the summary file and checks that an assembled file is still there.
    public func prepare(recheck: Bool) async throws {
        guard let manifest else { return }
        let directory = self.directory
        let indexed = Set(held.sorted)
        let started = Clock.nowMicros()
        let check = try await io.runIfActive {
            StartupCheck.run(manifest: manifest, indexed: indexed, directory: directory, recheck: recheck)
        }
        if !check.staleTemporaries.isEmpty {
            log(.cleanup, "deleted \(check.staleTemporaries.count) stale temporary file(s) left by an earlier run: \(check.staleTemporaries.prefix(5).joined(separator: ", "))")
        }
        for (file, reason) in check.discarded {
            log(.cleanup, "deleted chunk file \(file) that had no index row: \(reason)", level: .warning)
        }
        for (file, reason) in check.unreadable {
            log(.cleanup, "left chunk file \(file) alone: it has no index row and cannot be read (\(reason)); it will be fetched again", level: .warning)
        }
        if !check.droppedRows.isEmpty { forget(check.droppedRows) }
        if !check.adopted.isEmpty {
            let now = Clock.nowMicros()
            try index.commitChunks(
                check.adopted.map { .init(id: $0.id, size: $0.size, sha256: $0.sha256, source: .foundOnDisk, startedAt: now, finishedAt: now) },
                events: check.adopted.map { EventRecord(at: now, kind: .chunkAdopted, chunk: $0.id, source: .foundOnDisk, message: "adopted chunk \($0.id): its file was verified before a crash lost its index row") })
            for chunk in check.adopted { held.insert(chunk.id) }
            logger.info("adopted \(check.adopted.count) verified chunk file(s) that had no index row")
        }
        let millis = Double(Clock.nowMicros() - started) / 1000
        log(.cleanup, "start-up check\(recheck ? " with full re-hash" : ""): \(held.count) of \(manifest.chunkCount) chunks held, \(check.droppedRows.count) dropped, \(check.adopted.count) adopted (\(formatMillis(millis)) ms)")
        if isAssembled, PosixFiles.fileSize(directory.assembledPath(for: manifest)) != manifest.fileSize {
            try index.clearAssembled(event: EventRecord(kind: .cleanup, message: "the assembled \(manifest.fileName) is missing or the wrong size; it will be assembled again"))
            isAssembled = false
            logger.warning("the assembled \(manifest.fileName) is missing or the wrong size; it will be assembled again")
        }
        scheduleSummary()
        advanceAssembly()  // a resumed peer picks up from the chunks it holds
    }

    /// Drops chunks from the index (and from what this node offers) so they are fetched again.
    private func forget(_ dropped: [(id: ChunkID, reason: String)]) {
        do {
            try index.dropChunks(dropped)
        } catch {
            fail("could not drop damaged chunks from the index: \(error)")
            return
        }
        for (id, reason) in dropped {
            held.remove(id)
            logger.warning("dropped chunk \(id) from the index: \(reason); it will be fetched again")
        }
        // An assembled file stays: it was verified as a whole when it was made.
        scheduleSummary()
        broadcast(.stateChanged)
    }

    // MARK: Failure and shutdown

    func fail(_ message: String) {
        fatalError = message
        log(.error, message, level: .error)
        broadcast(.stateChanged)
    }

    public var failure: String? { fatalError }

    public func close(outcome: String) async {
        // A batch being made durable is finished (its rows are committed); the rest of the
        // events follow. Chunks not yet in a batch are abandoned: their temporary files
        // are deleted at the next start.
        isClosing = true
        await chunkCommitter?.value
        // A step in flight finishes (and may still record the assembly); an unfinished
        // draft is deleted now rather than at the next start.
        await assemblyStep?.value
        if let draft = assemblyDraft {
            directory.abandon(draft)
            assemblyDraft = nil
        }
        log(.stopped, "stopped: \(outcome)")
        flushRecords()
        if let error = index.close(outcome: outcome) {
            // The events table is what failed, so this goes to the console only.
            logger.error("could not record the end of this run in the index: \(error)")
        }
        try? await durability.shutdownGracefully()
        for continuation in subscribers.values { continuation.finish() }
        subscribers.removeAll()
    }

    func recordOwnedChunks(_ chunks: [ChunkIndex.ReceivedChunk], event: EventRecord) throws {
        try index.commitChunks(chunks, events: [event])
        emit(event)
    }

    func sourceModificationTime() throws -> Int64? { try index.sourceModificationTime() }
    func setSourceModificationTime(_ nanoseconds: Int64) throws { try index.setSourceModificationTime(nanoseconds) }

    /// The owner's start-up check: chunk files that went missing or were damaged are cut
    /// again from the source; chunks split before a crash lost their rows are indexed.
    /// Returns how many chunk files were written.
    func repairOwnedChunks(from source: String, recheck: Bool) async throws -> Int {
        guard let manifest else { return 0 }
        let directory = self.directory
        let indexed = Set(try index.heldChunks(capacity: manifest.chunkCount).sorted)
        let check = try await io.runIfActive {
            StartupCheck.run(manifest: manifest, indexed: indexed, directory: directory, recheck: recheck)
        }
        if !check.staleTemporaries.isEmpty {
            log(.cleanup, "deleted \(check.staleTemporaries.count) stale temporary file(s) left by an earlier run")
        }
        let now = Clock.nowMicros()
        let adoptedIDs = Set(check.adopted.map(\.id))
        let unindexed = manifest.layout.chunkIDs.filter { !indexed.contains($0) && !adoptedIDs.contains($0) }
        let toCut = check.droppedRows.map(\.id) + unindexed
        for (id, reason) in check.droppedRows {
            log(.cleanup, chunk: id, "chunk \(id) is cut again from the source: \(reason)", level: .warning)
        }
        try await io.runIfActive { try FileSplitter.recut(toCut, from: source, manifest: manifest, into: directory) }
        let newRows = (check.adopted.map { ($0.id, $0.sha256) } + unindexed.map { ($0, manifest.hash(of: $0)) })
            .map { ChunkIndex.ReceivedChunk(id: $0.0, size: manifest.size(of: $0.0), sha256: $0.1, source: .splitFromFile, startedAt: now, finishedAt: now) }
        if !newRows.isEmpty {
            try index.commitChunks(newRows, events: [EventRecord(kind: .split, message: "indexed \(newRows.count) chunks split before an interrupted start")])
        }
        return toCut.count
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

/// A verified chunk in a temporary file, waiting for its batch to become durable.
struct PendingChunk: Sendable {
    let id: ChunkID
    let temporary: String
    let size: Int
    let source: ChunkIndex.Source
    let startedAt: Int64
    let finishedAt: Int64
}

public enum NodeError: Error, CustomStringConvertible {
    case manifestChanged(String)
    case badChunk(String)
    case notHeld(ChunkID)
    case notAnOwner
    case protocolViolation(String)
    /// A remote that sent data failing verification too often: it is avoided.
    case misbehaving(String)
    case unreachable(String)
    case failed(String)

    public var description: String {
        switch self {
        case .manifestChanged(let s), .badChunk(let s), .protocolViolation(let s), .misbehaving(let s), .unreachable(let s), .failed(let s): s
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
