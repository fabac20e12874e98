import Testing
@testable import PeerShareCore
@testable import PeerShareNode
@testable import PeerShareWire

/// The bookkeeping behind a swarm that wires itself (issue 15), without sockets.
@Suite("Swarm wiring: members, found neighbours, shares")
struct SwarmWiringTests {
    func address(_ name: String, _ port: Int) -> PeerAddress {
        PeerAddress(name: name, endpoint: Endpoint(host: "127.0.0.1", port: port))
    }

    func holds(_ ids: [Int], of count: Int = 10) -> ChunkSet {
        ChunkSet(capacity: count, ids.map { ChunkID(UInt32($0)) })
    }

    @Test("the owner never hands out the asker, its address, a duplicate address, or a member that left")
    func chooseExcludes() {
        var book = MemberBook()
        book.joined("asker", at: Endpoint(host: "127.0.0.1", port: 1), now: 0)
        book.joined("twin", at: Endpoint(host: "127.0.0.1", port: 1), now: 0)  // the asker's address under another name
        book.joined("a", at: Endpoint(host: "127.0.0.1", port: 2), now: 0)
        book.joined("b", at: Endpoint(host: "127.0.0.1", port: 2), now: 0)  // same address as a
        book.joined("gone", at: Endpoint(host: "127.0.0.1", port: 3), now: 0)
        book.left("gone", now: 1)
        var random = SeededGenerator(seed: 7)
        let chosen = book.choose(for: "asker", askerEndpoint: Endpoint(host: "127.0.0.1", port: 1), askerHolds: nil, wanted: 10, using: &random)
        #expect(chosen.count == 1)
        #expect(chosen.first?.endpoint.port == 2)
    }

    @Test("members holding what the asker lacks come first, then the least handed out")
    func choosePrefersUseful() {
        var book = MemberBook()
        for (i, name) in ["empty", "same", "useful"].enumerated() { book.joined(name, at: Endpoint(host: "10.0.0.\(i + 1)", port: 7000), now: 0) }
        book.reported("empty", holds: holds([]), now: 1)
        book.reported("same", holds: holds([0, 1]), now: 1)
        book.reported("useful", holds: holds([0, 5]), now: 1)
        var random = SeededGenerator(seed: 1)
        let first = book.choose(for: "asker", askerEndpoint: nil, askerHolds: holds([0, 1]), wanted: 1, using: &random)
        #expect(first.map(\.name) == ["useful"])
        // Among members equally useful (none is now), the least handed out goes first.
        let next = book.choose(for: "asker", askerEndpoint: nil, askerHolds: holds([0, 1, 5]), wanted: 2, using: &random)
        #expect(Set(next.map(\.name)) == ["empty", "same"])
    }

    @Test("the membership list is bounded; members with no connection go first")
    func membersBounded() {
        var book = MemberBook()
        for i in 0..<(MemberBook.maximumMembers + 50) {
            book.joined("m\(i)", at: Endpoint(host: "10.0.0.1", port: 1 + i % 60_000), now: Int64(i))
            if i % 2 == 0 { book.left("m\(i)", now: Int64(i)) }
        }
        #expect(book.members.count == MemberBook.maximumMembers)
        #expect(book.isLive("m\(MemberBook.maximumMembers + 49)"))
        #expect(book.members["m0"] == nil)
    }

    @Test("found neighbours: never itself, never twice at once, at most the target unless the neighbours lack chunks")
    func neighbourBook() {
        var book = NeighbourBook()
        book.target = 2
        book.selfName = "me"
        book.selfEndpoint = Endpoint(host: "127.0.0.1", port: 9)
        #expect(!book.noneReachable, "before the owner has answered, an empty book says nothing")
        #expect(book.learn([address("me", 5), address("other-name", 9), address("a", 1), address("b", 2), address("a-again", 1), address("c", 3)], fromTracker: true) == 3)
        #expect(book.takeNextToDial()?.name == "a")
        #expect(book.takeNextToDial()?.name == "b")
        #expect(book.takeNextToDial() == nil, "the target is reached")
        #expect(!book.wantsMorePeers)
        book.lacksSources = true
        #expect(book.takeNextToDial()?.name == "c", "neighbours that lack a chunk let one more in")
        #expect(book.wantsMorePeers)
        // A neighbour named again while connected is not queued twice; after it ended it is.
        #expect(book.learn([address("a", 1)], fromTracker: false) == 0)
        book.sessionStarted(with: Endpoint(host: "127.0.0.1", port: 1))
        book.foundNeighbourEnded(Endpoint(host: "127.0.0.1", port: 1))
        #expect(book.learn([address("a", 1)], fromTracker: false) == 1)
    }

    @Test("a found neighbour that never answered is not queued again for 30 s, however often it is named")
    func failedDialQuarantine() {
        var book = NeighbourBook()
        book.target = 4
        let start = ContinuousClock.now
        #expect(book.learn([address("dead", 1)], fromTracker: true, now: start) == 1)
        #expect(book.takeNextToDial()?.name == "dead")
        book.foundNeighbourEnded(Endpoint(host: "127.0.0.1", port: 1), now: start)
        #expect(book.learn([address("dead", 1)], fromTracker: true, now: start + .seconds(1)) == 0)
        #expect(book.learn([address("dead", 1)], fromTracker: true, now: start + .seconds(29)) == 0)
        #expect(book.learn([address("dead", 1)], fromTracker: true, now: start + .seconds(31)) == 1)
    }

    @Test("peers reached are remembered for peer exchange: the newest 64, one entry per address")
    func reachedPeers() {
        var book = NeighbourBook()
        for i in 1...100 { book.noteReached(address("p\(i)", i)) }
        #expect(book.reached.count == NeighbourBook.maximumReached)
        #expect(book.reached.first?.name == "p37" && book.reached.last?.name == "p100")
        book.noteReached(address("renamed", 50))
        #expect(book.reached.filter { $0.endpoint.port == 50 }.map(\.name) == ["renamed"])
        #expect(book.reached.last?.name == "renamed")
        #expect(book.reached.count == NeighbourBook.maximumReached)
    }

    @Test("members: a live name is not taken over from another address; reports reach the index at most once a second")
    func memberNamesAndWrites() {
        var book = MemberBook()
        let home = Endpoint(host: "127.0.0.1", port: 1)
        book.joined("p", at: home, now: 0)
        #expect(!book.isLiveElsewhere("p", than: home))
        #expect(book.isLiveElsewhere("p", than: Endpoint(host: "10.0.0.9", port: 1)))
        #expect(book.needsPersisting("p", now: 0) == true)
        book.reported("p", holds: holds([1, 2]), now: 100)
        #expect(book.needsPersisting("p", now: 100) == false)
        #expect(book.needsPersisting("p", now: 999_999) == false)
        #expect(book.needsPersisting("p", now: 1_000_000) == true)
        book.reported("p", holds: holds(Array(0..<10)), now: 1_000_001)
        #expect(book.needsPersisting("p", now: 1_000_001) == true, "completion is always written")
        book.left("p", now: 2_000_000)
        #expect(!book.isLiveElsewhere("p", than: Endpoint(host: "10.0.0.9", port: 1)), "once it left, the name is free")
    }

    @Test("no neighbour reachable: only once nothing is connected, dialled or waiting, and the owner has answered")
    func lastResort() {
        var book = NeighbourBook()
        let pinned = Endpoint(host: "127.0.0.1", port: 4)
        book.willDial(pinned)
        #expect(!book.noneReachable)
        book.firstDialResolved(pinned)
        #expect(book.noneReachable)
        book.sessionStarted(with: pinned)
        #expect(!book.noneReachable)
        book.sessionEnded()
        #expect(book.noneReachable)
        book.target = 4
        #expect(!book.noneReachable, "finding neighbours: wait for the owner's answers")
        book.learn([], fromTracker: true)
        #expect(!book.noneReachable, "one empty answer: the others may not have joined yet")
        book.learn([], fromTracker: true)
        #expect(book.noneReachable)
    }

    @Test("past --peers, a peer that finds neighbours gets only chunks never handed out")
    func sharesForFoundNeighbours() {
        var assigner = ShareAssigner(chunkCount: 10, expectedPeers: 2)
        #expect(assigner.share(for: "p1", findsNeighbours: true).count == 5)
        #expect(assigner.share(for: "p2", findsNeighbours: true).count == 5)
        #expect(assigner.share(for: "p3", findsNeighbours: true).isEmpty)
        #expect(assigner.share(for: "p4", findsNeighbours: false).count == 5, "a pinned late joiner still gets a share")
    }

    @Test("GET-PEERS: about one answer a second, with room for jitter; a flood closes the connection")
    func questionBudget() throws {
        var budget = PeerQuestionBudget()
        let start = ContinuousClock.now
        #expect(try budget.admit(now: start))
        #expect(try !budget.admit(now: start + .milliseconds(10)))
        #expect(try !budget.admit(now: start + .milliseconds(790)))
        #expect(try budget.admit(now: start + .milliseconds(950)), "a question asked a second later, a little early, is answered")
        #expect(try budget.admit(now: start + .seconds(1) + .milliseconds(900)))
        for i in 1...PeerQuestionBudget.unansweredLimit { _ = try budget.admit(now: start + .seconds(2) + .microseconds(i)) }
        #expect(throws: NodeError.self) { try budget.admit(now: start + .milliseconds(2500)) }
    }
}
