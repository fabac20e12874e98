import NIOCore
import NIOHTTP1

/// The bounds every HTTP connection lives within, as the wire protocol's `SessionLimits` are
/// for peers: what a hostile client can make the node hold, and for how long.
public struct HTTPLimits: Sendable {
    /// Connections open at once; one more is answered 503 and closed.
    public var maxConnections = 32
    /// The request line's URL, or one header (name and value), at most.
    public var maxFieldBytes = 8 * 1024
    /// All of a request's header names and values together.
    public var maxHeaderBytes = 32 * 1024
    public var maxHeaderCount = 64
    /// From a connection's start, or the end of its last response, to a complete request
    /// head: a client sending a byte now and then (slowloris) is closed when it runs out.
    public var headTimeout = TimeAmount.seconds(10)
    /// From a complete request head to the end of its response being written: a client that
    /// reads nothing is closed.
    public var responseTimeout = TimeAmount.seconds(30)

    public init() {}

    var decoderLimits: NIOHTTPDecoderLimitConfiguration {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = maxFieldBytes
        limits.maxHeaderListSize = maxHeaderBytes
        limits.maxHeaderFieldCount = maxHeaderCount
        return limits
    }
}
