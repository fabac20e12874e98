import CSQLite

/// A SQLite failure, carrying what is needed to act on it: the extended result code,
/// SQLite's own message and the statement that failed.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    public let sql: String?

    public var primaryCode: Int32 { code & 0xff }
    public var isNotADatabase: Bool { primaryCode == SQLITE_NOTADB }
    public var isCorrupt: Bool { primaryCode == SQLITE_CORRUPT }
    public var isBusy: Bool { primaryCode == SQLITE_BUSY || primaryCode == SQLITE_LOCKED }

    public var description: String {
        var text = "SQLite error \(code): \(message)"
        if let sql { text += " (in: \(sql.split(whereSeparator: \.isNewline).joined(separator: " ").prefix(120)))" }
        return text
    }
}

/// A value bound to or read from a statement.
public enum SQLValue: Equatable, Sendable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

public protocol SQLBindable {
    var sqlValue: SQLValue { get }
}
extension Int: SQLBindable { public var sqlValue: SQLValue { .integer(Int64(self)) } }
extension Int64: SQLBindable { public var sqlValue: SQLValue { .integer(self) } }
extension Int32: SQLBindable { public var sqlValue: SQLValue { .integer(Int64(self)) } }
extension UInt32: SQLBindable { public var sqlValue: SQLValue { .integer(Int64(self)) } }
extension Double: SQLBindable { public var sqlValue: SQLValue { .real(self) } }
extension String: SQLBindable { public var sqlValue: SQLValue { .text(self) } }
extension Array: SQLBindable where Element == UInt8 { public var sqlValue: SQLValue { .blob(self) } }
extension Optional: SQLBindable where Wrapped: SQLBindable {
    // A switch, not `map(\.sqlValue)`: that instantiates a generic key path on every call,
    // which showed up as the largest runtime cost of committing event rows.
    public var sqlValue: SQLValue {
        switch self {
        case .some(let value): value.sqlValue
        case .none: .null
        }
    }
}
extension SQLValue: SQLBindable { public var sqlValue: SQLValue { self } }

/// One SQLite connection. Not thread-safe by design: its owner (an actor, or a single
/// command-line task) confines it, and SQLite is opened without its own mutexes.
public final class SQLiteConnection {
    public enum Mode: Sendable {
        /// Open or create, in WAL mode, for the peer or owner that owns the index.
        case readWrite
        /// Never writes, never creates; for peershare-inspect.
        case readOnly
    }

    private var handle: OpaquePointer?
    private var cache: [String: Statement] = [:]
    public let path: String

    public init(path: String, mode: Mode) throws(SQLiteError) {
        self.path = path
        var db: OpaquePointer?
        let flags = switch mode {
        case .readWrite: SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        case .readOnly: SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX
        }
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close_v2(db)
            throw SQLiteError(code: rc, message: message, sql: nil)
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        // Another process (a running peer, or inspect reading it) may hold a lock briefly.
        sqlite3_busy_timeout(db, 5_000)
        if mode == .readOnly {
            // Belt and braces for a reader that must leave the file as it found it: a
            // read-only connection cannot checkpoint, and this says it must not try.
            _ = peershare_sqlite_no_checkpoint_on_close(db)
        }
        do throws(SQLiteError) {
            // Reading the schema here surfaces "not a database" and corruption at open time.
            _ = try scalarInt("PRAGMA schema_version")
            if mode == .readWrite {
                let journal = try scalarText("PRAGMA journal_mode = WAL")
                guard journal?.lowercased() == "wal" else {
                    throw SQLiteError(code: SQLITE_ERROR, message: "could not switch to WAL (journal_mode is \(journal ?? "unknown"))", sql: nil)
                }
                // See docs/STORAGE.md: in WAL mode NORMAL never corrupts; the chunk files are
                // fsynced before their rows are written, so a row lost to power failure only
                // means a chunk fetched again, never a row without its file.
                try execute("PRAGMA synchronous = NORMAL")
                try execute("PRAGMA foreign_keys = ON")
                // 1 MiB of page cache instead of SQLite's 2 MiB: the node's writes touch the
                // B-tree's right edge, and a peer's whole budget is 32 MiB (issue 6).
                try execute("PRAGMA cache_size = -1024")
            } else {
                try execute("PRAGMA query_only = ON")
            }
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    public func close() {
        cache.values.forEach { $0.finalize() }
        cache.removeAll()
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }

    private var db: OpaquePointer {
        get throws(SQLiteError) {
            guard let handle else { throw SQLiteError(code: SQLITE_MISUSE, message: "database is closed", sql: nil) }
            return handle
        }
    }

    /// Runs one or more statements that return no rows.
    public func execute(_ sql: String) throws(SQLiteError) {
        let db = try db
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(db))
            sqlite3_free(errorMessage)
            throw SQLiteError(code: sqlite3_extended_errcode(db), message: message, sql: sql)
        }
    }

    /// A prepared statement, cached per SQL text so hot paths prepare once.
    public func statement(_ sql: String) throws(SQLiteError) -> Statement {
        if let cached = cache[sql] {
            cached.reset()
            return cached
        }
        let db = try db
        var raw: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &raw, nil)
        guard rc == SQLITE_OK, let raw else {
            throw SQLiteError(code: sqlite3_extended_errcode(db), message: String(cString: sqlite3_errmsg(db)), sql: sql)
        }
        let statement = Statement(raw, connection: db, sql: sql)
        cache[sql] = statement
        return statement
    }

    /// Runs a statement that returns no rows.
    public func run(_ sql: String, _ values: SQLBindable...) throws(SQLiteError) {
        let s = try statement(sql)
        try s.bind(values)
        while try s.step() {}
    }

    /// Runs a query and maps each row.
    public func query<T>(_ sql: String, _ values: SQLBindable..., row: (Row) throws -> T) throws -> [T] {
        let s = try statement(sql)
        try s.bind(values)
        var out: [T] = []
        while try s.step() { out.append(try row(Row(statement: s))) }
        return out
    }

    /// Runs a query whose values are only known at run time (an `IN (?, ?, …)` list, say).
    public func query<T>(_ sql: String, arguments: [SQLBindable], row: (Row) throws -> T) throws -> [T] {
        let s = try statement(sql)
        try s.bind(arguments)
        var out: [T] = []
        while try s.step() { out.append(try row(Row(statement: s))) }
        return out
    }

    public func scalarInt(_ sql: String, _ values: SQLBindable...) throws(SQLiteError) -> Int64? {
        let s = try statement(sql)
        try s.bind(values)
        guard try s.step() else { return nil }
        let value = Row(statement: s).optionalInt(0)
        while try s.step() {}
        return value
    }

    public func scalarText(_ sql: String, _ values: SQLBindable...) throws(SQLiteError) -> String? {
        let s = try statement(sql)
        try s.bind(values)
        guard try s.step() else { return nil }
        let value = Row(statement: s).optionalText(0)
        while try s.step() {}
        return value
    }

    public var lastInsertRowID: Int64 {
        handle.map { sqlite3_last_insert_rowid($0) } ?? 0
    }

    /// Runs `body` in one transaction: committed if it returns, rolled back if it throws.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// A read transaction: every query inside sees one consistent snapshot, even while a
    /// writer in another process commits.
    public func snapshot<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN DEFERRED")
        defer { try? execute("COMMIT") }
        return try body()
    }
}

/// A prepared statement. Owned by its connection's cache.
public final class Statement {
    private var raw: OpaquePointer?
    private let connection: OpaquePointer
    public let sql: String

    init(_ raw: OpaquePointer, connection: OpaquePointer, sql: String) {
        self.raw = raw
        self.connection = connection
        self.sql = sql
    }

    func finalize() {
        sqlite3_finalize(raw)
        raw = nil
    }

    func reset() {
        sqlite3_reset(raw)
        sqlite3_clear_bindings(raw)
    }

    private func check(_ rc: Int32) throws(SQLiteError) {
        guard rc == SQLITE_OK else { throw failure() }
    }

    private func failure() -> SQLiteError {
        SQLiteError(code: sqlite3_extended_errcode(connection), message: String(cString: sqlite3_errmsg(connection)), sql: sql)
    }

    public func bind(_ values: [SQLBindable]) throws(SQLiteError) {
        guard Int(sqlite3_bind_parameter_count(raw)) == values.count else {
            throw SQLiteError(code: SQLITE_RANGE, message: "statement takes \(sqlite3_bind_parameter_count(raw)) values, \(values.count) given", sql: sql)
        }
        for (i, value) in values.enumerated() {
            let index = Int32(i + 1)
            switch value.sqlValue {
            case .null: try check(sqlite3_bind_null(raw, index))
            case .integer(let v): try check(sqlite3_bind_int64(raw, index, v))
            case .real(let v): try check(sqlite3_bind_double(raw, index, v))
            case .text(let v): try check(sqlite3_bind_text(raw, index, v, -1, peershare_sqlite_transient()))
            case .blob(let v):
                let rc = v.withUnsafeBytes { bytes in
                    sqlite3_bind_blob(raw, index, bytes.baseAddress, Int32(bytes.count), peershare_sqlite_transient())
                }
                try check(rc)
            }
        }
    }

    /// Advances; true while a row is available.
    public func step() throws(SQLiteError) -> Bool {
        switch sqlite3_step(raw) {
        case SQLITE_ROW: return true
        case SQLITE_DONE:
            sqlite3_reset(raw)
            return false
        default:
            let error = failure()
            sqlite3_reset(raw)
            throw error
        }
    }

    fileprivate var handle: OpaquePointer? { raw }
}

/// The current row of a statement; valid only until the next step.
public struct Row {
    fileprivate let statement: Statement

    private var raw: OpaquePointer? { statement.handle }

    public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(raw, column) == SQLITE_NULL }
    public func int(_ column: Int32) -> Int64 { sqlite3_column_int64(raw, column) }
    public func optionalInt(_ column: Int32) -> Int64? { isNull(column) ? nil : int(column) }
    public func double(_ column: Int32) -> Double { sqlite3_column_double(raw, column) }
    public func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(raw, column) else { return "" }
        return String(cString: pointer)
    }
    public func optionalText(_ column: Int32) -> String? { isNull(column) ? nil : text(column) }
    public func blob(_ column: Int32) -> [UInt8] {
        let count = Int(sqlite3_column_bytes(raw, column))
        guard count > 0, let pointer = sqlite3_column_blob(raw, column) else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: count))
    }
}
