/// Decides which chunks the owner hands to each arriving peer.
///
/// One rule covers every case: each arrival gets the `shareSize` chunks that the owner has
/// handed out least so far, lowest ID first on ties. "Handed out" counts every share a chunk
/// is in and every copy the owner sent outside a share (to a peer that fell back on it): the
/// owner's best knowledge of how many copies the swarm holds. With `expectedPeers` peers the
/// first that many arrivals therefore get disjoint shares that together cover the file, and
/// any later arrival still gets a share: the chunks the swarm holds least.
public struct ShareAssigner: Sendable {
    public let chunkCount: Int
    public let expectedPeers: Int
    private(set) var handouts: [Int]
    private(set) var shares: [String: [ChunkID]] = [:]
    /// The same shares as sets, so that counting a sent chunk costs no search.
    private var shareMembers: [String: ChunkSet] = [:]

    public init(chunkCount: Int, expectedPeers: Int) {
        precondition(expectedPeers > 0)
        self.chunkCount = chunkCount
        self.expectedPeers = expectedPeers
        self.handouts = Array(repeating: 0, count: chunkCount)
    }

    /// Chunks per share for a late arrival: an even split, rounded up.
    public var shareSize: Int {
        (chunkCount + expectedPeers - 1) / expectedPeers
    }

    /// The size of the share of the `arrival`-th distinct peer (from 0). The first
    /// `expectedPeers` sizes add up to exactly the chunk count, so those shares are disjoint
    /// and cover the file; they differ by at most one chunk.
    public func shareSize(forArrival arrival: Int) -> Int {
        guard arrival < expectedPeers else { return shareSize }
        return (arrival + 1) * chunkCount / expectedPeers - arrival * chunkCount / expectedPeers
    }

    /// The share of a peer. A peer that asks again under the same name gets the same share,
    /// so a restarted peer does not take a second slice of the file.
    /// A peer that `findsNeighbours` through the owner, arriving once every chunk has been
    /// handed out, gets only chunks never handed out: its neighbours hold the rest, and the
    /// owner serves each copy of the file once, not once per arrival.
    public mutating func share(for peerName: String, findsNeighbours: Bool = false) -> [ChunkID] {
        if let existing = shares[peerName] { return existing }
        // Stable sort by handout count keeps ties in ID order.
        let candidates = handouts.indices.filter { !findsNeighbours || shares.count < expectedPeers || handouts[$0] == 0 }
        let picked = candidates
            .sorted { (handouts[$0], $0) < (handouts[$1], $1) }
            .prefix(shareSize(forArrival: shares.count))
            .sorted()
        for i in picked { handouts[i] += 1 }
        let share = picked.map { ChunkID(UInt32($0)) }
        shares[peerName] = share
        shareMembers[peerName] = ChunkSet(capacity: chunkCount, share)
        return share
    }

    public func handoutCount(of id: ChunkID) -> Int { handouts[id.index] }

    /// Counts a chunk the owner sent to a peer outside that peer's share (a fallback): the
    /// swarm now holds one more copy of it, so later shares favour other chunks.
    public mutating func noteSent(_ id: ChunkID, to peerName: String) {
        guard id.index < chunkCount, shareMembers[peerName]?.contains(id) != true else { return }
        handouts[id.index] += 1
    }
}

extension ShareAssigner {
    /// Replays a share handed out before a restart.
    public mutating func restore(_ share: [ChunkID], for peerName: String) {
        guard shares[peerName] == nil else { return }
        let valid = share.filter { $0.index < chunkCount }
        for id in valid { handouts[id.index] += 1 }
        shares[peerName] = valid
        shareMembers[peerName] = ChunkSet(capacity: chunkCount, valid)
    }
}
