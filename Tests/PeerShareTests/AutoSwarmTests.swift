import Foundation
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareStore

/// Swarms that wire themselves (issue 15), with real processes on 127.0.0.1.
@Suite("Swarms that wire themselves through the owner", .serialized)
struct AutoSwarmTests {
    @Test("30 peers started with only --owner all complete, and the owner serves at most 1.5 copies", arguments: StorageLayout.allCases)
    func thirtyPeers(storage: StorageLayout) async throws {
        let dir = temporaryDirectory("auto30-\(storage)")
        let started = ContinuousClock.now
        let result = try await runCommand(Binaries.peershare, [
            "demo", "--topology", "auto", "--peers", "30", "--size", "8MiB", "--dir", dir, "--quiet", "--storage", storage.rawValue,
        ], timeout: .seconds(300))
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("result: 30/30 peers complete and identical"), "\(result.stdout)")
        let owner = try SQLiteConnection(path: dir + "/owner/owner.db", mode: .readOnly)
        let chunks = try #require(try owner.scalarInt("SELECT chunk_count FROM manifest"))
        let served = try #require(try owner.scalarInt("SELECT count(*) FROM transfers WHERE direction = 'out'"))
        let copies = Double(served) / Double(chunks)
        print("auto swarm, 30 peers, 8 MiB, \(storage.rawValue): \(ContinuousClock.now - started), owner served \(String(format: "%.2f", copies)) copies")
        #expect(copies <= 1.5, "the owner served \(copies) copies of the file")
        // The membership list: every peer, at the address it listened on, with what it last
        // reported holding (a peer exiting may not get its last HAVEs out, so not always all).
        #expect(try owner.scalarInt("SELECT count(*) FROM members") == 30)
        #expect(try owner.scalarInt("SELECT count(*) FROM members WHERE held_count > 0 AND address LIKE '127.0.0.1:%' AND last_seen >= first_seen") == 30)
        for i in 1...30 {
            let sources = try chunkSources(dir + "/peer\(i)/peer.db")
            #expect(sources.keys.contains { $0.hasPrefix("peer") }, "peer\(i) got everything from the owner: \(sources.mapValues(\.count))")
        }
    }

    @Test("a peer listening on 0.0.0.0 is handed out at the address the owner saw, one with --advertise at that address")
    func advertisedAddresses() async throws {
        let swarm = try await Swarm.start(fileSize: 1_048_576, peers: 3, launchPeers: false)
        let owner = "127.0.0.1:\(swarm.ownerPort)"
        let ports = try reserveFreePorts(2)
        var processes: [ChildProcess] = []
        defer { for process in processes { process.signal(SIGKILL) } }
        // Both seed the whole file, and serve at a crawl so that the third peer finds them busy.
        let wildcard = try startPeer("wild", storage: .chunkFiles, dir: swarm.dir, owner: owner, host: "0.0.0.0", port: ports[0],
                                     options: ["--keep-serving"])
        let advertised = try startPeer("adv", storage: .chunkFiles, dir: swarm.dir, owner: owner, host: "0.0.0.0", port: ports[1],
                                       options: ["--keep-serving", "--advertise", "127.0.0.1:\(ports[1])"])
        processes += [wildcard, advertised]
        #expect(await waitForAssembly(wildcard, timeout: .seconds(60)))
        #expect(await waitForAssembly(advertised, timeout: .seconds(60)))
        let joiner = try startPeer("joiner", storage: .chunkFiles, dir: swarm.dir, owner: owner, options: ["--wait-for-downloaders", "0"])
        processes.append(joiner)
        let status = await joiner.waitForExit(timeout: .seconds(60))
        for process in processes { await process.stop() }
        await swarm.owner.stop()
        #expect(status == 0, "\(tail(swarm.dir + "/joiner.log"))")
        let log = (try? String(contentsOfFile: swarm.dir + "/joiner.log", encoding: .utf8)) ?? ""
        #expect(log.contains("connected to wild at 127.0.0.1:\(ports[0])"), "\(tail(swarm.dir + "/joiner.log"))")
        #expect(log.contains("connected to adv at 127.0.0.1:\(ports[1])"), "\(tail(swarm.dir + "/joiner.log"))")
        let sources = try chunkSources(swarm.dir + "/joiner/peer.db")
        #expect(sources["owner"] == nil || sources["owner"]!.count < 11, "\(sources.mapValues(\.count))")
    }

    @Test("a pinned neighbour killed mid-transfer: the owner fills in at once, and the peer goes back to the neighbour when it returns",
          arguments: StorageLayout.allCases)
    func pinnedNeighbourReturns(storage: StorageLayout) async throws {
        let swarm = try await Swarm.start(fileSize: 2_097_152, peers: 1, launchPeers: false, storage: storage)
        var processes: [ChildProcess] = []
        defer { for process in processes { process.signal(SIGKILL) } }
        // The neighbour seeds the whole file, at 200 KiB/s so that the kill lands mid-transfer.
        let port = try reserveFreePorts(1)[0]
        let seeding = ["--keep-serving", "--neighbours", "0", "--max-upload-rate", "200KiB"]
        let first = try startPeer("seed", storage: storage, dir: swarm.dir, owner: "127.0.0.1:\(swarm.ownerPort)", port: port, options: seeding)
        processes.append(first)
        #expect(await waitForAssembly(first, timeout: .seconds(60)))
        // The owner comes back at a crawl (30 KiB/s), dividing the file among 4: the peer's
        // share is 5 of the 21 chunks, and it gets most chunks from its neighbour while that is up.
        await swarm.owner.stop()
        let slowOwner = try Swarm.startOwner(dir: swarm.dir, source: swarm.source, peers: 4,
                                             options: ["--max-upload-rate", "30KiB", "--storage", storage.rawValue])
        processes.append(slowOwner)
        let ownerPort = try await listeningPort(of: slowOwner)
        let peer = try startPeer("peer", storage: storage, dir: swarm.dir, owner: "127.0.0.1:\(ownerPort)",
                                 downloadFrom: ["127.0.0.1:\(port)"], options: ["--wait-for-downloaders", "0"])
        processes.append(peer)
        // Killed once the peer holds its share (its first chunks come from the neighbour too)
        // and awaits two chunks from it.
        let outstanding = OutstandingRequests(at: "seed", atLeast: 2, afterReceiving: 8)
        #expect(await peer.waitForLine(timeout: .seconds(60)) { outstanding.reached(after: $0) } != nil)
        first.signal(SIGKILL)
        _ = await first.waitForExit(timeout: .seconds(10))
        #expect(await peer.waitForLine(timeout: .seconds(30)) { $0.contains("no download neighbour is reachable") } != nil,
                "\(tail(swarm.dir + "/peer.log"))")
        let restartedAt = Clock.nowMicros()
        let second = try startPeer("seed", storage: storage, dir: swarm.dir, owner: "127.0.0.1:\(ownerPort)", port: port, options: seeding)
        processes.append(second)
        let assembled = await waitForAssembly(peer, timeout: .seconds(60))
        for process in processes { await process.stop() }
        #expect(assembled, "\(tail(swarm.dir + "/peer.log"))")
        #expect(fileDigest(swarm.dir + "/peer/source.bin") == fileDigest(swarm.source))
        let db = try SQLiteConnection(path: swarm.dir + "/peer/peer.db", mode: .readOnly)
        let afterReturn = try db.scalarInt("""
            SELECT count(*) FROM chunks c JOIN sources s ON s.id = c.source_id WHERE s.name = 'seed' AND c.received_at > \(restartedAt)
            """)
        #expect((afterReturn ?? 0) > 0, "nothing came from the neighbour after it returned")
        let connected = try eventMessages(swarm.dir + "/peer/peer.db", kind: "connected")
        #expect(connected.contains { $0.contains("a download neighbour is reachable again") }, "\(connected)")
    }
}
