import Crypto
import Logging
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareStore
import PeerShareWire

/// Logging to the console and the index, and the changes sessions wait on.
extension Node {

    /// Logs one activity to the console and to the index's events table.
    public func log(_ kind: EventKind, chunk: ChunkID? = nil, source: ChunkIndex.Source? = nil, _ message: String, level: Logger.Level = .info) {
        let event = EventRecord(kind: kind, chunk: chunk, source: source, message: message)
        recorder.record(event)
        emit(event, level: level)
    }

    /// The console half of an event: its message, with the row's fields as metadata (for
    /// `--log-format json`), taken from the very record that goes into the index.
    func emit(_ event: EventRecord, level: Logger.Level = .info) {
        logger.log(level: level, "\(event.message)", metadata: event.logMetadata)
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

    func unsubscribe(_ id: Int) {
        subscribers[id] = nil
    }

    /// Calls `sink` with every event from now on, on the actor: it must only hand the event
    /// on. Returns the ID `removeSink` takes.
    func addSink(_ sink: @escaping @Sendable (NodeEvent) -> Void) -> Int {
        let id = nextSubscriberID
        nextSubscriberID += 1
        sinks[id] = sink
        return id
    }

    func removeSink(_ id: Int) {
        sinks[id] = nil
    }

    func broadcast(_ event: NodeEvent) {
        for continuation in subscribers.values { continuation.yield(event) }
        for sink in sinks.values { sink(event) }
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
}
