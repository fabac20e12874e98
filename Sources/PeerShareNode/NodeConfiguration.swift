#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareHTTP
import PeerShareStore
import PeerShareTrust
import PeerShareWire

public struct OwnerConfiguration: Sendable {
    public var file: String
    public var host: String
    public var port: Int
    public var directory: String
    public var databasePath: String
    public var expectedPeers: Int
    public var chunkSize: Int
    /// Re-hash the source and every chunk file even if nothing seems to have changed.
    public var recheck = false
    /// Discard an earlier index and chunks in the folder and split the file afresh.
    public var newManifest = false
    public var maxUploadRate: Int?
    /// Uploads sent at once, at most; the others wait their turn (`--upload-slots`).
    public var uploadSlots = 8
    /// A private swarm (`--private`): TLS, a node key and a join secret, given out as a ticket.
    public var isPrivate = false
    public var limits = SessionLimits()
    /// Chunk files cut from the source, or the source itself served in place.
    public var storage = StorageLayout.chunkFiles
    /// Where to serve /metrics and /status (`--http`); nil for nowhere.
    public var http: Endpoint?
    public var httpLimits = HTTPLimits()
    /// In a private swarm, serve /files all the same (`--http-serve-file`): public to whoever reaches the port.
    public var httpServeFile = false
    /// Hears how far the split (or, for a single file, the hashing) has got, for a live
    /// progress line; nil for none.
    public var onProgress: (@Sendable (NodeProgress) -> Void)?

    public init(file: String, host: String, port: Int, directory: String, databasePath: String, expectedPeers: Int, chunkSize: Int) {
        self.file = file
        self.host = host
        self.port = port
        self.directory = directory
        self.databasePath = databasePath
        self.expectedPeers = expectedPeers
        self.chunkSize = chunkSize
    }
}

public struct PeerConfiguration: Sendable {
    public var name: String
    /// The owner; nil for a peer that joins through its `downloadFrom` neighbours only.
    public var owner: Endpoint?
    /// The file this peer must be served (`--file-id`); nil to take the swarm's.
    public var fileID: Digest32?
    /// A private swarm's membership (from the ticket), and the owner's node ID to pin.
    public var security: PrivateSwarm?
    public var ownerID: NodeID?
    /// The owner's other addresses (a ticket's), tried in turn after `owner`.
    public var ownerAlternatives: [Endpoint] = []
    public var host: String
    public var port: Int
    public var downloadFrom: [Endpoint]
    public var directory: String
    public var databasePath: String
    /// Requests kept outstanding per connection.
    public var window: Int
    /// Stay up after completing, serving anyone, until stopped.
    public var keepServing: Bool
    /// Downloaders that must hold the whole file before this peer may exit.
    public var waitForDownloaders: Int
    /// How long to keep retrying the owner before giving up.
    public var connectPatience: Duration
    /// How long a download neighbour may stay unreachable before it is given up on.
    public var neighbourPatience: Duration = .seconds(60)
    /// Neighbours to find through the owner and other peers (`--neighbours`), besides
    /// `downloadFrom`; 0 for none.
    public var neighbours = 0
    /// The address others should dial (`--advertise`); nil for the listen address, or the
    /// address the owner sees when listening on a wildcard address.
    public var advertise: Endpoint?
    /// Re-hash every indexed chunk at start-up.
    public var recheck = false
    public var maxUploadRate: Int?
    public var limits = SessionLimits()
    /// One file per chunk, or every chunk in place in one file.
    public var storage = StorageLayout.chunkFiles
    /// How long written chunks may wait for a background sync (docs/STORAGE.md).
    public var syncInterval = Duration.seconds(1)
    /// Where to serve /metrics and /status (`--http`); nil for nowhere.
    public var http: Endpoint?
    public var httpLimits = HTTPLimits()
    /// In a private swarm, serve /files all the same (`--http-serve-file`): public to whoever reaches the port.
    public var httpServeFile = false
    /// Called with a snapshot after every change of what the peer holds (for a live progress
    /// line); nil for none.
    public var onProgress: (@Sendable (NodeProgress) -> Void)?

    public init(name: String, owner: Endpoint?, host: String, port: Int, downloadFrom: [Endpoint], directory: String, databasePath: String,
                window: Int, keepServing: Bool, waitForDownloaders: Int, connectPatience: Duration) {
        self.name = name
        self.owner = owner
        self.host = host
        self.port = port
        self.downloadFrom = downloadFrom
        self.directory = directory
        self.databasePath = databasePath
        self.window = window
        self.keepServing = keepServing
        self.waitForDownloaders = waitForDownloaders
        self.connectPatience = connectPatience
    }
}
