import PeerShareCore
import PeerShareStore
import PeerShareTrust
import PeerShareWire

/// A swarm that wires itself (issue 15): peers say where they listen, the owner hands each
/// up to K of them as neighbours, and peers pass on whom they know.
extension Node {
    /// Neighbours this peer finds through the owner and other peers: `target` of them, never
    /// itself.
    public func findNeighbours(target: Int, advertised: Endpoint?) {
        neighbourBook.target = target
        neighbourBook.selfName = name
        neighbourBook.selfEndpoint = advertised
    }

    /// Makes this node a member of a private swarm: every connection gets TLS and the join proof.
    public func joinPrivateSwarm(_ swarm: PrivateSwarm, owner: NodeID?) {
        security = swarm
        expectedOwner = owner
    }

    /// The owner's signature over its manifest, sent after it in a private swarm.
    func useManifestSignature(signerKey: [UInt8], signature: [UInt8]) {
        manifestSignature = (signerKey, signature)
    }

    /// A verified signature over the manifest this peer adopted, kept to pass on.
    func keepManifestSignature(signerKey: [UInt8], signature: [UInt8]) async throws {
        guard manifestSignature == nil else { return }
        try await index.run { try $0.saveManifestSignature(signerKey: signerKey, signature: signature) }
        manifestSignature = (signerKey, signature)
    }

    /// The manifest as sent to a downloader that asked for it: signed in a private swarm.
    /// Nil when this peer of a private swarm has no signature to pass on.
    func manifestToSend(_ manifest: Manifest) -> [PeerMessage]? {
        guard isPrivate else { return manifestMessages(manifest) }
        guard let manifestSignature else { return nil }
        return manifestMessages(manifest) + [.manifestSignature(signerKey: manifestSignature.signerKey, signature: manifestSignature.signature)]
    }

    /// Why `node` is refused, if it is: a block recorded in this or an earlier run.
    public func blockReason(_ node: NodeID) -> String? {
        blockedNodes[node.digest].map { "node \(node) (\($0.name)) is blocked: \($0.reason)" }
    }

    /// Refuses `node` from now on, across restarts: it sent a chunk that failed its hash.
    func block(_ node: NodeID, name: String, reason: String) async {
        guard blockedNodes[node.digest] == nil else { return }
        let record = ChunkIndex.BlockedNode(nodeID: node.digest, name: name, reason: reason, blockedAt: Clock.nowMicros())
        blockedNodes[node.digest] = record
        log(.protocolError, source: .init(kind: .peer, name: name, verified: node.digest), "blocked node \(node.hex) (\(name)) from now on: \(reason)", level: .warning)
        do {
            try await index.run { try $0.block(record) }
        } catch {
            log(.error, "could not record the block of node \(node) in the index: \(error)", level: .warning)
        }
    }

    /// How this peer joins: through the owner, or through other peers only (`--owner` not
    /// given); and, if told (`--file-id`), which file it must be served.
    public func join(withOwner: Bool, expecting fileID: Digest32?) {
        hasOwner = withOwner
        expectedFileID = fileID
    }

    /// Some neighbour may still supply chunks: a pinned one not given up on, or a found one
    /// connected, being dialled or queued.
    public var hasNeighbourSource: Bool {
        liveNeighbours > 0 || !neighbourBook.active.isEmpty || !neighbourBook.candidates.isEmpty
    }

    /// Every source of a peer without an owner is gone before the file is complete.
    public var strandedWithoutOwner: Bool {
        !hasOwner && !isComplete && !hasNeighbourSource
    }

    /// Where others should dial this peer, told in every HELLO it sends.
    public func advertise(host: String, port: Int) {
        advertisedHost = host
        advertisedPort = UInt16(clamping: port)
    }

    /// This node's HELLO.
    func hello(role: Hello.Role, fileID: Digest32) -> Hello {
        Hello(role: role, fileID: fileID, name: name, listenPort: role == .peer ? advertisedPort : 0,
              advertisedHost: role == .peer ? advertisedHost : "", findsNeighbours: findsNeighbours)
    }

    public var findsNeighbours: Bool { neighbourBook.target > 0 }
    var neighbourTarget: Int { neighbourBook.target }
    public var hasNeighbourToDial: Bool { neighbourBook.hasNeighbourToDial }
    /// Whether to ask for more peers; also notes whether the connected neighbours lack a
    /// missing chunk, which lets the peer dial beyond its target until they do not.
    func wantsMorePeers() -> Bool {
        guard findsNeighbours, !isComplete else { return false }
        let lacking = manifest != nil && !neighboursCoverMissing
        if lacking != neighbourBook.lacksSources {
            neighbourBook.lacksSources = lacking
            if lacking { broadcast(.stateChanged) }
        }
        return neighbourBook.wantsMorePeers
    }

    /// Peers a PEERS message named, from the owner or a neighbour.
    func learnPeers(_ peers: [PeerAddress], from source: ChunkIndex.Source) {
        let fromTracker = source.kind == .owner
        let added = neighbourBook.learn(peers, fromTracker: fromTracker)
        let names = peers.map(\.name).joined(separator: ", ")
        log(.listReceived, source: source, "\(source.name) named \(peers.count) peer(s)\(peers.isEmpty ? "" : ": \(names)"); \(added) new")
        if fromTracker { reviewLastResort() }
        if added > 0 { broadcast(.stateChanged) }
    }

    /// The next found neighbour to dial, marked as being dialled.
    public func takeNeighbourToDial() -> PeerAddress? {
        neighbourBook.takeNextToDial()
    }

    /// A found neighbour's session is over: another may take its place.
    public func foundNeighbourEnded(_ neighbour: Endpoint) {
        neighbourBook.foundNeighbourEnded(neighbour)
        reviewLastResort()
        broadcast(.stateChanged)
    }

    // MARK: Members: downloaders that said where they listen

    /// A downloader said where it listens; false if it is not listed (its name is taken by
    /// a live member at another address).
    func memberJoined(_ name: String, at endpoint: Endpoint) async -> Bool {
        if memberBook.isLiveElsewhere(name, than: endpoint) {
            log(.protocolError, source: .init(kind: .peer, name: name), "a second \(name) connected, saying it listens at \(endpoint); the live \(name) keeps its address", level: .warning)
            return false
        }
        let dropped = memberBook.joined(name, at: endpoint, now: Clock.nowMicros())
        // A peer that downloads from us can be dialled back: peer exchange the other way.
        if role == .peer, findsNeighbours, !isComplete {
            neighbourBook.learn([PeerAddress(name: name, endpoint: endpoint)], fromTracker: false)
            broadcast(.stateChanged)
        }
        if let dropped { await persistMember(dropped) }
        await persistMember(name, pruning: true)
        return true
    }

    func memberLeft(_ name: String) async {
        memberBook.left(name, now: Clock.nowMicros())
        await persistMember(name)
    }

    func memberReported(_ name: String, holds: ChunkSet) async {
        let now = Clock.nowMicros()
        memberBook.reported(name, holds: holds, now: now)
        // Every report steers the choice of neighbours; the index hears of it once a second.
        if role == .owner, memberBook.needsPersisting(name, now: now) { await persistMember(name) }
    }


    /// The owner's membership list in its index (Schema/005_members.sql): the row as the
    /// member is now, or no row once it was dropped.
    /// `pruning` (at a join) also cuts the rows to the newest 4,096, rows of earlier runs included.
    private func persistMember(_ name: String, pruning: Bool = false) async {
        guard role == .owner else { return }
        let record = memberBook.members[name].map {
            ChunkIndex.MemberRecord(name: $0.name, address: $0.endpoint.description, firstSeen: $0.firstSeen, lastSeen: $0.lastSeen, held: $0.holds)
        }
        do {
            try await index.run { index in
                if let record { try index.saveMember(record) } else { try index.deleteMember(named: name) }
                if pruning { try index.pruneMembers(keeping: MemberBook.maximumMembers) }
            }
        } catch {
            log(.error, "could not record member \(name) in the index: \(error)", level: .warning)
        }
    }

    /// The answer to a GET-PEERS: live members for the owner; for a peer, its members, the
    /// neighbours it found, then the peers it reached lately (most recent first), so that
    /// the swarm goes on finding sources once the owner and the sessions are gone.
    func peers(for asker: String, at askerEndpoint: Endpoint?, holding holds: ChunkSet?, wanted: Int) -> [PeerAddress] {
        var random = SystemRandomNumberGenerator()
        var chosen = memberBook.choose(for: asker, askerEndpoint: askerEndpoint, askerHolds: holds, wanted: wanted, using: &random)
        guard role == .peer, chosen.count < wanted else { return chosen }
        var seen = Set(chosen.map(\.endpoint))
        if let askerEndpoint { seen.insert(askerEndpoint) }
        let found = neighbourBook.active.shuffled(using: &random).map { PeerAddress(name: $0.value, endpoint: $0.key) }
        for peer in found + neighbourBook.reached.reversed()
        where chosen.count < wanted && peer.name != asker && seen.insert(peer.endpoint).inserted {
            chosen.append(peer)
        }
        return chosen
    }
}
