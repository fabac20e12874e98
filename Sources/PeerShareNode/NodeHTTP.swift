import Logging
import NIOCore
import PeerShareCore
import PeerShareHTTP

/// What a node serves on `--http HOST:PORT` (docs/WATCHING.md): its Prometheus metrics and
/// its live status. The router is the one place routes are added; the web seed adds its own.
enum NodeHTTP {
    /// `servesFile`: whether /files is on; off in a private swarm unless --http-serve-file.
    static func router(for node: Node, servesFile: Bool) -> HTTPRouter {
        var router = HTTPRouter()
        if servesFile {
            router.route(prefix: WebSeed.prefix) { await WebSeed.respond(to: $0, node: node) }
        }
        router.route("/metrics") { _ in
            let status = await node.status()
            return HTTPResponse(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", bytes: node.metrics.exposition(of: status))
        }
        router.route("/status") { _ in
            HTTPResponse(status: .ok, contentType: "application/json", body: ByteBuffer(string: await node.status().json))
        }
        let paths = router.paths
        router.route("/") { _ in
            .text(.ok, "PeerShare node \(node.name): " + paths.joined(separator: ", "))
        }
        return router
    }

    /// Binds `address` (port 0: the OS chooses), logs and prints where it listens, and
    /// serves until cancelled.
    static func bind(_ address: Endpoint, node: Node, limits: HTTPLimits, servesFile: Bool, isPrivate: Bool) async throws -> HTTPListener {
        let listener: HTTPListener
        do {
            listener = try await HTTPListener.bind(host: address.host, port: address.port, limits: limits)
        } catch {
            throw NodeError.failed("\(error)")
        }
        let bound = Endpoint(host: address.host, port: listener.port)
        let file = servesFile ? ", /files/NAME (the file, to BitTorrent clients as a web seed)" : ""
        await node.log(.started, "http listening on \(bound): /metrics (Prometheus), /status (JSON)\(file)")
        if servesFile && isPrivate {
            await node.log(.started, "--http-serve-file: the file of this private swarm is served at http://\(bound)/files/ to anyone who can reach that address", level: .warning)
        }
        announce("http listening on \(bound)")
        return listener
    }
}

/// Runs `body` with the node's HTTP listener beside it, when one is configured: bound first,
/// so that it answers while the node starts; stopped when `body` ends.
/// `isPrivate` comes from the configuration, not the node, which learns it only after the
/// listener is up: /files must be off from the first request.
func withHTTPListener<R: Sendable>(_ address: Endpoint?, limits: HTTPLimits, isPrivate: Bool, serveFileInPrivate: Bool, node: Node,
                                   _ body: @escaping @Sendable () async throws -> R) async throws -> R {
    guard let address else { return try await body() }
    let servesFile = !isPrivate || serveFileInPrivate
    let listener = try await NodeHTTP.bind(address, node: node, limits: limits, servesFile: servesFile, isPrivate: isPrivate)
    let router = NodeHTTP.router(for: node, servesFile: servesFile)
    return try await withThrowingTaskGroup(of: R?.self) { group in
        group.addTask {
            try await listener.run(router)
            return nil
        }
        group.addTask { try await body() }
        defer { group.cancelAll() }
        while let next = try await group.next() {
            if let result = next { return result }
        }
        throw NodeError.failed("the HTTP listener stopped")
    }
}
