import NIOCore
import PeerShareCore
import PeerShareStore
import PeerShareTrust
import PeerShareWire

/// Fetches chunks over one connection: from the owner (the manifest, then the share) or
/// from a download neighbour (anything it holds that we lack). Keeps up to `window`
/// requests outstanding instead of stopping to wait for each chunk.
struct DownloadSession {
    enum Remote: Sendable {
        case owner
        case neighbour
    }

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
        try await withSession(channel, node: node) { io in
            let known = await node.manifest
            try await io.send(.hello(await node.hello(role: .peer, fileID: known?.fileID ?? Hello.unknownFileID)))
            guard case .hello(let hello) = try await io.nextMessage(during: "handshake") else {
                throw NodeError.protocolViolation("\(endpoint) did not answer with HELLO")
            }
            io.handshakeDone = true
            guard hello.version == Hello.currentVersion else {
                throw NodeError.misbehaving("\(endpoint) speaks protocol version \(hello.version); this node speaks \(Hello.currentVersion)")
            }
            let source = try await receiveFileDetails(&io, hello: hello, known: known)
            guard let manifest = await node.manifest else { throw NodeError.failed("no manifest") }
            let mine = await node.heldChunks
            try await io.send(.chunkList(bitfield: mine.bitfield))
            await node.log(.listSent, source: source, "sent chunk-ID list (\(mine.count) chunks) to \(hello.name)")

            // Peers found through the owner are asked for at once, and again while too few
            // are known; neighbours are asked too, less often (peer exchange).
            let findsNeighbours = await node.findsNeighbours
            let askEvery: Duration = remote == .owner ? .seconds(1) : .seconds(5)
            var lastAsked: ContinuousClock.Instant?
            // PEERS is only ever an answer: one the remote was not asked for is refused, so
            // that no remote fills this peer's list of candidates unasked.
            var questionsOpen = 0
            func askForPeers(_ io: inout SessionIO) async throws {
                guard findsNeighbours, lastAsked.map({ ContinuousClock.now - $0 >= askEvery }) ?? true, await node.wantsMorePeers() else { return }
                lastAsked = .now
                questionsOpen += 1
                try await io.send(.getPeers(wanted: UInt8(clamping: min(await node.neighbourTarget, PeerAddress.maximumPerMessage))))
            }
            try await askForPeers(&io)

            var offered = ChunkSet(capacity: manifest.chunkCount)
            // A neighbour's offer counts towards chunk rarity while this session lasts.
            let neighbourID = remote == .neighbour ? await node.registerNeighbour(PeerAddress(name: hello.name, endpoint: endpoint)) : nil
            var requested: [ChunkID: Int64] = [:]
            var badChunks = 0
            // The last time this neighbour gave us something we lacked, for stall detection.
            var lastUseful = ContinuousClock.now
            do {
                while true {
                    let step = await node.nextDownloadStep(fromOwner: remote == .owner, offered: offered, room: window - requested.count,
                                                           source: source, neighbour: neighbourID, requestedHere: Set(requested.keys))
                    guard case .request(let picks) = step else {
                        await node.release(requested.keys)
                        if let neighbourID { await node.unregisterNeighbour(neighbourID) }
                        if remote == .neighbour {
                            // Tell the uploader we are complete, in case its last HAVE is still queued.
                            await io.sendIfOpen(.chunkList(bitfield: await node.heldChunks.bitfield))
                        }
                        // An uploader that saw our last HAVE may close first and be gone; that
                        // is the end of the conversation, not a lost connection to retry.
                        try? await io.finish()
                        if remote == .neighbour, !io.remoteStoppedReading { await node.toldComplete(neighbour: hello.name, address: endpoint) }
                        return .finished
                    }
                    let now = Clock.nowMicros()
                    for id in picks { requested[id] = now }
                    try await io.send(picks.map { .request($0) })
                    switch try await io.next() {
                    case .message(.chunkList(let bitfield)):
                        guard let list = ChunkSet(capacity: manifest.chunkCount, bitfield: bitfield) else {
                            throw NodeError.protocolViolation("\(hello.name) sent a chunk-ID list of the wrong length")
                        }
                        offered = list
                        lastUseful = .now
                        await node.log(.listReceived, source: source, "received chunk-ID list from \(hello.name): \(list.count) of \(manifest.chunkCount) chunks")
                    case .message(.have(let id)):
                        guard manifest.contains(id) else { throw NodeError.protocolViolation("\(hello.name) announced chunk \(id), outside 0..<\(manifest.chunkCount)") }
                        // Anything newly announced counts as progress (no actor visit per HAVE).
                        if offered.insert(id) { lastUseful = .now }
                    case .message(.piece(let id, let data)):
                        guard let startedAt = requested.removeValue(forKey: id) else {
                            await node.log(.chunkRejected, chunk: id, source: source, "dropped unrequested chunk \(id) from \(hello.name)", level: .warning)
                            continue
                        }
                        if case .rejected = await node.accept(id, data: data, from: source, startedAt: startedAt) {
                            // The claim is released; another source may supply it. This one is
                            // not asked for it again, and is dropped if it keeps doing this.
                            offered.remove(id)
                            badChunks += 1
                            // A member is known by its key: one bad chunk blocks it for good. (Not
                            // the owner, the one source of the file the ticket names.)
                            if let remoteNode, remote == .neighbour {
                                await node.block(remoteNode, name: hello.name, reason: "sent chunk \(id), which failed its hash")
                                throw NodeError.misbehaving("\(hello.name) at \(endpoint) (node \(remoteNode)) sent chunk \(id), which failed its hash; it is blocked")
                            }
                            if badChunks >= io.limits.badChunkLimit {
                                throw NodeError.misbehaving("\(hello.name) at \(endpoint) sent \(badChunks) chunks that failed verification")
                            }
                        }
                    case .message(.reject(let id)):
                        guard requested.removeValue(forKey: id) != nil else { continue }
                        offered.remove(id)
                        await node.release([id])
                    case .message(.peers(let peers)):
                        guard questionsOpen > 0 else { throw NodeError.protocolViolation("\(hello.name) sent PEERS it was not asked for") }
                        questionsOpen -= 1
                        await node.learnPeers(peers, from: source)
                    case .message(let other):
                        throw NodeError.protocolViolation("\(hello.name) sent an unexpected \(other.label) message")
                    case .local(.held(let ids)):
                        // The owner hears them too when it picks this peer's neighbours.
                        if remote == .neighbour || findsNeighbours { try await io.send(ids.map { .have($0) }) }
                    case .local(.stateChanged):
                        try await askForPeers(&io)
                    case .tick:
                        try await askForPeers(&io)
                        // Stalled: nothing new from this neighbour for a while, and the neighbours
                        // between them do not offer everything missing.
                        if remote == .neighbour, requested.isEmpty, ContinuousClock.now - lastUseful > io.limits.stallTimeout,
                           await !node.neighboursCoverMissing {
                            await node.fallBackToOwner(because: "download neighbour \(hello.name) has offered nothing new for \(io.limits.stallTimeout.seconds) s, and the neighbours lack chunks")
                        }
                        let oldest = requested.values.min() ?? Clock.nowMicros()
                        if Clock.nowMicros() - oldest > io.limits.requestTimeout.microseconds {
                            throw NodeError.protocolViolation("\(hello.name) left a request unanswered for \(io.limits.requestTimeout.seconds) s")
                        }
                    case .closed:
                        throw NodeError.protocolViolation("\(hello.name) closed the connection")
                    case .failed(let error):
                        throw error
                    }
                }
            } catch {
                await node.release(requested.keys)
                if let neighbourID { await node.unregisterNeighbour(neighbourID) }
                throw error
            }
        }
    }

    /// After the HELLOs: the owner's manifest and share, or, from a peer, the manifest if
    /// this node asked for it (it joined through that peer); otherwise a check that the
    /// peer is in this node's swarm.
    private func receiveFileDetails(_ io: inout SessionIO, hello: Hello, known: Manifest?) async throws -> ChunkIndex.Source {
        switch remote {
        case .owner:
            guard hello.role == .owner else { throw NodeError.protocolViolation("\(endpoint) is a peer, not the owner") }
            let source = ChunkIndex.Source(kind: .owner, name: hello.name, verified: remoteNode?.digest)
            let manifest = try await receiveAnnouncedManifest(&io, hello: hello)
            guard case .share(let bitfield) = try await io.nextMessage(during: "share transfer"),
                  let share = ChunkSet(capacity: manifest.chunkCount, bitfield: bitfield)
            else { throw NodeError.protocolViolation("the owner did not send a valid share") }
            try await node.adoptManifest(manifest, share: share.sorted)
            let missing = share.subtracting(await node.heldChunks).count
            await node.log(.shareReceived, source: source, "share from the owner: \(share.count) chunks (\(describeRanges(share.sorted))), \(missing) still to fetch")
            return source
        case .neighbour:
            let source = ChunkIndex.Source(kind: .peer, name: hello.name, verified: remoteNode?.digest)
            guard hello.role == .peer else {
                throw NodeError.misbehaving("\(hello.name) at \(endpoint) is the owner; give its address with --owner, not --download-from")
            }
            if let known {
                guard hello.fileID == known.fileID else {
                    throw NodeError.misbehaving("\(hello.name) at \(endpoint) is in the swarm of file \(hello.fileID.short), not ours")
                }
                return source
            }
            let manifest = try await receiveAnnouncedManifest(&io, hello: hello)
            await node.log(.manifestReceived, source: source, "manifest from \(hello.name) at \(endpoint), joining its swarm without the owner: file ID \(manifest.fileID.hex)")
            do {
                try await node.adoptManifest(manifest, share: nil)
            } catch NodeError.manifestChanged {
                // Another neighbour's manifest was adopted first: this one is of another swarm.
                throw NodeError.misbehaving("\(hello.name) at \(endpoint) is in the swarm of file \(manifest.fileID.short), not the one this peer joined")
            }
            return source
        }
    }

    /// MANIFEST and HASHES, checked against the file ID the remote's HELLO announced and
    /// the one this node was told to expect (`--file-id`).
    private func receiveAnnouncedManifest(_ io: inout SessionIO, hello: Hello) async throws -> Manifest {
        // Judged on the HELLO, before a byte of a manifest of the wrong file is taken in.
        if let expected = await node.expectedFileID, expected != hello.fileID {
            throw NodeError.misbehaving("\(hello.name) at \(endpoint) serves file ID \(hello.fileID.short), not the \(expected.short) given with --file-id")
        }
        guard case .manifest(let header) = try await io.nextMessage(during: "manifest transfer") else {
            throw NodeError.protocolViolation("\(hello.name) at \(endpoint) did not send the manifest this node asked for")
        }
        let manifest = try await receiveManifest(&io, header: header)
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
