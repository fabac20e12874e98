import Foundation
import PeerShareStore

/// The summary `peershare-inspect --db PATH` prints: what the node holds and where it came from.
struct Overview {
    var role = ""
    var name = ""
    var fileName: String?
    var fileSize: Int64 = 0
    var chunkCount: Int64 = 0
    var assembled = false
    var held: Int64 = 0
    var heldBytes: Int64 = 0
    var sources: [(kind: String, name: String, chunks: Int64, bytes: Int64)] = []
    var runs: Int64 = 0
    var rejected: Int64 = 0

    static func load(path: String) throws -> Overview {
        guard FileManager.default.fileExists(atPath: path) else { throw InspectError("no such file: \(path)") }
        let db: SQLiteConnection
        do { db = try SQLiteConnection(path: path, mode: .readOnly) } catch {
            throw InspectError(error.isNotADatabase ? "\(path) is not a SQLite database" : "cannot open \(path): \(error.message)")
        }
        do {
            try Migrations.checkReadable(db)
            return try db.snapshot {
                var o = Overview()
                for row in try db.query("SELECT role, name FROM node", row: { ($0.text(0), $0.text(1)) }) {
                    (o.role, o.name) = row
                }
                for row in try db.query("SELECT file_name, file_size, chunk_count, assembled_at IS NOT NULL FROM manifest", row: { ($0.text(0), $0.int(1), $0.int(2), $0.int(3)) }) {
                    o.fileName = row.0
                    o.fileSize = row.1
                    o.chunkCount = row.2
                    o.assembled = row.3 != 0
                }
                o.held = try db.scalarInt("SELECT count(*) FROM chunks") ?? 0
                o.heldBytes = try db.scalarInt("SELECT coalesce(sum(size), 0) FROM chunks") ?? 0
                o.sources = try db.query("SELECT s.kind, s.name, count(*), sum(c.size) FROM chunks c JOIN sources s ON s.id = c.source_id GROUP BY s.id ORDER BY s.kind, s.name") {
                    ($0.text(0), $0.text(1), $0.int(2), $0.int(3))
                }
                o.runs = try db.scalarInt("SELECT count(*) FROM runs") ?? 0
                o.rejected = try db.scalarInt("SELECT count(*) FROM transfers WHERE outcome = 'rejected'") ?? 0
                return o
            }
        } catch let error as SQLiteError {
            throw InspectError(error.isNotADatabase ? "\(path) is not a SQLite database" : error.isCorrupt ? "\(path) is corrupt: \(error.message)" : "\(path): \(error)")
        }
    }

    func render() -> String {
        var lines = ["\(role) \(name)"]
        if let fileName {
            lines.append("file:    \(fileName), \(fileSize) bytes, \(chunkCount) chunks\(assembled ? ", assembled" : "")")
            lines.append("chunks:  \(held) of \(chunkCount) held, \(heldBytes) bytes")
        } else {
            lines.append("file:    no manifest yet")
        }
        for s in sources {
            lines.append("from:    \(s.kind == "file" ? "split from the file" : "\(s.kind) \(s.name)"): \(s.chunks) chunks, \(s.bytes) bytes")
        }
        lines.append("runs:    \(runs), rejected chunks: \(rejected)")
        return lines.joined(separator: "\n")
    }
}

struct InspectError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
