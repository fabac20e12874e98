import ArgumentParser
import NIOCore
import PeerShareCLI
import PeerShareCore
import PeerShareHTTP

/// `--http HOST:PORT`: where a node serves its Prometheus metrics and its status
/// (docs/WATCHING.md). Off unless asked for; it binds exactly where it is told.
struct HTTPOptions: ParsableArguments {
    @Option(name: .customLong("http"),
            help: ArgumentHelp("Serve /metrics (Prometheus) and /status (JSON) over HTTP on HOST:PORT, e.g. 127.0.0.1:9100 (port 0: the OS chooses; the port is printed). Anyone who can reach it can read them.", valueName: "host:port"),
            transform: Endpoint.listenArgument)
    var address: Endpoint?

    @Flag(name: .customLong("http-serve-file"),
          help: "In a private swarm, serve the file at /files/NAME all the same (it is off there by default): this makes the file public to whoever can reach the --http address.")
    var serveFile = false

    /// Tests shorten it to see a slow client dropped quickly.
    @Option(help: .hidden) var httpHeadTimeout: Double?
    @Option(help: .hidden) var httpMaxConnections: Int?

    func validate() throws {
        if let httpHeadTimeout, !(httpHeadTimeout > 0 && httpHeadTimeout <= 3_600) { throw ValidationError("--http-head-timeout must be between 0 and 3600 seconds") }
        if let httpMaxConnections, !(1...10_000).contains(httpMaxConnections) { throw ValidationError("--http-max-connections must be from 1 to 10000") }
    }

    var limits: HTTPLimits {
        var limits = HTTPLimits()
        if let httpHeadTimeout { limits.headTimeout = .milliseconds(Int64(httpHeadTimeout * 1000)) }
        if let httpMaxConnections { limits.maxConnections = httpMaxConnections }
        return limits
    }
}
