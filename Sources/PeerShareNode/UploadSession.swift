import NIOCore
import PeerShareCore
import PeerShareStore
import PeerShareTrust
import PeerShareWire

/// Serves one connected downloader: the owner serving a peer, or a peer serving its upload
/// neighbour. Answers chunk-ID lists and requests, and announces each new local chunk.
struct UploadSession {
    let node: Node
    let channel: PeerChannel
    /// The remote's IP address, where a peer that advertises only its port is dialled.
    let remoteHost: String?
    /// In a private swarm, the remote's verified node ID.
    var remoteNode: NodeID? = nil

    func run() async throws {
        try await withSession(channel, node: node) { io in
            guard case .hello(let hello) = try await io.nextMessage(during: "handshake") else {
                throw NodeError.protocolViolation("expected HELLO as the first message")
            }
            io.handshakeDone = true
            guard hello.version == Hello.currentVersion else {
                throw NodeError.protocolViolation("\(hello.name) speaks protocol version \(hello.version); this node speaks \(Hello.currentVersion)")
            }
            let isOwner = node.role == .owner
            let remote = ChunkIndex.Source(kind: .peer, name: hello.name, verified: remoteNode?.digest)
            // A peer can serve only once it knows the file; the manifest is on its way from the owner.
            try await node.waitUntil { $0.manifest != nil }
            guard let manifest = await node.manifest else { throw NodeError.failed("no manifest") }
            // A downloader that does not know the file yet asks with the zero file ID: the
            // owner, or a peer when the owner has left (docs/PROTOCOL.md), sends the manifest.
            let askingForManifest = hello.fileID == Hello.unknownFileID
            // Our HELLO goes out first even to a downloader of another file: it carries our
            // file ID, so that the downloader avoids us at once instead of reconnecting.
            await io.sendIfOpen(.hello(await node.hello(role: isOwner ? .owner : .peer, fileID: manifest.fileID)))
            guard hello.fileID == manifest.fileID || askingForManifest else {
                throw NodeError.protocolViolation("\(hello.name) is in the swarm of file \(hello.fileID.short), not \(manifest.fileID.short)")
            }
            await node.log(.connected, source: remote, "\(hello.name) connected to download\(remoteNode.map { " (node \($0))" } ?? "")")
            if isOwner {
                let share = try await node.assignShare(to: hello.name, findsNeighbours: hello.findsNeighbours)
                guard let manifestMessages = await node.manifestToSend(manifest) else { throw NodeError.failed("the owner has no manifest signature") }
                for message in manifestMessages { await io.sendIfOpen(message) }
                await io.sendIfOpen(.share(bitfield: ChunkSet(capacity: manifest.chunkCount, share).bitfield))
                await node.log(.shareAssigned, source: remote, "sent manifest and a share of \(share.count) chunks to \(hello.name)\(share.isEmpty ? "" : " (\(describeRanges(share)))")")
            } else if askingForManifest {
                guard let manifestMessages = await node.manifestToSend(manifest) else {
                    throw NodeError.protocolViolation("\(hello.name) asked for the manifest, and this peer holds no owner's signature to pass on with it")
                }
                for message in manifestMessages { await io.sendIfOpen(message) }
                await node.log(.shareAssigned, source: remote, "sent the manifest to \(hello.name), which joined through this peer")
            }
            let mine = await node.heldChunks
            await io.sendIfOpen(.chunkList(bitfield: mine.bitfield))
            await node.log(.listSent, source: remote, "sent chunk-ID list (\(mine.count) chunks) to \(hello.name)")
            // A downloader that says where it listens is a member others may be sent to.
            var member = advertisedEndpoint(of: hello)
            if let listed = member, await !node.memberJoined(hello.name, at: listed) { member = nil }
            do {
                try await trade(&io, hello: hello, manifest: manifest, remote: remote, member: member)
            } catch {
                if member != nil { await node.memberLeft(hello.name) }
                throw error
            }
            if member != nil { await node.memberLeft(hello.name) }
        }
    }

    /// Where others may dial the downloader: the host it advertised, or the address it
    /// connected from; nil if it gave no port.
    private func advertisedEndpoint(of hello: Hello) -> Endpoint? {
        guard hello.listenPort > 0 else { return nil }
        let host = hello.advertisedHost.isEmpty ? remoteHost : hello.advertisedHost
        guard let host, PeerAddress.isValidHost(host) else { return nil }
        return Endpoint(host: host, port: Int(hello.listenPort))
    }

    /// Answers chunk-ID lists, requests and GET-PEERS until the downloader leaves.
    private func trade(_ io: inout SessionIO, hello: Hello, manifest: Manifest, remote: ChunkIndex.Source, member: Endpoint?) async throws {
        let slots = await node.uploadSlots
        var theirs = ChunkSet(capacity: manifest.chunkCount)
        var gainsUnreported = 0
        var peerQuestions = PeerQuestionBudget()
        var reportedComplete = false
        var requestsPerChunk: [ChunkID: Int] = [:]
        // Sent chunks are recorded with the next request's visit to the node, or when
        // the session ends: one visit per chunk served instead of two.
        var sent: [CompletedUpload] = []
        func recordSent() async {
            guard !sent.isEmpty else { return }
            await node.recordUploads(sent, to: remote)
            sent.removeAll()
        }
        func noteProgress() async {
            if theirs.isComplete && !reportedComplete {
                reportedComplete = true
                await node.downloaderCompleted(hello.name)
            }
        }
        do {
            while true {
                switch try await io.next() {
                case .message(.chunkList(let bitfield)):
                    guard let list = ChunkSet(capacity: manifest.chunkCount, bitfield: bitfield) else {
                        throw NodeError.protocolViolation("\(hello.name) sent a chunk-ID list of the wrong length")
                    }
                    theirs = list
                    await node.log(.listReceived, source: remote, "received chunk-ID list from \(hello.name): \(list.count) of \(manifest.chunkCount) chunks")
                    if member != nil { await node.memberReported(hello.name, holds: theirs) }
                    await noteProgress()
                case .message(.have(let id)):
                    guard manifest.contains(id) else { throw NodeError.protocolViolation("\(hello.name) announced chunk \(id), outside 0..<\(manifest.chunkCount)") }
                    // What members hold steers the owner's choice of neighbours; it is
                    // passed on every so many new chunks, and on completion, not at every HAVE.
                    guard theirs.insert(id) else { continue }
                    gainsUnreported += 1
                    if member != nil, gainsUnreported >= 16 || theirs.isComplete {
                        gainsUnreported = 0
                        await node.memberReported(hello.name, holds: theirs)
                    }
                    await noteProgress()
                case .message(.getPeers(let wanted)):
                    guard try peerQuestions.admit(now: .now) else { continue }
                    let peers = await node.peers(for: hello.name, at: member, holding: theirs, wanted: Int(wanted))
                    await io.sendIfOpen(.peers(peers))
                case .message(.request(let id)):
                    guard manifest.contains(id) else { throw NodeError.protocolViolation("\(hello.name) requested chunk \(id), outside 0..<\(manifest.chunkCount)") }
                    requestsPerChunk[id, default: 0] += 1
                    guard requestsPerChunk[id, default: 0] <= io.limits.maxRequestsPerChunk else {
                        throw NodeError.protocolViolation("\(hello.name) requested chunk \(id) \(requestsPerChunk[id, default: 0]) times: a request flood")
                    }
                    let startedAt = Clock.nowMicros()
                    if io.remoteStoppedReading { continue }
                    let finished = sent
                    sent.removeAll()
                    if let (file, slot) = try await node.handleRequest(for: id, from: remote, recording: finished) {
                        if let slot {
                            // Pacing under --max-upload-rate is a timer by design.
                            try await Task.sleep(until: slot, clock: .continuous)
                        }
                        // Beyond --upload-slots, wait for a slot in turn.
                        try await slots?.acquire()
                        if await node.isPrivate {
                            // TLS encrypts in user space: no sendfile; the chunk is read into
                            // memory on the I/O threads and sent as a buffer.
                            await io.sendIfOpen(.piece(id, try await node.readForSending(file)))
                        } else {
                            await io.sendIfOpen(frame: .pieceFromFile(id, file))
                        }
                        slots?.release()
                        if !io.remoteStoppedReading {
                            sent.append(CompletedUpload(id: id, startedAt: startedAt, finishedAt: Clock.nowMicros(), bytes: file.region.readableBytes))
                        }
                    } else {
                        await io.sendIfOpen(.reject(id))
                    }
                case .message(let other):
                    throw NodeError.protocolViolation("\(hello.name) sent an unexpected \(other.label) message")
                case .local(.held(let ids)):
                    await io.sendIfOpen(ids.filter { !theirs.contains($0) }.map { .have($0) })
                case .local(.stateChanged):
                    continue
                case .tick:
                    // A downloader that asks for nothing more for a while still sees its
                    // last chunks recorded within a second.
                    await recordSent()
                case .closed:
                    await recordSent()
                    await node.log(.disconnected, source: remote, "\(hello.name) disconnected (holds \(theirs.count) of \(manifest.chunkCount) chunks)")
                    return
                case .failed(let error):
                    throw error
                }
            }
        } catch {
            await recordSent()
            throw error
        }
    }
}

/// "0-19, 40, 42-45": a compact way to log a list of chunk IDs.
func describeRanges(_ ids: [ChunkID]) -> String {
    var parts: [String] = []
    var index = 0
    let sorted = ids.sorted()
    while index < sorted.count {
        var end = index
        while end + 1 < sorted.count, sorted[end + 1].rawValue == sorted[end].rawValue + 1 { end += 1 }
        parts.append(end == index ? "\(sorted[index])" : "\(sorted[index])-\(sorted[end])")
        index = end + 1
    }
    return parts.joined(separator: ", ")
}

/// GET-PEERS from one downloader: at most one answered a second; a remote that keeps asking
/// far faster than that is dropped, so a flood costs the node nothing but the decoding.
struct PeerQuestionBudget {
    /// A little under the second between a downloader's questions, so that jitter does not
    /// turn every other one away.
    static let interval = Duration.milliseconds(800)
    /// Unanswered questions tolerated before the connection is closed.
    static let unansweredLimit = 100
    private var lastAnswered: ContinuousClock.Instant?
    private var unanswered = 0

    /// True if this question is answered; false if it is ignored as too soon; throws on a flood.
    mutating func admit(now: ContinuousClock.Instant) throws -> Bool {
        if let lastAnswered, now - lastAnswered < Self.interval {
            unanswered += 1
            guard unanswered <= Self.unansweredLimit else {
                throw NodeError.protocolViolation("sent \(unanswered) GET-PEERS too soon after the last answered: a flood")
            }
            return false
        }
        lastAnswered = now
        unanswered = 0
        return true
    }
}
