import PeerShareCore

/// The owner's membership list (Schema/005_members.sql).
extension ChunkIndex {
    public struct MemberRecord: Sendable, Equatable {
        public let name: String
        public let address: String
        public let firstSeen: Int64
        public let lastSeen: Int64
        public let held: ChunkSet?

        public init(name: String, address: String, firstSeen: Int64, lastSeen: Int64, held: ChunkSet?) {
            self.name = name
            self.address = address
            self.firstSeen = firstSeen
            self.lastSeen = lastSeen
            self.held = held
        }
    }

    /// Records a member as it is now; the first sighting is kept.
    public func saveMember(_ member: MemberRecord) throws {
        try db.run("""
            INSERT INTO members (name, address, first_seen, last_seen, held_count, held) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET address = excluded.address, last_seen = excluded.last_seen,
                held_count = excluded.held_count, held = coalesce(excluded.held, members.held)
            """, member.name, member.address, member.firstSeen, member.lastSeen, member.held?.count ?? 0, member.held?.bitfield)
    }

    public func deleteMember(named name: String) throws {
        try db.run("DELETE FROM members WHERE name = ?", name)
    }

    /// Keeps the `count` members seen last: the list does not grow across restarts.
    public func pruneMembers(keeping count: Int) throws {
        try db.run("DELETE FROM members WHERE name NOT IN (SELECT name FROM members ORDER BY last_seen DESC LIMIT ?)", Int64(count))
    }

    public func memberCount() throws -> Int {
        Int(try db.scalarInt("SELECT count(*) FROM members") ?? 0)
    }
}
