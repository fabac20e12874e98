import Crypto
import Logging
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareStore
import PeerShareWire

/// The summary file and the complete file.
extension Node {

    /// Rewrites the summary file from the index soon, coalescing bursts (at most one write
    /// runs, and one more follows if chunks arrived meanwhile): at once if the last rewrite was long enough ago or
    /// this node just became complete, otherwise when the interval is up. Each rewrite is a
    /// durable write, so while chunks stream in there are at most a few a second.
    func scheduleSummary() {
        summaryDirty = true
        guard summaryWriter == nil else { return }
        let due = lastSummaryWrite + Self.summaryInterval
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

    func writeSummary() async {
        lastSummaryWrite = .now
        summaryDirty = false
        do {
            // The committed rows, each ID checked against the manifest (heldChunks filters them).
            let capacity = held.capacity
            let ids = try await index.run { try $0.heldChunks(capacity: capacity).sorted }
            let store = self.store
            try await io.runIfActive { try store.writeSummary(ids) }
        } catch {
            log(.error, "could not write the summary file: \(error)", level: .error)
        }
        summaryWriter = nil
        if summaryDirty { scheduleSummary() }
        broadcast(.stateChanged)
    }


    public var summaryIsCurrent: Bool { !summaryDirty && summaryWriter == nil }

    // MARK: Assembly

    /// A copy (chunk files) grows while chunks arrive: whenever the chunks after its end are
    /// held, they are appended in order, a step of at most `assemblyStepChunks` at a time so
    /// that hashing and uploads on the same threads are not held up for long. When the last
    /// chunk is in, the whole-file hash is checked and the file made durable under its name.
    /// So once the last chunk arrives only the tail is left to copy, and the disk has been
    /// writing the rest all along instead of all of it at the final fsync. A store whose
    /// chunks already are the file (a single file) has nothing to do in steps: it takes one
    /// step, to finish, once every chunk is held.
    func advanceAssembly() {
        guard role == .peer, !isAssembled, assemblyStep == nil, fatalError == nil, !isClosing, let manifest else { return }
        let start = chunksInDraft
        var end = start
        if store.assemblyCopiesChunks {
            while end < manifest.chunkCount, end - start < Self.assemblyStepChunks, held.contains(ChunkID(UInt32(end))) { end += 1 }
        } else if held.isComplete {
            end = manifest.chunkCount
        }
        let finishing = end == manifest.chunkCount
        guard end > start || finishing else { return }
        if finishing && completeAt == nil { noteComplete() }
        // The step owns the draft (and its descriptor) until it hands it back.
        let store = self.store, draft = assemblyDraft, stepEnd = end
        assemblyDraft = nil
        assemblyStep = Task {
            let result: Result<AssemblyStep, any Error> = await self.runBlocking {
                var draft = try draft ?? store.beginAssembly(of: manifest)
                try store.append(to: &draft, upTo: stepEnd, of: manifest)
                return finishing ? .finished(try store.finish(draft, of: manifest)) : .appended(draft)
            }
            await self.assemblyStepDone(result)
        }
    }

    static let assemblyStepChunks = 64

    enum AssemblyStep: Sendable {
        case appended(AssemblyDraft)
        case finished(Digest32)
    }

    /// Every chunk is held: says so, and times the rest of the assembly from here.
    func noteComplete() {
        guard completeAt == nil, let manifest else { return }
        completeAt = Clock.nowMicros()
        let inPlace = store.assemblyCopiesChunks ? chunksInDraft : manifest.chunkCount
        log(.assembling, "assembling \(manifest.fileName) from \(manifest.chunkCount) chunks (\(inPlace) already in place)")
    }

    func assemblyStepDone(_ result: Result<AssemblyStep, any Error>) async {
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
            let check = store.assemblyCopiesChunks ? "SHA-256 \(digest.short) verified" : "every chunk checked against file ID \(digest.short)"
            let message = "assembled \(manifest.fileName): \(manifest.fileSize) bytes, \(check) (\(formatMillis(millis)) ms after the last chunk)"
            do {
                let event = EventRecord(kind: .assembled, message: message)
                try await index.run { try $0.markAssembled(event: event) }
                isAssembled = true
                emit(event)
            } catch {
                fail("could not record assembly: \(error)")
            }
        case .failure(AssemblyError.corruptChunk(let id, let digest)):
            // Damaged on disk since it was verified: forget it, fetch it again, start over.
            chunksInDraft = 0
            completeAt = nil
            await forget([(id, "its file now hashes to \(digest.short)")])
        case .failure(let error):
            chunksInDraft = 0
            fail("assembly failed: \(error)")
        }
        broadcast(.stateChanged)
    }
}
