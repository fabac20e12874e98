import Foundation
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
}

/// Where chunks come from or go to (the `sources` table).
public struct SourceInfo: Sendable, Hashable {
    public var id: Int64
    public var kind: String
    public var name: String
    public var address: String?
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

    /// Runs `body` on one consistent snapshot; any failure becomes one clear line.
    public func read<T>(_ body: (SQLiteConnection) throws -> T) throws -> T {
        do {
            return try db.snapshot { try body(db) }
        } catch {
            throw Self.describe(error, path: path)
        }
    }

    static func describe(_ error: any Error, path: String) -> InspectError {
        switch error {
        case let error as InspectError: error
        case let error as SQLiteError where error.isNotADatabase: InspectError("\(path) is not a SQLite database")
        case let error as SQLiteError where error.isCorrupt: InspectError("\(path) is corrupt: \(error.message)")
        case let error as SQLiteError: InspectError("\(path): \(error)")
        case IndexError.notAnIndex(let reason): InspectError("\(path) is not a PeerShare index: \(reason)")
        case let error as IndexError: InspectError("\(path): \(error)")
        default: InspectError("\(path): \(error)")
        }
    }

    // MARK: Rows every report needs (call inside `read`)

    func node(_ db: SQLiteConnection) throws -> NodeInfo {
        let directory = schemaVersion >= 3 ? ", directory" : ", NULL"
        let rows = try db.query("SELECT role, name, created_at\(directory) FROM node WHERE id = 1") {
            NodeInfo(role: $0.text(0), name: $0.text(1), createdAt: $0.int(2), directory: $0.optionalText(3))
        }
        // A node that crashed between creating its schema and its first row.
        return rows.first ?? NodeInfo(role: "unknown", name: "", createdAt: nil, directory: nil)
    }

    func manifest(_ db: SQLiteConnection) throws -> ManifestInfo? {
        try db.query("SELECT file_name, file_size, chunk_size, chunk_count, file_sha256, recorded_at, assembled_at FROM manifest WHERE id = 1") {
            ManifestInfo(fileName: $0.text(0), fileSize: $0.int(1), chunkSize: $0.int(2), chunkCount: $0.int(3),
                         sha256: Human.hex($0.blob(4)), recordedAt: $0.int(5), assembledAt: $0.optionalInt(6))
        }.first
    }

    func sources(_ db: SQLiteConnection) throws -> [Int64: SourceInfo] {
        let rows = try db.query("SELECT id, kind, name, address FROM sources") {
            SourceInfo(id: $0.int(0), kind: $0.text(1), name: $0.text(2), address: $0.optionalText(3))
        }
        return Dictionary(uniqueKeysWithValues: rows.map { ($0.id, $0) })
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
