import NIOPosix
import PeerShareCore

/// A node's index on a thread of its own. SQLite work never runs on the cooperative pool
/// or an event loop, and a slow commit holds up no session: callers suspend until their
/// turn. One thread also means one connection used from one place, in order.
public final class IndexQueue: @unchecked Sendable {
    // @unchecked: `index` is touched only on `thread`, one job at a time.
    private let index: ChunkIndex
    private let thread: NIOThreadPool

    /// Takes over `index`: from now on it is used only through `run`.
    public init(_ index: ChunkIndex) {
        self.index = index
        self.thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
    }

    /// Runs `body` with the index on the index's thread. A cancelled caller still gets its
    /// work done: a node that is stopping records its last rows and how the run ended.
    public func run<T: Sendable>(_ body: @escaping @Sendable (ChunkIndex) throws -> T) async throws -> T {
        try await thread.runIfActive(eventLoop: loop) { try body(self.index) }.get()
    }

    /// Where the futures of `run` complete; any loop will do.
    private let loop = MultiThreadedEventLoopGroup.singleton.next()

    /// Closes the index (recording how the run ended) and stops the thread. Returns the
    /// failure to record the end, for the caller to log.
    public func close(outcome: String, cleanly: Bool) async -> (any Error)? {
        let failure: (any Error)?
        do {
            failure = try await run { $0.close(outcome: outcome, cleanly: cleanly) }
        } catch {
            failure = error
        }
        try? await thread.shutdownGracefully()
        return failure
    }
}
