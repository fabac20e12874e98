import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A node's HTTP listener (`--http HOST:PORT`): HTTP/1.1 with keep-alive, GET and HEAD only,
/// hardened like the wire protocol (`HTTPLimits`). What it serves is up to its responder.
public struct HTTPListener: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPOutboundPart>

    private let server: NIOAsyncChannel<AcceptedConnection, Never>
    private let limits: HTTPLimits
    public let host: String
    /// The port bound: the one asked for, or the one the OS chose for 0.
    public let port: Int

    /// Binds HOST:PORT. Errors name the address and what went wrong, in one line.
    public static func bind(host: String, port: Int, limits: HTTPLimits = HTTPLimits(),
                            group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> HTTPListener {
        do {
            let server = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.backlog, value: 64)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(HTTPResponseEncoder())
                        try sync.addHandler(ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, limitConfiguration: limits.decoderLimits)))
                        try sync.addHandler(RequestGuard(limits: limits))
                        try sync.addHandler(FileBodyWriter())
                        // Half-closure: a connection ends with a FIN after the last answer, and
                        // reads what still comes until the client closes (a lingering close).
                        let configuration = Connection.Configuration(isOutboundHalfClosureEnabled: true)
                        return AcceptedConnection(try Connection(wrappingChannelSynchronously: channel, configuration: configuration))
                    }
                }
            return HTTPListener(server: server, limits: limits, host: host, port: server.channel.localAddress?.port ?? port)
        } catch {
            throw HTTPListenerError(address: "\(host.contains(":") ? "[\(host)]" : host):\(port)", reason: "\(error)")
        }
    }

    /// Serves connections until cancelled, each in a child task of its own; one failing
    /// ends only itself. Cancellation closes the listener, then the connections.
    public func run(_ responder: some HTTPResponder) async throws {
        let accepting = Task { try await accept(responder) }
        try await withTaskCancellationHandler {
            try await accepting.value
        } onCancel: {
            server.channel.close(promise: nil)
        }
    }

    private func accept(_ responder: some HTTPResponder) async throws {
        let open = NIOLockedValueBox(0)
        let limit = limits.maxConnections
        try await withThrowingDiscardingTaskGroup { group in
            defer { group.cancelAll() }
            try await server.executeThenClose { inbound in
                for try await accepted in inbound {
                    let admitted = open.withLockedValue { count in
                        guard count < limit else { return false }
                        count += 1
                        return true
                    }
                    group.addTask {
                        defer { if admitted { open.withLockedValue { $0 -= 1 } } }
                        let exchange = HTTPExchange(responder: responder)
                        if admitted {
                            await exchange.serve(accepted.connection)
                        } else {
                            await exchange.refuse(accepted.connection, .text(.serviceUnavailable, "too many connections"))
                        }
                    }
                }
            }
        }
    }
}

/// Why `--http` could not listen.
public struct HTTPListenerError: Error, CustomStringConvertible {
    public let address: String
    public let reason: String
    public var description: String { "cannot listen for HTTP on \(address): \(reason)" }
}

/// An accepted connection that closes itself if dropped unserved: the accept stream can
/// drop one as the listener shuts down, and NIO traps on a channel whose writer was never
/// finished (as `Transport.AcceptedChannel` does for peers).
final class AcceptedConnection: Sendable {
    let connection: HTTPListener.Connection

    init(_ connection: HTTPListener.Connection) {
        self.connection = connection
    }

    deinit {
        connection.outbound.finish()
        connection.channel.close(promise: nil)
    }
}
