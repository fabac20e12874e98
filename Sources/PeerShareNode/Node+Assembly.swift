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
    /// runs, and one more follows if chunks arrived meanwhile): at once if the last rewrite
    /// was long enough ago or this node just became complete, otherwise when the interval is
    /// up. Each rewrite is a durable write, so while chunks stream in there are at most a few
    /// a second.
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

    /// Starts the next assembly step, if there is one (see `AssemblyPlan`). When the last
    /// chunk is in, the step checks the whole file and makes it durable under its name; a
    /// copy of chunk files has mostly been written by then, so the disk has been writing it
    /// all along instead of all of it at the final fsync.
    func advanceAssembly() {
        guard role == .peer, !isAssembled, fatalError == nil, !isClosing, let manifest,
              let step = assembly.nextStep(held: held, chunkCount: manifest.chunkCount, copiesChunks: store.assemblyCopiesChunks)
        else { return }
        if step.finishing && assembly.completeAt == nil { noteComplete() }
        let store = self.store
        assemblyStep = Task {
            let result: Result<AssemblyStep, any Error> = await self.runBlocking {
                var draft = try step.draft ?? store.beginAssembly(of: manifest)
                try store.append(to: &draft, upTo: step.end, of: manifest)
                return step.finishing ? .finished(try store.finish(draft, of: manifest)) : .appended(draft)
            }
            await self.assemblyStepDone(result)
        }
    }

    enum AssemblyStep: Sendable {
        case appended(AssemblyDraft)
        case finished(Digest32)
    }

    /// Every chunk is held: says so, and times the rest of the assembly from here.
    func noteComplete() {
        guard assembly.completeAt == nil, let manifest else { return }
        assembly.completeAt = Clock.nowMicros()
        let inPlace = store.assemblyCopiesChunks ? assembly.chunksInDraft : manifest.chunkCount
        log(.assembling, "assembling \(manifest.fileName) from \(manifest.chunkCount) chunks (\(inPlace) already in place)")
    }

    func assemblyStepDone(_ result: Result<AssemblyStep, any Error>) async {
        assemblyStep = nil
        guard let manifest else { return }
        switch result {
        case .success(.appended(let draft)):
            assembly.appended(draft)
            advanceAssembly()
        case .success(.finished(let digest)):
            assembly.ended(keepingCompleteAt: true)
            let millis = Double(Clock.nowMicros() - (assembly.completeAt ?? Clock.nowMicros())) / 1000
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
            assembly.ended(keepingCompleteAt: false)
            await forget([(id, "its file now hashes to \(digest.short)")])
        case .failure(let error):
            assembly.ended(keepingCompleteAt: true)
            fail("assembly failed: \(error)")
        }
        broadcast(.stateChanged)
    }
}
