import NIOCore
import PeerShareCore
import PeerShareStore
import PeerShareWire

/// One input to a session's loop: a message from the remote side, a change in the local
/// node, or the end of the connection. Merging them into one stream lets each session be a
/// plain sequential state machine that never polls.
enum SessionInput: Sendable {
    case message(PeerMessage)
    case local(NodeEvent)
    case closed
    case failed(any Error)
}

struct SessionIO {
    private var inputs: AsyncStream<SessionInput>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<PeerMessage>

    init(inputs: AsyncStream<SessionInput>, outbound: NIOAsyncChannelOutboundWriter<PeerMessage>) {
        self.inputs = inputs.makeAsyncIterator()
        self.outbound = outbound
    }

    mutating func next() async -> SessionInput {
        await inputs.next() ?? .closed
    }

    /// The next message from the remote side; local events before it are skipped, since
    /// they are covered by the chunk list the session sends once the handshake is done.
    mutating func nextMessage(during phase: String) async throws -> PeerMessage {
        while true {
            switch await next() {
            case .message(let message): return message
            case .local: continue
            case .closed: throw NodeError.protocolViolation("connection closed during \(phase)")
            case .failed(let error): throw error
            }
        }
    }

    func send(_ message: PeerMessage) async throws {
        try await outbound.write(message)
    }

    /// Ends the conversation politely: half-close our side, then read until the remote
    /// closes its side too, so nothing it sent is reset away.
    mutating func finish() async {
        outbound.finish()
        while true {
            switch await next() {
            case .closed, .failed: return
            case .message, .local: continue
            }
        }
    }

    /// True once a write has failed: the remote has closed its side.
    private(set) var remoteStoppedReading = false

    /// Sends unless the remote has already gone. An uploader uses this so that a downloader
    /// which closes early (it needs nothing more) still has its final messages read.
    mutating func sendIfOpen(_ message: PeerMessage) async {
        guard !remoteStoppedReading else { return }
        do {
            try await outbound.write(message)
        } catch {
            remoteStoppedReading = true
        }
    }
}

/// Runs `body` over a connection with the remote's messages and the node's events merged.
func withSession<R: Sendable>(_ channel: PeerChannel, node: Node, _ body: (inout SessionIO) async throws -> R) async throws -> R {
    let events = await node.subscribe()
    return try await channel.executeThenClose { inbound, outbound in
        let (stream, continuation) = AsyncStream<SessionInput>.makeStream()
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    for try await message in inbound { continuation.yield(.message(message)) }
                    continuation.yield(.closed)
                } catch {
                    continuation.yield(.failed(error))
                }
            }
            group.addTask {
                for await event in events { continuation.yield(.local(event)) }
            }
            defer { group.cancelAll() }
            var io = SessionIO(inputs: stream, outbound: outbound)
            return try await body(&io)
        }
    }
}

extension WireError {
    var isEOFInsideFrame: Bool {
        if case .truncatedAtEOF = self { true } else { false }
    }
}

extension PeerMessage {
    /// A short name for log lines about unexpected messages.
    var label: String { "\(kind)" }
}

/// Builds the manifest from the owner's MANIFEST and HASHES messages.
func receiveManifest(_ io: inout SessionIO, header: ManifestHeader) async throws -> Manifest {
    var hashes: [Digest32] = []
    hashes.reserveCapacity(Int(header.chunkCount))
    while hashes.count < Int(header.chunkCount) {
        guard case .hashes(let first, let batch) = try await io.nextMessage(during: "manifest transfer") else {
            throw NodeError.protocolViolation("expected HASHES while receiving the manifest")
        }
        guard Int(first) == hashes.count, hashes.count + batch.count <= Int(header.chunkCount) else {
            throw NodeError.protocolViolation("HASHES batch at \(first) does not continue the manifest at \(hashes.count)")
        }
        hashes.append(contentsOf: batch)
    }
    do {
        let layout = try ChunkLayout(fileSize: header.fileSize, chunkSize: Int(header.chunkSize))
        return try Manifest(fileName: header.fileName, layout: layout, chunkHashes: hashes, fileHash: header.fileHash)
    } catch {
        throw NodeError.protocolViolation("invalid manifest: \(error)")
    }
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
