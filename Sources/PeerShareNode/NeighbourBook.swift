import PeerShareCore
import PeerShareWire

/// Whom a peer downloads from: pinned neighbours (`--download-from`), neighbours found
/// through the owner and other peers (`--neighbours K`, issue 15), and which of them are
/// being dialled or connected right now. Pure bookkeeping, no I/O: the owner-as-last-resort
/// rule and the neighbour wiring are decided here, and tested without sockets.
struct NeighbourBook: Sendable {
    /// How long a neighbour being dialled for the first time may refuse before it counts as
    /// unreachable: long enough for peers started together, whose neighbours bind a moment
    /// later on a loaded machine, not to turn to the owner; short against the minutes a
    /// neighbour that has left would otherwise cost (the neighbour timeout).
    static let unreachableAfter = Duration.seconds(2)
    /// Peers kept as candidates, at most: a remote cannot grow this list.
    static let maximumCandidates = 256
    /// Found neighbours connected at most, however many lack what this peer misses.
    static let maximumActive = 32

    /// Neighbours found through the owner and other peers that this peer wants connected.
    var target = 0
    /// This peer's own name and advertised address, never dialled.
    var selfName = ""
    var selfEndpoint: Endpoint?
    /// Neighbours whose first dial has neither connected nor failed: until it resolves, the
    /// peer does not know whether it has a source, so the owner is not yet asked.
    private(set) var dialling: Set<Endpoint> = []
    /// Download-neighbour sessions past their handshake.
    private(set) var connected = 0
    /// How long an address whose dial failed is not queued again, however often it is
    /// named: a member that is live at the owner but unreachable from here would otherwise
    /// be dialled, fail and be handed out again in a loop.
    static let failedDialQuarantine = Duration.seconds(30)
    /// Addresses recently reached, kept at most: what a peer passes on in peer exchange.
    static let maximumReached = 64

    /// Found neighbours not yet dialled, in the order heard of.
    private(set) var candidates: [PeerAddress] = []
    /// Found neighbours being dialled or connected.
    private(set) var active: [Endpoint: String] = [:]
    /// Found neighbours whose dial failed, and when: not queued again for a while.
    private var failedDials: [Endpoint: ContinuousClock.Instant] = [:]
    /// Peers this peer held a session with, most recent last: passed on in peer exchange
    /// after the sessions (and the owner) are gone.
    private(set) var reached: [PeerAddress] = []
    /// How many GET-PEERS the owner has answered. One empty answer says little when peers
    /// start together (the others have not joined yet), so a peer that finds its neighbours
    /// turns to the owner as last resort only after the second, a second later.
    private(set) var trackerAnswers = 0
    static let trackerAnswersBeforeLastResort = 2

    /// A neighbour the peer is about to dial for the first time.
    mutating func willDial(_ neighbour: Endpoint) {
        dialling.insert(neighbour)
    }

    /// Its first dial connected or failed, or it will not be dialled after all.
    mutating func firstDialResolved(_ neighbour: Endpoint) {
        dialling.remove(neighbour)
    }

    /// A session with `neighbour` is past its handshake.
    mutating func sessionStarted(with neighbour: Endpoint) {
        dialling.remove(neighbour)
        connected += 1
    }

    /// A peer this peer dialled and traded with: its address is proven to answer, unlike the
    /// one a downloader merely says it listens at.
    mutating func noteReached(_ peer: PeerAddress) {
        reached.removeAll { $0.endpoint == peer.endpoint }
        reached.append(peer)
        if reached.count > Self.maximumReached { reached.removeFirst(reached.count - Self.maximumReached) }
    }

    mutating func sessionEnded() {
        connected = max(0, connected - 1)
    }

    /// Adds the peers a PEERS message named, skipping this peer and addresses connected or
    /// queued already; returns how many were new. One that was dialled before may be named
    /// again: it may hold what this peer now lacks.
    @discardableResult
    mutating func learn(_ peers: [PeerAddress], fromTracker: Bool, now: ContinuousClock.Instant = .now) -> Int {
        if fromTracker { trackerAnswers += 1 }
        failedDials = failedDials.filter { now - $0.value < Self.failedDialQuarantine }
        var added = 0
        for peer in peers where peer.name != selfName && peer.endpoint != selfEndpoint && active[peer.endpoint] == nil
            && failedDials[peer.endpoint] == nil
            && !dialling.contains(peer.endpoint) && !candidates.contains(where: { $0.endpoint == peer.endpoint }) {
            guard candidates.count < Self.maximumCandidates else { break }
            candidates.append(peer)
            added += 1
        }
        return added
    }

    /// Set while some missing chunk is offered by no connected neighbour: then the peer
    /// asks for more peers, and dials beyond `target` (the owner names those that hold what
    /// it lacks), up to `maximumActive`.
    var lacksSources = false

    /// Found neighbours this peer dials at most right now.
    private var limit: Int { lacksSources ? max(target, Self.maximumActive) : target }

    /// The next found neighbour to dial, if fewer than the limit are active.
    mutating func takeNextToDial() -> PeerAddress? {
        guard active.count < limit, !candidates.isEmpty else { return nil }
        let next = candidates.removeFirst()
        active[next.endpoint] = next.name
        dialling.insert(next.endpoint)
        return next
    }

    var hasNeighbourToDial: Bool { !candidates.isEmpty && active.count < limit }

    /// A found neighbour's session is over (finished, unreachable or misbehaving). It is
    /// dialled again only if someone names it again.
    mutating func foundNeighbourEnded(_ neighbour: Endpoint, now: ContinuousClock.Instant = .now) {
        active[neighbour] = nil
        // Still being dialled at the end: it never answered.
        if dialling.remove(neighbour) != nil { failedDials[neighbour] = now }
    }

    /// Whether to ask the owner (or a neighbour) for more peers: fewer than the limit are
    /// active, and none is waiting to be dialled.
    var wantsMorePeers: Bool { target > 0 && active.count < limit && candidates.isEmpty }

    /// No neighbour is connected, none is being dialled or waiting to be, and (when
    /// neighbours are found through the owner) the owner has said twice whom it knows.
    var noneReachable: Bool {
        connected == 0 && dialling.isEmpty && candidates.isEmpty && (target == 0 || trackerAnswers >= Self.trackerAnswersBeforeLastResort)
    }
}
