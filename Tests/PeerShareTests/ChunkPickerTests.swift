import Testing
@testable import PeerShareCore

/// A swarm as this peer sees it, drawn as pictures: one character per chunk, "1" for a
/// chunk held or offered, "0" for one that is not (the style of libtorrent's
/// test_piece_picker.cpp). Requests in flight are recorded per source, as a node does.
struct PickerScenario {
    var held: ChunkSet
    var neighbours: [String: ChunkSet] = [:]
    var requested: [String: Set<ChunkID>] = [:]

    init(held picture: String) {
        held = Self.set(picture)
    }

    static func set(_ picture: String) -> ChunkSet {
        ChunkSet(capacity: picture.count, picture.enumerated().filter { $0.element == "1" }.map { ChunkID(UInt32($0.offset)) })
    }

    /// "peer A has 1111000".
    func peer(_ name: String, has picture: String) -> PickerScenario {
        var copy = self
        copy.neighbours[name] = Self.set(picture)
        return copy
    }

    /// Marks chunks as requested from a source (not necessarily a neighbour: "owner").
    func requesting(_ ids: [UInt32], from source: String) -> PickerScenario {
        var copy = self
        copy.requested[source, default: []].formUnion(ids.map { ChunkID($0) })
        return copy
    }

    var inFlight: [ChunkID: Int] {
        var counts: [ChunkID: Int] = [:]
        for ids in requested.values { for id in ids { counts[id, default: 0] += 1 } }
        return counts
    }

    /// What the picker asks `source` for next, as plain numbers.
    func pick(from source: String, limit: Int = 8, wanted: String? = nil,
              endgameThreshold: Int = ChunkPicker.defaultEndgameThreshold) -> [UInt32] {
        let availability = ChunkPicker.availability(capacity: held.capacity, of: neighbours.values)
        return ChunkPicker.pick(
            held: held, offered: neighbours[source] ?? ChunkSet(capacity: held.capacity), availability: availability,
            inFlight: inFlight, requestedHere: requested[source] ?? [], wanted: wanted.map(Self.set),
            endgameThreshold: endgameThreshold, limit: limit
        ).map(\.rawValue)
    }
}

@Suite("Chunk picking scenarios")
struct ChunkPickerTests {
    @Test("rarest first across neighbours: A has 1111000, B has 0011110")
    func rarestFirst() {
        let swarm = PickerScenario(held: "0000000")
            .peer("A", has: "1111000")
            .peer("B", has: "0011110")
        // Chunks 0 and 1 only A has; 2 and 3 both have.
        #expect(swarm.pick(from: "A") == [0, 1, 2, 3])
        #expect(swarm.pick(from: "B") == [4, 5, 2, 3])
        #expect(swarm.pick(from: "A", limit: 2) == [0, 1])
    }

    @Test("a chunk only one neighbour has is taken first, whatever its position")
    func singleCopyFirst() {
        let swarm = PickerScenario(held: "00000000")
            .peer("A", has: "11111111")
            .peer("B", has: "11111110")
            .peer("C", has: "11111110")
        #expect(swarm.pick(from: "A", limit: 1) == [7])
        #expect(swarm.pick(from: "B", limit: 3) == [0, 1, 2])
    }

    @Test("one neighbour (a ring): lowest IDs first, up to the window, nothing held twice")
    func ringOrder() {
        let swarm = PickerScenario(held: "11000000").peer("A", has: "11111011")
        #expect(swarm.pick(from: "A", limit: 3) == [2, 3, 4])
        #expect(swarm.pick(from: "A") == [2, 3, 4, 6, 7])
    }

    @Test("never the same chunk in flight from two neighbours outside the endgame")
    func noDuplicateInFlight() {
        let swarm = PickerScenario(held: String(repeating: "0", count: 40))
            .peer("A", has: String(repeating: "1", count: 40))
            .peer("B", has: String(repeating: "1", count: 40))
            .requesting([0, 1, 2, 5], from: "A")
        #expect(swarm.pick(from: "B", limit: 4) == [3, 4, 6, 7])
        // Everything A offers is in flight or held: B, offering only those, gets nothing.
        let narrow = swarm.peer("B", has: "111001" + String(repeating: "0", count: 34))
        #expect(narrow.pick(from: "B").isEmpty)
    }

    @Test("from the owner, only the share; nothing when nothing new is offered or the window is full")
    func shareAndNothing() {
        let swarm = PickerScenario(held: "10000000").peer("owner", has: "11111111")
        #expect(swarm.pick(from: "owner", wanted: "11100000") == [1, 2])
        let done = PickerScenario(held: "1100").peer("A", has: "1100")
        #expect(done.pick(from: "A").isEmpty)
        #expect(PickerScenario(held: "0000").peer("A", has: "1111").pick(from: "A", limit: 0).isEmpty)
    }

    @Test("endgame: the last chunks, in flight on a slow neighbour, are asked of another too")
    func endgameDuplicates() {
        let swarm = PickerScenario(held: "1111111100")
            .peer("slow", has: "1111111111")
            .peer("fast", has: "1111111111")
            .requesting([8, 9], from: "slow")
        #expect(swarm.pick(from: "fast") == [8, 9])
        // With the endgame off, the fast neighbour waits for the slow one.
        #expect(swarm.pick(from: "fast", endgameThreshold: 0).isEmpty)
        // The slow one is never asked twice for the same chunk.
        #expect(swarm.pick(from: "slow").isEmpty)
    }

    @Test("endgame: at most three sources per chunk, chunks nobody fetches first, then the least requested")
    func endgameLimits() {
        let swarm = PickerScenario(held: "1111100000")
            .peer("A", has: "1111111111")
            .peer("B", has: "1111111111")
            .peer("C", has: "1111111111")
            .peer("D", has: "1111111111")
            .requesting([5, 6, 7], from: "A")
            .requesting([5, 6], from: "B")
            .requesting([5], from: "C")
        // 5 has three sources already; 8 and 9 nobody fetches; 7 one source, 6 two.
        #expect(swarm.pick(from: "D") == [8, 9, 7, 6])
        #expect(swarm.pick(from: "C") == [8, 9, 7, 6])
        #expect(swarm.pick(from: "B") == [8, 9, 7])
    }

    @Test("endgame: two slow sources on a chunk do not shut out a third")
    func endgameThirdSource() {
        let swarm = PickerScenario(held: "1111111110")
            .peer("slow", has: "1111111111")
            .peer("fast", has: "1111111111")
            .requesting([9], from: "owner")
            .requesting([9], from: "slow")
        #expect(swarm.pick(from: "fast") == [9])
    }

    @Test("no endgame while many chunks are missing: in-flight chunks are left alone")
    func noEarlyEndgame() {
        let all = String(repeating: "1", count: 40)
        let swarm = PickerScenario(held: String(repeating: "0", count: 40))
            .peer("A", has: all)
            .peer("B", has: all)
            .requesting(Array(0..<40), from: "A")
        #expect(swarm.pick(from: "B").isEmpty)
        #expect(swarm.pick(from: "B", endgameThreshold: 40) == Array(0..<8))
    }

    @Test("availability counts each neighbour's offer once")
    func availabilityCounts() {
        let counts = ChunkPicker.availability(capacity: 4, of: [PickerScenario.set("1100"), PickerScenario.set("0110"), PickerScenario.set("0100")])
        #expect(counts == [1, 3, 1, 0])
    }
}
