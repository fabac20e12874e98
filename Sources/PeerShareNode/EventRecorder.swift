import Logging
import NIOConcurrencyHelpers
import PeerShareCore
import PeerShareStore

/// The index half of a node's log: event rows, upload `transfers` rows and sources' offers wait here and are
/// committed together, a few milliseconds' worth per transaction (each commit rewrites the
/// B-tree pages it touches into the WAL, so fewer, larger commits write far less), or with
/// the next batch of chunk rows. Nothing here runs on the node's actor.
final class EventRecorder: Sendable {
    /// Rows waiting for a transaction.
    struct Rows {
        var events: [EventRecord] = []
        var transfers: [ChunkIndex.TransferRecord] = []
        var offers: [ChunkIndex.Offer] = []
        var isEmpty: Bool { events.isEmpty && transfers.isEmpty && offers.isEmpty }
    }

    private struct Pending {
        var rows = Rows()
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

    func record(_ offer: ChunkIndex.Offer) {
        schedule { $0.offers.append(offer) }
    }

    /// Puts back rows whose transaction failed, to go with the next one.
    func record(_ rows: Rows) {
        schedule {
            $0.events += rows.events
            $0.transfers += rows.transfers
            $0.offers += rows.offers
        }
    }

    /// Everything waiting, for a chunk batch's transaction to carry.
    func drain() -> Rows {
        pending.withLockedValue { pending in
            defer { pending.rows = Rows() }
            return pending.rows
        }
    }

    /// Commits everything waiting now (a clean stop; tests).
    func flush() async {
        let rows = drain()
        guard !rows.isEmpty else { return }
        do {
            try await index.run { try $0.commit(chunks: [], transfers: rows.transfers, events: rows.events, offers: rows.offers) }
        } catch {
            // The events table is what failed, so this goes to the console only.
            logger.error("could not record \(rows.events.count) events and \(rows.transfers.count) transfers in the index: \(error)")
        }
    }

    private func schedule(_ add: (inout Rows) -> Void) {
        let start = pending.withLockedValue { pending in
            add(&pending.rows)
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
