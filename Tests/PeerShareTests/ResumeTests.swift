import Foundation
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareStore

/// Checks that every peer database of a finished swarm is sound and proves, from its own
/// provenance, that nothing verified was fetched twice.
func expectSoundIndexes(_ swarm: Swarm, sourceDigest: Digest32?, tree: VariedTree? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let expectedTree = try tree.map { try treeListing($0.path, normalising: true) }
    for i in 1...swarm.count {
        let dir = swarm.dir + "/peer\(i)"
        if let tree, let expectedTree {
            let copy = try treeListing(dir + "/" + tree.name)
            let identical = copy == expectedTree
            #expect(identical, "peer\(i)'s tree differs:\n\(listingDifference(expectedTree, copy))", sourceLocation: sourceLocation)
        } else {
            #expect(fileDigest(dir + "/source.bin") == sourceDigest, "peer\(i)'s copy differs", sourceLocation: sourceLocation)
        }
        let db = try SQLiteConnection(path: swarm.database(of: i), mode: .readOnly)
        #expect(try db.scalarText("PRAGMA integrity_check") == "ok", sourceLocation: sourceLocation)
        // A chunk requested after the moment it was verified would mean work redone.
        let refetched = try db.query("""
            SELECT e.chunk_id FROM events e JOIN chunks c ON c.chunk_id = e.chunk_id
            WHERE e.kind = 'chunk_requested' AND e.at > c.received_at
            """) { $0.int(0) }
        #expect(refetched.isEmpty, "peer\(i) requested chunks it had already verified: \(refetched)", sourceLocation: sourceLocation)
        let twice = try db.query("SELECT chunk_id FROM transfers WHERE direction = 'in' AND outcome = 'verified' GROUP BY chunk_id HAVING count(*) > 1") { $0.int(0) }
        #expect(twice.isEmpty, "peer\(i) verified chunks twice: \(twice)", sourceLocation: sourceLocation)
        let summary = try String(contentsOfFile: dir + "/summary.txt", encoding: .utf8)
        let indexed = try db.query("SELECT chunk_id FROM chunks ORDER BY chunk_id") { "\($0.int(0))\n" }.joined()
        #expect(summary == indexed, "peer\(i)'s summary file differs from its index", sourceLocation: sourceLocation)
        for folder in [dir, dir + "/chunks"] {
            let stale = (try? FileManager.default.contentsOfDirectory(atPath: folder))?.filter { $0.hasPrefix(".peershare-tmp") } ?? []
            #expect(stale.isEmpty, "stale temporary files in \(folder): \(stale)", sourceLocation: sourceLocation)
        }
    }
    let ownerDB = try SQLiteConnection(path: swarm.dir + "/owner/owner.db", mode: .readOnly)
    #expect(try ownerDB.scalarText("PRAGMA integrity_check") == "ok", sourceLocation: sourceLocation)
}

/// What one incarnation of a peer was doing when it was killed, judged from its whole log.
enum KillPhase: String, CaseIterable, Sendable {
    case startup = "start-up", owner = "owner download", exchange, assembly
}

/// When to kill one incarnation of a peer.
enum KillPlan: Sendable {
    case afterLines(Int)
    case atAssembly
    case never
}

/// Runs one incarnation: watches its log lines, kills it with SIGKILL per the plan, and
/// reports the phase it died in (nil if it exited by itself). An incarnation still running
/// after `limit` is killed too and reported as not a planned kill, so the test fails with
/// its log instead of hanging.
func watch(_ process: ChildProcess, plan: KillPlan, limit: Duration = .seconds(120)) async -> (status: Int32?, phase: KillPhase?) {
    let watchdog = Task {
        try await Task.sleep(for: limit)
        process.signal(SIGKILL)  // ends `lines`, so the loop below ends
    }
    defer { watchdog.cancel() }
    var seen: [String] = []
    var killed = false
    for await line in process.lines {
        seen.append(line)
        guard !killed else { continue }
        switch plan {
        case .afterLines(let n) where seen.count >= n: killed = true
        case .atAssembly where line.contains(" assembling "): killed = true
        default: break
        }
        if killed { process.signal(SIGKILL) }
    }
    let status = await process.waitForExit(timeout: .seconds(30))
    guard killed, status == 128 + SIGKILL else { return (status, nil) }
    // The owner download and the exchange overlap, so the phase is named after the source
    // of the last chunk received before the kill.
    let lastReceived = seen.last { $0.contains(" received chunk ") }
    let phase: KillPhase
    if seen.contains(where: { $0.contains(" assembling ") }) && !seen.contains(where: { $0.contains(" assembled ") }) {
        phase = .assembly
    } else if let lastReceived {
        // In a private swarm the owner is named with its node ID ("from owner@1fe937e933ce").
        phase = lastReceived.contains(" from owner ") || lastReceived.contains(" from owner@") ? .owner : .exchange
    } else {
        phase = .startup
    }
    return (status, phase)
}

@Suite("Crash-safe resume: real processes, real SIGKILL", .serialized)
struct ResumeTests {
    /// PEERSHARE_TORTURE_KILLS and PEERSHARE_TORTURE_SEED override these (see tools/torture).
    static let environment = ProcessInfo.processInfo.environment

    @Test("torture: peers killed at random moments in every phase and relaunched all finish, losing nothing",
          // Privately in one layout: TLS and the ticket are the same over both, and the suite's time is finite.
          // A folder in both layouts, with files from empty to 2 MiB.
          arguments: [(StorageLayout.chunkFiles, false, false), (.singleFile, false, false), (.chunkFiles, true, false),
                      (.chunkFiles, false, true), (.singleFile, false, true)])
    func torture(storage: StorageLayout, isPrivate: Bool, folder: Bool) async throws {
        let tree = folder ? try await VariedTree.make(in: temporaryDirectory("torture-tree"), files: 120, largeFileSize: 2 << 20) : nil
        let targetKills = Int(Self.environment["PEERSHARE_TORTURE_KILLS"] ?? "") ?? 20
        let seed = UInt64(Self.environment["PEERSHARE_TORTURE_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64(UInt32.max))
        print("torture\(isPrivate ? " (private)" : "")\(folder ? " (folder)" : ""): seed \(seed) (PEERSHARE_TORTURE_SEED=\(seed) repeats this run), \(targetKills) kills")
        var random = SeededGenerator(seed: seed)
        var phases: [KillPhase: Int] = [:]
        var kills = 0
        var round = 0
        // Rounds of fresh swarms until enough kills have landed in every phase.
        while (kills < targetKills || KillPhase.allCases.dropFirst().contains { phases[$0, default: 0] == 0 }) && round < 12 + targetKills / 5 {
            round += 1
            let budget = min(8, max(3, targetKills - kills))
            var swarm = try await Swarm.start(
                fileSize: 4 << 20, peers: 5, ownerOptions: ["--max-upload-rate", "2MiB"],
                peerOptions: ["--max-upload-rate", "1MiB", "--neighbour-timeout", "30"], launchPeers: false, storage: storage, isPrivate: isPrivate,
                sharing: tree?.path, label: "torture\(round)-\(storage)\(isPrivate ? "-private" : "")\(folder ? "-folder" : "")")
            var planned = 0
            func nextPlan() -> KillPlan {
                guard planned < budget else { return .never }
                planned += 1
                return Int.random(in: 0..<3, using: &random) == 0 ? .atAssembly : .afterLines(Int.random(in: 2...90, using: &random))
            }
            let results = try await withThrowingTaskGroup(of: (Int, Int32?, KillPhase?).self) { group in
                for i in 1...5 {
                    let process = try swarm.launch(i, lines: true)
                    swarm.peers.append(process)
                    let plan = nextPlan()
                    group.addTask { let r = await watch(process, plan: plan); return (i, r.status, r.phase) }
                }
                var finished: [Int: Int32?] = [:]
                while let (i, status, phase) = try await group.next() {
                    if let phase {
                        kills += 1
                        phases[phase, default: 0] += 1
                        let process = try swarm.launch(i, lines: true)
                        swarm.peers[i - 1] = process
                        let plan = nextPlan()
                        group.addTask { let r = await watch(process, plan: plan); return (i, r.status, r.phase) }
                    } else {
                        finished[i] = status
                    }
                }
                return finished
            }
            await swarm.stopAll()
            for i in 1...5 {
                #expect(results[i] == 0, "round \(round), peer\(i) ended with \(String(describing: results[i])):\n\(swarm.log(of: i))")
            }
            try expectSoundIndexes(swarm, sourceDigest: tree == nil ? fileDigest(swarm.source) : nil, tree: tree)
        }
        print("torture: \(kills) kills over \(round) rounds: " + KillPhase.allCases.map { "\($0.rawValue) \(phases[$0, default: 0])" }.joined(separator: ", "))
        #expect(kills >= targetKills)
        for phase in [KillPhase.owner, .exchange, .assembly] {
            #expect(phases[phase, default: 0] > 0, "no kill landed in the \(phase.rawValue) phase")
        }
    }

    @Test("a truncated, a flipped and a deleted chunk file are found at start-up and fetched again")
    func damagedChunks() async throws {
        let swarm = try await Swarm.start(fileSize: 20 * 102_400, peers: 2)
        #expect(await swarm.waitForPeers() == [0, 0])
        // Damage chunks outside peer 1's share, so that only the fallback to the owner can mend them.
        let notShared = try SQLiteConnection(path: swarm.database(of: 1), mode: .readOnly)
            .query("SELECT chunk_id FROM manifest_chunks WHERE chunk_id NOT IN (SELECT chunk_id FROM share) ORDER BY chunk_id") { $0.int(0) }
        try #require(notShared.count == 10)
        let (a, b, c) = (notShared[3], notShared[5], notShared[7])
        func chunkFile(_ id: Int64) -> String { swarm.dir + "/peer1/chunks/" + String(format: "%06d.chunk", id) }
        let truncated = chunkFile(a), flipped = chunkFile(b), deleted = chunkFile(c)
        let original5 = try Data(contentsOf: URL(fileURLWithPath: flipped))
        try FileHandle(forWritingAtPath: truncated)!.truncate(atOffset: 100)
        var damaged = original5
        damaged[4321] ^= 0xff
        try damaged.write(to: URL(fileURLWithPath: flipped))
        try FileManager.default.removeItem(atPath: deleted)

        // An ordinary restart checks sizes: the truncated and deleted chunks are caught.
        // Peer 2 is gone, so the neighbour timeout sends peer 1 to the owner for them.
        let options = ["--neighbour-timeout", "0.5"]
        let first = try swarm.launch(1, extra: options)
        #expect(await first.waitForExit(timeout: .seconds(60)) == 0, "\(swarm.log(of: 1))")
        #expect(try Data(contentsOf: URL(fileURLWithPath: truncated)).count == 102_400)
        #expect(FileManager.default.fileExists(atPath: deleted))
        #expect(try Data(contentsOf: URL(fileURLWithPath: flipped)) == damaged, "a plain restart does not re-hash")

        // --recheck re-hashes everything and catches the flipped byte.
        let second = try swarm.launch(1, extra: options + ["--recheck"])
        #expect(await second.waitForExit(timeout: .seconds(60)) == 0, "\(swarm.log(of: 1))")
        await swarm.stopAll()
        #expect(try Data(contentsOf: URL(fileURLWithPath: flipped)) == original5)

        let db = try SQLiteConnection(path: swarm.database(of: 1), mode: .readOnly)
        let dropped = try db.query("SELECT chunk_id FROM events WHERE kind = 'chunk_dropped' ORDER BY id") { $0.int(0) }
        #expect(dropped == [a, c, b])
        let refetched = try db.query("""
            SELECT t.chunk_id, s.kind FROM transfers t JOIN sources s ON s.id = t.source_id
            WHERE t.direction = 'in' AND t.outcome = 'verified' AND t.chunk_id IN (?, ?, ?)
            ORDER BY t.id
            """, a, b, c) { "\($0.int(0)):\($0.text(1))" }
        #expect(refetched.count == 6, "each was received once before the damage and once after: \(refetched)")
        #expect(refetched.suffix(3) == ["\(a):owner", "\(c):owner", "\(b):owner"], "\(refetched)")
        #expect(try db.scalarInt("SELECT count(*) FROM events WHERE kind = 'fallback'") == 2)
        #expect(try db.scalarInt("SELECT count(*) FROM chunks") == 20)
        #expect(fileDigest(swarm.dir + "/peer1/source.bin") == fileDigest(swarm.source))
    }

    @Test("a deleted summary file is regenerated byte-identical", arguments: StorageLayout.allCases)
    func summaryRegenerated(storage: StorageLayout) async throws {
        let swarm = try await Swarm.start(fileSize: 7 * 102_400 + 3, peers: 2, storage: storage, label: "summary-\(storage)")
        #expect(await swarm.waitForPeers() == [0, 0])
        let path = swarm.dir + "/peer2/summary.txt"
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        try FileManager.default.removeItem(atPath: path)
        // Complete, and its downloader finished before: it rewrites the summary and exits.
        let again = try swarm.launch(2, extra: ["--neighbour-timeout", "0.5"])
        #expect(await again.waitForExit(timeout: .seconds(60)) == 0, "\(swarm.log(of: 2))")
        await swarm.stopAll()
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        #expect(before == Data((0..<8).map { "\($0)\n" }.joined().utf8))
    }

    @Test("an owner restart reuses its chunks; a changed file is refused unless --new-manifest", arguments: StorageLayout.allCases)
    func ownerRestart(storage: StorageLayout) async throws {
        let dir = temporaryDirectory()
        let source = dir + "/source.bin"
        _ = try writeTestFile(source, size: 30 * 102_400)
        func startOwner(_ options: [String] = []) async throws -> (ChildProcess, String?) {
            let owner = try Swarm.startOwner(dir: dir, source: source, peers: 2, options: options + ["--storage", storage.rawValue])
            return (owner, await owner.waitForLine(prefix: "listening on", timeout: .seconds(30)))
        }
        let (first, ready) = try await startOwner()
        #expect(ready != nil)
        first.signal(SIGTERM)
        #expect(await first.waitForExit(timeout: .seconds(30)) == 0, "SIGTERM is a clean stop")
        let chunk = dir + "/owner/chunks/000010.chunk"
        let stamp = try? FileManager.default.attributesOfItem(atPath: chunk)[.modificationDate] as? Date
        #expect((stamp != nil) == (storage == .chunkFiles), "chunk files only in the chunk-files layout")

        let (second, readyAgain) = try await startOwner()
        #expect(readyAgain != nil)
        await second.stop()
        let log = try String(contentsOfFile: dir + "/owner.log", encoding: .utf8)
        #expect(log.contains("reusing 30 chunks of source.bin from an earlier run (0 cut again from the source)"))
        #expect(log.contains("unchanged, not re-read"))
        if storage == .chunkFiles {
            #expect(try FileManager.default.attributesOfItem(atPath: chunk)[.modificationDate] as? Date == stamp, "chunk files are not rewritten")
            // A deleted chunk file is cut again from the source.
            try FileManager.default.removeItem(atPath: chunk)
            let (third, _) = try await startOwner()
            await third.stop()
            #expect(FileManager.default.contents(atPath: chunk)?.count == 102_400)
        }

        // The same name with other bytes is refused, clearly...
        _ = try writeTestFile(source, size: 30 * 102_400, seed: 9)
        let refused = try await runCommand(Binaries.peershare, ["owner", "--file", source, "--port", "0", "--dir", dir + "/owner", "--storage", storage.rawValue])
        #expect(refused.status != 0)
        #expect(refused.stderr.split(separator: "\n").last?.contains("changed since it was split") == true, "\(refused.stderr)")
        // ...unless a new manifest is asked for; the old index is kept aside.
        let (fresh, freshReady) = try await startOwner(["--new-manifest"])
        #expect(freshReady != nil)
        await fresh.stop()
        let kept = try FileManager.default.contentsOfDirectory(atPath: dir + "/owner").filter { $0.hasPrefix("owner.db.replaced-") }
        #expect(!kept.isEmpty)
        let db = try SQLiteConnection(path: dir + "/owner/owner.db", mode: .readOnly)
        #expect(try db.scalarText("SELECT hex(file_sha256) FROM manifest")?.lowercased() == fileDigest(source)?.hex)
    }

    @Test("a neighbour that is down for a while, then back, is resumed", arguments: StorageLayout.allCases)
    func neighbourComesBack(storage: StorageLayout) async throws {
        var swarm = try await Swarm.start(fileSize: 3 << 20, peers: 2, ownerOptions: ["--max-upload-rate", "4MiB"],
                                          peerOptions: ["--max-upload-rate", "1MiB"], launchPeers: false, storage: storage, label: "comesBack-\(storage)")
        let first = try swarm.launch(1, lines: true)
        let second = try swarm.launch(2, lines: true)
        swarm.peers = [first, second]
        // Kill peer 2 once peer 1 is receiving from it, and bring it back once peer 1 has
        // noticed (a retry line).
        #expect(await first.waitForLine(timeout: .seconds(30)) { $0.contains("received chunk") && $0.contains("from peer2") } != nil)
        second.signal(SIGKILL)
        #expect(await second.waitForExit(timeout: .seconds(10)) == 128 + SIGKILL)
        #expect(await first.waitForLine(timeout: .seconds(30)) { $0.contains("download neighbour") && $0.contains("not reachable") } != nil)
        let back = try swarm.launch(2)
        swarm.peers[1] = back
        let statuses = await swarm.waitForPeers()
        await swarm.stopAll()
        #expect(statuses == [0, 0], "\(swarm.log(of: 1))\n\(swarm.log(of: 2))")
        try expectSoundIndexes(swarm, sourceDigest: fileDigest(swarm.source))
        let db = try SQLiteConnection(path: swarm.database(of: 1), mode: .readOnly)
        let reconnected = try db.scalarInt("SELECT min(id) FROM events WHERE kind = 'connected' AND message LIKE 'connected to download neighbour%' AND id > (SELECT min(id) FROM events WHERE kind = 'connect_retry')")
        #expect(reconnected != nil, "peer1 never reconnected to peer2")
        let afterReturn = try db.scalarInt("SELECT count(*) FROM events WHERE kind = 'chunk_received' AND message LIKE '%from peer2%' AND id > ?", reconnected ?? Int64.max)
        #expect((afterReturn ?? 0) > 0, "the exchange did not resume after peer2 came back")
        #expect(try db.scalarInt("SELECT count(*) FROM events WHERE kind = 'fallback'") == 0)
    }

    @Test("with a neighbour gone for good, the peer falls back to the owner and finishes", arguments: StorageLayout.allCases)
    func neighbourGoneForGood(storage: StorageLayout) async throws {
        var swarm = try await Swarm.start(fileSize: 9 * 102_400, peers: 2, launchPeers: false, storage: storage, label: "goneForGood-\(storage)")
        // Peer 2 never starts, so peer 1's download neighbour never answers.
        let peer = try swarm.launch(1, extra: ["--neighbour-timeout", "1", "--wait-for-downloaders", "0"])
        swarm.peers = [peer]
        #expect(await peer.waitForExit(timeout: .seconds(60)) == 0, "\(swarm.log(of: 1))")
        await swarm.stopAll()
        #expect(fileDigest(swarm.dir + "/peer1/source.bin") == fileDigest(swarm.source))
        let db = try SQLiteConnection(path: swarm.database(of: 1), mode: .readOnly)
        #expect(try db.scalarText("SELECT message FROM events WHERE kind = 'fallback'")?.contains("unreachable for 1.0 s") == true)
        #expect(try db.scalarInt("SELECT count(*) FROM chunks c JOIN sources s ON s.id = c.source_id WHERE s.kind = 'owner'") == 9)
    }

    @Test("a complete peer whose downloader never connects stops waiting after the neighbour timeout", arguments: StorageLayout.allCases)
    func downloaderNeverComes(storage: StorageLayout) async throws {
        // The torture test found this: peer5 told peer1 it was complete, peer1 was killed
        // before it recorded that, and peer5 had left by the time peer1 restarted. Here
        // peer 2 (peer 1's downloader and neighbour) simply never starts.
        var swarm = try await Swarm.start(fileSize: 9 * 102_400, peers: 2, launchPeers: false, storage: storage, label: "neverComes-\(storage)")
        let peer = try swarm.launch(1, extra: ["--neighbour-timeout", "1"])
        swarm.peers = [peer]
        #expect(await peer.waitForExit(timeout: .seconds(60)) == 0, "\(swarm.log(of: 1))")
        await swarm.stopAll()
        #expect(fileDigest(swarm.dir + "/peer1/source.bin") == fileDigest(swarm.source))
        let db = try SQLiteConnection(path: swarm.database(of: 1), mode: .readOnly)
        #expect(try db.scalarText("SELECT message FROM events WHERE message LIKE 'stopped waiting for downloaders%'")?
            .contains("0 reported complete, and none has connected for 1.0 s") == true, "\(swarm.log(of: 1))")
        #expect(try db.scalarText("SELECT message FROM events WHERE kind = 'stopped' ORDER BY id LIMIT 1") == "done: file assembled and no downloader left to wait for")
    }

    @Test("SIGTERM mid-transfer stops a peer cleanly, and a relaunch resumes", arguments: StorageLayout.allCases)
    func gracefulStop(storage: StorageLayout) async throws {
        var swarm = try await Swarm.start(fileSize: 2 << 20, peers: 1, ownerOptions: ["--max-upload-rate", "1MiB"], launchPeers: false,
                                          storage: storage, label: "graceful-\(storage)")
        let peer = try swarm.launch(1, lines: true)
        swarm.peers = [peer]
        #expect(await peer.waitForLine(timeout: .seconds(30)) { $0.contains("received chunk 3 ") } != nil)
        peer.signal(SIGTERM)
        #expect(await peer.waitForExit(timeout: .seconds(30)) == 0)
        let db = try SQLiteConnection(path: swarm.database(of: 1), mode: .readOnly)
        #expect(try db.scalarText("SELECT outcome FROM runs ORDER BY id DESC LIMIT 1") == "stopped by signal")
        let heldAtStop = try db.scalarInt("SELECT count(*) FROM chunks") ?? 0
        #expect(heldAtStop >= 4 && heldAtStop < 21)
        db.close()
        // The file is assembled while chunks arrive; a clean stop deletes the unfinished
        // draft instead of leaving it for the next start.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: swarm.dir + "/peer1").filter { $0.hasPrefix(".peershare-tmp-") }
        #expect(leftovers.isEmpty, "left behind by a clean stop: \(leftovers)")

        let again = try swarm.launch(1)
        swarm.peers = [again]
        #expect(await again.waitForExit(timeout: .seconds(60)) == 0, "\(swarm.log(of: 1))")
        await swarm.stopAll()
        try expectSoundIndexes(swarm, sourceDigest: fileDigest(swarm.source))
        #expect(try String(contentsOfFile: swarm.dir + "/peer1.log", encoding: .utf8).contains("resuming with \(heldAtStop) chunks"))
    }
}
