import PeerShareCore

/// Which messages a connection accepts next (docs/PROTOCOL.md, "Which side sends what").
///
/// The frame decoder asks the gate about each frame's type byte before it parses the
/// payload, so a message that has no business where the conversation is (a MANIFEST from a
/// downloader, anything before HELLO, a PIECE on an upload connection) is refused without
/// a byte of it being interpreted. After parsing, the gate follows the conversation: the
/// remote's HELLO role, the manifest's chunk count, how far the HASHES have got.
public struct ConversationGate: Sendable {
    /// Which end of the connection this node is. Connections are directional: the side
    /// that connects downloads, the side that accepts uploads.
    public enum Side: Sendable {
        /// We accepted the connection: the remote downloads from us.
        case uploading
        /// We opened the connection: the remote (the owner or a peer) uploads to us.
        case downloading
    }

    enum Phase: Sendable, Equatable {
        case awaitingHello
        case awaitingManifest
        /// A peer we download from opens with MANIFEST if we asked for it (a HELLO with
        /// the zero file ID), or goes straight to trading.
        case peerMayOpenWithManifest
        /// A folder's FILES after FOLDER (docs/PROTOCOL.md, "Folders"); its HASHES follow.
        case receivingEntries(received: Int, expected: Int, chunkCount: Int)
        case receivingHashes(HashesCursor)
        case awaitingShare
        case trading
    }

    public let side: Side
    private(set) var phase = Phase.awaitingHello
    /// The role the remote's HELLO claimed.
    private var remoteRole: Hello.Role?
    /// Set right after a manifest's last HASHES: a private swarm's MANIFEST-SIGNATURE may
    /// come next, and nowhere else.
    private var signatureMayFollow = false

    public init(side: Side) {
        self.side = side
    }

    /// Refuses a message type that is not valid where the conversation is.
    public func admit(_ kind: PeerMessage.Kind) throws(WireError) {
        if let refusal = refusal(of: kind) { throw .notAllowed(kind, refusal) }
    }

    /// Why `kind` is refused now, or nil if it is allowed.
    private func refusal(of kind: PeerMessage.Kind) -> String? {
        switch phase {
        case .awaitingHello:
            return kind == .hello ? nil : "before HELLO"
        case _ where kind == .hello:
            return "after the HELLO already received"
        case _ where kind == .keepAlive:
            return nil
        case _ where kind == .manifestSignature:
            return signatureMayFollow ? nil : "except right after a manifest's last HASHES"
        case .awaitingManifest:
            return kind == .manifest || kind == .folder ? nil : "while the owner's MANIFEST is due"
        case .peerMayOpenWithManifest where kind == .manifest || kind == .folder:
            return nil
        case .receivingEntries(let received, let expected, _):
            return kind == .files ? nil : "while FILES are due (\(received) of \(expected) entries received)"
        case .receivingHashes(let cursor):
            return kind == .hashes ? nil : "while HASHES are due (\(cursor.received) of \(cursor.expected) hashes received)"
        case .awaitingShare:
            return kind == .share ? nil : "while the owner's SHARE is due"
        case .trading, .peerMayOpenWithManifest:
            switch (side, kind) {
            case (.uploading, .chunkList), (.uploading, .have), (.uploading, .request), (.uploading, .getPeers): return nil
            case (.downloading, .chunkList), (.downloading, .have), (.downloading, .piece), (.downloading, .reject), (.downloading, .peers): return nil
            case (.uploading, .manifest), (.uploading, .folder), (.uploading, .files), (.uploading, .hashes), (.uploading, .share):
                return "from a downloader"
            case (.uploading, _): return "on an upload connection"
            case (.downloading, .request), (.downloading, .getPeers): return "on a download connection"
            case (.downloading, _): return remoteRole == .owner ? "after the owner's manifest and share" : "from a peer"
            }
        }
    }

    /// The owner hands out a share after its manifest; a peer has none to give.
    private var afterManifest: Phase { remoteRole == .owner ? .awaitingShare : .trading }

    /// Follows the conversation past a parsed message.
    public mutating func passed(_ message: PeerMessage) throws(WireError) {
        if case .keepAlive = message { return }
        let signatureWasAllowed = signatureMayFollow
        signatureMayFollow = false
        if case .manifestSignature = message, signatureWasAllowed { return }
        switch (phase, message) {
        case (.awaitingHello, .hello(let hello)):
            remoteRole = hello.role
            switch (side, hello.role) {
            case (.downloading, .owner): phase = .awaitingManifest
            case (.downloading, .peer): phase = .peerMayOpenWithManifest
            case (.uploading, .peer): phase = .trading
            case (.uploading, .owner): throw .notAllowed(.hello, "with the owner's role from a downloader: the owner never downloads")
            }
        case (.awaitingManifest, .manifest(let header)), (.peerMayOpenWithManifest, .manifest(let header)):
            phase = header.chunkCount == 0 ? afterManifest : .receivingHashes(HashesCursor(expected: Int(header.chunkCount)))
            signatureMayFollow = header.chunkCount == 0
        case (.awaitingManifest, .folder(let header)), (.peerMayOpenWithManifest, .folder(let header)):
            phase = .receivingEntries(received: 0, expected: Int(header.entryCount), chunkCount: Int(header.chunkCount))
        case (.peerMayOpenWithManifest, _):
            phase = .trading
        case (.receivingEntries(let received, let expected, let chunkCount), .files(let first, let entries)):
            guard Int(first) == received, entries.count <= expected - received else {
                throw .malformed(.files, "the batch of \(entries.count) entries from \(first) does not continue the folder at entry \(received) of \(expected)")
            }
            let now = received + entries.count
            if now < expected {
                phase = .receivingEntries(received: now, expected: expected, chunkCount: chunkCount)
            } else {
                phase = chunkCount == 0 ? afterManifest : .receivingHashes(HashesCursor(expected: chunkCount))
                signatureMayFollow = chunkCount == 0
            }
        case (.receivingHashes(var cursor), .hashes(let first, let hashes)):
            try cursor.advance(first: first, count: hashes.count)
            phase = cursor.isComplete ? afterManifest : .receivingHashes(cursor)
            signatureMayFollow = cursor.isComplete
        case (.awaitingShare, .share):
            phase = .trading
        default:
            break
        }
    }
}

/// How far the HASHES after a MANIFEST have got: batches must continue exactly where the
/// last ended and stop at the chunk count.
public struct HashesCursor: Sendable, Equatable {
    public let expected: Int
    public private(set) var received = 0

    public init(expected: Int) {
        self.expected = expected
    }

    public var isComplete: Bool { received == expected }

    public mutating func advance(first: UInt32, count: Int) throws(WireError) {
        guard Int(first) == received else {
            throw .malformed(.hashes, "the batch starts at chunk \(first), but the manifest continues at chunk \(received)")
        }
        // count ≤ 16,384 and received ≤ expected ≤ 8,000,000: the sum cannot overflow.
        guard count <= expected - received else {
            throw .malformed(.hashes, "the batch of \(count) hashes from chunk \(first) runs past the chunk count \(expected)")
        }
        received += count
    }
}

/// Collects a manifest from MANIFEST and its HASHES on a download connection.
public struct ManifestReceiver: Sendable {
    public let header: ManifestHeader
    public let layout: ChunkLayout
    private var cursor: HashesCursor
    private var hashes: [Digest32] = []

    public init(_ header: ManifestHeader) throws(WireError) {
        do {
            layout = try ChunkLayout(fileSize: header.fileSize, chunkSize: Int(header.chunkSize))
        } catch {
            throw .malformed(.manifest, error.description)
        }
        guard layout.chunkCount == Int(header.chunkCount) else {
            throw .malformed(.manifest, "chunk count \(header.chunkCount) does not match \(header.fileSize) bytes in chunks of \(header.chunkSize)")
        }
        self.header = header
        cursor = HashesCursor(expected: layout.chunkCount)
    }

    public var isComplete: Bool { cursor.isComplete }

    /// Adds one HASHES batch. Memory grows with the hashes received, never with the count a
    /// remote declared: a 60-byte MANIFEST cannot make us reserve 256 MB.
    public mutating func add(first: UInt32, _ batch: [Digest32]) throws(WireError) {
        try cursor.advance(first: first, count: batch.count)
        hashes.append(contentsOf: batch)
    }

    public func manifest() throws(WireError) -> Manifest {
        guard isComplete else {
            throw .malformed(.hashes, "the manifest ended after \(cursor.received) of \(cursor.expected) hashes")
        }
        do {
            return try Manifest(fileName: header.fileName, layout: layout, chunkHashes: hashes, fileHash: header.fileHash)
        } catch {
            throw .malformed(.manifest, error.description)
        }
    }
}
