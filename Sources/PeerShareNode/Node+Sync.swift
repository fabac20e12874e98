import Crypto
import Logging
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareStore
import PeerShareWire

/// Crash consistency: background syncs and sync marks (docs/STORAGE.md).
extension Node {

    /// How many written bytes may wait for a sync (see also `syncInterval`).
    static let syncEveryBytes = 64 << 20

    /// Sets how long committed chunks may wait for a sync (tests stretch it to leave rows
    /// after the last mark on purpose).
    public func setSyncInterval(_ interval: Duration) {
        syncInterval = interval
    }

    /// Starts the timer that syncs committed chunks within a second of their commit. A timer
    /// by design: it bounds what a machine crash can take back, and waits for nothing.
    func startSyncing() {
        guard syncTimer == nil, !isClosing else { return }
        syncTimer = Task {
            while !Task.isCancelled {
                do { try await Task.sleep(for: self.syncInterval) } catch { return }
                self.syncCommittedChunks()
            }
        }
    }

    /// Syncs the store off the hot path, then records a sync mark for every batch committed
    /// before the sync began (their writes had returned, so the sync covers them).
    func syncCommittedChunks() {
        guard syncInFlight == nil, committedThrough > syncedThrough, fatalError == nil else { return }
        let through = committedThrough, store = self.store, durability = self.durability
        unsyncedBytes = 0
        let metrics = self.metrics
        let started = Clock.nowMicros()
        syncInFlight = Task {
            let result: Result<Void, any Error>
            let clock = ContinuousClock.now
            do { result = .success(try await durability.runIfActive { try store.sync() }) } catch { result = .failure(error) }
            metrics.syncDuration.record(ContinuousClock.now - clock)
            await self.syncDone(through: through, startedAt: started, result)
        }
    }

    func syncDone(through: Int64, startedAt: Int64, _ result: Result<Void, any Error>) async {
        syncInFlight = nil
        switch result {
        case .success:
            do {
                let bootID = self.bootID
                try await index.run { try $0.recordSyncMark(through: through, bootID: bootID) }
                syncedThrough = through
                // Batches committed while this sync ran wait for the next one: since at most when it began.
                live.oldestUnsyncedCommit = committedThrough > through ? startedAt : nil
            } catch {
                log(.error, "could not record a sync mark: \(error)", level: .error)
            }
        case .failure(let error):
            // The kernel could not write chunks back: bytes it held may be lost. Stop rather
            // than serve them on.
            fail("could not make written chunks durable: \(error)")
        }
        broadcast(.stateChanged)
    }

    /// Waits for a sync in flight and syncs whatever is left. True once every committed row
    /// is covered by a sync mark.
    func syncEverything() async -> Bool {
        await syncInFlight?.value
        if committedThrough > syncedThrough {
            syncCommittedChunks()
            await syncInFlight?.value
        }
        return committedThrough <= syncedThrough
    }
}
