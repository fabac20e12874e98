import NIOConcurrencyHelpers
import NIOCore
import PeerShareCore
import PeerShareStore
import PeerShareWire

/// One input to a session's loop: a message from the remote side, a change in the local
/// node, a clock tick for the timeouts, or the end of the connection. Merging them into one
/// sequence lets each session be a plain sequential state machine that never polls.
public enum SessionInput: Sendable {
    case message(PeerMessage)
    case local(NodeEvent)
    case tick
    case closed
    case failed(any Error)
}

struct SessionIO {
    private var inputs: NIOAsyncChannelInboundStream<SessionInput>.AsyncIterator
    private let outbound: NIOAsyncChannelOutboundWriter<OutboundFrame>
    let limits: SessionLimits
    private let sendWatch: SendWatch
    private let clock = ContinuousClock()
    private var lastReceived: ContinuousClock.Instant
    private var lastSent: ContinuousClock.Instant
    private let opened: ContinuousClock.Instant
    /// Set once the remote's HELLO has been accepted; before that the handshake timeout runs.
    var handshakeDone = false
    /// This end of the connection, once the handshake has begun.
    private var side: ConversationGate.Side?
    /// Set once our HELLO has gone out; KEEPALIVEs may follow it, never precede it.
    private var helloSent = false

    init(inputs: NIOAsyncChannelInboundStream<SessionInput>, outbound: NIOAsyncChannelOutboundWriter<OutboundFrame>, limits: SessionLimits, sendWatch: SendWatch) {
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
            let input: SessionInput
            do { input = try await inputs.next() ?? .closed } catch { input = .failed(error) }
            switch input {
            case .message(.keepAlive):
                lastReceived = clock.now
                continue
            case .message:
                lastReceived = clock.now
            case .tick:
                let now = clock.now
                if !handshakeDone, now - opened > limits.handshakeTimeout {
                    // A downloader that never says HELLO is one more rogue; an uploader that
                    // never answers may be busy or restarting, and is worth another try.
                    let reason = "no handshake within \(limits.handshakeTimeout.seconds) s"
                    throw side == .downloading ? NodeError.lost(reason) : NodeError.protocolViolation(reason)
                }
                if now - lastReceived > limits.idleTimeout {
                    throw NodeError.lost("nothing received for \(limits.idleTimeout.seconds) s")
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
            case .closed: throw NodeError.lost("connection closed during \(phase)")
            case .failed(let error): throw error
            }
        }
    }

    /// The HELLOs, in the order docs/PROTOCOL.md gives for either side: a downloader speaks
    /// first; an uploader answers once it has read the downloader's, and once `ours` can say
    /// which file it serves. Returns the remote's HELLO; `Handshake` judges it. The uploader
    /// refuses what it can at once (`Handshake.vet`), before it waits to answer.
    mutating func exchangeHellos(side: ConversationGate.Side, ours: () async throws -> Hello) async throws -> Hello {
        self.side = side
        if side == .downloading { try await send(.hello(try await ours())) }
        guard case .hello(let theirs) = try await nextMessage(during: "handshake") else {
            // The connection's gate lets nothing but HELLO through first.
            throw NodeError.protocolViolation("the remote did not open with HELLO")
        }
        handshakeDone = true
        if side == .uploading {
            do throws(HandshakeError) {
                try Handshake.vet(opening: theirs)
            } catch {
                throw NodeError.refusedHello(theirs.name, error)
            }
            // An answer even to a HELLO of another file, refused after it: ours carries our
            // file ID, so that the downloader avoids us at once instead of reconnecting.
            await sendIfOpen(.hello(try await ours()))
        }
        return theirs
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
                let timeout = NodeError.lost("the remote read nothing for \(limits.requestTimeout.seconds) s")
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
/// one-second tick in one input stream. The decoder's messages, the node's events (injected
/// by a sink) and the event loop's timer all enter the channel pipeline and reach the
/// session through the channel's own inbound stream: the session task reads them itself,
/// with no forwarding task and no second channel per message. The stream's back-pressure
/// stops reading the socket while the session is behind, so a remote that floods us is
/// held back by TCP, not buffered.
func withSession<R: Sendable>(_ channel: PeerChannel, node: Node, _ body: (inout SessionIO) async throws -> R) async throws -> R {
    let limits = await node.limits
    let pipeline = channel.channel.pipeline
    let sink = await node.addSink { event in pipeline.fireUserInboundEventTriggered(SessionInjection(input: .local(event))) }
    let sendWatch = SendWatch()
    // A clock for the timeouts: bounded waits, not synchronisation. A send stuck behind a
    // remote that reads nothing is ended from here, since the session is waiting inside it.
    let clock = channel.channel.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
        if sendWatch.expire(after: limits.requestTimeout) { pipeline.close(promise: nil) }
        pipeline.fireUserInboundEventTriggered(SessionInjection(input: .tick))
    }
    defer { clock.cancel() }
    do {
        let result = try await channel.executeThenClose { inbound, outbound in
            var io = SessionIO(inputs: inbound, outbound: outbound, limits: limits, sendWatch: sendWatch)
            return try await body(&io)
        }
        await node.removeSink(sink)
        return result
    } catch {
        await node.removeSink(sink)
        throw error
    }
}

/// A node event or a clock tick on its way into a session's input stream.
struct SessionInjection: Sendable {
    let input: SessionInput
}

/// The last handler before the session: wraps each decoded message as a `SessionInput`, and
/// turns injected events and ticks into inputs of the same stream, in the order they come.
final class SessionInputHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = PeerMessage
    typealias InboundOut = SessionInput

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(wrapInboundOut(.message(unwrapInboundIn(data))))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let injection = event as? SessionInjection else { return context.fireUserInboundEventTriggered(event) }
        // An injection comes outside any read cycle: complete it, or the inbound stream
        // would hold the input until the socket's next read.
        context.fireChannelRead(wrapInboundOut(injection.input))
        context.fireChannelReadComplete()
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

/// Builds a folder's manifest from FOLDER, its FILES and its HASHES (docs/PROTOCOL.md,
/// "Folders"); every entry is checked as it arrives, and the first bad one ends the session.
func receiveFolderManifest(_ io: inout SessionIO, header: FolderHeader) async throws -> Manifest {
    var receiver = FolderReceiver(header)
    while !receiver.entriesComplete {
        guard case .files(let first, let entries) = try await io.nextMessage(during: "manifest transfer") else {
            throw NodeError.protocolViolation("expected FILES while receiving the folder's manifest")
        }
        try receiver.add(first: first, entries)
    }
    while !receiver.isComplete {
        guard case .hashes(let first, let batch) = try await io.nextMessage(during: "manifest transfer") else {
            throw NodeError.protocolViolation("expected HASHES while receiving the manifest")
        }
        try receiver.add(first: first, batch)
    }
    return Manifest(folder: try receiver.manifest())
}

/// The manifest as MANIFEST followed by HASHES batches; a folder's as FOLDER, FILES, HASHES.
func manifestMessages(_ manifest: Manifest) -> [PeerMessage] {
    if let folder = manifest.folder { return folder.messages() }
    return [.manifest(ManifestHeader(manifest))] + PeerMessage.hashBatches(manifest.chunkHashes)
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
