import PeerShareCore

/// Which download neighbours a peer is in touch with right now, for the owner-as-last-resort
/// rule: a peer that holds its share and has no neighbour to fetch from asks the owner for
/// what is missing at once, instead of idling until a neighbour timeout (issue 15). Pure
/// bookkeeping, no I/O.
struct NeighbourBook: Sendable {
    /// Neighbours whose first dial has neither connected nor failed: until it resolves, the
    /// peer does not know whether it has a source, so the owner is not yet asked.
    private(set) var dialling: Set<Endpoint> = []
    /// Download-neighbour sessions past their handshake.
    private(set) var connected = 0

    /// How long a neighbour being dialled for the first time may refuse before it counts as
    /// unreachable: long enough for peers started together, whose neighbours bind a moment
    /// later on a loaded machine, not to turn to the owner; short against the minutes a
    /// neighbour that has left would otherwise cost (the neighbour timeout).
    static let unreachableAfter = Duration.seconds(2)

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

    mutating func sessionEnded() {
        connected = max(0, connected - 1)
    }

    /// No neighbour is connected and none is still on its first dial.
    var noneReachable: Bool { connected == 0 && dialling.isEmpty }
}
