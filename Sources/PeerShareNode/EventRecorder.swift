import Logging
import NIOConcurrencyHelpers
import PeerShareCore
import PeerShareStore

/// The index half of a node's log: event rows and upload `transfers` rows wait here and are
/// committed together, a few milliseconds' worth per transaction (each commit rewrites the
/// B-tree pages it touches into the WAL, so fewer, larger commits write far less), or with
/// the next batch of chunk rows. Nothing here runs on the node's actor.
final class EventRecorder: Sendable {
    private struct Pending {
        var events: [EventRecord] = []
        var transfers: [ChunkIndex.TransferRecord] = []
        var flushScheduled = false
    }

    private let pending = NIOLockedValueBox(Pending())
    private let index: IndexQueue
    private let logger: Logger
    /// How long rows may gather before they are committed on their own.
    static let flushDelay = Duration.milliseconds(20)

    init(index: IndexQueue, logger: Logger) {
        self.index = index
        self.logger = logger
    }

    func record(_ event: EventRecord) {
        schedule { $0.events.append(event) }
    }

    func record(_ transfer: ChunkIndex.TransferRecord) {
        schedule { $0.transfers.append(transfer) }
    }

    func record(_ events: [EventRecord], _ transfers: [ChunkIndex.TransferRecord]) {
        schedule {
            $0.events += events
            $0.transfers += transfers
        }
    }

    /// Everything waiting, for a chunk batch's transaction to carry.
    func drain() -> (events: [EventRecord], transfers: [ChunkIndex.TransferRecord]) {
        pending.withLockedValue { pending in
            defer {
                pending.events.removeAll(keepingCapacity: true)
                pending.transfers.removeAll(keepingCapacity: true)
            }
            return (pending.events, pending.transfers)
        }
    }

    /// Commits everything waiting now (a clean stop; tests).
    func flush() async {
        let (events, transfers) = drain()
        guard !events.isEmpty || !transfers.isEmpty else { return }
        do {
            try await index.run { try $0.commit(chunks: [], transfers: transfers, events: events) }
        } catch {
            // The events table is what failed, so this goes to the console only.
            logger.error("could not record \(events.count) events and \(transfers.count) transfers in the index: \(error)")
        }
    }

    private func schedule(_ add: (inout Pending) -> Void) {
        let start = pending.withLockedValue { pending in
            add(&pending)
            defer { pending.flushScheduled = true }
            return !pending.flushScheduled
        }
        guard start else { return }
        Task {
            // A deliberate delay: it gathers rows into one transaction, and waits for nothing.
            try? await Task.sleep(for: Self.flushDelay)
            self.pending.withLockedValue { $0.flushScheduled = false }
            await self.flush()
        }
    }
}
