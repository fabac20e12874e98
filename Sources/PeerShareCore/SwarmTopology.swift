/// Who downloads from whom in a local swarm (the demo, tools/bench, tests): for each peer,
/// counted from 0, the peers it names with `--download-from`.
public struct SwarmTopology: Sendable, Equatable {
    public let downloadFrom: [[Int]]

    public var peerCount: Int { downloadFrom.count }

    /// How many peers download from each peer: what it waits for before exiting
    /// (`--wait-for-downloaders`).
    public var downloaders: [Int] {
        var counts = Array(repeating: 0, count: peerCount)
        for sources in downloadFrom { for source in sources { counts[source] += 1 } }
        return counts
    }

    /// Peer i downloads from peer i+1 (the last from the first). One peer: no neighbour.
    public static func ring(peers: Int) -> SwarmTopology {
        precondition(peers >= 1)
        guard peers > 1 else { return SwarmTopology(downloadFrom: [[]]) }
        return SwarmTopology(downloadFrom: (0..<peers).map { [($0 + 1) % peers] })
    }

    /// Each peer downloads from `neighbours` distinct others (all others if fewer), chosen
    /// at random from `seed`. The first of each peer's neighbours is its successor on a
    /// random cycle through every peer, so every chunk can reach every peer however the
    /// rest fall; the others are drawn uniformly.
    public static func mesh(peers: Int, neighbours: Int, seed: UInt64) -> SwarmTopology {
        precondition(peers >= 1 && neighbours >= 1)
        guard peers > 1 else { return SwarmTopology(downloadFrom: [[]]) }
        var random = SeededGenerator(seed: seed)
        let cycle = Array(0..<peers).shuffled(using: &random)
        var lists = Array(repeating: [Int](), count: peers)
        for (position, peer) in cycle.enumerated() {
            lists[peer] = [cycle[(position + 1) % peers]]
        }
        let k = min(neighbours, peers - 1)
        for peer in 0..<peers {
            let others = (0..<peers).filter { $0 != peer && $0 != lists[peer][0] }.shuffled(using: &random)
            lists[peer] += others.prefix(k - 1)
        }
        return SwarmTopology(downloadFrom: lists)
    }
}
