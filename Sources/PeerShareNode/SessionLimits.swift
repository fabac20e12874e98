/// The limits every connection of a node lives under (docs/PROTOCOL.md, "Limits").
public struct SessionLimits: Sendable {
    /// A connection must complete its HELLO within this time.
    public var handshakeTimeout: Duration = .seconds(10)
    /// A request must be answered (PIECE or REJECT) within this time.
    public var requestTimeout: Duration = .seconds(30)
    /// A connection on which nothing arrives for this long is closed. Each side sends a
    /// KEEPALIVE after a quarter of it without sending anything else.
    public var idleTimeout: Duration = .seconds(120)
    /// A download neighbour that has offered nothing this node misses for this long, with no
    /// request outstanding, is treated as stalled: the owner is asked for what is missing.
    /// (Shares need not cover the file: rogue or departed peers may hold parts of it.)
    public var stallTimeout: Duration = .seconds(10)
    /// Inbound connections served at once; more are closed at once.
    public var maxConnections = 128
    /// Chunks failing verification from one source before it is dropped and avoided.
    public var badChunkLimit = 3
    /// Requests for the same chunk on one connection before it counts as a flood.
    public var maxRequestsPerChunk = 2

    public init() {}

    var keepAliveInterval: Duration { idleTimeout / 4 }
}
