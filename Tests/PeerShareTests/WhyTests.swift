import Foundation
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareInspect
@testable import PeerShareStore

extension InspectFixture {
    /// peer2, stuck: partialPeer (chunks 0 and 2 held; share [2, 3]) plus the owner's and
    /// peer3's last offers, a request abandoned at the owner after 500 ms, one outstanding at
    /// peer3, and a loss of peer3 logged by address (as the node does) with one retry, 300 ms
    /// before reconnecting. The run is still open.
    static func stuckPeer(_ label: String = #function) throws -> InspectFixture {
        let f = try partialPeer(label)
        let t = t0
        let index = try ChunkIndex(path: f.db, role: .peer, nodeName: "peer2", now: t + 26_000)
        let peer3 = peer("peer3")
        _ = try index.sourceID(peer3, address: "127.0.0.1:4100")
        try index.commit(chunks: [], transfers: [], events: [], offers: [
            .init(source: owner, at: t + 30_000, offered: ChunkSet(capacity: 5, [ChunkID(2), ChunkID(3)])),
            .init(source: peer3, at: t + 40_000, offered: ChunkSet(capacity: 5, [ChunkID(0), ChunkID(1), ChunkID(3)])),
        ])
        let events: [EventRecord] = [
            .init(at: t + 30_000, kind: .chunkRequested, chunk: ChunkID(3), source: owner, message: "requested chunk 3 from owner"),
            .init(at: t + 41_000, kind: .chunkRequested, chunk: ChunkID(1), source: peer3, message: "requested chunk 1 from peer3"),
            .init(at: t + 530_000, kind: .requestAbandoned, chunk: ChunkID(3), source: owner, message: "request for chunk 3 to owner abandoned after 500 ms: timed out"),
            .init(at: t + 600_000, kind: .disconnected, message: "lost download neighbour 127.0.0.1:4100: connection reset; reconnecting"),
            .init(at: t + 700_000, kind: .connectRetry, message: "download neighbour 127.0.0.1:4100 not reachable (refused); retry 1 in 100 ms"),
            .init(at: t + 900_000, kind: .connected, message: "connected to download neighbour 127.0.0.1:4100"),
            // The upload direction: not a loss of a source.
            .init(at: t + 950_000, kind: .disconnected, source: peer3, message: "peer3 disconnected (holds 3 of 5 chunks)"),
        ]
        for event in events { try index.record(event) }
        return f
    }
}

@Suite("peershare-inspect why: fixture indexes")
struct WhyReportTests {
    let t = InspectFixture.t0

    @Test("a stuck peer: missing ranges with last holders, outstanding and abandoned requests, time lost")
    func stuck() throws {
        let f = try InspectFixture.stuckPeer()
        let r = try WhyReport.load(f.open(), now: t + 60_000_000)
        #expect(r.verdict == .stuck && r.running)
        #expect(r.reason.hasPrefix("3 chunks missing; nothing received for"), "\(r.reason)")
        #expect(r.reason.contains("1 request outstanding") && r.reason.contains("1 of them offered by no source"), "\(r.reason)")
        #expect(r.missingRanges.map { [$0.first, $0.last] } == [[1, 1], [3, 3], [4, 4]])
        #expect(r.missingRanges.map { $0.holders.map(\.source.name) } == [["peer3"], ["peer3", "owner"], []])
        #expect(r.missingRanges[1].holders.map(\.offeredAt) == [t + 40_000, t + 30_000])
        #expect(r.outstanding.map { [$0.chunk, $0.requestedAt] } == [[1, t + 41_000]] && r.outstanding.first?.source?.name == "peer3")
        #expect(r.abandoned.count == 1 && r.abandoned.first?.source?.name == "owner")
        #expect(r.abandoned.first?.waitedMicros == 500_000 && r.lostToTimeoutsMicros == 500_000)
        let peer3 = try #require(r.sources.first { $0.source.name == "peer3" })
        #expect(peer3.retryMicros == 300_000 && peer3.connectRetries == 1 && peer3.disconnects == 1 && peer3.offered == 3)
        #expect(r.lostToRetriesMicros == 300_000 && r.unattributedRetryMicros == 0)
        let e = try #require(r.efficiency)
        // 5 chunks, a share of 2: N = round(2.5) = 3. B: the best second holds both chunks (2 × 100 B).
        #expect(e.peers == 3 && e.peersFrom == "share" && e.bytesPerSecond == 200 && e.soFar)
        #expect(e.lowerBoundMicros == 1_500_000)  // (3-1)·450 / (3·200) s
        #expect(e.startedAt == t + 1_000 && e.endedAt == t + 60_000_000)

        let table = r.render(.table)
        #expect(table.hasPrefix("stuck: 3 chunks missing"), "\(table)")
        #expect(table.contains("no source ever offered it") && table.contains("peer3 (peer, "), "\(table)")
        let json = try #require(try parseJSON(r.render(.json)) as? [String: Any])
        #expect(json["verdict"] as? String == "stuck" && json["chunks_missing"] as? Int == 3)
        let ranges = try #require(json["missing_ranges"] as? [[String: Any]])
        #expect((ranges[1]["holders"] as? [[String: Any]])?.compactMap { $0["source"] as? String } == ["peer3", "owner"])
        #expect((json["efficiency"] as? [String: Any])?["lower_bound_us"] as? Int == 1_500_000)
    }

    @Test("complete, owner and stopped peers: the verdicts")
    func verdicts() throws {
        let complete = try WhyReport.load(InspectFixture.completePeer().open(), now: t + 9_000_000)
        #expect(complete.verdict == .complete && complete.missing == 0 && complete.missingRanges.isEmpty)
        #expect(complete.efficiency?.soFar == false && complete.efficiency?.endedAt == t + 2_010_500)
        let owner = try WhyReport.load(InspectFixture.owner().open())
        #expect(owner.verdict == .owner && owner.render(.table).hasPrefix("owner: this is an owner's index"))
        let rejecting = try WhyReport.load(InspectFixture.rejectingPeer().open())
        #expect(rejecting.verdict == .stuck && rejecting.reason.contains("the peer stopped"), "\(rejecting.reason)")
        #expect(rejecting.sources.first { $0.source.name == "peer4" }?.marks == ["rejected"])
        // A lot of missing chunks: grouped, and the table says what it left out.
        let stuck = try WhyReport.load(InspectFixture.stuckPeer().open(), stalledAfter: 86_400_000_000, now: t + 60_000_000)
        #expect(stuck.verdict == .downloading)
    }

    @Test("ranges group consecutive chunks with the same holders; the table is bounded")
    func grouping() {
        let a = SourceInfo(id: 1, kind: "peer", name: "a"), b = SourceInfo(id: 2, kind: "peer", name: "b")
        let missing = ChunkSet(capacity: 100, (0..<100).filter { $0 != 50 }.map { ChunkID(UInt32($0)) })
        let offers = [WhyAnalysis.Offer(source: a, at: 1, held: ChunkSet(capacity: 100, (0..<40).map { ChunkID(UInt32($0)) })),
                      WhyAnalysis.Offer(source: b, at: 2, held: ChunkSet(capacity: 100, (20..<60).map { ChunkID(UInt32($0)) }))]
        let ranges = WhyAnalysis.missingRanges(missing: missing, offers: offers)
        #expect(ranges.map { [$0.first, $0.last] } == [[0, 19], [20, 39], [40, 49], [51, 59], [60, 99]])
        #expect(ranges.map { $0.holders.map(\.source.name) } == [["a"], ["b", "a"], ["b"], ["b"], []])
        var report = WhyReport(database: "x", node: NodeInfo(role: "peer", name: "p"), manifest: nil, reference: 0, running: true)
        report.missingRanges = (0..<100).map { WhyReport.MissingRange(first: Int64($0 * 2), last: Int64($0 * 2), holders: []) }
        report.manifest = ManifestInfo(fileName: "f", fileSize: 200, chunkSize: 1, chunkCount: 200, sha256: "", recordedAt: 0)
        let table = report.table()
        #expect(table.contains("… and 70 more ranges"), "\(table)")
    }

    @Test("bandwidth, bound, median, attribution and retry intervals")
    func arithmetic() {
        #expect(WhyAnalysis.peakBytesPerSecond([(0, 100), (500_000, 100), (999_999, 100), (1_000_000, 100), (3_000_000, 50)]) == 300)
        #expect(WhyAnalysis.peakBytesPerSecond([]) == nil)
        #expect(WhyAnalysis.peakBytesPerSecond([(.min, .max), (.max, .max)]) == .max)
        #expect(WhyAnalysis.lowerBoundMicros(peers: 4, fileSize: 4_000_000, bytesPerSecond: 1_000_000) == 3_000_000)
        #expect(WhyAnalysis.lowerBoundMicros(peers: 4, fileSize: .max, bytesPerSecond: 1) == nil)
        #expect(WhyAnalysis.peers(chunkCount: 10, shareCount: 3) == 3 && WhyAnalysis.peers(chunkCount: 10, shareCount: 0) == nil)
        #expect(WhyAnalysis.median([5, 1, 3]) == 3 && WhyAnalysis.median([.max, .max]) == .max && WhyAnalysis.median([]) == nil)
        let addresses: [(id: Int64, address: String)] = [(1, "127.0.0.1:41"), (2, "127.0.0.1:4100")]
        #expect(WhyAnalysis.attribute("download neighbour 127.0.0.1:4100 not reachable", addresses: addresses, owner: 9) == 2)
        #expect(WhyAnalysis.attribute("lost download neighbour 127.0.0.1:41: reset", addresses: addresses, owner: 9) == 1)
        #expect(WhyAnalysis.attribute("lost the owner connection: reset", addresses: addresses, owner: 9) == 9)
        #expect(WhyAnalysis.attribute("stopped waiting for downloaders", addresses: addresses, owner: 9) == nil)
        func event(_ at: Int64, _ kind: String) -> WhyAnalysis.ConnectionEvent { .init(id: at, at: at, kind: kind, source: 1, message: "") }
        // Closed by a reconnect; then one open with retries (counts to the run's end); a
        // closing with no retry after it (no loss).
        let lost = WhyAnalysis.retryTime([event(10, "disconnected"), event(30, "connected"), event(40, "connect_retry"), event(45, "connect_retry")], runEnd: { _ in 100 })
        let total: Int64 = lost[1] ?? -1
        #expect(total == 80)  // 20 + 60
        #expect(WhyAnalysis.retryTime([event(10, "disconnected")], runEnd: { _ in 100 })[1] == nil)
    }

    @Test("every query is one indexed or whole-table read; none scans the events without an index")
    func queryPlans() throws {
        let database = try InspectFixture.stuckPeer().open()
        database.plans = QueryPlans()
        _ = try WhyReport.load(database)
        let entries = database.plans?.entries ?? []
        #expect(entries.contains { $0.sql.contains("WHERE kind = ?") && $0.plan.joined().contains("events_by_kind") })
        for entry in entries where entry.sql.contains("FROM events") {
            #expect(!entry.plan.contains { $0.contains("SCAN events") && !$0.contains("INDEX") }, "\(entry.sql): \(entry.plan)")
        }
    }

    @Test("10,000 chunks and 100,000 events: why answers (time printed, not asserted)")
    func large() async throws {
        let f = try await InspectFixture.largeOffThePool()
        let clock = ContinuousClock()
        let started = clock.now
        let r = try WhyReport.load(f.open())
        let elapsed = clock.now - started
        print("why on the large index: \(elapsed)")
        #expect(r.missing == 500 && r.missingRanges.count == 500)
        #expect(r.render(.table).contains("… and 470 more ranges"))
    }
}

@Suite("peershare-inspect why: real processes", .serialized)
struct WhyEndToEndTests {
    /// Chunks a peer's index holds, straight from its `chunks` table.
    static func held(_ database: String) throws -> Set<Int64> {
        let db = try SQLiteConnection(path: database, mode: .readOnly)
        return Set(try db.query("SELECT chunk_id FROM chunks") { $0.int(0) })
    }

    @Test("why on a peer left stuck on purpose (the owner and the only holder of some chunks stopped) names those chunks and their last holder")
    func stuckPeer() async throws {
        // A ring of two: peer2 gets peer1's share only from peer1, which uploads slowly: about
        // ten chunks at 40 KiB/s, so peer2 still lacks some of them 20 s on, however loaded
        // the machine (with five, a loaded CI run once killed peer1 only after peer2 was done).
        let chunkCount: Int64 = 21
        let swarm = try await Swarm.start(fileSize: 2_097_152, peers: 2, launchPeers: false)
        var processes = [swarm.owner]
        defer { for p in processes { p.signal(SIGKILL) } }
        let slow = try swarm.launch(1, extra: ["--max-upload-rate", "40KiB"], lines: true)
        processes.append(slow)
        let stuck = try swarm.launch(2, lines: true)
        processes.append(stuck)
        // Once peer2 has a chunk from peer1 and is waiting on two more: peer1 then offers
        // more than it has sent, and requests are outstanding when it goes.
        let waiting = OutstandingRequests(at: "peer1", atLeast: 2, afterReceiving: 1)
        let first = await stuck.waitForLine(timeout: .seconds(90)) { waiting.reached(after: $0) }
        try #require(first != nil, "peer2 never waited on peer1:\n\(swarm.log(of: 2))\n\(swarm.log(of: 1))")
        // And peer1 holds its whole share, so that each chunk peer2 lacks is one peer1 offers:
        // killed earlier, peer1 would leave chunks that only the owner ever held.
        let shareHeld = await slow.waitForLine(timeout: .seconds(60)) { $0.contains("nothing more needed from the owner") }
        try #require(shareHeld != nil, "peer1 never held its share:\n\(swarm.log(of: 1))")

        // Stop the owner and peer1 (only processes this test started), and wait for peer2
        // to see the loss: its requests to peer1 are then abandoned and its offer recorded.
        for p in [swarm.owner, slow] { p.signal(SIGKILL) }
        for p in [swarm.owner, slow] { #expect(await p.waitForExit(timeout: .seconds(30)) != nil) }
        let lost = await stuck.waitForLine(timeout: .seconds(60)) { $0.contains("download neighbour") && ($0.contains("lost") || $0.contains("not reachable")) }
        try #require(lost != nil, "peer2 did not notice peer1 leaving:\n\(swarm.log(of: 2))")

        let db = swarm.database(of: 2)
        let missing = Set(0..<chunkCount).subtracting(try Self.held(db))
        try #require(!missing.isEmpty, "peer2 finished before peer1 was stopped")
        // The rows of the loss are committed a few milliseconds after its log line: poll
        // (each round runs the binary; bounded) until the report names peer1 as a holder.
        var json: [String: Any] = [:]
        for _ in 0..<50 {
            let result = try await runCommand(Binaries.inspect, ["why", "--db", db, "--format", "json", "--stalled-after", "0"])
            #expect(result.status == 0, "\(result.stderr)")
            json = (try? parseJSON(result.stdout) as? [String: Any]) ?? [:]
            if (json["abandoned_requests"] as? [Any])?.isEmpty == false { break }
        }
        #expect(json["verdict"] as? String == "stuck", "\(json)")
        #expect(json["running"] as? Bool == true)
        let ranges = try #require(json["missing_ranges"] as? [[String: Any]])
        var named = Set<Int64>()
        var namedPeer1 = false
        for range in ranges {
            let first = Int64(range["first"] as? Int ?? -1), last = Int64(range["last"] as? Int ?? -2)
            named.formUnion(first <= last ? Set(first...last) : [])
            let holders = (range["holders"] as? [[String: Any]] ?? []).compactMap { $0["source"] as? String }
            // The owner's CHUNK-LIST to peer2 offers every chunk (it hands out only the share,
            // but lists all it has). peer1 offered those its HAVEs reached peer2 with: they
            // queue behind its 40 KiB/s of pieces, so the last few may never have arrived.
            #expect(holders.contains("owner") && Set(holders).isSubset(of: ["peer1", "owner"]), "chunks \(first)-\(last): holders \(holders)")
            namedPeer1 = namedPeer1 || holders.contains("peer1")
        }
        #expect(namedPeer1, "no missing range names peer1 as a holder: \(ranges)")
        #expect(named == missing, "named \(named.sorted()), missing \(missing.sorted())")
        let sources = json["sources"] as? [[String: Any]] ?? []
        let offered = Dictionary(sources.compactMap { s in (s["source"] as? String).map { ($0, s["offered"] as? Int ?? -1) } }, uniquingKeysWith: max)
        #expect(offered["owner"] == Int(chunkCount) && (offered["peer1"] ?? 0) > 1, "\(offered)")
        let abandoned = (json["abandoned_requests"] as? [[String: Any]] ?? []).compactMap { $0["source"] as? String }
        #expect(abandoned == ["peer1"], "\(json)")
        #expect((json["lost_to_timeouts_us"] as? Int ?? 0) > 0)

        let table = try await runCommand(Binaries.inspect, ["why", "--db", db, "--stalled-after", "0"])
        #expect(table.status == 0 && table.stdout.hasPrefix("stuck: \(missing.count) chunk\(missing.count == 1 ? "" : "s") missing"), "\(table.stdout)\n\(table.stderr)")
        #expect(table.stdout.contains("peer1 (peer, "), "\(table.stdout)")
        print("why, table:\n\(table.stdout)")
        stuck.signal(SIGKILL)
        #expect(await stuck.waitForExit(timeout: .seconds(30)) != nil)
    }

    @Test("why, in both formats, leaves the index byte for byte as it was")
    func readOnly() async throws {
        let f = try InspectFixture.stuckPeer()
        let before = fileDigest(f.db)
        for format in ["table", "json"] {
            let result = try await runCommand(Binaries.inspect, ["why", "--db", f.db, "--format", format])
            #expect(result.status == 0 && result.stderr.isEmpty, "\(format): \(result.stderr)")
            if format == "json" { _ = try parseJSON(result.stdout) }
        }
        #expect(fileDigest(f.db) == before, "the index changed")
        let wal = PosixFileSize.of(f.db + "-wal")
        #expect(wal == nil || wal == 0, "the reader wrote \(wal ?? 0) bytes of WAL")
    }

    @Test("bad input: a missing or invalid index gives one line and a non-zero exit; csv is refused")
    func badInput() async throws {
        let dir = temporaryDirectory()
        let missing = try await runCommand(Binaries.inspect, ["why", "--db", dir + "/nope.db"])
        #expect(missing.status != 0 && missing.stdout.isEmpty)
        #expect(missing.stderr.split(separator: "\n").count == 1 && missing.stderr.contains("no such file"), "\(missing.stderr)")
        try Data("not a database".utf8).write(to: URL(fileURLWithPath: dir + "/bad.db"))
        let bad = try await runCommand(Binaries.inspect, ["why", "--db", dir + "/bad.db"])
        #expect(bad.status != 0 && bad.stderr.split(separator: "\n").count == 1, "\(bad.stderr)")
        let f = try InspectFixture.stuckPeer()
        let csv = try await runCommand(Binaries.inspect, ["why", "--db", f.db, "--format", "csv"])
        #expect(csv.status != 0 && csv.stderr.contains("not csv"), "\(csv.stderr)")
    }
}
