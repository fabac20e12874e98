import NIOCore
import NIOPosix
import PeerShareCLI

/// A raw HTTP client for tests: sends bytes exactly as given, well-formed or hostile, and
/// reads what comes back until the server closes the connection.
enum RawHTTP {
    struct Reply {
        let bytes: [UInt8]
        var text: String { String(decoding: bytes, as: UTF8.self) }
        /// The first status line's code, if a response arrived.
        var status: Int? {
            guard text.hasPrefix("HTTP/1."), let code = text.split(separator: " ").dropFirst().first else { return nil }
            return Int(code)
        }
        var body: String {
            guard let end = text.range(of: "\r\n\r\n") else { return "" }
            return String(text[end.upperBound...])
        }
        /// Every status code in the bytes, for pipelined requests.
        var statuses: [Int] {
            text.components(separatedBy: "HTTP/1.1 ").dropFirst().compactMap { Int($0.prefix(3)) }
        }
    }

    typealias Connection = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    static func connect(port: Int) async throws -> Connection {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture { try Connection(wrappingChannelSynchronously: channel) }
            }
    }

    /// Sends `request` and reads until the server closes; a reset ends the reading too (what
    /// arrived before it is kept). Bounded by `timeout`.
    static func exchange(port: Int, _ request: [UInt8], timeout: Duration = .seconds(15)) async throws -> Reply {
        let connection = try await connect(port: port)
        return try await withDeadline(timeout) {
            try await connection.executeThenClose { inbound, outbound in
                // A server refusing early may close while this is still being written.
                try? await outbound.write(ByteBuffer(bytes: request))
                var received: [UInt8] = []
                do {
                    for try await chunk in inbound { received += chunk.readableBytesView }
                } catch {}
                return Reply(bytes: received)
            }
        }
    }

    static func get(port: Int, _ path: String, method: String = "GET") async throws -> Reply {
        try await exchange(port: port, Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8))
    }

    /// Opens keep-alive connections one after another, each asking `GET path` and staying
    /// open after its answer, until one is answered otherwise than 200 or `limit` are open;
    /// returns each connection's status (nil: no answer). Every connection closes on return.
    /// An answer proves the listener has counted the connection, so a cap shows exactly.
    static func holdUntilRefused(port: Int, path: String = "/status", limit: Int) async throws -> [Int?] {
        try await withDeadline(.seconds(60)) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                defer { group.cancelAll() }
                var statuses: [Int?] = []
                while statuses.count < limit, statuses.allSatisfy({ $0 == 200 }) {
                    let connection = try await connect(port: port)
                    let (answers, answer) = AsyncStream<Int?>.makeStream()
                    group.addTask {
                        defer { answer.finish() }
                        try? await connection.executeThenClose { inbound, outbound in
                            // A refused connection is answered and closed at once, maybe before this
                            // write: its failure must not hide the answer already read.
                            try? await outbound.write(ByteBuffer(string: "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
                            var received: [UInt8] = []
                            for try await chunk in inbound {
                                received += chunk.readableBytesView
                                if Reply(bytes: received).text.contains("\r\n\r\n") { answer.yield(Reply(bytes: received).status) }
                            }
                        }
                    }
                    var status: Int?
                    for await first in answers { status = first; break }
                    statuses.append(status)
                }
                return statuses
            }
        }
    }

    /// A slowloris client: starts a request head and sends one more header line every
    /// `every`, never finishing it. Returns how long the server let it go on before closing,
    /// or nil if it was still open after `limit`.
    static func drip(port: Int, every: Duration = .milliseconds(200), limit: Duration = .seconds(20)) async throws -> Duration? {
        let connection = try await connect(port: port)
        let started = ContinuousClock.now
        return try await connection.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Duration?.self) { group in
                group.addTask {
                    do { for try await _ in inbound {} } catch {}
                    return ContinuousClock.now - started
                }
                group.addTask {
                    try? await outbound.write(ByteBuffer(string: "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n"))
                    while ContinuousClock.now - started < limit {
                        // The client's own pace, which is the attack: not a wait for the server.
                        try await Task.sleep(for: every)
                        try? await outbound.write(ByteBuffer(string: "X-Slow: 1\r\n"))
                    }
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
        }
    }
}
