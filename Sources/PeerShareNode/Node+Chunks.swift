import Crypto
import Logging
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareStore
import PeerShareWire

/// Claiming, storing and serving chunks.
extension Node {

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
        // A peer that finds its neighbours through the owner stays connected to it while it
        // runs: the owner lists it as a live member only while it is connected.
        if findsNeighbours { return true }
        if isComplete { return false }
        return !holdsShare || ownerServesEverything
    }

    /// Whether the owner is asked for any missing chunk, not only the share: after falling
    /// back, with no download neighbour left (or none to begin with), or while the share is
    /// held and no neighbour is reachable (the owner as the source of last resort).
    var ownerServesEverything: Bool {
        ownerFallback != nil || (liveNeighbours == 0 && !findsNeighbours) || ownerIsLastResort
    }

    /// Sets the download neighbours the peer starts with; each counts as being dialled until
    /// its first connection attempt resolves.
    public func expectNeighbours(_ neighbours: [Endpoint]) {
        liveNeighbours = neighbours.count
        for neighbour in neighbours { neighbourBook.willDial(neighbour) }
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
        guard hasOwner else {
            noteSourcesLackingWithoutOwner()
            return
        }
        guard ownerFallback == nil, !isComplete else { return }
        ownerFallback = reason
        log(.fallback, "falling back to the owner for the \(held.capacity - held.count) missing chunks: \(reason)", level: .warning)
        broadcast(.stateChanged)
    }

    /// How long a peer without an owner waits for some neighbour to offer chunks that none
    /// of its neighbours has: peer exchange may still find one that does.
    static let ownerlessPatience = Duration.seconds(60)

    /// A stalled neighbour of a peer without an owner: nobody connected offers some missing
    /// chunk. After `ownerlessPatience` of that, the peer stops with the count missing.
    func noteSourcesLackingWithoutOwner() {
        let now = ContinuousClock.now
        guard let since = lackingSourcesSince else {
            lackingSourcesSince = now
            log(.fallback, "no neighbour offers \(held.capacity - held.count) missing chunk(s), and there is no owner to ask; waiting up to \(Self.ownerlessPatience.seconds) s for peers that hold them", level: .warning)
            return
        }
        guard now - since >= Self.ownerlessPatience, failure == nil else { return }
        fail("no neighbour has offered the \(held.capacity - held.count) missing chunk(s) for \(Self.ownerlessPatience.seconds) s, and without --owner there is nobody else to ask")
    }

    // MARK: Neighbours' offers

    /// A download-neighbour session starts: its offers count towards chunk rarity.
    func registerNeighbour(_ neighbour: PeerAddress) -> Int {
        nextNeighbourID += 1
        live.neighbours[nextNeighbourID] = neighbour
        neighbourBook.sessionStarted(with: neighbour.endpoint)
        neighbourBook.noteReached(neighbour)
        reviewLastResort()
        return nextNeighbourID
    }

    /// The session ended: its offer no longer counts.
    func unregisterNeighbour(_ neighbour: Int) {
        live.neighbours[neighbour] = nil
        neighbourBook.sessionEnded()
        reviewLastResort()
        guard let old = neighbourOffers.removeValue(forKey: neighbour) else { return }
        for id in old.members where id.index < availability.count { availability[id.index] -= 1 }
    }

    /// A neighbour's first dial connected or failed (or it is not dialled after all).
    func firstDialResolved(_ neighbour: Endpoint) {
        neighbourBook.firstDialResolved(neighbour)
        reviewLastResort()
    }

    /// Turns the owner-as-last-resort rule on or off as the neighbours come and go: a peer
    /// that holds its share and has no neighbour to fetch from asks the owner for what is
    /// missing at once, and stops asking it beyond the share when a neighbour connects.
    func reviewLastResort() {
        let wanted = hasOwner && manifest != nil && !isComplete && holdsShare && (liveNeighbours > 0 || findsNeighbours) && neighbourBook.noneReachable
        guard wanted != ownerIsLastResort else { return }
        ownerIsLastResort = wanted
        if wanted {
            log(.fallback, "no download neighbour is reachable: asking the owner for the \(held.capacity - held.count) missing chunks until one is", level: .warning)
        } else if !isComplete {
            log(.connected, "a download neighbour is reachable again: the owner is asked for no more than the share")
        }
        broadcast(.stateChanged)
    }

    /// Applies only what changed since the last claim, so a claim stays cheap for big files.
    func updateOffer(of neighbour: Int, to offered: ChunkSet) {
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

    /// Verifies a received chunk against the manifest and, if it matches, writes it and
    /// indexes it: bytes first (the write has returned), row second (docs/STORAGE.md).
    func accept(_ id: ChunkID, data: ByteBuffer, from source: ChunkIndex.Source, startedAt: Int64) async -> AcceptOutcome {
        live.requestEnded(id, at: source.name)
        guard let manifest, manifest.contains(id) else {
            metrics.chunksRejected.increment()
            return .rejected("chunk \(id) is not in the manifest")
        }
        if held.contains(id) || storing.contains(id) {
            // An endgame copy of a chunk another source delivered first.
            releaseOne(id)
            return .duplicate
        }
        storing.insert(id)
        let store = self.store
        let verdict: Result<Void, any Error> = await runBlocking {
            guard data.readableBytes == manifest.size(of: id) else {
                throw NodeError.badChunk("\(data.readableBytes) bytes, expected \(manifest.size(of: id))")
            }
            let digest = data.withUnsafeReadableBytes { Digest32(SHA256.hash(data: $0)) }
            guard digest == manifest.hash(of: id) else {
                throw NodeError.badChunk("SHA-256 \(digest.short) does not match the manifest's \(manifest.hash(of: id).short)")
            }
            try store.write(id, bytes: data, of: manifest)
        }
        let finishedAt = Clock.nowMicros()
        if case .failure(let error) = verdict {
            let reason = (error as? NodeError)?.description ?? "\(error)"
            storing.remove(id)
            releaseOne(id)
            metrics.chunksRejected.increment()
            recorder.record(ChunkIndex.TransferRecord(chunk: id, direction: "in", peer: source, startedAt: startedAt, finishedAt: finishedAt,
                                                      bytes: data.readableBytes, outcome: .rejected, detail: reason))
            log(.chunkRejected, chunk: id, source: source, "rejected chunk \(id) from \(source.name): \(reason)", level: .warning)
            broadcast(.stateChanged)
            return .rejected(reason)
        }
        // Verified and written. It stays claimed (in flight) until its batch is indexed; only
        // then is it held, announced, and served.
        metrics.received(data.readableBytes, from: source)
        metrics.requestDuration.recordNanoseconds(max(0, finishedAt - startedAt) * 1_000)
        live.receiveRates.add(data.readableBytes, from: source.name, nowMicros: finishedAt)
        pendingChunks.append(PendingChunk(id: id, size: data.readableBytes, source: source, startedAt: startedAt, finishedAt: finishedAt))
        if chunkCommitter == nil { chunkCommitter = Task { await self.commitPendingChunks() } }
        return .stored
    }

    /// Group commit: while one batch is being indexed, the next gathers. One transaction per
    /// batch carries the chunks' rows, numbered with the batch, and every waiting event. The
    /// bytes were written before; the background sync makes them durable.
    func commitPendingChunks() async {
        while !pendingChunks.isEmpty {
            // Let the chunks verified meanwhile on other threads join this batch.
            await Task.yield()
            await gatherBatch()
            lastCommitAt = .now
            let batch = pendingChunks
            pendingChunks.removeAll(keepingCapacity: true)
            guard let manifest else { break }
            let received = batch.map { chunk in
                EventRecord(at: chunk.finishedAt, kind: .chunkReceived, chunk: chunk.id, source: chunk.source,
                            message: "received chunk \(chunk.id) from \(chunk.source.name) (\(chunk.size) B in \(formatMillis(Double(chunk.finishedAt - chunk.startedAt) / 1000)) ms)")
            }
            let number = nextBatch
            let rows = batch.map { ChunkIndex.ReceivedChunk(id: $0.id, size: $0.size, sha256: manifest.hash(of: $0.id), source: $0.source, startedAt: $0.startedAt, finishedAt: $0.finishedAt) }
            // Everything logged meanwhile rides in the same transaction.
            let waiting = recorder.drain()
            let commitStarted = ContinuousClock.now
            do {
                try await index.run {
                    try $0.commit(chunks: rows, transfers: waiting.transfers, events: waiting.events + received, offers: waiting.offers, batch: number)
                }
            } catch {
                // Nothing was indexed: the chunks are released and will be fetched again.
                recorder.record(waiting)
                for chunk in batch {
                    storing.remove(chunk.id)
                    releaseOne(chunk.id)
                }
                log(.error, "could not index \(batch.count) chunks: \(error)", level: .error)
                broadcast(.stateChanged)
                continue
            }
            metrics.commitDuration.record(ContinuousClock.now - commitStarted)
            nextBatch += 1
            committedThrough = number
            if live.oldestUnsyncedCommit == nil { live.oldestUnsyncedCommit = Clock.nowMicros() }
            for event in received { emit(event) }
            if storedThisRun.capacity != held.capacity { storedThisRun = ChunkSet(capacity: held.capacity) }
            for chunk in batch {
                held.insert(chunk.id)
                storedThisRun.insert(chunk.id)
                storing.remove(chunk.id)
                inFlight[chunk.id] = nil
                unsyncedBytes += chunk.size
            }
            broadcast(.held(batch.map(\.id).sorted()))
            reviewLastResort()
            scheduleSummary()
            if held.isComplete { noteComplete() }
            if unsyncedBytes >= Self.syncEveryBytes { syncCommittedChunks() }
            advanceAssembly()
        }
        chunkCommitter = nil
        broadcast(.stateChanged)
    }

    /// At most one group commit starts per `commitSpacing`, unless `commitBatchLimit` chunks
    /// wait or the file's last chunks do. A commit costs nearly the same for one chunk as for
    /// thirty (each table's and index's page goes to the WAL), and wakes every session for
    /// its HAVEs; with back-to-back commits a peer ran some 800 transactions for 2,600
    /// chunks. The wait is a batching timer, not synchronisation: the chunks are written and
    /// claimed meanwhile, and other chunks join the batch (docs/STORAGE.md, "Group commit").
    func gatherBatch() async {
        guard let last = lastCommitAt, pendingChunks.count < Self.commitBatchLimit,
              held.count + pendingChunks.count < held.capacity else { return }
        let due = last.advanced(by: Self.commitSpacing)
        guard ContinuousClock.now < due else { return }
        try? await Task.sleep(until: due, clock: .continuous)  // cancelled: commit at once
    }

    static let commitSpacing = Duration.milliseconds(20)
    static let commitBatchLimit = 32

    /// One request from a downloader, in one visit to the actor: records the uploads the
    /// session finished since its last visit, logs the request, and returns how the chunk
    /// goes out and, under --max-upload-rate, when it may be sent; nil if not held.
    /// For `sendfile`, the chunk file is opened now. A chunk this process stored itself is
    /// opened right here: its file was written moments ago, so the open is a lookup in the
    /// kernel's caches, cheaper than two thread hand-offs. Any other chunk file (the owner's
    /// split, a resumed peer's) may need the disk, so it is opened on the I/O pool, where a
    /// slow open holds up no other session. Under TLS the chunk is read later, once the
    /// session has its upload slot (`readForSending`).
    func handleRequest(for id: ChunkID, from peer: ChunkIndex.Source, recording sent: [CompletedUpload]) async throws -> (ChunkToSend, ContinuousClock.Instant?)? {
        recordUploads(sent, to: peer)
        guard let manifest, held.contains(id) else {
            log(.requestHandled, chunk: id, source: peer, "rejected request from \(peer.name) for chunk \(id): not held")
            return nil
        }
        log(.requestHandled, chunk: id, source: peer, "handling request from \(peer.name) for chunk \(id)")
        let store = self.store
        let chunk: ChunkToSend
        if isPrivate {
            chunk = .toRead(id, count: manifest.size(of: id))
        } else if storedThisRun.contains(id) {
            chunk = .file(try ChunkFile(store.openForSending(id, of: manifest)))
        } else {
            chunk = .file(try ChunkFile(await io.runIfActive { try store.openForSending(id, of: manifest) }))
        }
        return (chunk, uploadSlot(for: chunk.count))
    }

    /// A held chunk's bytes, for a connection that encrypts (TLS) and so cannot take a file
    /// region: opened, read and closed in one trip to the I/O threads.
    nonisolated func readForSending(_ id: ChunkID, of manifest: Manifest) async throws -> ByteBuffer {
        let store = self.store
        return try await io.runIfActive { try store.read(id, of: manifest) }
    }

    /// Chunks an upload session has written to its socket: a `transfers` row and a
    /// `chunk_sent` event each, timed when the write finished.
    func recordUploads(_ sent: [CompletedUpload], to peer: ChunkIndex.Source) {
        for upload in sent {
            metrics.sent(upload.bytes, to: peer)
            recorder.record(ChunkIndex.TransferRecord(chunk: upload.id, direction: "out", peer: peer, startedAt: upload.startedAt,
                                                      finishedAt: upload.finishedAt, bytes: upload.bytes, outcome: .sent))
            // The owner's share rule counts copies sent outside shares too (see ShareAssigner).
            assigner?.noteSent(upload.id, to: peer.name)
            let event = EventRecord(at: upload.finishedAt, kind: .chunkSent, chunk: upload.id, source: peer,
                                    message: "sent chunk \(upload.id) to \(peer.name) (\(upload.bytes) B)")
            recorder.record(event)
            emit(event)
        }
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
}
