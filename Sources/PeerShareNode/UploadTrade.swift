import PeerShareCore
import PeerShareWire

/// The trading state of one upload connection, apart from its I/O: what the downloader
/// holds and what it asks. The connection's gate has let through only the message types
/// valid while trading; this checks what they say and bounds how often they come. The
/// session feeds it every message and acts on the reaction; tests feed it messages directly.
struct UploadTrade {
    /// What a message from the downloader asks the session to do.
    enum Reaction: Equatable {
        case nothing
        /// A new chunk-ID list with this many chunks.
        case listReceived(count: Int, completedNow: Bool)
        /// A chunk the downloader newly holds. `reportMember`: time to pass what it holds on
        /// to the owner's choice of neighbours (every 16 new chunks, and on completion).
        case gained(reportMember: Bool, completedNow: Bool)
        /// A GET-PEERS to answer.
        case answerPeers(wanted: Int)
        case request(ChunkID)
    }

    let remoteName: String
    let chunkCount: Int
    let maxRequestsPerChunk: Int
    private(set) var theirs: ChunkSet
    private var gainsUnreported = 0
    private var reportedComplete = false
    private var peerQuestions = PeerQuestionBudget()
    private var requestsPerChunk: [ChunkID: Int] = [:]

    init(remoteName: String, chunkCount: Int, maxRequestsPerChunk: Int) {
        self.remoteName = remoteName
        self.chunkCount = chunkCount
        self.maxRequestsPerChunk = maxRequestsPerChunk
        theirs = ChunkSet(capacity: chunkCount)
    }

    mutating func receive(_ message: PeerMessage, now: ContinuousClock.Instant = .now) throws(NodeError) -> Reaction {
        switch message {
        case .chunkList(let bitfield):
            let list = try RemoteChunks.list(bitfield, chunkCount: chunkCount, from: remoteName)
            theirs = list
            gainsUnreported = 0
            return .listReceived(count: list.count, completedNow: noteCompletion())
        case .have(let id):
            try RemoteChunks.check(id, chunkCount: chunkCount, from: remoteName, "announced")
            guard theirs.insert(id) else { return .nothing }
            gainsUnreported += 1
            let report = gainsUnreported >= 16 || theirs.isComplete
            if report { gainsUnreported = 0 }
            return .gained(reportMember: report, completedNow: noteCompletion())
        case .getPeers(let wanted):
            do {
                guard try peerQuestions.admit(now: now) else { return .nothing }
            } catch {
                throw .protocolViolation("\(remoteName) \(error)")
            }
            return .answerPeers(wanted: Int(wanted))
        case .request(let id):
            try RemoteChunks.check(id, chunkCount: chunkCount, from: remoteName, "requested")
            let count = requestsPerChunk[id, default: 0] + 1
            requestsPerChunk[id] = count
            guard count <= maxRequestsPerChunk else {
                throw .protocolViolation("\(remoteName) requested chunk \(id) \(count) times: a request flood")
            }
            return .request(id)
        default:
            throw .protocolViolation("\(remoteName) sent an unexpected \(message.label) message")
        }
    }

    /// True once, when the downloader first holds every chunk.
    private mutating func noteCompletion() -> Bool {
        guard theirs.isComplete, !reportedComplete else { return false }
        reportedComplete = true
        return true
    }
}

/// GET-PEERS from one downloader: at most one answered a second; a remote that keeps asking
/// far faster than that is dropped, so a flood costs the node nothing but the decoding.
struct PeerQuestionBudget {
    /// A little under the second between a downloader's questions, so that jitter does not
    /// turn every other one away.
    static let interval = Duration.milliseconds(800)
    /// Unanswered questions tolerated before the connection is closed.
    static let unansweredLimit = 100
    private var lastAnswered: ContinuousClock.Instant?
    private var unanswered = 0

    /// True if this question is answered; false if it is ignored as too soon; throws on a flood.
    mutating func admit(now: ContinuousClock.Instant) throws(NodeError) -> Bool {
        if let lastAnswered, now - lastAnswered < Self.interval {
            unanswered += 1
            guard unanswered <= Self.unansweredLimit else {
                throw .protocolViolation("sent \(unanswered) GET-PEERS too soon after the last answered: a flood")
            }
            return false
        }
        lastAnswered = now
        unanswered = 0
        return true
    }
}
