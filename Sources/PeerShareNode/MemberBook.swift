import PeerShareCore
import PeerShareWire

/// The nodes that connected to this one as downloaders and said where others may dial them
/// (HELLO's advertised address): on the owner, the swarm's membership list; on a peer, what
/// it passes on in peer exchange. Pure bookkeeping, no I/O.
struct MemberBook: Sendable {
    struct Member: Sendable, Equatable {
        let name: String
        var endpoint: Endpoint
        let firstSeen: Int64
        var lastSeen: Int64
        /// What it last reported holding (its CHUNK-LIST and HAVEs), if anything.
        var holds: ChunkSet?
        /// Its connections open to this node right now: it is live while there is one.
        var connections = 0
        /// How often it was handed out as a neighbour, to spread the choices evenly.
        var handedOut = 0
        /// When its row was last written to the index (microseconds), for `needsPersisting`.
        var persistedAt: Int64?
    }

    /// A member's reports are written to the index at most this often (microseconds); its
    /// join, its leaving and its completion are always written.
    static let persistInterval: Int64 = 1_000_000

    /// Members kept, at most: names are whatever remotes say, so the list is bounded, and a
    /// member with no connection open is the first to go.
    static let maximumMembers = 4096

    private(set) var members: [String: Member] = [:]

    /// A downloader connected and said where it listens. A member that comes back under the
    /// same name may have a new address. Returns the member dropped to make room, if any.
    @discardableResult
    mutating func joined(_ name: String, at endpoint: Endpoint, now: Int64) -> String? {
        if var member = members[name] {
            member.endpoint = endpoint
            member.lastSeen = now
            member.connections += 1
            members[name] = member
            return nil
        }
        var dropped: String?
        if members.count >= Self.maximumMembers, let stale = members.values.filter({ $0.connections == 0 }).min(by: { $0.lastSeen < $1.lastSeen }) {
            members[stale.name] = nil
            dropped = stale.name
        }
        guard members.count < Self.maximumMembers else { return nil }
        members[name] = Member(name: name, endpoint: endpoint, firstSeen: now, lastSeen: now, connections: 1)
        return dropped
    }

    mutating func left(_ name: String, now: Int64) {
        guard var member = members[name] else { return }
        member.connections = max(0, member.connections - 1)
        member.lastSeen = now
        members[name] = member
    }

    mutating func reported(_ name: String, holds: ChunkSet, now: Int64) {
        members[name]?.holds = holds
        members[name]?.lastSeen = now
    }

    func isLive(_ name: String) -> Bool { (members[name]?.connections ?? 0) > 0 }

    /// Whether `name` is live at another address: a second downloader under a live
    /// member's name is not listed there, so that a name cannot be taken over while its
    /// owner is connected (names are not proven until private swarms).
    func isLiveElsewhere(_ name: String, than endpoint: Endpoint) -> Bool {
        guard let member = members[name], member.connections > 0 else { return false }
        return member.endpoint != endpoint
    }

    /// Whether a report should reach the index now: the first, a complete one, or one a
    /// second after the last written. Marks it written if so.
    mutating func needsPersisting(_ name: String, now: Int64) -> Bool {
        guard let member = members[name] else { return false }
        let due = member.persistedAt.map { now - $0 >= Self.persistInterval } ?? true
        guard due || member.holds?.isComplete == true else { return false }
        members[name]?.persistedAt = now
        return true
    }

    /// Up to `wanted` live members for `asker` to download from: never the asker itself or
    /// its address, never one address twice. Those holding something the asker lacks come
    /// first, then those handed out least (so every member gets downloaders, which keeps the
    /// graph connected), random among equals (so the graph is random, as Kraken's tracker
    /// makes it).
    mutating func choose(for asker: String, askerEndpoint: Endpoint?, askerHolds: ChunkSet?, wanted: Int,
                         using random: inout some RandomNumberGenerator) -> [PeerAddress] {
        var seen: Set<Endpoint> = askerEndpoint.map { [$0] } ?? []
        let live = members.values.filter { $0.connections > 0 && $0.name != asker }.shuffled(using: &random)
        let ranked = live.map { member -> (member: Member, useful: Bool) in
            guard let holds = member.holds else { return (member, false) }
            guard let askerHolds, askerHolds.capacity == holds.capacity else { return (member, !holds.isEmpty) }
            return (member, !holds.subtracting(askerHolds).isEmpty)
        }.enumerated().sorted { a, b in
            if a.element.useful != b.element.useful { return a.element.useful }
            if a.element.member.handedOut != b.element.member.handedOut { return a.element.member.handedOut < b.element.member.handedOut }
            return a.offset < b.offset
        }
        var chosen: [PeerAddress] = []
        for (_, entry) in ranked where chosen.count < wanted && seen.insert(entry.member.endpoint).inserted {
            chosen.append(PeerAddress(name: entry.member.name, endpoint: entry.member.endpoint))
            members[entry.member.name]?.handedOut += 1
        }
        return chosen
    }
}
