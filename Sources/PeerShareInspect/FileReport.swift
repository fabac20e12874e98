import PeerShareCore
import PeerShareStore

/// `peershare-inspect files`: one row per file of the manifest (a single file is one row):
/// its chunks held, its state, and who sent them.
public struct FileReport: Sendable {
    public struct Row: Sendable, Equatable {
        public var path: String
        public var isFolder: Bool
        public var size: Int64
        public var executable: Bool
        public var chunks: Int64
        public var held: Int64
        /// The names of the sources its held chunks came from, most chunks first.
        public var sources: [String]

        public var state: String {
            if isFolder { return "folder" }
            if chunks == 0 { return "complete" }
            return held == chunks ? "complete" : held == 0 ? "missing" : "partial"
        }

        public var record: Record {
            Record([
                "path": .string(path), "kind": .string(isFolder ? "folder" : "file"), "size": .int(size), "executable": .bool(executable),
                "chunks": .int(chunks), "held": .int(held), "state": .string(state), "sources": .string(sources.joined(separator: " ")),
            ])
        }
    }

    public var rows: [Row]
    static let header = ["path", "kind", "size", "executable", "chunks", "held", "state", "sources"]

    public static func load(_ database: InspectDatabase) throws -> FileReport {
        try database.read { db in
            guard let manifest = try database.manifest(db) else { return FileReport(rows: []) }
            let sources = try database.sources(db)
            // Which source sent each held chunk: one pass over the chunks, bounded by the count.
            var sentBy = [Int64?](repeating: nil, count: Int(manifest.chunkCount))
            var held = [Bool](repeating: false, count: Int(manifest.chunkCount))
            for (id, source) in try db.query("SELECT chunk_id, source_id FROM chunks", row: { ($0.int(0), $0.optionalInt(1)) })
            where id >= 0 && id < manifest.chunkCount {
                held[Int(id)] = true
                sentBy[Int(id)] = source
            }
            let entries: [FolderManifest.StoredEntry] = manifest.isFolder ? try database.folderEntries(db)
                : [(path: manifest.fileName, isFolder: false, size: manifest.fileSize, executable: false)]
            var rows: [Row] = []
            var next: Int64 = 0
            for entry in entries {
                let count = entry.isFolder ? 0 : Self.chunkCount(size: entry.size, chunkSize: manifest.chunkSize)
                let range = Int(min(next, manifest.chunkCount))..<Int(min(next + count, manifest.chunkCount))
                next += count
                var bySource: [String: Int] = [:]
                for id in range { if let source = sentBy[id].flatMap({ sources[$0]?.name }) { bySource[source, default: 0] += 1 } }
                let ranked = bySource.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map(\.key)
                let path = manifest.isFolder ? manifest.fileName + "/" + entry.path : entry.path
                rows.append(Row(path: path, isFolder: entry.isFolder, size: entry.size, executable: entry.executable,
                                chunks: count, held: Int64(range.filter { held[$0] }.count), sources: ranked))
            }
            return FileReport(rows: rows)
        }
    }

    /// The node's own rule (`ChunkLayout`); a size no layout could hold has no chunks here.
    static func chunkCount(size: Int64, chunkSize: Int64) -> Int64 {
        Int64((try? ChunkLayout(fileSize: size, chunkSize: Int(clamping: chunkSize)))?.chunkCount ?? 0)
    }

    public func render(_ format: OutputFormat) -> String {
        format.render(records: rows.map(\.record), header: Self.header, table: table)
    }

    func table() -> String {
        var table = TextTable([.init("path"), .init("size", .right), .init("chunks", .right), .init("held", .right), .init("state"), .init("sources")])
        for r in rows {
            table.append([r.path + (r.isFolder ? "/" : "") + (r.executable ? " (x)" : ""), r.isFolder ? "-" : String(r.size),
                          String(r.chunks), String(r.held), r.state, r.sources.isEmpty ? "-" : r.sources.joined(separator: ", ")])
        }
        let files = rows.filter { !$0.isFolder }
        let complete = files.filter { $0.state == "complete" }.count
        return (rows.isEmpty ? "" : table.render()) + "\(files.count) file\(files.count == 1 ? "" : "s"): \(complete) complete, \(files.count - complete) not\n"
    }
}
