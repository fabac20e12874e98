import Foundation
import PeerShareCore

/// `peershare-inspect report`: one self-contained HTML page of a swarm, from its nodes'
/// indexes (read-only): per node, when each chunk arrived and from whom (timeline), which
/// chunks it holds and from whom (chunk map), and its throughput over time with restarts
/// and rejected chunks marked. The drawing is in SwarmReportHTML.swift.
public struct SwarmReport: Sendable {
    /// One held chunk: a row of `chunks` with its source.
    public struct Arrival: Sendable, Equatable {
        public var chunk: Int64
        public var at: Int64
        public var bytes: Int64
        public var durationMicros: Int64
        public var sourceKind: String
        public var source: String
    }

    /// A chunk that failed verification: a `rejected` row of `transfers`.
    public struct Rejection: Sendable, Equatable {
        public var chunk: Int64
        public var at: Int64
        public var source: String
        public var detail: String?
    }

    /// Everything drawn for one node.
    public struct Node: Sendable {
        public var name: String
        public var role: String
        public var database: String
        public var fileName: String?
        public var fileSize: Int64?
        public var chunkCount: Int64?
        public var arrivals: [Arrival]
        public var rejections: [Rejection]
        /// When each run began, oldest first: every start after the first is a restart.
        public var runStarts: [Int64]
        public var assembledAt: Int64?
        public var restarts: [Int64] { Array(runStarts.dropFirst()) }

        /// How many chunks to draw: the manifest's count or, without one, one past the highest
        /// chunk held. Bounded by ChunkID.maximumCount: a node may be built by hand, and a row's
        /// chunk_id may be anything, Int64.max included.
        public var drawnChunkCount: Int {
            if let chunkCount { return Int(min(max(0, chunkCount), Int64(ChunkID.maximumCount))) }
            return arrivals.compactMap { Bounded.chunkIndex($0.chunk) }.max().map { $0 + 1 } ?? 0
        }
    }

    public var nodes: [Node]

    public init(nodes: [Node]) {
        self.nodes = nodes
    }

    /// Reads each index in one snapshot. Nodes come in the order given.
    public static func load(_ databases: [InspectDatabase]) throws -> SwarmReport {
        SwarmReport(nodes: try databases.map(loadNode))
    }

    static func loadNode(_ database: InspectDatabase) throws -> Node {
        try database.read { db in
            let node = try database.node(db)
            let manifest = try database.manifest(db)
            let arrivals = try db.query("""
                SELECT c.chunk_id, c.received_at, c.size, c.duration_us, s.kind, s.name
                FROM chunks c JOIN sources s ON s.id = c.source_id ORDER BY c.received_at, c.chunk_id
                """) {
                Arrival(chunk: $0.int(0), at: $0.int(1), bytes: $0.int(2), durationMicros: $0.int(3), sourceKind: $0.text(4), source: $0.text(5))
            }
            let rejections = try db.query("""
                SELECT t.chunk_id, t.finished_at, s.name, t.detail
                FROM transfers t JOIN sources s ON s.id = t.source_id
                WHERE t.outcome = 'rejected' ORDER BY t.finished_at
                """) {
                Rejection(chunk: $0.int(0), at: $0.int(1), source: $0.text(2), detail: $0.optionalText(3))
            }
            let runStarts = try db.query("SELECT started_at FROM runs ORDER BY id") { $0.int(0) }
            return Node(name: node.name.isEmpty ? database.path : node.name, role: node.role, database: database.path,
                        fileName: manifest?.fileName, fileSize: manifest?.fileSize, chunkCount: manifest?.chunkCount,
                        arrivals: arrivals, rejections: rejections, runStarts: runStarts, assembledAt: manifest?.assembledAt)
        }
    }

    /// The peers' indexes of a `peershare demo` folder: DIR/peer1/peer.db, DIR/peer2/peer.db, …
    /// in number order. The owner is left out: its chunks were all split at once.
    public static func databases(inDemoFolder folder: String) throws -> [InspectDatabase] {
        // opendir first: its errno is the real reason (Foundation's error on Linux often
        // loses it: "not a directory" becomes "error 256").
        guard let handle = opendir(folder) else {
            throw InspectError("cannot read the folder \(folder): \(String(cString: strerror(errno)).lowercased())")
        }
        closedir(handle)
        let entries: [String]
        do {
            entries = try FileManager.default.contentsOfDirectory(atPath: folder)
        } catch {
            throw InspectError("cannot read the folder \(folder): \((error as NSError).localizedDescription)")
        }
        let peers = entries.compactMap { entry -> (Int, String)? in
            guard entry.hasPrefix("peer"), let number = Int(entry.dropFirst(4)),
                  FileManager.default.fileExists(atPath: folder + "/" + entry + "/peer.db") else { return nil }
            return (number, folder + "/" + entry + "/peer.db")
        }.sorted { $0.0 < $1.0 }
        guard !peers.isEmpty else { throw InspectError("\(folder) holds no peerN/peer.db: is it a peershare demo folder?") }
        return try peers.map { try InspectDatabase(path: $0.1) }
    }

}
