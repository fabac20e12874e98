import Foundation
import NIOCore
import NIOPosix
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareStore
@testable import PeerShareWire

// Issue 13: one MANIFEST frame whose file size is 2⁶³ − 1, written byte by byte as a client
// built from docs/PROTOCOL.md would send it, used to kill any owner or peer with SIGILL.
// Every way it can arrive is tried on real processes: before HELLO, after HELLO, from a
// downloader to a peer, and from a fake owner to a peer.

/// The 60-byte frame: file size 2⁶³ − 1, chunks of 100 KiB, count 0, name "f.bin".
let int64MaxManifest: [UInt8] = {
    var frame = ByteBuffer()
    let name = Array("f.bin".utf8)
    frame.writeInteger(UInt32(1 + 8 + 4 + 4 + 32 + 2 + name.count))
    frame.writeInteger(PeerMessage.Kind.manifest.rawValue)
    frame.writeInteger(UInt64(Int64.max))
    frame.writeInteger(UInt32(102_400))
    frame.writeInteger(UInt32(0))
    frame.writeBytes([UInt8](repeating: 0, count: 32))
    frame.writeInteger(UInt16(name.count))
    frame.writeBytes(name)
    return Array(frame.readableBytesView)
}()

/// The `protocol_error` events of a stopped node's index that name `port` (the attacker's side).
func protocolErrors(in database: String, naming port: Int) throws -> [String] {
    let db = try SQLiteConnection(path: database, mode: .readOnly)
    return try db.query("SELECT message FROM events WHERE kind = 'protocol_error' AND message LIKE ?", "%:\(port):%") { $0.text(0) }
}

@Suite("The 2^63-1 MANIFEST against real processes", .serialized)
struct HostileManifestTests {
    @Test("before HELLO, after HELLO, and from a downloader to a peer: one protocol_error each, the connection closed, the nodes serve on", arguments: StorageLayout.allCases)
    func listeners(storage: StorageLayout) async throws {
        #expect(int64MaxManifest.count == 60)
        let chunkCount = 12
        let size = chunkCount * 102_400 - 3
        let dir = temporaryDirectory()
        let source = dir + "/source.bin"
        let digest = try writeTestFile(source, size: size)
        let fileID = try contentID(ofFile: source)
        // The owner's log comes as lines too, so each refusal can be waited for.
        let owner = try ChildProcess(name: "owner", executable: Binaries.peershare,
                                     arguments: ["owner", "--file", source, "--port", "0", "--dir", dir + "/owner", "--peers", "2", "--storage", storage.rawValue],
                                     stdout: .lines(echo: false), stderr: .lines(echo: false, copyTo: dir + "/owner.log"))
        guard let line = await owner.waitForLine(prefix: "listening on", timeout: .seconds(60)), let ownerPort = Int(line.split(separator: ":").last ?? "") else {
            await owner.stop()
            throw SwarmError("owner did not start:\n" + tail(dir + "/owner.log"))
        }
        let ports = try reserveFreePorts(2)
        func peer(_ i: Int) throws -> ChildProcess {
            try ChildProcess(name: "peer\(i)", executable: Binaries.peershare,
                             arguments: ["peer", "--name", "peer\(i)", "--owner", "127.0.0.1:\(ownerPort)", "--port", "\(ports[i - 1])",
                                         "--dir", dir + "/peer\(i)", "--download-from", "127.0.0.1:\(ports[i % 2])", "--storage", storage.rawValue],
                             stdout: .discard, stderr: .lines(echo: false, copyTo: dir + "/peer\(i).log"))
        }
        let peer1 = try peer(1)
        var started = [owner, peer1]
        defer { Task { [started] in for process in started { await process.stop() } } }
        #expect(await peer1.waitForLine(timeout: .seconds(30)) { $0.contains("share from the owner") } != nil, "peer1 got no share:\n\(tail(dir + "/peer1.log"))")

        let hello = PeerMessage.hello(Hello(role: .peer, fileID: fileID, name: "attacker")).frame.readableBytesView
        let asking = PeerMessage.hello(Hello(role: .peer, fileID: Hello.unknownFileID, name: "attacker")).frame.readableBytesView
        let attacks: [(target: String, port: Int, node: ChildProcess, bytes: [UInt8], reason: String)] = [
            ("owner", ownerPort, owner, int64MaxManifest, "MANIFEST is not allowed before HELLO"),
            ("owner", ownerPort, owner, Array(asking) + int64MaxManifest, "MANIFEST is not allowed from a downloader"),
            ("peer1", ports[0], peer1, int64MaxManifest, "MANIFEST is not allowed before HELLO"),
            ("peer1", ports[0], peer1, Array(hello) + int64MaxManifest, "MANIFEST is not allowed from a downloader"),
        ]
        var attackerPorts: [(target: String, port: Int, reason: String)] = []
        for rogue in attacks {
            let (closed, localPort) = try await attack(port: rogue.port, with: RogueCase(description: rogue.reason, bytes: rogue.bytes))
            #expect(closed, "\(rogue.target) did not close the connection after: \(rogue.reason)")
            let logged = await rogue.node.waitForLine(timeout: .seconds(10)) { $0.contains("dropped 127.0.0.1:\(localPort):") }
            #expect(logged?.contains(rogue.reason) == true, "\(rogue.target) logged \(logged ?? "nothing") for \(rogue.reason)")
            #expect(rogue.node.exitStatus == nil, "\(rogue.target) died:\n\(tail(dir + "/\(rogue.target).log"))")
            attackerPorts.append((rogue.target, localPort, rogue.reason))
        }

        // Both nodes serve on: peer2 joins and the two peers finish the file between them.
        let peer2 = try peer(2)
        started.append(peer2)
        for (name, process) in [("peer1", peer1), ("peer2", peer2)] {
            #expect(await process.waitForExit(timeout: .seconds(90)) == 0, "\(name):\n\(tail(dir + "/\(name).log"))")
            #expect(fileDigest(dir + "/\(name)/source.bin") == digest, "\(name)'s copy differs")
        }
        await owner.stop()
        #expect(owner.exitStatus == 0, "the owner did not stop cleanly:\n\(tail(dir + "/owner.log"))")

        for (target, port, reason) in attackerPorts {
            let database = target == "owner" ? dir + "/owner/owner.db" : dir + "/peer1/peer.db"
            let events = try protocolErrors(in: database, naming: port)
            #expect(events.count == 1 && events[0].contains(reason), "\(target), attacker port \(port): \(events)")
        }
    }

    @Test("from a fake owner: the peer logs one protocol_error, stores nothing, and stops with one clear line", arguments: StorageLayout.allCases)
    func fakeOwner(storage: StorageLayout) async throws {
        let dir = temporaryDirectory() + "/victim"
        let fileHash = Digest32.of(Array("fake".utf8))
        let result = try await withRawServer(handle: fakeOwnerSendingInt64MaxManifest(fileID: fileHash)) { ownerPort in
            let port = try reserveFreePorts(1)[0]
            return try await runCommand(Binaries.peershare, ["peer", "--owner", "127.0.0.1:\(ownerPort)", "--port", "\(port)", "--dir", dir,
                                                             "--download-from", "127.0.0.1:1", "--storage", storage.rawValue], timeout: .seconds(60))
        }
        #expect(result.status != 0 && result.status < 128, "exit \(result.status): a refusal, not a signal\n\(result.stderr)")
        #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("overflow"), "crashed: \(result.stderr)")
        let errorLines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("peershare: error:") }
        #expect(errorLines.count == 1 && errorLines[0].contains("file size 9223372036854775807 is over the largest possible"), "stderr: \(result.stderr)")
        let db = try SQLiteConnection(path: dir + "/peer.db", mode: .readOnly)
        let events = try db.query("SELECT message FROM events WHERE kind = 'protocol_error'") { $0.text(0) }
        #expect(events.count == 1 && events[0].contains("malformed MANIFEST"), "\(events)")
        #expect(try db.scalarInt("SELECT count(*) FROM manifest") == 0, "the refused manifest must not be stored")
    }

    @Test("a fake owner whose manifest does not hash to the file ID it announced: refused, nothing stored", arguments: StorageLayout.allCases)
    func manifestNotMatchingFileID(storage: StorageLayout) async throws {
        let dir = temporaryDirectory()
        let source = dir + "/source.bin"
        _ = try writeTestFile(source, size: 3 * 102_400 + 5)
        let honest = try manifest(ofFile: source)
        let announced = Digest32.of(Array("another file".utf8))
        let result = try await withRawServer(handle: fakeOwnerAnnouncing(announced, manifest: honest)) { ownerPort in
            let port = try reserveFreePorts(1)[0]
            return try await runCommand(Binaries.peershare, ["peer", "--owner", "127.0.0.1:\(ownerPort)", "--port", "\(port)", "--dir", dir + "/victim",
                                                             "--storage", storage.rawValue], timeout: .seconds(60))
        }
        #expect(result.status != 0 && result.status < 128, "exit \(result.status)\n\(result.stderr)")
        let errorLines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("peershare: error:") }
        #expect(errorLines.count == 1 && errorLines[0].contains("hashes to file ID \(honest.fileID.short), not the \(announced.short) it announced"), "stderr: \(result.stderr)")
        let db = try SQLiteConnection(path: dir + "/victim/peer.db", mode: .readOnly)
        #expect(try db.scalarInt("SELECT count(*) FROM manifest") == 0, "the refused manifest must not be stored")
    }

    @Test("from a fake owner to a peer that holds the manifest: one protocol_error, the owner avoided, the file finished from a neighbour", arguments: StorageLayout.allCases)
    func fakeOwnerAfterResume(storage: StorageLayout) async throws {
        let dir = temporaryDirectory()
        let source = dir + "/source.bin"
        let digest = try writeTestFile(source, size: 8 * 102_400 + 11)
        let fileID = try contentID(ofFile: source)
        func owner(_ name: String, _ extra: [String]) async throws -> (ChildProcess, Int) {
            let process = try ChildProcess(name: name, executable: Binaries.peershare,
                                           arguments: ["owner", "--file", source, "--port", "0", "--dir", dir + "/" + name, "--peers", "2", "--storage", storage.rawValue] + extra,
                                           stdout: .lines(echo: false), stderr: .file(dir + "/\(name).log"))
            guard let line = await process.waitForLine(prefix: "listening on", timeout: .seconds(60)), let port = Int(line.split(separator: ":").last ?? "") else {
                await process.stop()
                throw SwarmError("\(name) did not start:\n" + tail(dir + "/\(name).log"))
            }
            return (process, port)
        }
        @Sendable func peer(_ i: Int, owner: Int, _ extra: [String]) throws -> ChildProcess {
            try ChildProcess(name: "peer\(i)", executable: Binaries.peershare,
                             arguments: ["peer", "--name", "peer\(i)", "--owner", "127.0.0.1:\(owner)", "--dir", dir + "/peer\(i)", "--wait-for-downloaders", "0", "--storage", storage.rawValue] + extra,
                             stdout: .discard, stderr: .lines(echo: false, copyTo: dir + "/peer\(i).log"))
        }
        // peer1 fetches the whole file from a real owner and stays up to serve it, at 300 KiB/s:
        // fast enough, but not so fast that restarted peer2 finishes before it has heard the
        // fake owner (that happened once, and the test saw no protocol_error).
        let (fast, fastPort) = try await owner("owner", [])
        let ports = try reserveFreePorts(2)
        let peer1 = try peer(1, owner: fastPort, ["--port", "\(ports[0])", "--keep-serving", "--max-upload-rate", "300KiB"])
        var started = [fast, peer1]
        defer { Task { [started] in for process in started { await process.stop() } } }
        #expect(await peer1.waitForLine(timeout: .seconds(60)) { $0.contains("assembled") } != nil, "peer1:\n\(tail(dir + "/peer1.log"))")
        // peer2 gets the manifest and its share from a second owner of the same file, one
        // so slow (1 KiB/s) that the share is still missing when peer2 is killed.
        let (slow, slowPort) = try await owner("slow-owner", ["--max-upload-rate", "1KiB"])
        started.append(slow)
        let first = try peer(2, owner: slowPort, ["--port", "\(ports[1])", "--download-from", "127.0.0.1:1"])
        started.append(first)
        #expect(await first.waitForLine(timeout: .seconds(30)) { $0.contains("share from the owner") } != nil, "peer2:\n\(tail(dir + "/peer2.log"))")
        first.signal(SIGKILL)
        _ = await first.waitForExit(timeout: .seconds(10))

        // Restarted against a fake owner, with peer1 as its download neighbour.
        let status = try await withRawServer(handle: fakeOwnerSendingInt64MaxManifest(fileID: fileID)) { fakePort in
            let resumed = try peer(2, owner: fakePort, ["--port", "\(ports[1])", "--download-from", "127.0.0.1:\(ports[0])"])
            let status = await resumed.waitForExit(timeout: .seconds(60))
            if status == nil { await resumed.stop() }
            return status
        }
        #expect(status == 0, "peer2 exit \(String(describing: status)):\n\(tail(dir + "/peer2.log"))")
        #expect(fileDigest(dir + "/peer2/source.bin") == digest, "peer2's copy differs")
        #expect(peer1.exitStatus == nil, "peer1 stopped serving")
        // Stopped here, not left to the deferred task, which may not run before the process ends.
        for process in started { await process.stop() }
        let db = try SQLiteConnection(path: dir + "/peer2/peer.db", mode: .readOnly)
        let events = try db.query("SELECT message FROM events WHERE kind = 'protocol_error'") { $0.text(0) }
        #expect(events.count == 1 && events[0].contains("file size 9223372036854775807 is over") && events[0].contains("avoiding it"), "\(events)")
    }
}

/// A fake owner: the peer speaks first (its HELLO); it answers as an owner of `fileID` would,
/// then sends the 2⁶³ − 1 MANIFEST as raw bytes, which PeerShare's encoder cannot write.
func fakeOwnerSendingInt64MaxManifest(fileID: Digest32) -> @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void {
    { connection in
        try await connection.executeThenClose { inbound, outbound in
            var reads = inbound.makeAsyncIterator()
            guard try await reads.next() != nil else { return }
            try await outbound.write(PeerMessage.hello(Hello(role: .owner, fileID: fileID, name: "owner")).frame)
            try await outbound.write(ByteBuffer(bytes: int64MaxManifest))
            while try await reads.next() != nil {}
        }
    }
}

/// A fake owner that announces `announced` in its HELLO but sends `manifest`, whole and well
/// formed, then its HASHES.
func fakeOwnerAnnouncing(_ announced: Digest32, manifest: Manifest) -> @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void {
    { connection in
        try await connection.executeThenClose { inbound, outbound in
            var reads = inbound.makeAsyncIterator()
            guard try await reads.next() != nil else { return }
            try await outbound.write(PeerMessage.hello(Hello(role: .owner, fileID: announced, name: "owner")).frame)
            try await outbound.write(PeerMessage.manifest(ManifestHeader(manifest)).frame)
            try await outbound.write(PeerMessage.hashes(first: 0, manifest.chunkHashes).frame)
            while try await reads.next() != nil {}
        }
    }
}

/// A TCP server on 127.0.0.1 that hands each connection's raw bytes to `handle`, for a rogue
/// node that sends what PeerShare's own encoder will not. Stops when `body` returns.
func withRawServer<R: Sendable>(
    handle: @escaping @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void,
    _ body: @escaping @Sendable (_ port: Int) async throws -> R
) async throws -> R {
    let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .bind(host: "127.0.0.1", port: 0) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    let port = server.channel.localAddress?.port ?? 0
    return try await withThrowingTaskGroup(of: R?.self) { group in
        group.addTask {
            try await withThrowingDiscardingTaskGroup { connections in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        connections.addTask { try? await handle(connection) }
                    }
                }
            }
            return nil
        }
        group.addTask { try await body(port) }
        defer { group.cancelAll() }
        while let result = try await group.next() {
            if let result { return result }
        }
        throw SwarmError("raw server ended early")
    }
}

@Suite("A tracker reply naming garbage, or not asked for")
struct GarbageTrackerTests {
    /// Runs a peer against a fake owner that sends an honest manifest, an empty share and
    /// its chunk list, then `reply`; returns the peer's result and its protocol_error events.
    func runAgainstFakeTracker(reply: ByteBuffer, peerOptions: [String]) async throws -> (result: CommandResult, events: [String], chunks: Int64?) {
        let dir = temporaryDirectory()
        let source = dir + "/source.bin"
        _ = try writeTestFile(source, size: 3 * 102_400)
        let honest = try manifest(ofFile: source)
        let result = try await withRawServer(handle: { connection in
            try await connection.executeThenClose { inbound, outbound in
                var reads = inbound.makeAsyncIterator()
                guard try await reads.next() != nil else { return }
                try await outbound.write(PeerMessage.hello(Hello(role: .owner, fileID: honest.fileID, name: "owner")).frame)
                let none = ChunkSet(capacity: honest.chunkCount).bitfield
                for message in [PeerMessage.manifest(ManifestHeader(honest)), .hashes(first: 0, honest.chunkHashes), .share(bitfield: none), .chunkList(bitfield: none)] {
                    try await outbound.write(message.frame)
                }
                try await outbound.write(reply)
                while try await reads.next() != nil {}
            }
        }) { ownerPort in
            try await runCommand(Binaries.peershare, ["peer", "--owner", "127.0.0.1:\(ownerPort)", "--port", "0", "--dir", dir + "/victim"] + peerOptions, timeout: .seconds(60))
        }
        let db = try SQLiteConnection(path: dir + "/victim/peer.db", mode: .readOnly)
        let events = try db.query("SELECT message FROM events WHERE kind = 'protocol_error'") { $0.text(0) }
        return (result, events, try db.scalarInt("SELECT count(*) FROM chunks"))
    }

    @Test("a fake owner answers with PEERS naming a host that is not one: the peer logs the refusal and stops with one clear line")
    func garbagePeers() async throws {
        // One peer named "p" at host "a/b", port 7000: well framed, but not an address.
        let payload: [UInt8] = [1, 1, 0x70, 3] + Array("a/b".utf8) + [0x1b, 0x58]
        var garbage = ByteBuffer()
        garbage.writeInteger(UInt32(1 + payload.count))
        garbage.writeInteger(PeerMessage.Kind.peers.rawValue)
        garbage.writeBytes(payload)
        let (result, events, chunks) = try await runAgainstFakeTracker(reply: garbage, peerOptions: [])
        #expect(result.status != 0 && result.status < 128, "exit \(result.status)\n\(result.stderr)")
        let errorLines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("peershare: error:") }
        #expect(errorLines.count == 1 && errorLines[0].contains("peer 0's host is not a name or an address"), "stderr: \(result.stderr)")
        #expect(events.count == 1 && events[0].contains("malformed PEERS"), "\(events)")
        #expect(chunks == 0)
    }

    @Test("PEERS that nobody asked for (a peer with --neighbours 0 never asks) is refused with one line")
    func unaskedPeers() async throws {
        let reply = PeerMessage.peers([PeerAddress(name: "x", endpoint: Endpoint(host: "127.0.0.1", port: 9))]).frame
        let (result, events, chunks) = try await runAgainstFakeTracker(reply: reply, peerOptions: ["--neighbours", "0"])
        #expect(result.status != 0 && result.status < 128, "exit \(result.status)\n\(result.stderr)")
        let errorLines = result.stderr.split(separator: "\n").filter { $0.hasPrefix("peershare: error:") }
        #expect(errorLines.count == 1 && errorLines[0].contains("sent PEERS it was not asked for"), "stderr: \(result.stderr)")
        #expect(events.count == 1, "\(events)")
        #expect(chunks == 0)
    }
}
