import NIOCore
import PeerShareCore
import PeerShareStore
import PeerShareTrust
import PeerShareWire

/// Fetches chunks over one connection: from the owner (the manifest, then the share) or
/// from a download neighbour (anything it holds that we lack). Keeps up to `window`
/// requests outstanding instead of stopping to wait for each chunk.
struct DownloadSession {
    /// Whom this session dialled: the owner, or a peer as download neighbour.
    typealias Remote = Handshake.Dialled

    enum Outcome: Sendable {
        /// Everything this session was for is held.
        case finished
    }

    let node: Node
    let channel: PeerChannel
    let remote: Remote
    let endpoint: Endpoint
    let window: Int
    /// In a private swarm, the remote's node ID, proven by TLS.
    var remoteNode: NodeID? = nil

    func run() async throws -> Outcome {
        await node.downloadConnectionOpened()
        do {
            let outcome = try await converse()
            await node.downloadConnectionClosed()
            return outcome
        } catch {
            await node.downloadConnectionClosed()
            throw error
        }
    }

    private func converse() async throws -> Outcome {
        try await withSession(channel, node: node) { io in
            let known = await node.manifest
            let hello = try await io.exchangeHellos(side: .downloading) {
                await node.hello(role: .peer, fileID: known?.fileID ?? Hello.unknownFileID)
            }
            let next: Handshake.Next
            let expectedFileID = await node.expectedFileID
            do throws(HandshakeError) {
                next = try Handshake.judge(answer: hello, dialled: remote, knownFileID: known?.fileID, expectedFileID: expectedFileID)
            } catch {
                throw NodeError.refusedHello("\(hello.name) at \(endpoint)", error)
            }
            let source = ChunkIndex.Source(kind: remote == .owner ? .owner : .peer, name: hello.name, verified: remoteNode?.digest)
            await node.recordAddress(of: source, endpoint)
            try await receiveFileDetails(&io, next, hello: hello, source: source)
            guard let manifest = await node.manifest else { throw NodeError.failed("no manifest") }
            let mine = await node.heldChunks
            try await io.send(.chunkList(bitfield: mine.bitfield))
            await node.log(.listSent, source: source, "sent chunk-ID list (\(mine.count) chunks) to \(hello.name)")

            // A neighbour's offer counts towards chunk rarity while this session lasts.
            let neighbourID = remote == .peer ? await node.registerNeighbour(PeerAddress(name: hello.name, endpoint: endpoint)) : nil
            var trade = DownloadTrade(remoteName: hello.name, chunkCount: manifest.chunkCount, badChunkLimit: io.limits.badChunkLimit)
            do {
                try await self.trade(&io, &trade, hello: hello, source: source, neighbourID: neighbourID)
            } catch {
                node.recordOffer(trade.offered, from: source)
                await node.abandon(trade.requested, from: source, because: error)
                if let neighbourID { await node.unregisterNeighbour(neighbourID) }
                throw error
            }
            node.recordOffer(trade.offered, from: source)
            await node.release(trade.requested.keys, from: source)
            if let neighbourID { await node.unregisterNeighbour(neighbourID) }
            if remote == .peer {
                // Tell the uploader we are complete, in case its last HAVE is still queued.
                await io.sendIfOpen(.chunkList(bitfield: await node.heldChunks.bitfield))
            }
            // An uploader that saw our last HAVE may close first and be gone; that is the
            // end of the conversation, not a lost connection to retry.
            try? await io.finish()
            if remote == .peer, !io.remoteStoppedReading { await node.toldComplete(neighbour: hello.name, address: endpoint) }
            return .finished
        }
    }

    /// Requests what the node picks from this uploader and takes in what it sends, until
    /// everything this session was for is held.
    private func trade(_ io: inout SessionIO, _ trade: inout DownloadTrade, hello: Hello, source: ChunkIndex.Source, neighbourID: Int?) async throws {
        // Peers found through the owner are asked for at once, and again while too few are
        // known; neighbours are asked too, less often (peer exchange).
        let findsNeighbours = await node.findsNeighbours
        let askEvery: Duration = remote == .owner ? .seconds(1) : .seconds(5)
        var lastAsked: ContinuousClock.Instant?
        func askForPeers(_ io: inout SessionIO, _ trade: inout DownloadTrade) async throws {
            guard findsNeighbours, lastAsked.map({ ContinuousClock.now - $0 >= askEvery }) ?? true, await node.wantsMorePeers() else { return }
            lastAsked = .now
            trade.askingForPeers()
            try await io.send(.getPeers(wanted: UInt8(clamping: min(await node.neighbourTarget, PeerAddress.maximumPerMessage))))
        }
        try await askForPeers(&io, &trade)
        while true {
            let step = await node.nextDownloadStep(fromOwner: remote == .owner, offered: trade.offered, room: window - trade.requested.count,
                                                   source: source, neighbour: neighbourID, requestedHere: Set(trade.requested.keys))
            guard case .request(let picks) = step else { return }
            trade.requesting(picks, atMicros: Clock.nowMicros())
            try await io.send(picks.map { .request($0) })
            switch try await io.next() {
            case .message(let message):
                try await react(to: try trade.receive(message), &trade, hello: hello, source: source)
            case .local(.held(let ids)):
                // The owner hears them too when it picks this peer's neighbours.
                if remote == .peer || findsNeighbours { try await io.send(ids.map { .have($0) }) }
            case .local(.stateChanged):
                try await askForPeers(&io, &trade)
            case .tick:
                try await askForPeers(&io, &trade)
                // Stalled: nothing new from this neighbour for a while, and the neighbours
                // between them do not offer everything missing.
                if remote == .peer, trade.isStalled(now: .now, after: io.limits.stallTimeout), await !node.neighboursCoverMissing {
                    await node.fallBackToOwner(because: "download neighbour \(hello.name) has offered nothing new for \(io.limits.stallTimeout.seconds) s, and the neighbours lack chunks")
                }
                if trade.oldestRequestAge(nowMicros: Clock.nowMicros()) > io.limits.requestTimeout.microseconds {
                    throw NodeError.lost("\(hello.name) left a request unanswered for \(io.limits.requestTimeout.seconds) s")
                }
            case .closed:
                throw NodeError.lost("\(hello.name) closed the connection")
            case .failed(let error):
                throw error
            }
        }
    }

    private func react(to reaction: DownloadTrade.Reaction, _ trade: inout DownloadTrade, hello: Hello, source: ChunkIndex.Source) async throws {
        switch reaction {
        case .nothing:
            break
        case .listReceived(let count):
            node.recordOffer(trade.offered, from: source)
            await node.log(.listReceived, source: source, "received chunk-ID list from \(hello.name): \(count) of \(trade.chunkCount) chunks")
        case .unrequestedPiece(let id):
            await node.log(.chunkRejected, chunk: id, source: source, "dropped unrequested chunk \(id) from \(hello.name)", level: .warning)
        case .rejected(let id):
            await node.release([id], from: source)
        case .peers(let peers):
            await node.learnPeers(peers, from: source)
        case .piece(let id, let data, let startedAt):
            guard case .rejected = await node.accept(id, data: data, from: source, startedAt: startedAt) else { return }
            // The claim is released; another source may supply it. A member is known by its
            // key: one bad chunk blocks it for good (not the owner, the one source of the
            // file the ticket names).
            if let remoteNode, remote == .peer {
                await node.block(remoteNode, name: hello.name, reason: "sent chunk \(id), which failed its hash")
                throw NodeError.misbehaving("\(hello.name) at \(endpoint) (node \(remoteNode)) sent chunk \(id), which failed its hash; it is blocked")
            }
            do {
                try trade.pieceFailed(id)
            } catch {
                throw NodeError.misbehaving("\(error) (\(endpoint))")
            }
        }
    }

    /// After the HELLOs: the owner's manifest and share, or, from a peer, the manifest if
    /// this node asked for it (it joined through that peer).
    private func receiveFileDetails(_ io: inout SessionIO, _ next: Handshake.Next, hello: Hello, source: ChunkIndex.Source) async throws {
        switch next {
        case .trade:
            return
        case .manifestAndShare:
            let manifest = try await receiveAnnouncedManifest(&io, hello: hello)
            guard case .share(let bitfield) = try await io.nextMessage(during: "share transfer"),
                  let share = ChunkSet(capacity: manifest.chunkCount, bitfield: bitfield)
            else { throw NodeError.protocolViolation("the owner did not send a valid share") }
            try await node.adoptManifest(manifest, share: share.sorted)
            let missing = share.subtracting(await node.heldChunks).count
            await node.log(.shareReceived, source: source, "share from the owner: \(share.count) chunks (\(describeRanges(share.sorted))), \(missing) still to fetch")
        case .manifest:
            let manifest = try await receiveAnnouncedManifest(&io, hello: hello)
            await node.log(.manifestReceived, source: source, "manifest from \(hello.name) at \(endpoint), joining its swarm without the owner: file ID \(manifest.fileID.hex)")
            do {
                try await node.adoptManifest(manifest, share: nil)
            } catch NodeError.manifestChanged {
                // Another neighbour's manifest was adopted first: this one is of another swarm.
                throw NodeError.misbehaving("\(hello.name) at \(endpoint) is in the swarm of file \(manifest.fileID.short), not the one this peer joined")
            }
        }
    }

    /// MANIFEST and HASHES, checked against the file ID the remote's HELLO announced and
    /// the one this node was told to expect (`--file-id`).
    private func receiveAnnouncedManifest(_ io: inout SessionIO, hello: Hello) async throws -> Manifest {
        let manifest: Manifest
        switch try await io.nextMessage(during: "manifest transfer") {
        case .manifest(let header): manifest = try await receiveManifest(&io, header: header)
        case .folder(let header): manifest = try await receiveFolderManifest(&io, header: header)
        default: throw NodeError.protocolViolation("\(hello.name) at \(endpoint) did not send the manifest this node asked for")
        }
        // The manifest's chunk hashes must hash to the file ID announced: from here on, each
        // chunk checked against them is a checked byte of that file.
        guard hello.fileID == manifest.fileID else {
            let reason = "\(hello.name)'s manifest hashes to file ID \(manifest.fileID.short), not the \(hello.fileID.short) it announced"
            // A neighbour that does this is avoided, not asked again for the same manifest.
            throw remote == .owner ? NodeError.protocolViolation(reason) : NodeError.misbehaving(reason)
        }
        if let owner = await node.expectedOwner {
            // A private swarm: only a manifest the ticket's owner signed is taken.
            guard case .manifestSignature(let key, let signature) = try await io.nextMessage(during: "manifest transfer") else {
                throw NodeError.misbehaving("\(hello.name) at \(endpoint) sent the manifest without the owner's signature")
            }
            do {
                try ManifestSigning.verify(manifest, signerKey: key, signature: signature, owner: owner)
            } catch {
                throw NodeError.misbehaving("\(hello.name) at \(endpoint): \(error)")
            }
            try await node.keepManifestSignature(signerKey: key, signature: signature)
        }
        return manifest
    }
}
