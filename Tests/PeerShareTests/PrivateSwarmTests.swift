import Foundation
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareStore
@testable import PeerShareTrust
@testable import PeerShareWire
@testable import PeerShareNode
import NIOCore

/// Private swarms with real processes (issue 16): TLS 1.3, the ticket, and who gets nothing.
@Suite("Private swarms", .serialized)
struct PrivateSwarmTests {
    @Test("a private demo completes, its key and ticket files are 0600, and the join secret is in no log, index or report",
          arguments: [("ring", StorageLayout.chunkFiles), ("ring", .singleFile), ("mesh", .chunkFiles), ("mesh", .singleFile),
                      ("auto", .chunkFiles), ("auto", .singleFile)])
    func privateDemo(topology: String, storage: StorageLayout) async throws {
        let dir = temporaryDirectory("private-\(topology)-\(storage)")
        let result = try await runCommand(Binaries.peershare, [
            "demo", "--private", "--topology", topology, "--peers", "4", "--size", "3MiB", "--dir", dir, "--storage", storage.rawValue, "--report",
        ], timeout: .seconds(180))
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("result: 4/4 peers complete and identical"), "\(result.stdout)")
        #expect(result.stderr.contains("a private swarm (TLS 1.3, admitted by the ticket)"))
        for path in ["owner/node.key", "owner/ticket"] + (1...4).map { "peer\($0)/node.key" } {
            let mode = try #require(FileManager.default.attributesOfItem(atPath: dir + "/" + path)[.posixPermissions] as? Int)
            #expect(mode == 0o600, "\(path) is \(String(mode, radix: 8))")
        }
        // Peers name the owner's node ID, which the ticket pinned.
        #expect(result.stderr.contains("as the ticket says)"))
        // Each got its share from the owner and the rest from its neighbour: no peer stalled
        // and fell back on the owner (a neighbour's manifest once wiped the owner's share).
        // Asking the owner while a neighbour is slow to answer on a loaded machine is fine.
        for i in 1...4 where topology == "ring" {
            let stalls = try eventMessages(dir + "/peer\(i)/peer.db", kind: "fallback").filter { $0.contains("falling back to the owner") }
            #expect(stalls.isEmpty, "peer\(i): \(stalls)")
            let db = try SQLiteConnection(path: dir + "/peer\(i)/peer.db", mode: .readOnly)
            #expect(try db.scalarInt("SELECT count(*) FROM share") ?? 0 > 0, "peer\(i) has no share")
        }
        let ticket = try Ticket(line: String(contentsOfFile: dir + "/owner/ticket", encoding: .utf8))
        let leaks = try secretLeaks(ticket, under: dir, also: result.stdout + result.stderr)
        #expect(leaks.isEmpty, "the join secret appears in \(leaks)")
    }

    @Test("outsiders get nothing and are logged: a public peer, a wrong secret, a wrong owner, openssl without a key")
    func outsiders() async throws {
        let dir = temporaryDirectory()
        let source = dir + "/source.bin"
        _ = try writeTestFile(source, size: 500 * 1024)
        let privateOwner = try await startPrivateOwner(dir: dir, source: source)
        let owner = privateOwner.process, ticket = privateOwner.ticket
        defer { owner.signal(SIGKILL) }
        let port = privateOwner.port

        func peer(_ name: String, _ arguments: [String]) async throws -> CommandResult {
            try await runCommand(Binaries.peershare, ["peer", "--name", name, "--port", "0", "--dir", dir + "/" + name, "--connect-timeout", "5"] + arguments,
                                 timeout: .seconds(60))
        }
        func holdsNothing(_ name: String) throws -> Bool {
            let db = try SQLiteConnection(path: dir + "/\(name)/peer.db", mode: .readOnly)
            return try db.scalarInt("SELECT count(*) FROM manifest") == 0 && db.scalarInt("SELECT count(*) FROM chunks") == 0
        }

        // A peer of a public swarm speaks plain TCP: the owner sees no TLS.
        let plain = try await peer("plain", ["--owner", "127.0.0.1:\(port)"])
        #expect(plain.status != 0, "\(plain.stderr)")
        #expect(try holdsNothing("plain"))
        // A ticket with another secret: each side refuses the other.
        let wrongSecret = Ticket(ownerAddresses: ticket.ownerAddresses, ownerID: ticket.ownerID, fileID: ticket.fileID, secret: Ticket.newSecret())
        let guesser = try await peer("guesser", ["--ticket", wrongSecret.line])
        #expect(guesser.status != 0)
        #expect(guesser.stderr.contains("does not hold this swarm's join secret") || guesser.stderr.contains("closed before the join was proven"), "\(guesser.stderr)")
        #expect(try holdsNothing("guesser"))
        // The right secret, but a ticket naming another owner: the peer refuses this one.
        let otherOwner = try NodeIdentity.loadOrCreate(in: temporaryDirectory()).nodeID
        let misdirected = Ticket(ownerAddresses: ticket.ownerAddresses, ownerID: otherOwner, fileID: ticket.fileID, secret: ticket.secret)
        let fooled = try await peer("fooled", ["--ticket", misdirected.line])
        #expect(fooled.status != 0)
        #expect(fooled.stderr.contains("the remote's node ID is not the one expected"), "\(fooled.stderr)")
        #expect(try holdsNothing("fooled"))

        // openssl sees TLS 1.3, and without a certificate gets nothing of the file.
        var opensslSaw: String?
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl") {
            let client = try await runCommand("/usr/bin/openssl", ["s_client", "-connect", "127.0.0.1:\(port)", "-tls1_3"], timeout: .seconds(20))
            opensslSaw = client.stdout
            #expect(client.stdout.contains("TLSv1.3"), "\(client.stdout)")
            #expect(!client.stdout.contains("source.bin"))
        } else {
            print("openssl is not installed: the s_client check is skipped (.ci/run installs it)")
        }

        // Each refusal is in the owner's index, with the address it came from.
        await owner.stop()
        let db = try SQLiteConnection(path: dir + "/owner/owner.db", mode: .readOnly)
        let refusals = try db.query("SELECT message FROM events WHERE kind = 'protocol_error' AND message LIKE 'refused a connection from 127.0.0.1:%'") { $0.text(0) }
        #expect(refusals.contains { $0.contains("does not speak TLS") }, "\(refusals)")
        #expect(refusals.contains { $0.contains("does not hold this swarm's join secret") }, "\(refusals)")
        if opensslSaw != nil { #expect(refusals.contains { $0.contains("presented no certificate") }, "\(refusals)") }
        // No member was ever listed or served.
        #expect(try db.scalarInt("SELECT count(*) FROM transfers") == 0)
        let leaks = try secretLeaks(ticket, under: dir, also: plain.stderr + guesser.stderr + fooled.stderr)
        #expect(leaks.isEmpty, "the join secret appears in \(leaks)")
    }
}

@Test("the leak check itself finds a secret written into a log, as hex or as the ticket line")
func leakCheckFindsLeaks() throws {
    let dir = temporaryDirectory()
    let ticket = Ticket(ownerAddresses: [Endpoint(host: "127.0.0.1", port: 1)], ownerID: NodeID(digest: Digest32.of([1])), fileID: Digest32.of([2]), secret: Ticket.newSecret())
    try Data("log line \(ticket.line)\n".utf8).write(to: URL(fileURLWithPath: dir + "/a.log"))
    try Data("secret \(Digest32(bytes: ticket.secret)!.hex)".utf8).write(to: URL(fileURLWithPath: dir + "/b.txt"))
    try Data("nothing here".utf8).write(to: URL(fileURLWithPath: dir + "/c.txt"))
    #expect(try secretLeaks(ticket, under: dir, also: "").sorted() == ["a.log", "b.txt"])
    #expect(try secretLeaks(ticket, under: dir, also: ticket.line).contains("the command output"))
}

extension PrivateSwarmTests {
    @Test("a member that sends a bad chunk is blocked by node ID, stays refused after a restart, and inspect shows it")
    func badChunkSenderBlocked() async throws {
        let dir = temporaryDirectory()
        let source = dir + "/source.bin"
        _ = try writeTestFile(source, size: 6 * 102_400 + 17)
        let layout = try ChunkLayout(fileSize: 6 * 102_400 + 17, chunkSize: 102_400)
        // A slow owner, so that the victim asks its neighbour for chunks too.
        let privateOwner = try await startPrivateOwner(dir: dir, source: source, options: ["--peers", "1", "--max-upload-rate", "100KiB"])
        let owner = privateOwner.process, ticket = privateOwner.ticket
        defer { owner.signal(SIGKILL) }
        // The rogue holds the secret (a member gone bad) and its own key.
        let rogue = try PrivateSwarm(identity: NodeIdentity.loadOrCreate(in: temporaryDirectory()), secret: ticket.secret)
        let victimArguments = ["peer", "--name", "victim", "--ticket-file", dir + "/owner/ticket", "--port", "0", "--dir", dir + "/victim",
                               "--neighbours", "0", "--wait-for-downloaders", "0"]
        let (first, second) = try await withRogueServer(security: rogue, handle: { connection in
            try await connection.executeThenClose { inbound, outbound in
                var messages = inbound.makeAsyncIterator()
                guard case .message(.hello)? = try await messages.next() else { return }
                try await outbound.write(.hello(Hello(role: .peer, fileID: ticket.fileID, name: "rogue")))
                try await outbound.write(.chunkList(bitfield: ChunkSet.full(layout.chunkCount).bitfield))
                while let message = try await messages.next() {
                    guard case .message(.request(let id)) = message else { continue }
                    try await outbound.write(.piece(id, ByteBuffer(repeating: 0x5a, count: layout.size(of: id))))
                }
            }
        }) { roguePort in
            let arguments = victimArguments + ["--download-from", "127.0.0.1:\(roguePort)"]
            let first = try await runCommand(Binaries.peershare, arguments, timeout: .seconds(90))
            // Restarted, it dials its neighbour once more (to say it is complete): TLS names
            // the rogue, and the block from the first run refuses it.
            let second = try await runCommand(Binaries.peershare, arguments, timeout: .seconds(90))
            return (first, second)
        }
        await owner.stop()
        #expect(first.status == 0, "\(first.stderr)")
        #expect(fileDigest(dir + "/victim/source.bin") == fileDigest(source))
        let rogueID = rogue.identity.nodeID
        #expect(first.stderr.contains("blocked node \(rogueID.hex) (rogue) from now on: sent chunk"), "\(first.stderr)")
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stderr.contains("node \(rogueID) (rogue) is blocked: sent chunk"), "\(second.stderr)")
        // Provenance names verified identities, and nothing the rogue sent was kept.
        let sources = try chunkSources(dir + "/victim/peer.db")
        #expect(sources.keys.allSatisfy { $0.hasPrefix("owner@\(ticket.ownerID)") }, "\(sources.keys)")
        let inspect = try await runCommand(Binaries.inspect, ["sources", "--db", dir + "/victim/peer.db", "--format", "json"], timeout: .seconds(30))
        #expect(inspect.status == 0, "\(inspect.stderr)")
        #expect(inspect.stdout.contains("\"node_id\": \"\(rogueID.hex)\"") && inspect.stdout.contains("which failed its hash"), "\(inspect.stdout)")
        let table = try await runCommand(Binaries.inspect, ["sources", "--db", dir + "/victim/peer.db"], timeout: .seconds(30))
        #expect(table.stdout.contains("rogue@\(rogueID)") && table.stdout.contains("blocked"), "\(table.stdout)")
    }
}

extension PrivateSwarmTests {
    @Test("the owner gone: a peer with the ticket gets the signed manifest from a member and completes; a member's forged manifest is refused")
    func signedManifestThroughPeers() async throws {
        let dir = temporaryDirectory()
        let source = dir + "/source.bin"
        _ = try writeTestFile(source, size: 700 * 1024)
        let privateOwner = try await startPrivateOwner(dir: dir, source: source, options: ["--peers", "1"])
        let owner = privateOwner.process, ticket = privateOwner.ticket
        defer { owner.signal(SIGKILL) }
        let ticketFile = dir + "/owner/ticket"
        let seed = try ChildProcess(name: "seed", executable: Binaries.peershare,
                                    arguments: ["peer", "--name", "seed", "--ticket-file", ticketFile, "--port", "0", "--dir", dir + "/seed", "--keep-serving", "--neighbours", "0"],
                                    stdout: .lines(echo: false), stderr: .lines(echo: false, copyTo: dir + "/seed.log"))
        defer { seed.signal(SIGKILL) }
        let seedPort = try await listeningPort(of: seed)
        #expect(await waitForAssembly(seed, timeout: .seconds(60)))
        await owner.stop()

        // The ticket's owner is gone; the seed passes the manifest on with the owner's signature.
        let joiner = try await runCommand(Binaries.peershare, ["peer", "--name", "joiner", "--ticket-file", ticketFile, "--port", "0", "--dir", dir + "/joiner",
                                                               "--download-from", "127.0.0.1:\(seedPort)", "--neighbours", "0", "--wait-for-downloaders", "0",
                                                               "--connect-timeout", "3"], timeout: .seconds(90))
        #expect(joiner.status == 0, "\(joiner.stderr)")
        #expect(fileDigest(dir + "/joiner/source.bin") == fileDigest(source))

        // A member with the secret but its own key serves a manifest it signed itself.
        let rogue = try PrivateSwarm(identity: NodeIdentity.loadOrCreate(in: temporaryDirectory()), secret: ticket.secret)
        let forged = try manifest(ofFile: source)
        let signed = try ManifestSigning.sign(forged, with: rogue.identity)
        let victim = try await withRogueServer(security: rogue, handle: { connection in
            try await connection.executeThenClose { inbound, outbound in
                var messages = inbound.makeAsyncIterator()
                guard case .message(.hello)? = try await messages.next() else { return }
                try await outbound.write(.hello(Hello(role: .peer, fileID: forged.fileID, name: "forger")))
                try await outbound.write(.manifest(ManifestHeader(forged)))
                try await outbound.write(.hashes(first: 0, forged.chunkHashes))
                try await outbound.write(.manifestSignature(signerKey: signed.signerKey, signature: signed.signature))
                while try await messages.next() != nil {}
            }
        }) { roguePort in
            try await runCommand(Binaries.peershare, ["peer", "--name", "victim", "--ticket-file", ticketFile, "--port", "0", "--dir", dir + "/victim",
                                                      "--download-from", "127.0.0.1:\(roguePort)", "--neighbours", "0", "--wait-for-downloaders", "0",
                                                      "--connect-timeout", "3"], timeout: .seconds(90))
        }
        #expect(victim.status != 0)
        #expect(victim.stderr.contains("the manifest is signed by node \(rogue.identity.nodeID), not by the ticket's owner \(ticket.ownerID)"), "\(victim.stderr)")
        let db = try SQLiteConnection(path: dir + "/victim/peer.db", mode: .readOnly)
        #expect(try db.scalarInt("SELECT count(*) FROM manifest") == 0, "the forged manifest must not be stored")
    }
}

extension PrivateSwarmTests {
    @Test("a ticket naming several owner addresses: the peer tries each in turn until one answers")
    func ticketAddresses() async throws {
        let dir = temporaryDirectory()
        let source = dir + "/source.bin"
        _ = try writeTestFile(source, size: 300 * 1024)
        let privateOwner = try await startPrivateOwner(dir: dir, source: source)
        let owner = privateOwner.process, ticket = privateOwner.ticket
        defer { owner.signal(SIGKILL) }
        let port = privateOwner.port
        let dead = try reserveFreePorts(1)[0]
        let detour = Ticket(ownerAddresses: [Endpoint(host: "127.0.0.1", port: dead), Endpoint(host: "127.0.0.1", port: port)],
                            ownerID: ticket.ownerID, fileID: ticket.fileID, secret: ticket.secret)
        let ticketFile = dir + "/detour.ticket"
        try SecretFile.write(Array(detour.line.utf8), to: ticketFile)
        let result = try await runCommand(Binaries.peershare, ["peer", "--name", "p", "--ticket-file", ticketFile, "--port", "0", "--dir", dir + "/p",
                                                               "--wait-for-downloaders", "0", "--neighbours", "0"], timeout: .seconds(60))
        await owner.stop()
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("connected to the owner at 127.0.0.1:\(port)"), "\(result.stderr)")
        #expect(fileDigest(dir + "/p/source.bin") == fileDigest(source))
    }
}

/// A private owner of `source` (folder DIR/owner, log DIR/owner.log), once it listens and
/// has printed its ticket.
struct PrivateOwner {
    let process: ChildProcess
    let port: Int
    let ticket: Ticket
}

func startPrivateOwner(dir: String, source: String, options: [String] = []) async throws -> PrivateOwner {
    let owner = try ChildProcess(name: "owner", executable: Binaries.peershare,
                                 arguments: ["owner", "--file", source, "--port", "0", "--dir", dir + "/owner", "--private"] + options,
                                 stdout: .lines(echo: false), stderr: .file(dir + "/owner.log"))
    do {
        let port = try await listeningPort(of: owner)
        guard let line = await owner.waitForLine(prefix: "ticket: ", timeout: .seconds(30)) else {
            throw SwarmError("the private owner printed no ticket:\n" + tail(dir + "/owner.log"))
        }
        return PrivateOwner(process: owner, port: port, ticket: try Ticket(line: String(line.dropFirst("ticket: ".count))))
    } catch {
        owner.signal(SIGKILL)
        throw error
    }
}

/// Every file under `root` (but the ticket itself) and `text` in which the ticket's secret
/// appears: as raw bytes, hex, or the ticket line's own encoding.
func secretLeaks(_ ticket: Ticket, under root: String, also text: String) throws -> [String] {
    let hex = Digest32(bytes: ticket.secret)!.hex
    let encodedLine = String(ticket.line.dropFirst(Ticket.prefix.count))
    let needles: [[UInt8]] = [ticket.secret, Array(hex.utf8), Array(hex.uppercased().utf8), Array(encodedLine.utf8)]
    func leaks(_ data: Data) -> Bool {
        needles.contains { data.range(of: Data($0)) != nil }
    }
    var found: [String] = []
    if leaks(Data(text.utf8)) { found.append("the command output") }
    let files = FileManager.default.enumerator(atPath: root)?.compactMap { $0 as? String } ?? []
    for file in files where !file.hasSuffix("/ticket") && file != "ticket" {
        let path = root + "/" + file
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
              let data = FileManager.default.contents(atPath: path), data.count < 64 * 1024 * 1024 else { continue }
        // Chunk data is random bytes: only text files and databases can hold a leak worth naming.
        if file.contains("chunks/") || file.hasSuffix(".bin") { continue }
        if leaks(data) { found.append(file) }
    }
    return found
}
