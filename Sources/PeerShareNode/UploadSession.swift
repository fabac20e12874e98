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
            let isOwner = node.role == .owner
            // A peer can serve only once it knows the file; the manifest is on its way from the owner.
            let hello = try await io.exchangeHellos(side: .uploading) {
                try await node.waitUntil { $0.manifest != nil }
                return await node.hello(role: isOwner ? .owner : .peer, fileID: await node.manifest?.fileID ?? Hello.unknownFileID)
            }
            guard let manifest = await node.manifest else { throw NodeError.failed("no manifest") }
            let next: Handshake.Next
            do throws(HandshakeError) {
                next = try Handshake.judge(opening: hello, isOwner: isOwner, fileID: manifest.fileID)
            } catch {
                throw NodeError.refusedHello(hello.name, error)
            }
            let remote = ChunkIndex.Source(kind: .peer, name: hello.name, verified: remoteNode?.digest)
            await node.log(.connected, source: remote, "\(hello.name) connected to download\(remoteNode.map { " (node \($0))" } ?? "")")
            switch next {
            case .manifestAndShare:
                let share = try await node.assignShare(to: hello.name, findsNeighbours: hello.findsNeighbours)
                guard let manifestMessages = await node.manifestToSend(manifest) else { throw NodeError.failed("the owner has no manifest signature") }
                await io.sendIfOpen(manifestMessages)
                await io.sendIfOpen(.share(bitfield: ChunkSet(capacity: manifest.chunkCount, share).bitfield))
                await node.log(.shareAssigned, source: remote, "sent manifest and a share of \(share.count) chunks to \(hello.name)\(share.isEmpty ? "" : " (\(describeRanges(share)))")")
            case .manifest:
                guard let manifestMessages = await node.manifestToSend(manifest) else {
                    throw NodeError.protocolViolation("\(hello.name) asked for the manifest, and this peer holds no owner's signature to pass on with it")
                }
                await io.sendIfOpen(manifestMessages)
                await node.log(.shareAssigned, source: remote, "sent the manifest to \(hello.name), which joined through this peer")
            case .trade:
                break
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
        var trade = UploadTrade(remoteName: hello.name, chunkCount: manifest.chunkCount, maxRequestsPerChunk: io.limits.maxRequestsPerChunk)
        // Sent chunks are recorded with the next request's visit to the node, or when
        // the session ends: one visit per chunk served instead of two.
        var sent: [CompletedUpload] = []
        let slots = await node.uploadSlots
        do {
            try await answer(&io, &trade, hello: hello, manifest: manifest, remote: remote, member: member, slots: slots, sent: &sent)
        } catch {
            await node.recordUploads(sent, to: remote)
            throw error
        }
        await node.recordUploads(sent, to: remote)
        await node.log(.disconnected, source: remote, "\(hello.name) disconnected (holds \(trade.theirs.count) of \(manifest.chunkCount) chunks)")
    }

    private func answer(_ io: inout SessionIO, _ trade: inout UploadTrade, hello: Hello, manifest: Manifest, remote: ChunkIndex.Source, member: Endpoint?,
                        slots: UploadSlots?, sent: inout [CompletedUpload]) async throws {
        while true {
            switch try await io.next() {
            case .message(let message):
                switch try trade.receive(message) {
                case .nothing:
                    break
                case .listReceived(let count, let completedNow):
                    await node.log(.listReceived, source: remote, "received chunk-ID list from \(hello.name): \(count) of \(trade.chunkCount) chunks")
                    if member != nil { await node.memberReported(hello.name, holds: trade.theirs) }
                    if completedNow { await node.downloaderCompleted(hello.name) }
                case .gained(let reportMember, let completedNow):
                    // What members hold steers the owner's choice of neighbours.
                    if member != nil, reportMember { await node.memberReported(hello.name, holds: trade.theirs) }
                    if completedNow { await node.downloaderCompleted(hello.name) }
                case .answerPeers(let wanted):
                    let peers = await node.peers(for: hello.name, at: member, holding: trade.theirs, wanted: wanted)
                    await io.sendIfOpen(.peers(peers))
                case .request(let id):
                    if io.remoteStoppedReading { continue }
                    let finished = sent
                    sent.removeAll()
                    try await serve(id, to: remote, of: manifest, &io, slots: slots, recording: finished, into: &sent)
                }
            case .local(.held(let ids)):
                await io.sendIfOpen(ids.filter { !trade.theirs.contains($0) }.map { .have($0) })
            case .local(.stateChanged):
                continue
            case .tick:
                // A downloader that asks for nothing more for a while still sees its last
                // chunks recorded within a second.
                if !sent.isEmpty {
                    await node.recordUploads(sent, to: remote)
                    sent.removeAll()
                }
            case .closed:
                return
            case .failed(let error):
                throw error
            }
        }
    }

    /// Sends one requested chunk, or REJECT if it is not held; `finished` are recorded on
    /// the way, and the chunk joins `sent` once written.
    private func serve(_ id: ChunkID, to remote: ChunkIndex.Source, of manifest: Manifest, _ io: inout SessionIO, slots: UploadSlots?, recording finished: [CompletedUpload],
                       into sent: inout [CompletedUpload]) async throws {
        let startedAt = Clock.nowMicros()
        guard let (chunk, slot) = try await node.handleRequest(for: id, from: remote, recording: finished) else {
            await io.sendIfOpen(.reject(id))
            return
        }
        if let slot {
            // Pacing under --max-upload-rate is a timer by design.
            try await Task.sleep(until: slot, clock: .continuous)
        }
        // Beyond --upload-slots, wait for a slot in turn.
        try await slots?.acquire()
        switch chunk {
        case .file(let file): await io.sendIfOpen(frame: .pieceFromFile(id, file))
        case .toRead:
            // Read only now, holding the slot: the waiting sessions hold no chunk in memory.
            do {
                await io.sendIfOpen(.piece(id, try await node.readForSending(id, of: manifest)))
            } catch {
                slots?.release()
                throw error
            }
        }
        slots?.release()
        if !io.remoteStoppedReading {
            sent.append(CompletedUpload(id: id, startedAt: startedAt, finishedAt: Clock.nowMicros(), bytes: chunk.count))
        }
    }
}

/// A requested chunk on its way to the socket: an open file for `sendfile`, or, where the
/// connection encrypts (TLS), a chunk to read once the session may send it.
enum ChunkToSend: Sendable {
    case file(ChunkFile)
    case toRead(ChunkID, count: Int)

    var count: Int {
        switch self {
        case .file(let file): file.region.readableBytes
        case .toRead(_, let count): count
        }
    }
}

extension ChunkFile {
    convenience init(_ slice: FileSlice) {
        self.init(descriptor: slice.descriptor, offset: slice.offset, size: slice.count)
    }
}

/// "0-19, 40, 42-45": a compact way to log a list of chunk IDs.
func describeRanges(_ ids: [ChunkID]) -> String {
    ChunkID.runs(of: ids.sorted()).map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ", ")
}
