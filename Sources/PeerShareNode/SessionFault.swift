import PeerShareStore
import PeerShareWire

/// What an ended connection says about its remote. The dialling side decides from this,
/// and from nothing else, whether to dial again, avoid the remote or stop
/// (docs/PROTOCOL.md, "Misbehaving remotes").
enum SessionFault: Sendable, Equatable {
    /// The connection was lost: closed, timed out, reset. The remote may well be back.
    case lost
    /// The remote broke the protocol: malformed bytes, a message out of place.
    case violation
    /// The remote cannot serve this node, and a reconnect changes nothing: another swarm or
    /// protocol version, a forged manifest, chunks that fail their hash, a blocked node.
    case unwanted
    /// This node failed (its disk, its index, a changed file): not the remote's doing.
    case local
    /// The node is stopping.
    case cancelled

    /// `asDialler`: the side that opened the connection judges it. A frame cut off by the
    /// close is then a lost connection (an owner killed mid-PIECE may be restarting);
    /// from a downloader it is one more rogue's trick.
    init(_ error: any Error, asDialler: Bool = false) {
        // A connection torn down because the node is stopping says nothing about the remote.
        if Task.isCancelled {
            self = .cancelled
            return
        }
        switch error {
        case is CancellationError: self = .cancelled
        case WireError.truncatedAtEOF where asDialler: self = .lost
        case is WireError: self = .violation
        case is HandshakeError: self = .unwanted
        case let error as NodeError: self = error.fault
        // This node's own disk or index.
        case is FileSystemError, is SQLiteError: self = .local
        // Anything else comes from the network below the protocol: NIO, TLS.
        default: self = .lost
        }
    }

    /// The remote's fault: logged as a `protocol_error` event; the rest as `disconnected`.
    var blamesRemote: Bool { self == .violation || self == .unwanted }
}

extension NodeError {
    var fault: SessionFault {
        switch self {
        case .lost, .unreachable: .lost
        case .protocolViolation, .badChunk: .violation
        case .misbehaving, .refusedHello: .unwanted
        case .manifestChanged, .failed, .notAnOwner: .local
        }
    }
}

/// What the side that dialled does after a session ends.
enum NextMove: Sendable, Equatable {
    case reconnect
    /// Leave this remote alone; the other sources carry on.
    case avoid
    /// The peer cannot go on: the error is passed up.
    case stop
}

/// Reconnects in a row to one remote, against a limit. A connection that lasted
/// `freshAfter` starts the count afresh, so a peer that runs for days is not cut off by
/// drops long past.
struct ReconnectBudget: Sendable {
    let limit: Int
    let freshAfter: Duration?
    /// Whether a protocol violation is worth another try, as a lost connection is.
    let retriesViolations: Bool
    private(set) var used = 0

    init(limit: Int, freshAfter: Duration? = nil, retriesViolations: Bool) {
        self.limit = limit
        self.freshAfter = freshAfter
        self.retriesViolations = retriesViolations
    }

    /// The owner may be restarting: a lost connection is retried 20 times in a row. Its
    /// protocol errors are not, since it is the one source of the manifest.
    static var owner: ReconnectBudget { ReconnectBudget(limit: 20, freshAfter: .seconds(60), retriesViolations: false) }
    /// A pinned neighbour is retried after a glitch in its bytes too, up to 50 times.
    static var neighbour: ReconnectBudget { ReconnectBudget(limit: 50, retriesViolations: true) }

    /// Whether to reconnect after a session that lasted `connectedFor` ended with `fault`.
    mutating func move(after fault: SessionFault, connectedFor: Duration) -> NextMove {
        switch fault {
        case .local, .cancelled: return .stop
        case .unwanted: return .avoid
        case .violation where !retriesViolations: return .avoid
        case .lost, .violation:
            if let freshAfter, connectedFor > freshAfter { used = 0 }
            guard used < limit else { return .avoid }
            used += 1
            return .reconnect
        }
    }
}
