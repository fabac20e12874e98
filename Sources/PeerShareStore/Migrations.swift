import CSQLite

/// Brings a database up to the schema in Schema/, one numbered migration at a time.
public enum Migrations {
    /// 'PSHR', set by migration 1.
    public static let applicationID: Int64 = 1_347_635_282
    public static var latestVersion: Int32 { EmbeddedSchema.migrations.last?.version ?? 0 }

    public static func migrate(_ db: SQLiteConnection) throws {
        let current = Int32(try db.scalarInt("PRAGMA user_version") ?? 0)
        guard current <= latestVersion else { throw IndexError.newerSchema(found: current, known: latestVersion) }
        if current > 0 { try checkApplicationID(db) }
        for migration in EmbeddedSchema.migrations where migration.version > current {
            try db.transaction {
                try db.execute(migration.sql)
                try db.execute("PRAGMA user_version = \(migration.version)")
            }
        }
    }

    /// Read-only check used by tools that must not change the file.
    public static func checkReadable(_ db: SQLiteConnection) throws {
        let version = Int32(try db.scalarInt("PRAGMA user_version") ?? 0)
        try checkApplicationID(db)
        guard version <= latestVersion else { throw IndexError.newerSchema(found: version, known: latestVersion) }
        guard version > 0 else { throw IndexError.notAnIndex(reason: "it has no PeerShare schema") }
    }

    private static func checkApplicationID(_ db: SQLiteConnection) throws {
        let id = try db.scalarInt("PRAGMA application_id") ?? 0
        guard id == applicationID else {
            throw IndexError.notAnIndex(reason: "its application_id is \(id), not PeerShare's \(applicationID)")
        }
    }
}

public enum IndexError: Error, Equatable, CustomStringConvertible {
    case notAnIndex(reason: String)
    case newerSchema(found: Int32, known: Int32)
    case roleMismatch(expected: String, found: String)
    case manifestMismatch(String)

    public var description: String {
        switch self {
        case .notAnIndex(let reason): "not a PeerShare index: \(reason)"
        case .newerSchema(let found, let known):
            "the index has schema version \(found), newer than the \(known) this build knows; use a newer PeerShare"
        case .roleMismatch(let expected, let found): "the index belongs to a \(found), not a \(expected)"
        case .manifestMismatch(let detail): detail
        }
    }
}
