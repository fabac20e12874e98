import NIOCore
import Testing
@testable import PeerShareCore
@testable import PeerShareNode
@testable import PeerShareStore
@testable import PeerShareWire

/// The handshake's rules, the sessions' trading states and the reconnect policy, driven
/// with messages and errors directly: no sockets, no processes.
@Suite struct HandshakeRulesTests {
    let ours = Digest32.of(Array("ours".utf8))
    let other = Digest32.of(Array("other".utf8))

    func hello(_ role: Hello.Role, _ fileID: Digest32, version: UInt16 = Hello.currentVersion) -> Hello {
        Hello(version: version, role: role, fileID: fileID, name: "remote")
    }

    @Test func downloaderFollowsWhatItDialled() throws {
        #expect(try Handshake.judge(answer: hello(.owner, ours), dialled: .owner, knownFileID: nil, expectedFileID: nil) == .manifestAndShare)
        #expect(try Handshake.judge(answer: hello(.peer, ours), dialled: .peer, knownFileID: nil, expectedFileID: nil) == .manifest)
        #expect(try Handshake.judge(answer: hello(.peer, ours), dialled: .peer, knownFileID: ours, expectedFileID: nil) == .trade)
    }

    @Test func downloaderRefusesWhatItCannotUse() {
        #expect(throws: HandshakeError.notTheOwner) { try Handshake.judge(answer: hello(.peer, ours), dialled: .owner, knownFileID: nil, expectedFileID: nil) }
        #expect(throws: HandshakeError.ownerAsNeighbour) { try Handshake.judge(answer: hello(.owner, ours), dialled: .peer, knownFileID: nil, expectedFileID: nil) }
        #expect(throws: HandshakeError.version(2)) { try Handshake.judge(answer: hello(.owner, ours, version: 2), dialled: .owner, knownFileID: nil, expectedFileID: nil) }
        #expect(throws: HandshakeError.otherFile(theirs: other, ours: ours)) {
            try Handshake.judge(answer: hello(.peer, other), dialled: .peer, knownFileID: ours, expectedFileID: nil)
        }
        // Judged before a byte of the manifest: from the owner as from a peer.
        for dialled in [Handshake.Dialled.owner, .peer] {
            #expect(throws: HandshakeError.notTheExpectedFile(theirs: other, expected: ours)) {
                try Handshake.judge(answer: hello(dialled == .owner ? .owner : .peer, other), dialled: dialled, knownFileID: nil, expectedFileID: ours)
            }
        }
    }

    @Test func uploaderSendsTheManifestOnlyWhenAsked() throws {
        #expect(try Handshake.judge(opening: hello(.peer, Hello.unknownFileID), isOwner: true, fileID: ours) == .manifestAndShare)
        #expect(try Handshake.judge(opening: hello(.peer, ours), isOwner: true, fileID: ours) == .manifestAndShare)
        #expect(try Handshake.judge(opening: hello(.peer, Hello.unknownFileID), isOwner: false, fileID: ours) == .manifest)
        #expect(try Handshake.judge(opening: hello(.peer, ours), isOwner: false, fileID: ours) == .trade)
        #expect(throws: HandshakeError.otherFile(theirs: other, ours: ours)) { try Handshake.judge(opening: hello(.peer, other), isOwner: false, fileID: ours) }
        #expect(throws: HandshakeError.otherFile(theirs: other, ours: ours)) { try Handshake.judge(opening: hello(.peer, other), isOwner: true, fileID: ours) }
        #expect(throws: HandshakeError.ownerDownloading) { try Handshake.judge(opening: hello(.owner, ours), isOwner: false, fileID: ours) }
        #expect(throws: HandshakeError.version(4)) { try Handshake.judge(opening: hello(.peer, ours, version: 4), isOwner: true, fileID: ours) }
    }

    @Test func anUploaderRefusesAVersionOrARoleBeforeItKnowsTheFile() {
        #expect(throws: HandshakeError.version(2)) { try Handshake.vet(opening: hello(.peer, Hello.unknownFileID, version: 2)) }
        #expect(throws: HandshakeError.ownerDownloading) { try Handshake.vet(opening: hello(.owner, ours)) }
        #expect(throws: Never.self) { try Handshake.vet(opening: hello(.peer, other)) }
    }

    @Test func refusalsReadAsOneLine() {
        let error = NodeError.refusedHello("peer2 at 127.0.0.1:7002", .version(2))
        #expect(error.description == "peer2 at 127.0.0.1:7002 speaks protocol version 2; this node speaks \(Hello.currentVersion)")
        #expect(SessionFault(error) == .unwanted)
    }
}

@Suite struct TradeStateTests {
    @Test func downloadTradeTakesOnlyWhatItAskedFor() throws {
        var trade = DownloadTrade(remoteName: "peer2", chunkCount: 10, badChunkLimit: 3)
        #expect(try trade.receive(.chunkList(bitfield: ChunkSet(capacity: 10, [ChunkID(1), ChunkID(2)]).bitfield)) == .listReceived(count: 2))
        #expect(try trade.receive(.have(ChunkID(3))) == .nothing)
        #expect(trade.offered.count == 3)
        let bytes = ByteBuffer(bytes: [1, 2, 3])
        #expect(try trade.receive(.piece(ChunkID(1), bytes)) == .unrequestedPiece(ChunkID(1)))
        trade.requesting([ChunkID(1), ChunkID(2)], atMicros: 100)
        #expect(try trade.receive(.piece(ChunkID(1), bytes)) == .piece(ChunkID(1), bytes, startedAt: 100))
        #expect(try trade.receive(.reject(ChunkID(2))) == .rejected(ChunkID(2)))
        #expect(!trade.offered.contains(ChunkID(2)))
        // A second REJECT for the same chunk releases nothing twice.
        #expect(try trade.receive(.reject(ChunkID(2))) == .nothing)
        #expect(trade.requested.isEmpty)
    }

    @Test func downloadTradeRefusesWhatBreaksTheProtocol() throws {
        var trade = DownloadTrade(remoteName: "peer2", chunkCount: 10, badChunkLimit: 3)
        #expect(throws: NodeError.self) { try trade.receive(.peers([])) }
        #expect(throws: NodeError.self) { try trade.receive(.have(ChunkID(10))) }
        #expect(throws: NodeError.self) { try trade.receive(.chunkList(bitfield: [0xFF])) }
        #expect(throws: NodeError.self) { try trade.receive(.request(ChunkID(1))) }
        trade.askingForPeers()
        #expect(try trade.receive(.peers([])) == .peers([]))
        #expect(throws: NodeError.self) { try trade.receive(.peers([])) }
    }

    @Test func downloadTradeDropsARepeatedBadSender() throws {
        var trade = DownloadTrade(remoteName: "peer2", chunkCount: 10, badChunkLimit: 2)
        _ = try trade.receive(.chunkList(bitfield: ChunkSet(capacity: 10, (0..<10).map { ChunkID(UInt32($0)) }).bitfield))
        try trade.pieceFailed(ChunkID(4))
        #expect(!trade.offered.contains(ChunkID(4)))
        do {
            try trade.pieceFailed(ChunkID(5))
            Issue.record("a second bad chunk should end the trade")
        } catch {
            #expect(SessionFault(error) == .unwanted)
            #expect(error.description.contains("sent 2 chunks that failed verification"))
        }
    }

    @Test func downloadTradeNoticesAStall() {
        let start = ContinuousClock.now
        var trade = DownloadTrade(remoteName: "peer2", chunkCount: 4, badChunkLimit: 3, now: start)
        #expect(!trade.isStalled(now: start + .seconds(5), after: .seconds(10)))
        #expect(trade.isStalled(now: start + .seconds(11), after: .seconds(10)))
        trade.requesting([ChunkID(0)], atMicros: 0)
        #expect(!trade.isStalled(now: start + .seconds(11), after: .seconds(10)))
        #expect(trade.oldestRequestAge(nowMicros: 7_000_000) == 7_000_000)
    }

    @Test func uploadTradeReportsProgressAndCompletionOnce() throws {
        var trade = UploadTrade(remoteName: "peer3", chunkCount: 3, maxRequestsPerChunk: 2)
        #expect(try trade.receive(.chunkList(bitfield: ChunkSet(capacity: 3, [ChunkID(0)]).bitfield)) == .listReceived(count: 1, completedNow: false))
        #expect(try trade.receive(.have(ChunkID(1))) == .gained(reportMember: false, completedNow: false))
        #expect(try trade.receive(.have(ChunkID(1))) == .nothing)
        #expect(try trade.receive(.have(ChunkID(2))) == .gained(reportMember: true, completedNow: true))
        #expect(try trade.receive(.chunkList(bitfield: ChunkSet(capacity: 3, (0..<3).map { ChunkID(UInt32($0)) }).bitfield))
                == .listReceived(count: 3, completedNow: false))
    }

    @Test func uploadTradeBoundsRequestsAndQuestions() throws {
        var trade = UploadTrade(remoteName: "peer3", chunkCount: 3, maxRequestsPerChunk: 2)
        #expect(try trade.receive(.request(ChunkID(0))) == .request(ChunkID(0)))
        #expect(try trade.receive(.request(ChunkID(0))) == .request(ChunkID(0)))
        #expect(throws: NodeError.self) { try trade.receive(.request(ChunkID(0))) }
        #expect(throws: NodeError.self) { try trade.receive(.request(ChunkID(3))) }
        #expect(throws: NodeError.self) { try trade.receive(.piece(ChunkID(0), ByteBuffer())) }
        let start = ContinuousClock.now
        #expect(try trade.receive(.getPeers(wanted: 4), now: start) == .answerPeers(wanted: 4))
        for _ in 0..<PeerQuestionBudget.unansweredLimit {
            #expect(try trade.receive(.getPeers(wanted: 4), now: start) == .nothing)
        }
        #expect(throws: NodeError.self) { try trade.receive(.getPeers(wanted: 4), now: start) }
    }
}

@Suite struct ReconnectPolicyTests {
    @Test func faultsAreSortedByWhoseDoingTheyAre() {
        #expect(SessionFault(NodeError.lost("closed")) == .lost)
        #expect(SessionFault(WireError.emptyFrame) == .violation)
        // A frame cut off by the close is the sender's doing, as rogue clients show.
        #expect(SessionFault(WireError.truncatedAtEOF(bufferedBytes: 12)) == .violation)
        #expect(SessionFault(WireError.truncatedAtEOF(bufferedBytes: 12), asDialler: true) == .lost, "an owner killed mid-PIECE may be back")
        #expect(SessionFault(NodeError.protocolViolation("no handshake within 10 s")) == .violation)
        #expect(SessionFault(FileSystemError(operation: "cannot write", path: "/x", errno: 28)) == .local)
        #expect(SessionFault(NodeError.protocolViolation("x")) == .violation)
        #expect(SessionFault(NodeError.misbehaving("x")) == .unwanted)
        #expect(SessionFault(HandshakeError.notTheOwner) == .unwanted)
        #expect(SessionFault(NodeError.failed("disk full")) == .local)
        #expect(SessionFault(CancellationError()) == .cancelled)
        #expect(SessionFault(ChannelError.ioOnClosedChannel) == .lost)
    }

    @Test func theOwnerIsRetriedWhenLostAndAvoidedWhenItMisbehaves() {
        var budget = ReconnectBudget.owner
        for _ in 0..<20 { #expect(budget.move(after: .lost, connectedFor: .seconds(1)) == .reconnect) }
        #expect(budget.move(after: .lost, connectedFor: .seconds(1)) == .avoid)
        // A connection that lasted a minute starts the count afresh.
        #expect(budget.move(after: .lost, connectedFor: .seconds(61)) == .reconnect)
        #expect(budget.used == 1)
        #expect(budget.move(after: .violation, connectedFor: .seconds(1)) == .avoid)
        #expect(budget.move(after: .unwanted, connectedFor: .seconds(1)) == .avoid)
        #expect(budget.move(after: .local, connectedFor: .seconds(1)) == .stop)
        #expect(budget.move(after: .cancelled, connectedFor: .seconds(1)) == .stop)
    }

    @Test func aNeighbourGetsRetriedAfterAGlitchButNotForever() {
        var budget = ReconnectBudget.neighbour
        for index in 0..<50 { #expect(budget.move(after: index.isMultiple(of: 2) ? .violation : .lost, connectedFor: .seconds(100)) == .reconnect) }
        #expect(budget.move(after: .lost, connectedFor: .seconds(100)) == .avoid)
        var fresh = ReconnectBudget.neighbour
        #expect(fresh.move(after: .unwanted, connectedFor: .zero) == .avoid)
    }
}
