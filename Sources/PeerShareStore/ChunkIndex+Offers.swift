import PeerShareCore

/// What each source last offered (Schema/007_offers.sql): the evidence `peershare-inspect
/// why` names a missing chunk's last holders from.
extension ChunkIndex {
    public struct Offer: Sendable {
        public let source: Source
        public let at: Int64
        public let offered: ChunkSet

        public init(source: Source, at: Int64 = Clock.nowMicros(), offered: ChunkSet) {
            self.source = source
            self.at = at
            self.offered = offered
        }
    }

    /// Replaces the source's last offer with this one.
    func saveOffer(_ offer: Offer) throws {
        try db.run("""
            INSERT INTO offers (source_id, at, held_count, held) VALUES (?, ?, ?, ?)
            ON CONFLICT (source_id) DO UPDATE SET at = excluded.at, held_count = excluded.held_count, held = excluded.held
            """, try sourceID(offer.source), offer.at, offer.offered.count, offer.offered.bitfield)
    }
}
