import Synchronization

/// A cap on uploads sent at once (`owner --upload-slots N`): a session takes a slot for each
/// PIECE it sends and gives it back when the send returns. Sessions beyond the cap wait in
/// the order they asked, and none is dropped; a session that ends while waiting leaves the
/// queue.
final class UploadSlots: Sendable {
    private struct State {
        var free: Int
        /// At most one per connection (each serves one request at a time): a short array.
        var waiting: [(id: UInt64, continuation: CheckedContinuation<Void, any Error>)] = []
        var nextID: UInt64 = 0
    }

    let capacity: Int
    private let state: Mutex<State>

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        state = Mutex(State(free: capacity))
    }

    /// Sessions waiting for a slot right now.
    var waitingCount: Int { state.withLock { $0.waiting.count } }

    /// Slots taken right now.
    var inUse: Int { capacity - state.withLock { $0.free } }

    /// Waits for a slot, in turn; throws CancellationError if the task is cancelled first.
    func acquire() async throws {
        let id: UInt64? = state.withLock { state in
            if state.free > 0 {
                state.free -= 1
                return nil
            }
            state.nextID += 1
            return state.nextID
        }
        guard let id else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                // Decided again under the lock that queues: a slot released since the first
                // look would otherwise go back to the pool while this waiter sleeps.
                enum Outcome { case queued, granted, cancelled }
                let outcome = state.withLock { state -> Outcome in
                    if Task.isCancelled { return .cancelled }
                    if state.free > 0 {
                        state.free -= 1
                        return .granted
                    }
                    state.waiting.append((id, continuation))
                    return .queued
                }
                switch outcome {
                case .granted: continuation.resume()
                case .cancelled: continuation.resume(throwing: CancellationError())
                case .queued: break
                }
            }
        } onCancel: {
            let removed = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                guard let index = state.waiting.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiting.remove(at: index).continuation
            }
            removed?.resume(throwing: CancellationError())
        }
    }

    /// Gives a slot back: to the longest waiting session, or to the pool.
    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            if !state.waiting.isEmpty { return state.waiting.removeFirst().continuation }
            state.free += 1
            return nil
        }
        next?.resume()
    }
}
