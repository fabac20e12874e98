import Crypto
import Logging
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareStore
import PeerShareWire

/// Start-up: the folder reconciled with the index; the owner's chunks.
extension Node {

    /// Reconciles the folder with the index before serving anything (see StartupCheck), then
    /// regenerates the summary file and checks that an assembled file is still there.
    /// Chunks are hashed again only where docs/STORAGE.md says: all of them under --recheck,
    /// and after a machine crash the rows committed after the last sync mark.
    public func prepare(recheck: Bool) async throws {
        guard let manifest else { return }
        let started = Clock.nowMicros()
        let (unsynced, previous) = try await index.run { (try $0.unsyncedChunks(capacity: manifest.chunkCount), try $0.previousRun()) }
        let wentDown = machineWentDown(previous)
        if wentDown && !unsynced.isEmpty && !recheck {
            log(.cleanup, "the machine went down during the last run (its boot ID changed): re-hashing the \(unsynced.count) chunks committed after the last sync mark", level: .warning)
        }
        let rehash = recheck ? held : (wentDown ? unsynced : ChunkSet(capacity: manifest.chunkCount))
        let store = self.store, indexed = held, assembled = isAssembled
        let check = try await io.runIfActive { store.reconcile(manifest, indexed: indexed, rehash: rehash, assembled: assembled) }
        try await record(check, of: manifest)
        let millis = Double(Clock.nowMicros() - started) / 1000
        log(.cleanup, "start-up check\(recheck ? " with full re-hash" : ""): \(held.count) of \(manifest.chunkCount) chunks held, \(check.rehashed.count) re-hashed, \(check.droppedRows.count) dropped, \(check.adopted.count) adopted (\(formatMillis(millis)) ms)")
        // A single file is the chunks' only copy: once any of them is dropped, it is no longer
        // the complete file, and goes back to its temporary name until they are fetched again.
        let copyDamaged = store.layout == .singleFile && !check.droppedRows.isEmpty
        if isAssembled && (check.assembledFileLost || copyDamaged || !store.assembledLooksIntact(manifest)) {
            let reason = copyDamaged && !check.assembledFileLost ? "has chunks that must be fetched again" : "is missing or the wrong size"
            let event = EventRecord(kind: .cleanup, message: "the assembled \(manifest.fileName) \(reason); it will be assembled again")
            try await index.run { try $0.clearAssembled(event: event) }
            isAssembled = false
            logger.warning("the assembled \(manifest.fileName) \(reason); it will be assembled again")
        }
        let ready = isAssembled
        try await io.runIfActive { try store.prepare(for: manifest, assembled: ready) }
        if role == .peer { startSyncing() }
        scheduleSummary()
        advanceAssembly()  // a resumed peer picks up from the chunks it holds
    }

    /// Whether the last run did not stop cleanly and the machine has restarted since: only
    /// then can rows after the last sync mark name bytes that never reached the disk.
    func machineWentDown(_ previous: (stoppedCleanly: Bool, bootID: String?)?) -> Bool {
        guard let previous, !previous.stoppedCleanly else { return false }
        return previous.bootID != bootID || bootID == "unknown"
    }

    /// Logs and indexes what the start-up check found and did.
    func record(_ check: StartupCheck, of manifest: Manifest) async throws {
        if !check.staleTemporaries.isEmpty {
            log(.cleanup, "deleted \(check.staleTemporaries.count) stale temporary file(s) left by an earlier run: \(check.staleTemporaries.prefix(5).joined(separator: ", "))")
        }
        for (file, reason) in check.discarded {
            log(.cleanup, "deleted chunk file \(file) that had no index row: \(reason)", level: .warning)
        }
        for (file, reason) in check.unreadable {
            log(.cleanup, "left chunk file \(file) alone: it has no index row and cannot be read (\(reason)); it will be fetched again", level: .warning)
        }
        for id in check.rehashed {
            log(.chunkRehashed, chunk: id, "re-hashed chunk \(id): its bytes match the manifest")
        }
        if !check.droppedRows.isEmpty { await forget(check.droppedRows) }
        if !check.adopted.isEmpty {
            let now = Clock.nowMicros()
            let rows = check.adopted.map { ChunkIndex.ReceivedChunk(id: $0.id, size: $0.size, sha256: $0.sha256, source: .foundOnDisk, startedAt: now, finishedAt: now) }
            let events = check.adopted.map { EventRecord(at: now, kind: .chunkAdopted, chunk: $0.id, source: .foundOnDisk, message: "adopted chunk \($0.id): its file was verified before a crash lost its index row") }
            let batch = nextBatch
            try await index.run { try $0.commitChunks(rows, events: events, batch: batch) }
            committedThrough = nextBatch
            nextBatch += 1
            for chunk in check.adopted { held.insert(chunk.id) }
            logger.info("adopted \(check.adopted.count) verified chunk file(s) that had no index row")
        }
    }

    /// Drops chunks from the index (and from what this node offers) so they are fetched again.
    func forget(_ dropped: [(id: ChunkID, reason: String)]) async {
        do {
            try await index.run { try $0.dropChunks(dropped) }
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


    func recordOwnedChunks(_ chunks: [ChunkIndex.ReceivedChunk], event: EventRecord) async throws {
        try await index.run { try $0.commitChunks(chunks, events: [event]) }
        emit(event)
    }

    func sourceModificationTime() async throws -> Int64? { try await index.run { try $0.sourceModificationTime() } }
    func setSourceModificationTime(_ nanoseconds: Int64) async throws { try await index.run { try $0.setSourceModificationTime(nanoseconds) } }
    func recordSourcePath(_ path: String) async throws {
        let absolute = PosixFiles.absolutePath(path)
        try await index.run { try $0.recordSourcePath(absolute) }
    }

    /// The owner's start-up check. Chunk files: those that went missing or were damaged are
    /// cut again from the source, and chunks split before a crash lost their rows are
    /// indexed. A single file is the source itself: only its size is checked. Returns how
    /// many chunk files were written.
    func repairOwnedChunks(from source: OwnerSource, recheck: Bool) async throws -> Int {
        guard let manifest else { return 0 }
        guard let chunkFiles = store as? ChunkFilesStore else {
            let store = self.store
            try await io.runIfActive { try store.prepare(for: manifest, assembled: true) }
            return 0
        }
        let indexed = try await index.run { try $0.heldChunks(capacity: manifest.chunkCount) }
        let rehash = recheck ? indexed : ChunkSet(capacity: manifest.chunkCount)
        let check = try await io.runIfActive { chunkFiles.reconcile(manifest, indexed: indexed, rehash: rehash, assembled: true) }
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
        try await io.runIfActive { try FileSplitter.recut(toCut, from: source, manifest: manifest, into: chunkFiles) }
        let newRows = (check.adopted.map { ($0.id, $0.sha256) } + unindexed.map { ($0, manifest.hash(of: $0)) })
            .map { ChunkIndex.ReceivedChunk(id: $0.0, size: manifest.size(of: $0.0), sha256: $0.1, source: .splitFromFile, startedAt: now, finishedAt: now) }
        if !newRows.isEmpty {
            let event = EventRecord(kind: .split, message: "indexed \(newRows.count) chunks split before an interrupted start")
            try await index.run { try $0.commitChunks(newRows, events: [event]) }
        }
        return toCut.count
    }

    func saveOwnerManifest(_ manifest: Manifest) async throws {
        if let existing = try await index.run({ try $0.manifest() }) {
            guard existing == manifest else {
                throw NodeError.manifestChanged("the index in \(store.root) describes \(existing.fileName) (\(existing.fileSize) bytes, \(existing.fileHash.short)), not this file (\(manifest.fileSize) bytes, \(manifest.fileHash.short)); use a new --dir")
            }
        } else {
            try await index.run { try $0.saveManifest(manifest) }
        }
    }
}

extension Node {
    /// A folder keeps the layout it was made with: an index from before layouts were
    /// recorded with a manifest is chunk files.
    static func checkLayout(of index: ChunkIndex, against store: any ChunkStore) throws {
        let hasManifest = try index.db.scalarInt("SELECT count(*) FROM manifest") ?? 0 > 0
        if let recorded = try index.storageLayout() ?? (hasManifest ? .chunkFiles : nil), recorded != store.layout {
            throw NodeError.failed("\(store.root) holds a node stored as \(recorded); start it with --storage \(recorded), or use another --dir")
        }
        try index.recordStorageLayout(store.layout)
    }

    /// The complete file will take the manifest's name in the node's folder, so that name
    /// must not be one of the node's own files there.
    func checkFileName(_ manifest: Manifest) throws {
        let target = store.root + "/" + manifest.fileName
        let own = [store.root + "/" + summaryFileName, store.root + "/chunks"] + ["", "-wal", "-shm", "-journal"].map { databasePath + $0 }
        if own.contains(where: { PosixFiles.absolutePath($0) == PosixFiles.absolutePath(target) || $0 == target }) {
            throw NodeError.failed("the file's name \(manifest.fileName) would overwrite this node's own \(target); use another --dir or --db")
        }
    }
}
