/// Chooses which chunks to request next from one source.
///
/// A pure function of what we hold, what the source offers and what is already on its way,
/// so it can be tested from plain sets (see ChunkPickerTests).
public enum ChunkPicker {
    /// Up to `limit` chunks that the source holds, we lack, and nobody is fetching yet,
    /// restricted to `wanted` when given (the owner serves only a peer's share).
    /// Lowest IDs first: in a ring every peer then forwards chunks in the same order,
    /// so what one neighbour just received is what the next one asks for.
    public static func pick(
        held: ChunkSet,
        offered: ChunkSet,
        inFlight: Set<ChunkID>,
        wanted: ChunkSet? = nil,
        limit: Int
    ) -> [ChunkID] {
        guard limit > 0 else { return [] }
        var candidates = offered.subtracting(held)
        if let wanted {
            candidates = candidates.subtracting(candidates.subtracting(wanted))
        }
        var picked: [ChunkID] = []
        for id in candidates.sorted where !inFlight.contains(id) {
            picked.append(id)
            if picked.count == limit { break }
        }
        return picked
    }
}
