import Foundation
import NIOCore
import NIOPosix
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareNode
@testable import PeerShareStore
@testable import PeerShareWire
import PeerShareTrust

// Hostile input against real processes: a rogue client throws bad bytes at a real owner and
// a real peer, a rogue uploader feeds a real peer chunks that fail verification, and a rogue
// owner hands a real peer a manifest whose name would escape its folder.

/// One attack: what the rogue client sends once connected, and whether it then half-closes.
struct RogueCase: Sendable, CustomStringConvertible {
    let description: String
    let bytes: [UInt8]
    var halfCloseAfter = false
}

/// The attacks of issue 5 against a node serving the file with `fileID` and `chunkCount` chunks.
func rogueCases(fileID: Digest32, chunkCount: Int, seed: UInt64) -> [RogueCase] {
    func frames(_ messages: [PeerMessage]) -> [UInt8] {
        var buffer = ByteBuffer()
        for message in messages { message.encodeFrame(into: &buffer) }
        return Array(buffer.readableBytesView)
    }
    let hello = PeerMessage.hello(Hello(role: .peer, fileID: fileID, name: "rogue"))
    var random = SeededGenerator(seed: seed)
    let garbage = (0..<65_536).map { _ in UInt8.random(in: 0...255, using: &random) }
    let helloFrame = frames([hello])
    return [
        // The length alone would ask for 4 GiB; 1 MiB of body follows to see it is not buffered.
        RogueCase(description: "a length of 0xFFFFFFFF", bytes: [0xff, 0xff, 0xff, 0xff] + [UInt8](repeating: 0x41, count: 1 << 20)),
        RogueCase(description: "a truncated frame followed by EOF", bytes: Array(helloFrame.prefix(helloFrame.count / 2)), halfCloseAfter: true),
        RogueCase(description: "random garbage", bytes: garbage),
        RogueCase(description: "an unknown message type", bytes: [0, 0, 0, 1, 0x7f]),
        RogueCase(description: "a wrong version", bytes: frames([.hello(Hello(version: 99, role: .peer, fileID: fileID, name: "rogue"))])),
        RogueCase(description: "a wrong file ID", bytes: frames([.hello(Hello(role: .peer, fileID: Digest32.of(Array("another swarm".utf8)), name: "rogue"))])),
        RogueCase(description: "out-of-range chunk IDs", bytes: frames([hello, .request(ChunkID(UInt32(chunkCount + 7)))])),
        RogueCase(description: "out-of-range HAVE", bytes: frames([hello, .have(ChunkID(UInt32.max))])),
        RogueCase(description: "a flood of requests", bytes: frames([hello] + Array(repeating: .request(ChunkID(0)), count: 10_000))),
        RogueCase(description: "10,000 GET-PEERS", bytes: frames([hello] + Array(repeating: .getPeers(wanted: 32), count: 10_000))),
        RogueCase(description: "an advertised address that is not an address",
                  bytes: frames([.hello(Hello(role: .peer, fileID: fileID, name: "rogue", listenPort: 7000, advertisedHost: "not an address"))])),
        RogueCase(description: "a version 2 HELLO", bytes: frames([.hello(Hello(version: 2, role: .peer, fileID: fileID, name: "rogue"))])),
        RogueCase(description: "a connection that never sends a handshake", bytes: []),
    ]
}

func helloBytes(fileID: Digest32) -> [UInt8] {
    Array(PeerMessage.hello(Hello(role: .peer, fileID: fileID, name: "rogue")).frame.readableBytesView)
}

/// A plain TCP connection that sends and receives raw bytes.
func rawConnect(port: Int) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
    try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelOption(.allowRemoteHalfClosure, value: true)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel,
                                                          configuration: .init(isOutboundHalfClosureEnabled: true))
            }
        }
}

/// Connects to 127.0.0.1:`port`, sends the case's bytes, and reads until the target closes
/// the connection. Returns whether it did within `timeout`, and our local port (which the
/// target's log line names).
func attack(port: Int, with rogue: RogueCase, timeout: Duration = .seconds(20)) async throws -> (closedByTarget: Bool, localPort: Int) {
    let channel = try await rawConnect(port: port)
    let localPort = channel.channel.localAddress?.port ?? 0
    let closed = try await channel.executeThenClose { inbound, outbound in
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                // Everything the target says is ignored; its closing the connection is the answer.
                do { for try await _ in inbound {} } catch {}
                return true
            }
            group.addTask {
                do {
                    if !rogue.bytes.isEmpty { try await outbound.write(ByteBuffer(bytes: rogue.bytes)) }
                    if rogue.halfCloseAfter { outbound.finish() }
                } catch {
                    // The target closed while we were still writing: the reader sees it too.
                }
                try await Task.sleep(for: timeout)  // the bound on the wait, not synchronisation
                return false
            }
            defer { group.cancelAll() }
            return try await group.next() ?? false
        }
    }
    return (closed, localPort)
}

/// Peak resident memory of a process we started, from /proc (bytes).
func peakResidentBytes(of pid: Int32) -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { return nil }
    return kib * 1024
}

/// A server on 127.0.0.1 speaking PeerShare framing, run by test code playing a rogue node.
/// Each accepted connection is handed to `handle`; the server stops when `body` returns.
func withRogueServer<R: Sendable>(
    security: PrivateSwarm? = nil,
    handle: @escaping @Sendable (PeerChannel) async throws -> Void,
    _ body: @escaping @Sendable (_ port: Int) async throws -> R
) async throws -> R {
    // In a private swarm the rogue is a member: TLS and the join proof come first.
    let listener = try await Transport.listen(host: "127.0.0.1", port: 0, security: security)
    return try await withThrowingTaskGroup(of: R?.self) { group in
        group.addTask {
            try await withThrowingDiscardingTaskGroup { connections in
                try await listener.channel.executeThenClose { inbound in
                    for try await connection in inbound {
                        connections.addTask { try? await handle(connection.channel) }
                    }
                }
            }
            return nil
        }
        group.addTask { try await body(listener.port) }
        defer { group.cancelAll() }
        while let result = try await group.next() {
            if let result { return result }
        }
        throw SwarmError("rogue server ended early")
    }
}

/// Entries directly under `dir`, for checking that nothing appeared outside the nodes' folders.
func entries(of dir: String) -> Set<String> {
    Set((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
}

@Suite("Hostile input: rogue clients, uploaders and owners against real processes", .serialized)
struct RogueTests {
    @Test("every attack on a real owner and a real peer is logged and cut off; honest peers still finish", arguments: StorageLayout.allCases)
    func rogueClients(storage: StorageLayout) async throws {
        let chunkCount = 31
        let size = chunkCount * 102_400 - 5
        let limits = ["--handshake-timeout", "1", "--max-connections", "16", "--stall-timeout", "2"]
        var swarm = try await Swarm.start(fileSize: size, peers: 2, ownerOptions: limits, peerOptions: limits, launchPeers: false, storage: storage)
        defer { Task { [swarm] in await swarm.stopAll() } }
        let fileID = try contentID(ofFile: swarm.source)
        let before = entries(of: swarm.dir)

        // Peer 1 gets its share and listens; its download neighbour (peer 2) is not up yet.
        let peer1 = try swarm.launch(1, lines: true)
        swarm.peers.append(peer1)
        #expect(await peer1.waitForLine(timeout: .seconds(30)) { $0.contains("share from the owner") } != nil, "peer1 got no share:\n\(swarm.log(of: 1))")
        // The owner's stdout carried only its "listening" line; its log goes to a file, so its
        // events are checked in its index below.

        let seed = UInt64(ProcessInfo.processInfo.environment["PEERSHARE_ROGUE_SEED"] ?? "") ?? UInt64.random(in: 1...1_000_000)
        print("rogue garbage seed: \(seed) (set PEERSHARE_ROGUE_SEED to replay)")
        let cases = rogueCases(fileID: fileID, chunkCount: chunkCount, seed: seed)
        for rogue in cases {
            for (target, port) in [("owner", swarm.ownerPort), ("peer1", swarm.peerPorts[0])] {
                let (closed, localPort) = try await attack(port: port, with: rogue)
                #expect(closed, "\(target) did not cut off \(rogue)")
                if target == "peer1" {
                    let line = await peer1.waitForLine(timeout: .seconds(10)) { $0.contains("dropped") && $0.contains(":\(localPort)") }
                    #expect(line != nil, "peer1 logged nothing for \(rogue):\n\(swarm.log(of: 1))")
                }
                #expect(swarm.owner.exitStatus == nil, "the owner died on \(rogue):\n\(tail(swarm.dir + "/owner.log"))")
                #expect(peer1.exitStatus == nil, "peer1 died on \(rogue):\n\(swarm.log(of: 1))")
            }
        }

        // Connections over the cap are refused at once. Sixteen rogues say HELLO and then
        // nothing, which holds their slots until the idle timeout; the seventeenth is refused.
        var held: [NIOAsyncChannel<ByteBuffer, ByteBuffer>] = []
        for _ in 0..<16 {
            let channel = try await rawConnect(port: swarm.peerPorts[0])
            try await channel.channel.writeAndFlush(ByteBuffer(bytes: helloBytes(fileID: fileID)))
            held.append(channel)
        }
        let (refused, _) = try await attack(port: swarm.peerPorts[0], with: RogueCase(description: "a connection over the cap", bytes: []))
        #expect(refused)
        #expect(await peer1.waitForLine(timeout: .seconds(10)) { $0.contains("refused a connection") } != nil, "no refusal logged:\n\(swarm.log(of: 1))")
        // The peer may already have closed some of them (they offer nothing, and the stall
        // timeout is 2 s), so "already closed" is not a failure here.
        for channel in held { try? await channel.channel.close() }

        // Memory stays bounded: nothing a rogue sent was buffered whole.
        for (name, pid) in [("owner", swarm.owner.pid), ("peer1", peer1.pid)] {
            let peak = peakResidentBytes(of: pid) ?? 0
            print("\(name) peak RSS after the attacks: \(peak / 1_048_576) MiB")
            #expect(peak < 160 << 20, "\(name) peak RSS \(peak / 1_048_576) MiB")
        }

        // An honest peer joins while a rogue keeps at the owner; both honest peers finish.
        let peer2 = try swarm.launch(2)
        swarm.peers.append(peer2)
        let (closedDuringTransfer, _) = try await attack(port: swarm.ownerPort, with: cases[2])
        #expect(closedDuringTransfer)
        let statuses = await swarm.waitForPeers(timeout: .seconds(120))
        #expect(statuses == [0, 0], "peers: \(statuses)\n\(swarm.log(of: 1))\n\(swarm.log(of: 2))")
        for i in 1...2 {
            #expect(fileDigest(swarm.dir + "/peer\(i)/source.bin") == fileDigest(swarm.source), "peer\(i)'s copy differs")
        }

        // Every attack is an event in the target's index.
        let ownerDB = try SQLiteConnection(path: swarm.dir + "/owner/owner.db", mode: .readOnly)
        let ownerErrors = try ownerDB.scalarInt("SELECT count(*) FROM events WHERE kind = 'protocol_error'") ?? 0
        #expect(ownerErrors >= Int64(cases.count), "owner logged \(ownerErrors) protocol errors for \(cases.count) attacks")
        let peerDB = try SQLiteConnection(path: swarm.database(of: 1), mode: .readOnly)
        let peerErrors = try peerDB.scalarInt("SELECT count(*) FROM events WHERE kind = 'protocol_error'") ?? 0
        #expect(peerErrors >= Int64(cases.count), "peer1 logged \(peerErrors) protocol errors for \(cases.count) attacks")
        #expect(try peerDB.scalarInt("SELECT count(*) FROM events WHERE kind = 'protocol_error' AND message LIKE 'refused a connection%'") == 1)

        // Nothing was written beside the nodes' folders and logs.
        let after = entries(of: swarm.dir)
        #expect(after.subtracting(before).subtracting(["peer1", "peer2", "peer1.log", "peer2.log"]).isEmpty, "unexpected files: \(after.subtracting(before))")
        await swarm.stopAll()
    }

    @Test("a rogue uploader's bad and unsolicited chunks are never kept; the peer avoids it and finishes from the owner", arguments: StorageLayout.allCases)
    func rogueUploader(storage: StorageLayout) async throws {
        let chunkCount = 12
        let size = chunkCount * 102_400 - 99
        // Five shares: the lone peer holds a fifth and must get the rest from its neighbour.
        let swarm = try await Swarm.start(fileSize: size, peers: 5, launchPeers: false, storage: storage)
        defer { Task { [swarm] in await swarm.stopAll() } }
        let fileID = try contentID(ofFile: swarm.source)
        let layout = try ChunkLayout(fileSize: Int64(size), chunkSize: 102_400)

        let bad = try await withRogueServer(handle: { connection in
            try await connection.executeThenClose { inbound, outbound in
                var messages = inbound.makeAsyncIterator()
                guard case .message(.hello)? = try await messages.next() else { return }
                try await outbound.write(.hello(Hello(role: .peer, fileID: fileID, name: "rogue-uploader")))
                try await outbound.write(.chunkList(bitfield: ChunkSet(capacity: chunkCount, layout.chunkIDs).bitfield))
                // Unsolicited: must be dropped without being written.
                try await outbound.write(.piece(ChunkID(0), ByteBuffer(repeating: 0x55, count: layout.size(of: ChunkID(0)))))
                while let message = try await messages.next() {
                    guard case .message(.request(let id)) = message else { continue }
                    // Right length, wrong bytes: only the hash can tell.
                    try await outbound.write(.piece(id, ByteBuffer(repeating: 0x5a, count: layout.size(of: id))))
                }
            }
        }) { roguePort in
            let dir = swarm.dir + "/victim"
            let port = try reserveFreePorts(1)[0]
            let victim = try ChildProcess(
                name: "victim", executable: Binaries.peershare,
                arguments: ["peer", "--name", "victim", "--owner", "127.0.0.1:\(swarm.ownerPort)", "--port", "\(port)",
                            "--download-from", "127.0.0.1:\(roguePort)", "--dir", dir, "--wait-for-downloaders", "0", "--storage", storage.rawValue],
                stdout: .discard, stderr: .file(swarm.dir + "/victim.log"))
            let status = await victim.waitForExit(timeout: .seconds(90))
            if status == nil { await victim.stop() }
            return status
        }
        let log = tail(swarm.dir + "/victim.log", lines: 60)
        #expect(bad == 0, "victim exit \(String(describing: bad)):\n\(log)")
        #expect(fileDigest(swarm.dir + "/victim/source.bin") == fileDigest(swarm.source), "the victim's copy differs")

        let db = try SQLiteConnection(path: swarm.dir + "/victim/peer.db", mode: .readOnly)
        let fromRogue = try db.scalarInt("SELECT count(*) FROM chunks c JOIN sources s ON s.id = c.source_id WHERE s.name = 'rogue-uploader'")
        #expect(fromRogue == 0, "chunks kept from the rogue")
        let rejected = try db.scalarInt("SELECT count(*) FROM transfers t JOIN sources s ON s.id = t.source_id WHERE s.name = 'rogue-uploader' AND t.outcome = 'rejected'") ?? 0
        #expect(rejected >= 1 && rejected <= 3, "rejected transfers recorded against the rogue: \(rejected)")
        let avoided = try db.scalarInt("SELECT count(*) FROM events WHERE kind = 'protocol_error' AND message LIKE '%avoiding download neighbour%'")
        #expect(avoided == 1, "the rogue should be avoided once:\n\(log)")
        let unsolicited = try db.scalarInt("SELECT count(*) FROM events WHERE kind = 'chunk_rejected' AND message LIKE 'dropped unrequested chunk%'")
        #expect(unsolicited == 1)
        #expect(try db.scalarInt("SELECT count(*) FROM chunks") == Int64(chunkCount))
    }

    @Test("a rogue owner's manifest named ../../x is refused with one clear line; nothing is written outside DIR", arguments: StorageLayout.allCases)
    func rogueOwner(storage: StorageLayout) async throws {
        let root = temporaryDirectory()
        let dir = root + "/deep/victim"
        let escapeTarget = (root as NSString).appendingPathComponent("x")
        let parentBefore = entries(of: root)
        let fileHash = Digest32.of(Array("rogue".utf8))
        let result = try await withRogueServer(handle: { connection in
            try await connection.executeThenClose { inbound, outbound in
                var messages = inbound.makeAsyncIterator()
                guard case .message(.hello)? = try await messages.next() else { return }
                try await outbound.write(.hello(Hello(role: .owner, fileID: fileHash, name: "owner")))
                // The encoder does not check names; the victim's decoder must.
                try await outbound.write(.manifest(ManifestHeader(fileSize: 10, chunkSize: 102_400, chunkCount: 1, fileHash: fileHash, fileName: "../../x")))
                try await outbound.write(.hashes(first: 0, [Digest32.of(Array("0123456789".utf8))]))
                try await outbound.write(.share(bitfield: [0x80]))
                while try await messages.next() != nil {}
            }
        }) { ownerPort in
            let port = try reserveFreePorts(1)[0]
            return try await runCommand(Binaries.peershare, ["peer", "--owner", "127.0.0.1:\(ownerPort)", "--port", "\(port)", "--dir", dir,
                                                             "--download-from", "127.0.0.1:1", "--storage", storage.rawValue], timeout: .seconds(60))
        }
        #expect(result.status != 0)
        // The log says what happened; the final line is the one error a user reads.
        let errorLines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("peershare: error:") }
        #expect(errorLines.count == 1 && errorLines[0].contains("file name"), "stderr: \(result.stderr)")
        #expect(result.stderr.split(separator: "\n").last.map { $0.hasPrefix("peershare: error:") } == true)
        #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("Stack"), "crashed: \(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: escapeTarget), "wrote \(escapeTarget)")
        #expect(entries(of: root) == parentBefore.union(["deep"]))
        #expect(entries(of: root + "/deep") == ["victim"])
        let db = try SQLiteConnection(path: dir + "/peer.db", mode: .readOnly)
        #expect(try db.scalarInt("SELECT count(*) FROM events WHERE kind = 'protocol_error'") == 1)
        #expect(try db.scalarInt("SELECT count(*) FROM manifest") == 0, "the refused manifest must not be stored")
    }
}

extension NIOAsyncChannelOutboundWriter where OutboundOut == OutboundFrame {
    /// Rogue servers write plain messages.
    func write(_ message: PeerMessage) async throws {
        try await write(OutboundFrame.message(message))
    }
}
