import PeerShareCore
import PeerShareStore

/// A node's live state as `GET /status` reports it (docs/WATCHING.md "Status"), and what the
/// metrics' gauges are set from: a snapshot the node's actor takes in one visit.
public struct NodeStatus: Sendable {
    /// What the node is doing, from the outside.
    public enum Phase: String, Sendable {
        /// An owner checking or splitting its file.
        case starting
        /// A peer without the manifest yet.
        case joining
        /// Fetching missing chunks.
        case downloading
        /// Holds every chunk; the assembled copy is still being written.
        case assembling
        /// Holds and has assembled the whole file (or owns it), and serves it.
        case seeding
        /// Stopping, or stopped by a failure.
        case stopping
    }

    public struct File: Sendable {
        public let name: String
        public let size: Int64
        public let chunkSize: Int
        public let chunkCount: Int
        public let fileID: String
    }

    public struct Request: Sendable {
        public let chunk: ChunkID
        public let source: String
        public let ageMicros: Int64
    }

    public struct Neighbour: Sendable {
        public let name: String
        public let address: String
        /// Chunks it offers, and of those, ones this node still lacks.
        public let offered: Int
        public let useful: Int
        /// Verified bytes per second from it over the last few seconds.
        public let bytesPerSecond: Int
    }

    public struct Slots: Sendable {
        public let inUse: Int
        public let capacity: Int
        public let waiting: Int
    }

    public struct Sync: Sendable {
        public let committedThrough: Int64
        public let syncedThrough: Int64
        public let unsyncedBytes: Int
        public let lagMicros: Int64
        public var unsyncedBatches: Int64 { max(0, committedThrough - syncedThrough) }
    }

    public let node: String
    public let role: String
    public let phase: Phase
    public let isPrivate: Bool
    public let file: File?
    public let held: ChunkSet
    public var heldCount: Int { held.count }
    /// In flight over every connection, oldest first.
    public let inFlight: [Request]
    public let neighbours: [Neighbour]
    /// Why the owner is asked for everything missing, while it is.
    public let ownerFallback: String?
    public let connectionsIn: Int
    public let connectionsOut: Int
    public let uploadSlots: Slots?
    public let sync: Sync
    public let failure: String?
}
