import NIOCore
import PeerShareCore
import PeerShareWire

/// The session target: the fuzzer's bytes pick a side and a conversation, which is written
/// as frames, fed to a gated decoder in pieces of a chosen size, and each message is handled
/// as the sessions handle it, with the same core code (ManifestReceiver, ChunkSet,
/// ChunkLayout, Manifest.verify). A refusal ends the conversation, as it ends a connection.
enum SessionScript {
    static func run(_ input: inout FuzzInput) -> String? {
        let side: ConversationGate.Side = input.bool() ? .downloading : .uploading
        var model = SessionModel(side: side, localLayout: localLayout(&input))
        var builder = FrameBuilder()
        builder.facts.chunkCount = UInt64(model.localLayout.chunkCount)
        // Small pieces exercise frames split across reads; on a long stream they would only
        // slow every execution down, so they are kept for short ones.
        let chosen = input.pick([5, 100, 4096, 65_536, Int.max])
        write(side, into: &builder, &input)
        let stride = builder.bytes.count > 65_536 ? max(chosen, 4096) : chosen
        var decoder = PeerMessageDecoder(gate: ConversationGate(side: side))
        var pending = ByteBuffer()
        var offset = 0
        let bytes = builder.bytes
        do {
            while offset < bytes.count {
                let end = offset + min(stride, bytes.count - offset)
                pending.writeBytes(bytes[offset..<end])
                offset = end
                while let message = try decoder.decodeOne(&pending) {
                    try model.handle(message)
                }
                pending.discardReadBytes()
            }
        } catch {
            // A refusal: the connection would be closed here. Typed errors are the right outcome.
        }
        return nil
    }

    /// The layout of the file this node itself serves (when it uploads): realistic sizes,
    /// since it comes from the node's own file, not from the remote.
    static func localLayout(_ input: inout FuzzInput) -> ChunkLayout {
        let size = input.pick([0, 1, 102_399, 102_400, 102_401, 250_000, 16_384 * 102_400 + 1] as [Int64])
        let chunkSize = input.pick([1, 4096, 102_400, ChunkLayout.maximumChunkSize])
        // At most 100,000 chunks of a valid size: every choice is a valid layout.
        guard let layout = try? ChunkLayout(fileSize: min(size, Int64(chunkSize) * 100_000), chunkSize: chunkSize) else {
            preconditionFailure("the local layout choices are all valid")
        }
        return layout
    }

    /// The remote's side of the conversation: mostly in the protocol's order, with a
    /// message of any kind slipped in now and then.
    static func write(_ side: ConversationGate.Side, into builder: inout FrameBuilder, _ input: inout FuzzInput) {
        builder.message(.hello, &input)
        if side == .downloading, input.byte() < 200 {
            builder.message(.manifest, &input)
            while builder.facts.hashesSent < builder.facts.chunkCount, !builder.isFull, input.byte() < 250 {
                builder.message(.hashes, &input)
            }
            builder.message(.share, &input)
        }
        let trading: [PeerMessage.Kind] = side == .downloading ? [.chunkList, .have, .piece, .reject, .keepAlive] : [.chunkList, .have, .request, .keepAlive]
        while !input.isExhausted, !builder.isFull {
            if input.byte() < 16 {
                builder.anyMessage(&input)
            } else {
                builder.message(input.pick(trading), &input)
            }
        }
    }
}

/// What a session does with each message it is handed, reduced to the checks and the
/// arithmetic: no actor, no disk, no socket.
struct SessionModel {
    struct Refused: Error { let reason: String }

    let side: ConversationGate.Side
    let localLayout: ChunkLayout
    private var receiver: ManifestReceiver?
    private var folderReceiver: FolderReceiver?
    private var manifest: Manifest?
    private var theirs = ChunkSet(capacity: 0)

    init(side: ConversationGate.Side, localLayout: ChunkLayout) {
        self.side = side
        self.localLayout = localLayout
        if side == .uploading { theirs = ChunkSet(capacity: localLayout.chunkCount) }
    }

    /// The layout chunk IDs are judged against: the received manifest's when downloading
    /// from the owner, our own otherwise.
    private var layout: ChunkLayout { manifest?.layout ?? localLayout }

    mutating func handle(_ message: PeerMessage) throws {
        switch message {
        case .hello(let hello):
            guard hello.version == Hello.currentVersion else { throw Refused(reason: "version") }
        case .manifest(let header):
            receiver = try ManifestReceiver(header)
            if receiver?.isComplete == true { try finishManifest() }
        case .hashes(let first, let batch) where folderReceiver != nil:
            try folderReceiver!.add(first: first, batch)
            if folderReceiver!.isComplete { try finishFolder() }
        case .hashes(let first, let batch):
            guard receiver != nil else { throw Refused(reason: "HASHES without MANIFEST") }
            try receiver!.add(first: first, batch)
            if receiver!.isComplete { try finishManifest() }
        case .share(let bitfield), .chunkList(let bitfield):
            guard let set = ChunkSet(capacity: layout.chunkCount, bitfield: bitfield) else { throw Refused(reason: "bitfield length") }
            theirs = set
            var members = set.members
            _ = members.next().map { (layout.offset(of: $0), layout.size(of: $0)) }
        case .have(let id), .reject(let id):
            guard layout.contains(id) else { throw Refused(reason: "chunk ID") }
            if theirs.capacity == layout.chunkCount { theirs.insert(id) }
        case .request(let id):
            guard layout.contains(id) else { throw Refused(reason: "chunk ID") }
            _ = (layout.offset(of: id), layout.size(of: id))
        case .piece(let id, let data):
            guard let manifest else { throw Refused(reason: "PIECE before the manifest") }
            _ = manifest.verify(id, bytes: data.readableBytesView, count: data.readableBytes)
            if manifest.contains(id) { _ = manifest.layout.offset(of: id) }
        case .keepAlive:
            break
        case .getPeers(let wanted):
            guard Int(wanted) <= PeerAddress.maximumPerMessage else { throw Refused(reason: "GET-PEERS count") }
        case .peers(let peers):
            guard peers.allSatisfy({ PeerAddress.isValidHost($0.endpoint.host) && (1...65_535).contains($0.endpoint.port) }) else {
                throw Refused(reason: "PEERS address")
            }
        case .manifestSignature(let key, let signature):
            guard (1...PeerMessage.maximumSignerKeyBytes).contains(key.count), (1...PeerMessage.maximumSignatureBytes).contains(signature.count) else {
                throw Refused(reason: "MANIFEST-SIGNATURE lengths")
            }
        case .folder(let header):
            folderReceiver = FolderReceiver(header)
        case .files(let first, let entries):
            guard folderReceiver != nil else { throw Refused(reason: "FILES without FOLDER") }
            try folderReceiver!.add(first: first, entries)
            if folderReceiver!.isComplete { try finishFolder() }
        }
    }

    private mutating func finishFolder() throws {
        manifest = Manifest(folder: try folderReceiver!.manifest())
        folderReceiver = nil
        theirs = ChunkSet(capacity: manifest!.chunkCount)
    }

    private mutating func finishManifest() throws {
        manifest = try receiver!.manifest()
        receiver = nil
        theirs = ChunkSet(capacity: manifest!.chunkCount)
    }
}
