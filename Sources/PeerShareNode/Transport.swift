#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareTrust
import PeerShareWire

public typealias PeerChannel = NIOAsyncChannel<SessionInput, OutboundFrame>

/// TCP plumbing: every connection gets the frame decoder and encoder, then is handed to
/// structured concurrency as a `NIOAsyncChannel` of `PeerMessage`s.
public enum Transport {
    static func configure(_ channel: any Channel, side: ConversationGate.Side) throws -> PeerChannel {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PeerMessageDecoder(gate: ConversationGate(side: side))))
        try channel.pipeline.syncOperations.addHandler(SessionInputHandler())
        try channel.pipeline.syncOperations.addHandler(PeerMessageWriter())
        return try PeerChannel(
            wrappingChannelSynchronously: channel,
            // Half-closure lets a downloader that is done say so with a FIN and still read
            // what is in flight, instead of closing with unread data (which sends an RST
            // that can destroy its own last messages before the uploader reads them).
            configuration: .init(isOutboundHalfClosureEnabled: true, inboundType: SessionInput.self, outboundType: OutboundFrame.self))
    }

    /// An accepted connection and the remote's address, read when it was accepted: by the
    /// time a short-lived rogue connection is served, the socket may have no address left.
    public struct Inbound: Sendable {
        let lease: AcceptedChannel
        public var channel: PeerChannel { lease.channel }
        public let remote: String
        /// The remote's IP address, for a peer that advertises its port but not its host.
        public let remoteHost: String?
        /// In a private swarm: the remote's node ID once it has proven the join secret.
        let joined: EventLoopFuture<NodeID>?
    }

    /// An accepted connection that closes itself if it is dropped unused. The listener's
    /// stream can drop a connection NIO accepted just as the node shuts down (peers that
    /// wire themselves dial one that is exiting), and NIO traps on a channel whose writer
    /// was never finished.
    final class AcceptedChannel: Sendable {
        let channel: PeerChannel

        init(_ channel: PeerChannel) {
            self.channel = channel
        }

        deinit {
            // Harmless after a session's executeThenClose, which finished and closed it.
            channel.outbound.finish()
            channel.channel.close(promise: nil)
        }
    }

    /// Reads of up to 256 KiB: a PIECE is 100 KiB, and NIO's default (at most 64 KiB,
    /// starting at 2 KiB) made every chunk cost several reads and decoder passes.
    static let receiveBuffers = AdaptiveRecvByteBufferAllocator(minimum: 16 * 1024, initial: 128 * 1024, maximum: 256 * 1024)

    public struct Listener: Sendable {
        public let channel: NIOAsyncChannel<Inbound, Never>
        /// The port actually bound, which differs from the one asked for when that was 0.
        public let port: Int
        public let host: String
    }

    /// Listens on HOST:PORT; in a private swarm (`security`), every connection first gets TLS
    /// and the join proof, before any byte reaches the frame decoder.
    public static func listen(host: String, port: Int, security: PrivateSwarm? = nil,
                              group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> Listener {
        do {
            let server = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.backlog, value: 256)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.recvAllocator, value: Transport.receiveBuffers)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let joined = try security?.secureAccepted(channel)
                        return Inbound(lease: AcceptedChannel(try configure(channel, side: .uploading)), remote: describe(channel.remoteAddress),
                                       remoteHost: channel.remoteAddress?.ipAddress, joined: joined)
                    }
                }
            let bound = server.channel.localAddress?.port ?? port
            return Listener(channel: server, port: bound, host: host)
        } catch let error as IOError {
            throw NodeError.failed("cannot listen on \(Endpoint(host: host, port: port)): \(describe(error))")
        } catch {
            throw NodeError.failed("cannot listen on \(Endpoint(host: host, port: port)): \(error)")
        }
    }

    /// Connects; in a private swarm, returns only once TLS and the join proof succeeded, with
    /// the remote's node ID (checked against `expected` when given, as the owner's is).
    public static func connect(to endpoint: Endpoint, security: PrivateSwarm? = nil, expecting expected: NodeID? = nil,
                               group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> (PeerChannel, NodeID?) {
        let (channel, joined) = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(5))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: Transport.receiveBuffers)
            .connect(host: endpoint.host, port: endpoint.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let joined = try security?.secureOpened(channel, expecting: expected)
                    return (try configure(channel, side: .downloading), joined)
                }
            }
        guard let joined else { return (channel, nil) }
        do {
            return (channel, try await joined.get())
        } catch {
            try? await channel.executeThenClose { _, _ in }
            throw NodeError.misbehaving("\(endpoint) refused or was refused: \(error)")
        }
    }

    /// Connects, retrying with a short exponential backoff (10 ms doubling to 1 s) until
    /// `patience` has passed. Each retry is reported through `onRetry`.
    /// The delay between attempts is a deliberate timer: there is no event that says a
    /// remote listener has come up.
    public static func connect(
        to endpoint: Endpoint,
        patience: Duration,
        security: PrivateSwarm? = nil,
        expecting expected: NodeID? = nil,
        onRetry: @Sendable (_ attempt: Int, _ error: String, _ delay: Duration) async -> Void
    ) async throws -> (PeerChannel, NodeID?) {
        let (channel, node, _) = try await connect(toAny: [endpoint], patience: patience, security: security, expecting: expected, onRetry: onRetry)
        return (channel, node)
    }

    /// As `connect(to:patience:)`, trying each address in turn (a ticket may name several
    /// for one owner); returns the one that answered.
    public static func connect(
        toAny endpoints: [Endpoint],
        patience: Duration,
        security: PrivateSwarm? = nil,
        expecting expected: NodeID? = nil,
        onRetry: @Sendable (_ attempt: Int, _ error: String, _ delay: Duration) async -> Void
    ) async throws -> (PeerChannel, NodeID?, Endpoint) {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: patience)
        var delay = Duration.milliseconds(10)  // peers started together are usually up within milliseconds
        var attempt = 1
        while true {
            let endpoint = endpoints[(attempt - 1) % endpoints.count]
            do {
                let (channel, node) = try await connect(to: endpoint, security: security, expecting: expected)
                return (channel, node, endpoint)
            } catch NodeError.misbehaving(let reason) {
                // A refused join is not an unreachable node: trying again cannot help.
                throw NodeError.misbehaving(reason)
            } catch {
                let reason = describe(error)
                if clock.now.advanced(by: delay) > deadline {
                    let names = endpoints.map(\.description).joined(separator: " or ")
                    throw NodeError.unreachable("cannot reach \(names): \(reason) (\(attempt) attempts over \(patience.seconds) s)")
                }
                await onRetry(attempt, endpoints.count > 1 ? "\(endpoint): \(reason)" : reason, delay)
                try await clock.sleep(for: delay)
                delay = min(delay * 2, .seconds(1))
                attempt += 1
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        if let io = error as? IOError {
            return String(cString: strerror(io.errnoCode)).lowercased()
        }
        if let connect = error as? NIOConnectionError, let first = connect.connectionErrors.first {
            return describe(first.error)
        }
        if let channel = error as? ChannelError, case .connectTimeout = channel { return "connection timed out" }
        return "\(error)"
    }
}

extension Duration {
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }

    var microseconds: Int64 {
        components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000
    }

    var seconds: String {
        let (s, attos) = components
        let value = Double(s) + Double(attos) / 1e18
        return String((value * 10).rounded() / 10)
    }
}

extension Transport {
    /// HOST:PORT of a socket address, for log lines.
    static func describe(_ address: SocketAddress?) -> String {
        guard let address, let ip = address.ipAddress, let port = address.port else { return "an unknown address" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}
