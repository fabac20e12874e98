import Foundation
import NIOCore
import NIOPosix
import NIOEmbedded
import NIOSSL
import Testing
@testable import PeerShareCore
@testable import PeerShareTrust

/// Private swarms' foundations (issue 16): node identities, tickets, and TLS 1.3 with node IDs
/// checked on both sides.
@Suite("Node identities, tickets and TLS between nodes")
struct TrustTests {
    @Test("a node's key is made once, kept 0600, and gives the same node ID at every start")
    func identityPersists() throws {
        let dir = temporaryDirectory()
        let first = try NodeIdentity.loadOrCreate(in: dir)
        let path = dir + "/" + NodeIdentity.keyFileName
        let mode = try #require(FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
        #expect(mode == 0o600)
        let second = try NodeIdentity.loadOrCreate(in: dir)
        #expect(first.nodeID == second.nodeID)
        #expect(first.nodeID.hex.count == 64)
        #expect(try NodeIdentity.loadOrCreate(in: temporaryDirectory()).nodeID != first.nodeID)
    }

    @Test("a key file others can read, or one that is not a key, is refused with what to do")
    func badKeyFiles() throws {
        let dir = temporaryDirectory()
        _ = try NodeIdentity.loadOrCreate(in: dir)
        let path = dir + "/" + NodeIdentity.keyFileName
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        #expect { try NodeIdentity.loadOrCreate(in: dir) } throws: { "\($0)".contains("can be read by others (mode 644); run chmod 600") }
        let other = temporaryDirectory()
        try SecretFile.write(Array("not a key".utf8), to: other + "/" + NodeIdentity.keyFileName)
        #expect { try NodeIdentity.loadOrCreate(in: other) } throws: { "\($0)".contains("does not hold a P-256 private key") }
    }

    @Test("a manifest signed by the ticket's owner verifies; another signer, a changed name or a damaged signature is refused")
    func manifestSignatures() throws {
        let (manifest, _) = try sampleManifest(size: 450, chunkSize: 100, name: "movie.bin")
        let owner = try NodeIdentity.loadOrCreate(in: temporaryDirectory())
        let member = try NodeIdentity.loadOrCreate(in: temporaryDirectory())
        let signed = try ManifestSigning.sign(manifest, with: owner)
        try ManifestSigning.verify(manifest, signerKey: signed.signerKey, signature: signed.signature, owner: owner.nodeID)
        let forged = try ManifestSigning.sign(manifest, with: member)
        #expect { try ManifestSigning.verify(manifest, signerKey: forged.signerKey, signature: forged.signature, owner: owner.nodeID) } throws: {
            "\($0)".contains("signed by node \(member.nodeID), not by the ticket's owner \(owner.nodeID)")
        }
        let (renamed, _) = try sampleManifest(size: 450, chunkSize: 100, name: "other.bin")
        #expect(renamed.fileID == manifest.fileID, "the file ID does not cover the name: the signature must")
        #expect { try ManifestSigning.verify(renamed, signerKey: signed.signerKey, signature: signed.signature, owner: owner.nodeID) } throws: {
            "\($0)".contains("does not verify")
        }
        var damaged = signed.signature
        damaged[5] ^= 1
        #expect(throws: ManifestSigning.Refusal.self) { try ManifestSigning.verify(manifest, signerKey: signed.signerKey, signature: damaged, owner: owner.nodeID) }
        #expect(throws: ManifestSigning.Refusal.self) { try ManifestSigning.verify(manifest, signerKey: signed.signerKey, signature: [1, 2, 3], owner: owner.nodeID) }
    }

    func sampleTicket() throws -> Ticket {
        Ticket(ownerAddresses: [Endpoint(host: "192.168.1.5", port: 7000), Endpoint(host: "::1", port: 7000)],
               ownerID: try NodeIdentity.loadOrCreate(in: temporaryDirectory()).nodeID,
               fileID: Digest32.of(Array("file".utf8)), secret: Ticket.newSecret())
    }

    @Test("a ticket reads back as written, and its description never shows the secret")
    func ticketRoundTrip() throws {
        let ticket = try sampleTicket()
        #expect(try Ticket(line: ticket.line + "\n") == ticket)
        #expect(ticket.line.hasPrefix("peershare-ticket-1:"))
        #expect(!ticket.line.contains("+") && !ticket.line.contains("/") && !ticket.line.contains("="))
        let secretHex = Digest32(bytes: ticket.secret)!.hex
        #expect(!ticket.description.contains(secretHex))
        #expect(ticket.description.contains("secret withheld"))
    }

    @Test("a damaged ticket is refused with the field that is wrong, never echoing the line")
    func damagedTickets() throws {
        let line = try sampleTicket().line
        func refusal(_ text: String) -> String? {
            do { _ = try Ticket(line: text); return nil } catch { return "\(error)" }
        }
        #expect(refusal("ticket") == "a ticket starts with peershare-ticket-1:")
        #expect(refusal("peershare-ticket-1:***")?.contains("not base64url") == true)
        #expect(refusal(String(line.prefix(Ticket.prefix.count + 40)))?.contains("the ticket ends before") == true)
        #expect(refusal(line + "AAAA")?.contains("bytes after its last address") == true)
        #expect(refusal("peershare-ticket-1:" + String(repeating: "A", count: 5000))?.contains("over 4096") == true)
        let noAddresses = "peershare-ticket-1:" + Data([1] + [UInt8](repeating: 7, count: 96) + [0]).base64EncodedString()
        #expect(refusal(noAddresses)?.contains("names 0 owner addresses") == true)
        let badAddress = "peershare-ticket-1:" + Data([1] + [UInt8](repeating: 7, count: 96) + [1, 3] + Array("a:b".utf8)).base64EncodedString()
        #expect(refusal(badAddress)?.contains("not HOST:PORT") == true)
        for text in [line, noAddresses] where refusal(text) != nil {
            #expect(refusal(text)?.contains(text.dropFirst(19)) == false)
        }
    }

    /// A private-swarm listener on 127.0.0.1; each connection's outcome (the remote's node
    /// ID once it proved the secret, or the refusal) arrives on `outcomes`.
    struct Server {
        let channel: any Channel
        let outcomes: AsyncStream<Result<NodeID, any Error>>
        var port: Int { channel.localAddress?.port ?? 0 }

        init(_ swarm: PrivateSwarm) async throws {
            let (outcomes, report) = AsyncStream.makeStream(of: Result<NodeID, any Error>.self)
            self.outcomes = outcomes
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .childChannelInitializer { child in
                    child.eventLoop.makeCompletedFuture {
                        try swarm.secureAccepted(child).whenComplete { report.yield($0) }
                    }
                }
                .bind(host: "127.0.0.1", port: 0).get()
        }

        /// The next connection's outcome, waiting at most 15 s.
        func nextOutcome() async throws -> Result<NodeID, any Error> {
            let outcomes = self.outcomes
            return try await withThrowingTaskGroup(of: Result<NodeID, any Error>?.self) { group in
                group.addTask { await outcomes.first { _ in true } }
                group.addTask {
                    try await Task.sleep(for: .seconds(15))
                    return nil
                }
                defer { group.cancelAll() }
                guard let outcome = try await group.next() ?? nil else { throw JoinRefusal.timedOut(.seconds(15)) }
                return outcome
            }
        }
    }

    func dial(_ port: Int, as swarm: PrivateSwarm, expecting expected: NodeID?) async throws -> (NodeID, TLSVersion?) {
        let (channel, joined) = try await secureDial(port, as: swarm, expecting: expected)
        defer { channel.close(promise: nil) }
        let id = try await joined.get()
        return (id, try await channel.nioSSL_tlsVersion().get())
    }

    func member(_ secret: [UInt8]) throws -> PrivateSwarm {
        try PrivateSwarm(identity: NodeIdentity.loadOrCreate(in: temporaryDirectory()), secret: secret, joinTimeout: patientJoin)
    }

    @Test("TLS 1.3 and the join proof: each side learns the other's node ID; a pinned ID that does not match is refused")
    func mutualTLS() async throws {
        let secret = Ticket.newSecret()
        let owner = try member(secret), peer = try member(secret)
        let server = try await Server(owner)
        defer { server.channel.close(promise: nil) }
        let (seen, version) = try await dial(server.port, as: peer, expecting: owner.identity.nodeID)
        #expect(seen == owner.identity.nodeID)
        #expect(version == .tlsv13)
        #expect(try await server.nextOutcome().get() == peer.identity.nodeID, "the server saw the client's node ID")

        let impostor = try NodeIdentity.loadOrCreate(in: temporaryDirectory())
        await #expect(throws: (any Error).self) { try await dial(server.port, as: peer, expecting: impostor.nodeID) }
        await #expect(throws: (any Error).self) { try await server.nextOutcome().get() }
    }

    @Test("a connection that closes before it was ever active ends its join with a refusal, not a wait forever")
    func closedBeforeActive() throws {
        let swarm = try member(Ticket.newSecret())
        let channel = EmbeddedChannel()
        let joined = try swarm.secureOpened(channel, expecting: nil)
        _ = try? channel.close().wait()
        #expect(throws: JoinRefusal.self) { try joined.wait() }
    }

    @Test("a node with another secret is refused on both sides, each naming the other's node ID")
    func wrongSecret() async throws {
        let owner = try member(Ticket.newSecret()), stranger = try member(Ticket.newSecret())
        let server = try await Server(owner)
        defer { server.channel.close(promise: nil) }
        await #expect { try await dial(server.port, as: stranger, expecting: nil) } throws: {
            "\($0)".contains("node \(owner.identity.nodeID) does not hold this swarm's join secret")
        }
        await #expect { try await server.nextOutcome().get() } throws: {
            "\($0)".contains("node \(stranger.identity.nodeID) does not hold this swarm's join secret")
        }
    }

    @Test("a stranger on plain TCP gets no byte back, and is refused")
    func plainTCPStranger() async throws {
        let server = try await Server(try member(Ticket.newSecret()))
        defer { server.channel.close(promise: nil) }
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: server.port) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let received = try await channel.executeThenClose { inbound, outbound in
            // A HELLO frame as a public swarm's peer would send it.
            try await outbound.write(ByteBuffer(bytes: [0, 0, 0, 5, 1, 3, 0, 0, 0]))
            var bytes = 0
            for try await chunk in inbound { bytes += chunk.readableBytes }
            return bytes
        }
        #expect(received <= 7, "a TLS alert at most, got \(received) bytes")
        await #expect(throws: (any Error).self) { try await server.nextOutcome().get() }
    }
}

/// In-process TLS tests share two cores with the whole suite's swarms: a join limit well
/// past anything a refusal here takes, so that a starved scheduler is not read as a refusal.
let patientJoin = TimeAmount.seconds(60)

/// Men in the middle, in process: a relay that terminates TLS with its own key and passes
/// the decrypted bytes on, and a recorder that replays a member's handshake bytes.
@Suite("A man in the middle and a replayed handshake")
struct InterceptionTests {
    typealias Server = TrustTests.Server

    /// Relays each connection to `target`: plain bytes both ways, or, with `terminating`,
    /// TLS ended here with that identity on both legs. Reports the client's bytes, in order.
    struct Relay {
        let channel: any Channel
        let recorded: AsyncStream<ByteBuffer>
        var port: Int { channel.localAddress?.port ?? 0 }

        init(to target: Int, terminating identity: NodeIdentity?) async throws {
            let serverTLS = try identity.map { try SecureChannel.context(for: $0, server: true) }
            let clientTLS = try identity.map { try SecureChannel.context(for: $0, server: false) }
            let (recorded, record) = AsyncStream.makeStream(of: ByteBuffer.self)
            self.recorded = recorded
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .childChannelInitializer { child in
                    child.eventLoop.makeCompletedFuture {
                        if let serverTLS {
                            try child.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverTLS, customVerificationCallback: SecureChannel.verifier(expecting: nil)))
                        }
                        let downstream = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: child)
                        Task {
                            // The recording ends with the first connection (the tests make one).
                            defer { record.finish() }
                            let upstream = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                                .connect(host: "127.0.0.1", port: target) { channel in
                                    channel.eventLoop.makeCompletedFuture {
                                        if let clientTLS {
                                            try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: clientTLS, serverHostname: nil,
                                                                                                                   customVerificationCallback: SecureChannel.verifier(expecting: nil)))
                                        }
                                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                                    }
                                }
                            try await downstream.executeThenClose { downIn, downOut in
                                try await upstream.executeThenClose { upIn, upOut in
                                    try await withThrowingTaskGroup(of: Void.self) { group in
                                        group.addTask { for try await bytes in downIn { record.yield(bytes); try await upOut.write(bytes) } }
                                        group.addTask { for try await bytes in upIn { try await downOut.write(bytes) } }
                                        _ = try await group.next()
                                        group.cancelAll()
                                    }
                                }
                            }
                        }
                    }
                }
                .bind(host: "127.0.0.1", port: 0).get()
        }
    }

    func dial(_ port: Int, as swarm: PrivateSwarm, expecting expected: NodeID?) async throws -> NodeID {
        let (channel, joined) = try await secureDial(port, as: swarm, expecting: expected)
        defer { channel.close(promise: nil) }
        return try await joined.get()
    }

    @Test("a relay that ends TLS with its own key and passes the JOIN frames on is refused by both sides")
    func manInTheMiddle() async throws {
        let secret = Ticket.newSecret()
        let owner = try PrivateSwarm(identity: NodeIdentity.loadOrCreate(in: temporaryDirectory()), secret: secret, joinTimeout: patientJoin)
        let member = try PrivateSwarm(identity: NodeIdentity.loadOrCreate(in: temporaryDirectory()), secret: secret, joinTimeout: patientJoin)
        let server = try await Server(owner)
        defer { server.channel.close(promise: nil) }
        let relay = try await Relay(to: server.port, terminating: try NodeIdentity.loadOrCreate(in: temporaryDirectory()))
        defer { relay.channel.close(promise: nil) }
        // Pinning the owner (as a peer does with its ticket) stops it at TLS.
        await #expect(throws: (any Error).self) { try await dial(relay.port, as: member, expecting: owner.identity.nodeID) }
        _ = try? await server.nextOutcome()
        // Without a pin (peer to peer), each side's proof names the relay, not the other end.
        await #expect { try await dial(relay.port, as: member, expecting: nil) } throws: { "\($0)".contains("does not hold this swarm's join secret") }
        let outcome = try await server.nextOutcome()
        #expect(throws: JoinRefusal.self) { try outcome.get() }
    }

    @Test("a member's handshake bytes replayed on a new connection are refused")
    func replayedHandshake() async throws {
        let secret = Ticket.newSecret()
        let owner = try PrivateSwarm(identity: NodeIdentity.loadOrCreate(in: temporaryDirectory()), secret: secret, joinTimeout: patientJoin)
        let member = try PrivateSwarm(identity: NodeIdentity.loadOrCreate(in: temporaryDirectory()), secret: secret, joinTimeout: patientJoin)
        let server = try await Server(owner)
        defer { server.channel.close(promise: nil) }
        let recorder = try await Relay(to: server.port, terminating: nil)
        defer { recorder.channel.close(promise: nil) }
        #expect(try await dial(recorder.port, as: member, expecting: owner.identity.nodeID) == owner.identity.nodeID)
        #expect(try await server.nextOutcome().get() == member.identity.nodeID)
        // Everything the member sent, as an eavesdropper saw it: the recording ends when the
        // member's connection (closed by `dial`) does.
        var captured = ByteBuffer()
        for await var bytes in recorder.recorded { captured.writeBuffer(&bytes) }
        #expect(captured.readableBytes > JoinProof.frameLength, "the ClientHello, the client's Finished and its JOIN")
        let replay = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: server.port) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        try await replay.executeThenClose { inbound, outbound in
            try await outbound.write(captured)
            for try await _ in inbound {}
        }
        let outcome = try await server.nextOutcome()
        #expect(throws: (any Error).self) { try outcome.get() }
    }
}

/// Connects with TLS and the join added before the connection is up, as nodes do: no
/// window in which a loaded test process lets the remote's 10 s join limit run out.
func secureDial(_ port: Int, as swarm: PrivateSwarm, expecting expected: NodeID?) async throws -> (any Channel, EventLoopFuture<NodeID>) {
    try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture { (channel as any Channel, try swarm.secureOpened(channel, expecting: expected)) }
        }
}
