import AsyncAlgorithms
import NIOConcurrencyHelpers
import NIOCore
import PeerShareCore
import PeerShareStore
import PeerShareWire

/// One input to a session's loop: a message from the remote side, a change in the local
/// node, a clock tick for the timeouts, or the end of the connection. Merging them into one
/// sequence lets each session be a plain sequential state machine that never polls.
enum SessionInput: Sendable {
    case message(PeerMessage)
    case local(NodeEvent)
    case tick
    case closed
    case failed(any Error)
}

struct SessionIO {
    private var inputs: AsyncChannel<SessionInput>.Iterator
    private let outbound: NIOAsyncChannelOutboundWriter<OutboundFrame>
    let limits: SessionLimits
    private let sendWatch: SendWatch
    private let clock = ContinuousClock()
    private var lastReceived: ContinuousClock.Instant
    private var lastSent: ContinuousClock.Instant
    private let opened: ContinuousClock.Instant
    /// Set once the remote's HELLO has been accepted; before that the handshake timeout runs.
    var handshakeDone = false
    /// Set once our HELLO has gone out; KEEPALIVEs may follow it, never precede it.
    private var helloSent = false

    init(inputs: AsyncChannel<SessionInput>, outbound: NIOAsyncChannelOutboundWriter<OutboundFrame>, limits: SessionLimits, sendWatch: SendWatch) {
        self.sendWatch = sendWatch
        self.inputs = inputs.makeAsyncIterator()
        self.outbound = outbound
        self.limits = limits
        opened = clock.now
        lastReceived = opened
        lastSent = opened
    }

    /// The next input. Ticks are handled here (timeouts and keepalives) and only passed on
    /// so that sessions can check their own deadlines; KEEPALIVEs are absorbed.
    mutating func next() async throws -> SessionInput {
        while true {
            if let stalled { throw stalled }
            let input = await inputs.next() ?? .closed
            switch input {
            case .message(.keepAlive):
                lastReceived = clock.now
                continue
            case .message:
                lastReceived = clock.now
            case .tick:
                let now = clock.now
                if !handshakeDone, now - opened > limits.handshakeTimeout {
                    throw NodeError.protocolViolation("no handshake within \(limits.handshakeTimeout.seconds) s")
                }
                if now - lastReceived > limits.idleTimeout {
                    throw NodeError.protocolViolation("nothing received for \(limits.idleTimeout.seconds) s")
                }
                // Never before our own HELLO: the remote's gate refuses anything before it.
                if handshakeDone, helloSent, now - lastSent > limits.keepAliveInterval {
                    await sendIfOpen(.keepAlive)
                }
            default:
                break
            }
            return input
        }
    }

    /// The next message from the remote side; local events before it are skipped, since
    /// they are covered by the chunk list the session sends once the handshake is done.
    mutating func nextMessage(during phase: String) async throws -> PeerMessage {
        while true {
            switch try await next() {
            case .message(let message): return message
            case .local, .tick: continue
            case .closed: throw NodeError.protocolViolation("connection closed during \(phase)")
            case .failed(let error): throw error
            }
        }
    }

    /// Sends, waiting for TCP to drain if it must, but not forever: the session's clock
    /// closes a connection whose remote has read nothing for the request timeout while we
    /// wait to send, so it cannot pin a connection slot (see `withSession`).
    mutating func send(_ message: PeerMessage) async throws {
        try await send(frame: .message(message))
    }

    mutating func send(frame: OutboundFrame) async throws {
        try await send(frames: CollectionOfOne(frame))
    }

    /// Sends several messages with one flush: one write to the socket, not one each.
    mutating func send(_ messages: [PeerMessage]) async throws {
        guard !messages.isEmpty else { return }
        try await send(frames: messages.lazy.map { .message($0) })
    }

    private mutating func send(frames: some Sequence<OutboundFrame> & Sendable) async throws {
        if !helloSent, case .message(.hello)? = frames.first(where: { _ in true }) { helloSent = true }
        sendWatch.begin()
        defer { sendWatch.end() }
        do {
            try await outbound.write(contentsOf: frames)
        } catch {
            if sendWatch.timedOut {
                let timeout = NodeError.protocolViolation("the remote read nothing for \(limits.requestTimeout.seconds) s")
                stalled = timeout
                throw timeout
            }
            throw error
        }
        lastSent = clock.now
    }

    /// Set when a send timed out; the next read ends the session with it.
    private var stalled: NodeError?

    /// True once a write has failed: the remote has closed its side.
    private(set) var remoteStoppedReading = false

    /// Sends unless the remote has already gone. An uploader uses this so that a downloader
    /// which closes early (it needs nothing more) still has its final messages read.
    mutating func sendIfOpen(_ message: PeerMessage) async {
        await sendIfOpen(frame: .message(message))
    }

    mutating func sendIfOpen(frame: OutboundFrame) async {
        await sendIfOpen(frames: CollectionOfOne(frame))
    }

    mutating func sendIfOpen(_ messages: [PeerMessage]) async {
        guard !messages.isEmpty else { return }
        await sendIfOpen(frames: messages.lazy.map { .message($0) })
    }

    private mutating func sendIfOpen(frames: some Sequence<OutboundFrame> & Sendable) async {
        guard !remoteStoppedReading else { return }
        do {
            try await send(frames: frames)
        } catch {
            remoteStoppedReading = true
        }
    }

    /// Ends the conversation politely: half-close our side, then read until the remote
    /// closes its side too, so nothing it sent is reset away.
    mutating func finish() async throws {
        outbound.finish()
        while true {
            switch try await next() {
            case .closed, .failed: return
            case .message, .local, .tick: continue
            }
        }
    }
}

/// Runs `body` over a connection with the remote's messages, the node's events and a
/// one-second tick merged. The merge is an `AsyncChannel`, whose `send` waits for the
/// session to take the input: a remote that floods us is held back by TCP, not buffered.
func withSession<R: Sendable>(_ channel: PeerChannel, node: Node, _ body: (inout SessionIO) async throws -> R) async throws -> R {
    let events = await node.subscribe()
    let limits = await node.limits
    return try await channel.executeThenClose { inbound, outbound in
        let merged = AsyncChannel<SessionInput>()
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await message in inbound { await merged.send(.message(message)) }
                    await merged.send(.closed)
                } catch {
                    await merged.send(.failed(error))
                }
            }
            group.addTask {
                for await event in events { await merged.send(.local(event)) }
            }
            let sendWatch = SendWatch()
            group.addTask {
                // A clock for the timeouts: bounded waits, not synchronisation. A send stuck
                // behind a remote that reads nothing is ended from here, since the session
                // itself is waiting inside that send.
                while !Task.isCancelled {
                    try await Task.sleep(for: .seconds(1))
                    if sendWatch.expire(after: limits.requestTimeout) { channel.channel.close(promise: nil) }
                    await merged.send(.tick)
                }
            }
            defer { group.cancelAll() }
            var io = SessionIO(inputs: merged, outbound: outbound, limits: limits, sendWatch: sendWatch)
            return try await body(&io)
        }
    }
}

extension PeerMessage {
    /// A short name for log lines about unexpected messages.
    var label: String { "\(kind)" }
}

/// Builds the manifest from the owner's MANIFEST and HASHES messages. The connection's
/// gate has already refused HASHES out of order; the receiver checks again, since it is
/// what the manifest is built from.
func receiveManifest(_ io: inout SessionIO, header: ManifestHeader) async throws -> Manifest {
    var receiver = try ManifestReceiver(header)
    while !receiver.isComplete {
        guard case .hashes(let first, let batch) = try await io.nextMessage(during: "manifest transfer") else {
            throw NodeError.protocolViolation("expected HASHES while receiving the manifest")
        }
        try receiver.add(first: first, batch)
    }
    return try receiver.manifest()
}

/// The manifest as MANIFEST followed by HASHES batches.
func manifestMessages(_ manifest: Manifest) -> [PeerMessage] {
    var messages: [PeerMessage] = [.manifest(ManifestHeader(manifest))]
    var first = 0
    while first < manifest.chunkCount {
        let end = min(first + WireLimits.maximumHashesPerMessage, manifest.chunkCount)
        messages.append(.hashes(first: UInt32(first), Array(manifest.chunkHashes[first..<end])))
        first = end
    }
    return messages
}

/// When the session's current send began, shared with its clock task.
final class SendWatch: Sendable {
    private struct State {
        var pendingSince: ContinuousClock.Instant?
        var timedOut = false
    }
    private let state = NIOLockedValueBox(State())

    func begin() { state.withLockedValue { $0.pendingSince = .now } }
    func end() { state.withLockedValue { $0.pendingSince = nil } }
    var timedOut: Bool { state.withLockedValue { $0.timedOut } }

    /// True (once) if a send has been waiting longer than `limit`.
    func expire(after limit: Duration) -> Bool {
        state.withLockedValue {
            guard let since = $0.pendingSince, !$0.timedOut, ContinuousClock.now - since > limit else { return false }
            $0.timedOut = true
            return true
        }
    }
}
