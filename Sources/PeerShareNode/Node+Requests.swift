import NIOCore
import PeerShareCore
import PeerShareStore
import PeerShareWire

/// Requests: claiming chunks to fetch from a source, and ending the claims that were not
/// answered.
extension Node {
    /// Picks chunks to fetch from a source and marks them in flight, so that no other
    /// session requests the same chunk at the same time.
    /// Each pick is logged as a `chunk_requested` event from `source` (in the same visit to
    /// the actor: a request costs the session one hop, not two).
    /// `neighbour` (from `registerNeighbour`) records the source's offer for the rarity
    /// counts; `requestedHere` is what the session already awaits from it.
    func claim(offered: ChunkSet, fromOwner: Bool, limit: Int, source: ChunkIndex.Source,
               neighbour: Int? = nil, requestedHere: Set<ChunkID> = []) -> [ChunkID] {
        guard manifest != nil, offered.capacity == held.capacity else { return [] }
        if let neighbour { updateOffer(of: neighbour, to: offered) }
        // The lack that `noteSourcesLackingWithoutOwner` counts from is over once covered.
        if lackingSourcesSince != nil, neighboursCoverMissing { lackingSourcesSince = nil }
        // The owner is asked only for the share, unless the neighbours were given up on.
        let wanted = fromOwner && !ownerServesEverything ? share : nil
        var have = held
        for id in storing { have.insert(id) }
        let picks = ChunkPicker.pick(held: have, offered: offered, availability: availability, inFlight: inFlight,
                                     requestedHere: requestedHere, wanted: wanted, limit: limit)
        let now = Clock.nowMicros()
        for id in picks {
            inFlight[id, default: 0] += 1
            live.requested(id, from: source.name, atMicros: now)
            let again = inFlight[id, default: 0] > 1 ? " (endgame: also requested elsewhere)" : ""
            log(.chunkRequested, chunk: id, source: source, "requested chunk \(id) from \(source.name)\(again)")
        }
        return picks
    }

    /// Requests still unanswered when their connection ended: each is logged, with how long
    /// it waited and why, for `peershare-inspect why`, and released for another source.
    func abandon(_ requests: [ChunkID: Int64], from source: ChunkIndex.Source, because error: any Error) {
        let now = Clock.nowMicros()
        for (id, startedAt) in requests.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            let waited = formatMillis(Double(max(0, now - startedAt)) / 1000)
            log(.requestAbandoned, chunk: id, source: source, "request for chunk \(id) to \(source.name) abandoned after \(waited) ms: \(error)")
        }
        release(requests.keys, from: source)
    }

    /// What a source offers as its connection stands: the last holders of each chunk, on record.
    nonisolated func recordOffer(_ offered: ChunkSet, from source: ChunkIndex.Source) {
        recorder.record(ChunkIndex.Offer(source: source, offered: offered))
    }

    /// Ends requests sent to `source` without their chunks: rejected, or their connection is over.
    func release(_ ids: some Sequence<ChunkID>, from source: ChunkIndex.Source) {
        var any = false
        for id in ids {
            live.requestEnded(id, at: source.name)
            if releaseOne(id) { any = true }
        }
        if any { broadcast(.stateChanged) }
    }

    /// Ends one request for `id`; true if one was outstanding.
    @discardableResult
    func releaseOne(_ id: ChunkID) -> Bool {
        guard let count = inFlight[id] else { return false }
        inFlight[id] = count > 1 ? count - 1 : nil
        return true
    }
}
