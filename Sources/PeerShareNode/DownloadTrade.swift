import NIOCore
import PeerShareCore
import PeerShareWire

/// The trading state of one download connection, apart from its I/O: what the uploader
/// offers, what has been asked of it, and what each of its messages means here. The
/// connection's gate has let through only the message types valid while trading; this
/// checks what they say. The session feeds it every message and acts on the reaction;
/// tests feed it messages directly.
struct DownloadTrade {
    /// What a message from the uploader asks the session to do.
    enum Reaction: Equatable {
        case nothing
        /// A new chunk-ID list, with this many chunks offered.
        case listReceived(count: Int)
        /// A requested chunk, to verify and keep; `startedAt` is when it was requested.
        case piece(ChunkID, ByteBuffer, startedAt: Int64)
        /// A chunk nobody asked for: dropped, and logged.
        case unrequestedPiece(ChunkID)
        /// The uploader does not hold a requested chunk after all: release the claim.
        case rejected(ChunkID)
        /// The answer to a GET-PEERS.
        case peers([PeerAddress])
    }

    let remoteName: String
    let chunkCount: Int
    let badChunkLimit: Int
    private(set) var offered: ChunkSet
    /// Requests outstanding here, with when each was sent (microseconds).
    private(set) var requested: [ChunkID: Int64] = [:]
    private(set) var badChunks = 0
    /// PEERS is only ever an answer: one the uploader was not asked for is refused, so that
    /// no remote fills this peer's list of candidates unasked.
    private var questionsOpen = 0
    /// The last time this uploader offered something new, for stall detection.
    private(set) var lastUseful: ContinuousClock.Instant

    init(remoteName: String, chunkCount: Int, badChunkLimit: Int, now: ContinuousClock.Instant = .now) {
        self.remoteName = remoteName
        self.chunkCount = chunkCount
        self.badChunkLimit = badChunkLimit
        offered = ChunkSet(capacity: chunkCount)
        lastUseful = now
    }

    mutating func requesting(_ ids: [ChunkID], atMicros now: Int64) {
        for id in ids { requested[id] = now }
    }

    mutating func askingForPeers() {
        questionsOpen += 1
    }

    mutating func receive(_ message: PeerMessage, now: ContinuousClock.Instant = .now) throws(NodeError) -> Reaction {
        switch message {
        case .chunkList(let bitfield):
            let list = try RemoteChunks.list(bitfield, chunkCount: chunkCount, from: remoteName)
            offered = list
            lastUseful = now
            return .listReceived(count: list.count)
        case .have(let id):
            try RemoteChunks.check(id, chunkCount: chunkCount, from: remoteName, "announced")
            if offered.insert(id) { lastUseful = now }
            return .nothing
        case .piece(let id, let data):
            guard let startedAt = requested.removeValue(forKey: id) else { return .unrequestedPiece(id) }
            return .piece(id, data, startedAt: startedAt)
        case .reject(let id):
            guard requested.removeValue(forKey: id) != nil else { return .nothing }
            offered.remove(id)
            return .rejected(id)
        case .peers(let peers):
            guard questionsOpen > 0 else { throw .protocolViolation("\(remoteName) sent PEERS it was not asked for") }
            questionsOpen -= 1
            return .peers(peers)
        default:
            throw .protocolViolation("\(remoteName) sent an unexpected \(message.label) message")
        }
    }

    /// A chunk from this uploader failed its hash: it is not asked for it again, and the
    /// uploader is dropped once it has done this `badChunkLimit` times.
    mutating func pieceFailed(_ id: ChunkID) throws(NodeError) {
        offered.remove(id)
        badChunks += 1
        if badChunks >= badChunkLimit {
            throw .misbehaving("\(remoteName) sent \(badChunks) chunks that failed verification")
        }
    }

    /// The age of the oldest request still unanswered, in microseconds.
    func oldestRequestAge(nowMicros: Int64) -> Int64 {
        guard let oldest = requested.values.min() else { return 0 }
        return nowMicros - oldest
    }

    /// Nothing asked and nothing new offered for `limit`.
    func isStalled(now: ContinuousClock.Instant, after limit: Duration) -> Bool {
        requested.isEmpty && now - lastUseful > limit
    }
}

/// What both trades check in the chunk IDs and chunk-ID lists a remote sends.
enum RemoteChunks {
    static func list(_ bitfield: [UInt8], chunkCount: Int, from remote: String) throws(NodeError) -> ChunkSet {
        guard let list = ChunkSet(capacity: chunkCount, bitfield: bitfield) else {
            throw .protocolViolation("\(remote) sent a chunk-ID list of the wrong length")
        }
        return list
    }

    /// `verb` says what the remote did with the chunk: "announced", "requested".
    static func check(_ id: ChunkID, chunkCount: Int, from remote: String, _ verb: String) throws(NodeError) {
        guard Int(id.rawValue) < chunkCount else {
            throw .protocolViolation("\(remote) \(verb) chunk \(id), outside 0..<\(chunkCount)")
        }
    }
}
