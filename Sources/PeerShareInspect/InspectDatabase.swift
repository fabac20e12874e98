import Foundation
import PeerShareCore
import PeerShareStore

/// A failure inspect reports as one line, with the database path in it.
public struct InspectError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Who the index belongs to (the `node` row).
public struct NodeInfo: Sendable, Equatable {
    public var role: String
    public var name: String
    public var createdAt: Int64?
    /// The node's folder as it recorded it (schema 3 and later), absolute.
    public var directory: String?
    /// How it keeps chunks (schema 4 and later; chunk files before).
    public var storage: StorageLayout = .chunkFiles
}

/// The shared file as the index describes it (the `manifest` row).
public struct ManifestInfo: Sendable, Equatable {
    public var fileName: String
    public var fileSize: Int64
    public var chunkSize: Int64
    public var chunkCount: Int64
    public var sha256: String
    public var recordedAt: Int64
    public var assembledAt: Int64?
    /// The owner's source file (schema 4 and later).
    public var sourcePath: String? = nil
    /// A shared folder rather than one file (schema 8 and later).
    public var isFolder = false
}

/// Where chunks come from or go to (the `sources` table).
public struct SourceInfo: Sendable, Hashable {
    public var id: Int64
    public var kind: String
    public var name: String
    public var address: String?
    /// Its node ID (hex) in a private swarm, proven by TLS.
    public var nodeID: String? = nil
    /// Why this node refuses it, if it is blocked.
    public var blocked: String? = nil
}

/// A PeerShare index opened for reading only.
///
/// It is opened with `SQLITE_OPEN_READONLY`, `PRAGMA query_only` and no checkpoint on close,
/// so the database file is never written. Every report is read inside one read transaction,
/// a consistent snapshot even while the node commits in another process (WAL).
public final class InspectDatabase {
    public let path: String
    let db: SQLiteConnection
    public let schemaVersion: Int

    public init(path: String) throws {
        self.path = path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw InspectError("no such file: \(path)")
        }
        guard !isFolder.boolValue else {
            throw InspectError("\(path) is a folder; pass the index file itself (DIR/peer.db or DIR/owner.db)")
        }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw InspectError("cannot read \(path): permission denied")
        }
        do {
            db = try SQLiteConnection(path: path, mode: .readOnly)
        } catch {
            throw Self.describe(error, path: path)
        }
        do {
            try Migrations.checkReadable(db)
            schemaVersion = Int(try db.scalarInt("PRAGMA user_version") ?? 0)
        } catch {
            db.close()
            throw Self.describe(error, path: path)
        }
    }

    deinit { db.close() }

    /// When set, every distinct query also records its `EXPLAIN QUERY PLAN` (hidden `--explain`).
    public var plans: QueryPlans?

    /// Runs `body` on one consistent snapshot; any failure becomes one clear line.
    public func read<T>(_ body: (Reader) throws -> T) throws -> T {
        let reader = Reader(db: db, plans: plans)
        do {
            return try db.snapshot { try body(reader) }
        } catch {
            throw Self.describe(error, path: path)
        }
    }

    static func describe(_ error: any Error, path: String) -> InspectError {
        switch error {
        case let error as InspectError: error
        case let error as SQLiteError where error.isNotADatabase: InspectError("\(path) is not a SQLite database")
        case let error as SQLiteError where error.isCorrupt: InspectError("\(path) is corrupt: \(error.message)")
        // SQLite's sum() refuses to wrap: the index holds numbers no real transfer has.
        case let error as SQLiteError where error.message == "integer overflow":
            InspectError("\(path) is damaged: a sum of its rows overflows 64 bits (\(error))")
        case let error as SQLiteError: InspectError("\(path): \(error)")
        case IndexError.notAnIndex(let reason): InspectError("\(path) is not a PeerShare index: \(reason)")
        case let error as IndexError: InspectError("\(path): \(error)")
        default: InspectError("\(path): \(error)")
        }
    }

    // MARK: Rows every report needs (call inside `read`)

    func node(_ db: Reader) throws -> NodeInfo {
        let directory = schemaVersion >= 3 ? ", directory" : ", NULL"
        let storage = schemaVersion >= 4 ? ", storage" : ", NULL"
        let rows = try db.query("SELECT role, name, created_at\(directory)\(storage) FROM node WHERE id = 1") {
            NodeInfo(role: $0.text(0), name: $0.text(1), createdAt: $0.int(2), directory: $0.optionalText(3),
                     storage: $0.optionalText(4).flatMap(StorageLayout.init(rawValue:)) ?? .chunkFiles)
        }
        // A node that crashed between creating its schema and its first row.
        return rows.first ?? NodeInfo(role: "unknown", name: "", createdAt: nil, directory: nil)
    }

    /// The manifest row, refused unless its numbers describe a file the node could share.
    func manifest(_ db: Reader) throws -> ManifestInfo? {
        let source = schemaVersion >= 4 ? ", source_path" : ", NULL"
        let kind = schemaVersion >= 8 ? ", kind" : ", 'file'"
        let manifest = try db.query("SELECT file_name, file_size, chunk_size, chunk_count, file_sha256, recorded_at, assembled_at\(source)\(kind) FROM manifest WHERE id = 1") {
            ManifestInfo(fileName: $0.text(0), fileSize: $0.int(1), chunkSize: $0.int(2), chunkCount: $0.int(3),
                         sha256: Human.hex($0.blob(4)), recordedAt: $0.int(5), assembledAt: $0.optionalInt(6), sourcePath: $0.optionalText(7),
                         isFolder: $0.text(8) == "folder")
        }.first
        if let manifest { try check(manifest) }
        return manifest
    }

    /// Every report counts, subtracts and draws by the chunk count, so a damaged or hostile
    /// manifest (the schema's CHECKs can be bypassed) is refused here, naming the bad value,
    /// before any of it is used. The node's own rule decides: ChunkLayout.
    private func check(_ m: ManifestInfo) throws {
        func invalid(_ reason: String) -> InspectError { InspectError("\(path): the index's manifest is invalid: \(reason)") }
        guard (0...Int64(ChunkID.maximumCount)).contains(m.chunkCount) else {
            throw invalid("chunk_count \(m.chunkCount) is outside 0...\(ChunkID.maximumCount)")
        }
        guard (1...Int64(ChunkLayout.maximumChunkSize)).contains(m.chunkSize) else {
            throw invalid("chunk_size \(m.chunkSize) is outside 1...\(ChunkLayout.maximumChunkSize)")
        }
        guard m.fileSize >= 0 else { throw invalid("file_size \(m.fileSize) is negative") }
        // A folder's chunk count follows its entries, checked where they are read (folderEntries).
        if m.isFolder {
            guard m.fileSize <= ChunkLayout.maximumFileSize else { throw invalid("file_size \(m.fileSize) is over \(ChunkLayout.maximumFileSize)") }
            return
        }
        let layout: ChunkLayout
        do {
            layout = try ChunkLayout(fileSize: m.fileSize, chunkSize: Int(m.chunkSize))
        } catch {
            throw invalid("file_size \(m.fileSize) in chunks of \(m.chunkSize) bytes: \(error)")
        }
        guard layout.chunkCount == m.chunkCount else {
            throw invalid("chunk_count \(m.chunkCount) does not match file_size \(m.fileSize) in chunks of \(m.chunkSize) bytes (\(layout.chunkCount) chunks)")
        }
    }

    /// A folder's entries (schema 8), in manifest order, bounded like a manifest from the network.
    func folderEntries(_ db: Reader) throws -> [FolderManifest.StoredEntry] {
        guard schemaVersion >= 8 else { return [] }
        let count = try db.scalarInt("SELECT count(*) FROM folder_entries") ?? 0
        guard count <= Int64(FileTree.maximumEntries) else {
            throw InspectError("\(path): the index lists \(count) folder entries, over \(FileTree.maximumEntries)")
        }
        return try db.query("SELECT path, is_folder, size, executable FROM folder_entries ORDER BY position") {
            (path: $0.text(0), isFolder: $0.int(1) != 0, size: $0.int(2), executable: $0.int(3) != 0)
        }
    }

    func sources(_ db: Reader) throws -> [Int64: SourceInfo] {
        // Node IDs and blocks from schema 6 on (private swarms).
        let identities = schemaVersion >= 6
        let nodeID = identities ? "CASE WHEN node_id IS NULL THEN NULL ELSE lower(hex(node_id)) END" : "NULL"
        let blocked = identities ? "(SELECT reason FROM blocked_nodes b WHERE b.node_id = sources.node_id)" : "NULL"
        let rows = try db.query("SELECT id, kind, name, address, \(nodeID), \(blocked) FROM sources") {
            SourceInfo(id: $0.int(0), kind: $0.text(1), name: $0.text(2), address: $0.optionalText(3), nodeID: $0.optionalText(4), blocked: $0.optionalText(5))
        }
        // `id` is the primary key, but an index whose table lacks it must not trap: first row wins.
        return Dictionary(rows.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    }
}

extension SourceInfo {
    /// How a sentence names it: "the owner", "peer2", "split from the file".
    var label: String {
        switch kind {
        case "owner": name == "owner" ? "the owner" : "owner \(name)"
        default: name
        }
    }
}

/// The order sources are listed in: local first (the owner's file), then the owner, then peers by name.
func sourceOrder(_ a: SourceInfo, _ b: SourceInfo) -> Bool {
    let rank = ["file": 0, "owner": 1, "peer": 2]
    let (ra, rb) = (rank[a.kind] ?? 3, rank[b.kind] ?? 3)
    if ra != rb { return ra < rb }
    if a.name.count != b.name.count, a.name.hasPrefix("peer"), b.name.hasPrefix("peer") {
        return a.name.count < b.name.count  // peer2 before peer10
    }
    return a.name < b.name
}

/// The queries of one snapshot. Forwards to the connection and, when asked, records each
/// distinct statement's query plan, so the plans quoted in docs/INSPECT-NOTES.md are the
/// plans of the exact SQL the commands run.
public final class Reader {
    let db: SQLiteConnection
    let plans: QueryPlans?

    init(db: SQLiteConnection, plans: QueryPlans?) {
        self.db = db
        self.plans = plans
    }

    public func query<T>(_ sql: String, _ values: SQLBindable..., row: (Row) throws -> T) throws -> [T] {
        try query(sql, arguments: values, row: row)
    }

    public func query<T>(_ sql: String, arguments: [SQLBindable], row: (Row) throws -> T) throws -> [T] {
        if let plans, !sql.hasPrefix("PRAGMA"), !plans.entries.contains(where: { $0.sql == sql }) {
            let steps = try db.query("EXPLAIN QUERY PLAN " + sql, arguments: arguments) { ($0.int(0), $0.int(1), $0.text(3)) }
            plans.entries.append(.init(sql: sql, plan: QueryPlans.tree(steps)))
        }
        return try db.query(sql, arguments: arguments, row: row)
    }

    public func scalarInt(_ sql: String, _ values: SQLBindable...) throws -> Int64? {
        try query(sql, arguments: values) { $0.optionalInt(0) }.first ?? nil
    }
}

/// Query plans recorded by a `Reader`, in the order the statements first ran.
public final class QueryPlans {
    public struct Entry: Sendable {
        public let sql: String
        /// SQLite's plan, one step per line, indented under its parent.
        public let plan: [String]
    }

    public internal(set) var entries: [Entry] = []

    public init() {}

    static func tree(_ steps: [(id: Int64, parent: Int64, detail: String)]) -> [String] {
        var depth: [Int64: Int] = [0: -1]
        return steps.map { step in
            let d = (depth[step.parent] ?? -1) + 1
            depth[step.id] = d
            return String(repeating: "  ", count: d) + step.detail
        }
    }

    public func render() -> String {
        entries.map { entry in
            let sql = entry.sql.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
            return "QUERY " + sql + "\n" + entry.plan.map { "  " + $0 + "\n" }.joined()
        }.joined()
    }
}
