/// Chooses which chunks to request next from one source.
///
/// A pure function of what we hold, what the source offers, how many neighbours offer each
/// chunk and what is already on its way, so it can be tested from plain sets (see
/// ChunkPickerTests). The rules:
///
/// 1. Only chunks the source offers and we lack (and, from the owner, only the share).
/// 2. Rarest first: chunks that fewer neighbours offer come first, so a chunk only one
///    neighbour has is fetched while that neighbour is still there. Ties go to the lowest
///    ID: in a ring (one neighbour, every count equal) every peer then forwards chunks in
///    the same order, so what one neighbour just received is what the next one asks for.
/// 3. Never a chunk already in flight from another source, except in the endgame: once at
///    most `endgameThreshold` chunks are missing, a chunk in flight elsewhere may be asked
///    for again (at most `maximumRequestsPerChunk` sources at once, never twice from the
///    same source), least-requested first, so slow sources cannot hold the download at 99%.
public enum ChunkPicker {
    /// Sources asked for one chunk at once in the endgame. Three, not two: the first two
    /// copies may both be on slow sources (the owner and a rate-limited peer, say), and
    /// there is no CANCEL, so each extra copy may cost a whole transfer.
    public static let maximumRequestsPerChunk = 3
    /// Missing chunks at or below which the endgame starts.
    public static let defaultEndgameThreshold = 16

    /// Up to `limit` chunks to request from one source, best first.
    /// - Parameters:
    ///   - held: chunks we hold (or have verified and are storing).
    ///   - offered: chunks the source holds.
    ///   - availability: per chunk, how many neighbours offer it; nil treats every chunk alike.
    ///   - inFlight: requests outstanding per chunk, from every source.
    ///   - requestedHere: requests outstanding from this source.
    ///   - wanted: restricts the picks (the owner serves only a peer's share).
    public static func pick(
        held: ChunkSet,
        offered: ChunkSet,
        availability: [Int]? = nil,
        inFlight: [ChunkID: Int] = [:],
        requestedHere: Set<ChunkID> = [],
        wanted: ChunkSet? = nil,
        endgameThreshold: Int = defaultEndgameThreshold,
        limit: Int
    ) -> [ChunkID] {
        guard limit > 0, offered.capacity == held.capacity else { return [] }
        var candidates = offered.subtracting(held)
        if let wanted {
            candidates = candidates.subtracting(candidates.subtracting(wanted))
        }
        if candidates.isEmpty { return [] }
        func rarity(_ id: ChunkID) -> Int {
            guard let availability, id.index < availability.count else { return 1 }
            return availability[id.index]
        }

        // Normal phase: chunks nobody is fetching, rarest first.
        var best = BestPicks(limit: limit)
        for id in candidates.members where inFlight[id, default: 0] == 0 && !requestedHere.contains(id) {
            best.offer(id, key: (rarity(id), 0))
            // Candidates come in ID order, so once full with the rarest possible, nothing can beat them.
            if best.isFull && best.worstKey.0 <= 1 { break }
        }
        var picks = best.ids
        let missing = held.capacity - held.count
        guard picks.count < limit, missing <= endgameThreshold else { return picks }

        // Endgame: chunks already in flight elsewhere, least-requested first, then rarest.
        var endgame = BestPicks(limit: limit - picks.count)
        for id in candidates.members where !requestedHere.contains(id) {
            let requests = inFlight[id, default: 0]
            guard requests > 0, requests < maximumRequestsPerChunk else { continue }
            endgame.offer(id, key: (requests, rarity(id)))
        }
        picks += endgame.ids
        return picks
    }

    /// How many of `neighbours` offer each chunk.
    public static func availability(capacity: Int, of neighbours: some Sequence<ChunkSet>) -> [Int] {
        var counts = Array(repeating: 0, count: capacity)
        for offer in neighbours where offer.capacity == capacity {
            for id in offer.sorted { counts[id.index] += 1 }
        }
        return counts
    }
}

/// The `limit` best IDs seen, by ascending key then ascending ID (IDs arrive ascending, so
/// an equal key never displaces an earlier one).
private struct BestPicks {
    let limit: Int
    private var entries: [(key: (Int, Int), id: ChunkID)] = []

    init(limit: Int) { self.limit = limit }

    var isFull: Bool { entries.count >= limit }
    var worstKey: (Int, Int) { entries.last?.key ?? (Int.max, Int.max) }
    var ids: [ChunkID] { entries.map(\.id) }

    mutating func offer(_ id: ChunkID, key: (Int, Int)) {
        if isFull && !(key < worstKey) { return }
        let position = entries.firstIndex { key < $0.key } ?? entries.count
        entries.insert((key, id), at: position)
        if entries.count > limit { entries.removeLast() }
    }
}
