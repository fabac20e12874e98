import NIOCore
import NIOHTTP1

/// A request as a responder sees it. Only GET and HEAD get this far (the listener answers
/// anything else with 405), and never with a body.
public struct HTTPRequest: Sendable {
    public let method: HTTPMethod
    /// The path, exactly as sent: no percent-decoding and no `..` resolution, so that a
    /// route matches only the path it names.
    public let path: String
    public let query: String?
    public let headers: HTTPHeaders

    public init(method: HTTPMethod, uri: String, headers: HTTPHeaders) {
        self.method = method
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = parts.first.map(String.init) ?? ""
        query = parts.count > 1 ? String(parts[1]) : nil
        self.headers = headers
    }
}

/// What a responder answers. The listener adds `Content-Length` and `Connection`, and
/// leaves the body out for HEAD.
public struct HTTPResponse: Sendable {
    public enum Body: Sendable {
        case bytes(ByteBuffer)
        /// `length` bytes, handed to the connection in pieces (buffers or file ranges, sent
        /// with `sendfile`) by `producer`, as fast as the client takes them.
        case stream(length: Int64, producer: @Sendable (HTTPBodyWriter) async throws -> Void)

        var length: Int64 {
            switch self {
            case .bytes(let buffer): Int64(buffer.readableBytes)
            case .stream(let length, _): length
            }
        }
    }

    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: Body

    public init(status: HTTPResponseStatus, contentType: String, body: ByteBuffer, headers: HTTPHeaders = [:]) {
        self.init(status: status, contentType: contentType, body: .bytes(body), headers: headers)
    }

    public init(status: HTTPResponseStatus, contentType: String, body: Body, headers: HTTPHeaders = [:]) {
        self.status = status
        self.headers = headers
        self.headers.replaceOrAdd(name: "Content-Type", value: contentType)
        self.body = body
    }

    public init(status: HTTPResponseStatus, contentType: String, bytes: [UInt8]) {
        self.init(status: status, contentType: contentType, body: ByteBuffer(bytes: bytes))
    }

    /// A plain-text answer, one line: errors and refusals.
    public static func text(_ status: HTTPResponseStatus, _ line: String) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "text/plain; charset=utf-8", body: ByteBuffer(string: line + "\n"))
    }

    public static let notFound = HTTPResponse.text(.notFound, "not found")
}

/// Answers requests. Called on the cooperative pool: anything slow (disk, SQLite) belongs
/// on the caller's own threads.
public protocol HTTPResponder: Sendable {
    func respond(to request: HTTPRequest) async -> HTTPResponse
}

/// Routes by exact path, or by a prefix whose handler judges the rest; everything else is
/// 404. Exact matching is the safety: `/../x`, `/metrics/` or `/%6detrics` name no route, so
/// nothing outside the table is ever served, and a prefix handler checks what follows it.
public struct HTTPRouter: HTTPResponder {
    public typealias Handler = @Sendable (HTTPRequest) async -> HTTPResponse
    private var routes: [String: Handler] = [:]
    private var prefixes: [(prefix: String, handler: Handler)] = []

    public init() {}

    public mutating func route(_ path: String, _ handler: @escaping Handler) {
        routes[path] = handler
    }

    /// Every path that starts with `prefix` (which ends with `/`); the handler gets the request whole.
    public mutating func route(prefix: String, _ handler: @escaping Handler) {
        prefixes.append((prefix, handler))
        prefixes.sort { $0.prefix.count > $1.prefix.count }
    }

    /// The routes, sorted: for an index page.
    public var paths: [String] { (Array(routes.keys) + prefixes.map { $0.prefix + "…" }).sorted() }

    public func respond(to request: HTTPRequest) async -> HTTPResponse {
        if let handler = routes[request.path] { return await handler(request) }
        guard let match = prefixes.first(where: { request.path.hasPrefix($0.prefix) }) else { return .notFound }
        return await match.handler(request)
    }
}
