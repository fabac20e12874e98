import Crypto
import Foundation
import PeerShareStore

/// `peershare-inspect verify`: re-hashes the chunk files on disk against the index and lists
/// every disagreement. It reads only: no file, row or folder is changed.
public struct VerifyReport: Sendable {
    public struct Problem: Sendable, Equatable {
        public enum Kind: String, Sendable {
            /// A chunk row whose file hashes to something else (or has the wrong size).
            case mismatch
            /// A chunk row with no file.
            case missing
            /// A chunk file with no row (or a file in chunks/ that is not a chunk file at all).
            case unindexed
            /// A chunk row whose recorded hash differs from the manifest's.
            case indexMismatch = "index_mismatch"
            /// SQLite's own consistency check of the index failed.
            case indexCorrupt = "index_corrupt"
        }

        public var kind: Kind
        public var chunkID: Int64?
        public var file: String
        public var expectedSHA256: String?
        public var actualSHA256: String?
        public var detail: String

        public var record: Record {
            Record([
                "problem": .string(kind.rawValue), "chunk_id": .optional(chunkID), "file": .string(file),
                "expected_sha256": .optional(expectedSHA256), "actual_sha256": .optional(actualSHA256), "detail": .string(detail),
            ])
        }

        static let header = ["problem", "chunk_id", "file", "expected_sha256", "actual_sha256", "detail"]
    }

    public var database: String
    public var directory: String
    /// Chunk rows whose files were hashed.
    public var checked: Int
    public var bytesHashed: Int64
    /// Temporary files of an interrupted write (`.peershare-tmp-*`): the node deletes them at its next start.
    public var temporaryFiles: Int
    public var problems: [Problem]

    public var isClean: Bool { problems.isEmpty }

    /// Where a node's chunk files are: `--dir` if given, else the folder the node recorded,
    /// else the folder holding the index.
    public static func folder(for database: InspectDatabase, override: String?) throws -> String {
        if let override { return override }
        let recorded = try database.read { try database.node($0).directory }
        if let recorded, FileManager.default.fileExists(atPath: recorded + "/chunks") { return recorded }
        return URL(fileURLWithPath: database.path).deletingLastPathComponent().path
    }

    public static func run(_ database: InspectDatabase, directory override: String? = nil) async throws -> VerifyReport {
        let directory = try folder(for: database, override: override)
        let chunksFolder = directory + "/chunks"
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: chunksFolder, isDirectory: &isFolder), isFolder.boolValue else {
            throw InspectError("no chunk folder at \(chunksFolder); pass the node's folder with --dir")
        }
        struct Indexed: Sendable { let id: Int64; let size: Int64; let rowHash: String; let manifestHash: String }
        // One snapshot for the index; the folder is listed after it.
        let (indexed, integrity) = try database.read { db in
            let rows = try db.query("SELECT c.chunk_id, m.size, c.sha256, m.sha256 FROM chunks c JOIN manifest_chunks m ON m.chunk_id = c.chunk_id ORDER BY c.chunk_id") {
                Indexed(id: $0.int(0), size: $0.int(1), rowHash: Human.hex($0.blob(2)), manifestHash: Human.hex($0.blob(3)))
            }
            let integrity = try db.query("PRAGMA quick_check") { $0.text(0) }
            return (rows, integrity)
        }
        var problems: [Problem] = []
        if integrity != ["ok"] {
            problems.append(Problem(kind: .indexCorrupt, chunkID: nil, file: database.path, detail: integrity.prefix(5).joined(separator: "; ")))
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: chunksFolder).sorted()
        let temporaries = names.filter { $0.hasPrefix(".peershare-tmp-") }
        var onDisk: [Int64: String] = [:]
        for name in names where !name.hasPrefix(".peershare-tmp-") {
            if let id = chunkID(fromFileName: name) {
                onDisk[id] = name
            } else {
                problems.append(Problem(kind: .unindexed, chunkID: nil, file: "chunks/" + name, detail: "not a chunk file name (NNNNNN.chunk)"))
            }
        }
        let indexedIDs = Set(indexed.map(\.id))
        var unindexed = onDisk.keys.filter { !indexedIDs.contains($0) }.sorted()
        var toHash = indexed
        if !unindexed.isEmpty {
            // A running node renames a chunk file just before committing its row: look again
            // before calling such a file unindexed.
            let late = try database.read { db in
                try db.query("SELECT c.chunk_id, m.size, c.sha256, m.sha256 FROM chunks c JOIN manifest_chunks m ON m.chunk_id = c.chunk_id WHERE c.chunk_id IN (\(unindexed.map(String.init).joined(separator: ",")))") {
                    Indexed(id: $0.int(0), size: $0.int(1), rowHash: Human.hex($0.blob(2)), manifestHash: Human.hex($0.blob(3)))
                }
            }
            toHash += late
            let lateIDs = Set(late.map(\.id))
            unindexed.removeAll { lateIDs.contains($0) }
        }
        let manifestHashes = unindexed.isEmpty ? [] : try database.read { db in
            try db.query("SELECT chunk_id, sha256 FROM manifest_chunks WHERE chunk_id IN (\(unindexed.map(String.init).joined(separator: ",")))") {
                ($0.int(0), Human.hex($0.blob(1)))
            }
        }
        // chunk_id is the primary key, but a damaged index's table may repeat one: first row wins.
        let expectedForUnindexed = Dictionary(manifestHashes, uniquingKeysWith: { first, _ in first })

        // Hash every indexed file (and every unindexed one, to say whether it is a good copy),
        // a few at a time on the cores available.
        struct Job: Sendable { let id: Int64; let path: String }
        let jobs = toHash.map { Job(id: $0.id, path: chunksFolder + "/" + fileName(of: $0.id)) }
            + unindexed.map { Job(id: $0, path: chunksFolder + "/" + (onDisk[$0] ?? fileName(of: $0))) }
        let digests = try await hashAll(jobs.map(\.path))
        var bytesHashed: Int64 = 0
        for (chunk, digest) in zip(toHash, digests.prefix(toHash.count)) {
            let name = "chunks/" + fileName(of: chunk.id)
            if chunk.rowHash != chunk.manifestHash {
                problems.append(Problem(kind: .indexMismatch, chunkID: chunk.id, file: name, expectedSHA256: chunk.manifestHash, actualSHA256: chunk.rowHash,
                                        detail: "the index row's hash differs from the manifest's"))
            }
            switch digest {
            case .none:
                problems.append(Problem(kind: .missing, chunkID: chunk.id, file: name, expectedSHA256: chunk.manifestHash, detail: "indexed, but the file is not there"))
            case .some(let (hash, size)):
                bytesHashed = bytesHashed.saturatingAdd(size)
                if size != chunk.size {
                    problems.append(Problem(kind: .mismatch, chunkID: chunk.id, file: name, expectedSHA256: chunk.manifestHash, actualSHA256: hash,
                                            detail: "\(size) bytes, expected \(chunk.size)"))
                } else if hash != chunk.manifestHash {
                    problems.append(Problem(kind: .mismatch, chunkID: chunk.id, file: name, expectedSHA256: chunk.manifestHash, actualSHA256: hash,
                                            detail: "the file's SHA-256 differs from the manifest's"))
                }
            }
        }
        for (id, digest) in zip(unindexed, digests.dropFirst(toHash.count)) {
            let expected = expectedForUnindexed[id]
            let verdict = if expected == nil { "not a chunk of the manifest" }
                else if digest?.0 == expected { "a good copy the index does not list (the node adopts such files at its next start)" }
                else { "does not match the manifest (the node deletes such files at its next start)" }
            if let digest { bytesHashed = bytesHashed.saturatingAdd(digest.1) }
            problems.append(Problem(kind: .unindexed, chunkID: id, file: "chunks/" + (onDisk[id] ?? fileName(of: id)), expectedSHA256: expected,
                                    actualSHA256: digest?.0, detail: verdict))
        }
        problems.sort { ($0.chunkID ?? -1, $0.kind.rawValue, $0.file) < ($1.chunkID ?? -1, $1.kind.rawValue, $1.file) }
        return VerifyReport(database: database.path, directory: directory, checked: toHash.count, bytesHashed: bytesHashed,
                            temporaryFiles: temporaries.count, problems: problems)
    }

    static func fileName(of id: Int64) -> String {
        Timestamp.digits(id, 6) + ".chunk"
    }

    /// The ID a file name stands for, by the node's own rule: at least six digits, then `.chunk`.
    static func chunkID(fromFileName name: String) -> Int64? {
        guard name.hasSuffix(".chunk") else { return nil }
        let digits = name.dropLast(6)
        guard digits.count >= 6, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = UInt32(digits) else { return nil }
        return Int64(value)
    }

    /// SHA-256 and size of each file (nil where it cannot be read), hashed in parallel.
    static func hashAll(_ paths: [String]) async throws -> [(String, Int64)?] {
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8))
        var results = [(String, Int64)?](repeating: nil, count: paths.count)
        try await withThrowingTaskGroup(of: (Int, (String, Int64)?).self) { group in
            var next = 0
            func start() {
                guard next < paths.count else { return }
                let index = next
                let path = paths[index]
                next += 1
                group.addTask { (index, hashFile(path)) }
            }
            for _ in 0..<workers { start() }
            while let (index, result) = try await group.next() {
                results[index] = result
                start()
            }
        }
        return results
    }

    /// Streams a file through SHA-256 in 1 MiB reads.
    static func hashFile(_ path: String) -> (String, Int64)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var hasher = SHA256()
        var total: Int64 = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[..<n]))
            total += Int64(n)
        }
        return (Human.hex(Array(hasher.finalize())), total)
    }

    // MARK: Output

    public var summary: String {
        var text = "\(checked) indexed chunk files checked in \(directory)/chunks (\(Human.bytes(bytesHashed)) hashed): "
        text += isClean ? "all match the index" : "\(problems.count) problem\(problems.count == 1 ? "" : "s")"
        let counts = Dictionary(grouping: problems, by: \.kind.rawValue).map { "\($0.value.count) \($0.key)" }.sorted()
        if !counts.isEmpty { text += " (" + counts.joined(separator: ", ") + ")" }
        if temporaryFiles > 0 { text += "; \(temporaryFiles) temporary file(s) of interrupted writes ignored" }
        return text
    }

    public var record: Record {
        Record([
            "database": .string(database), "directory": .string(directory), "checked": .int(Int64(checked)),
            "bytes_hashed": .int(bytesHashed), "temporary_files": .int(Int64(temporaryFiles)), "clean": .bool(isClean),
            "problems": .array(problems.map { .record($0.record) }),
        ])
    }

    public func render(_ format: OutputFormat) -> String {
        switch format {
        case .json: return JSON.encode(.record(record)) + "\n"
        case .csv: return CSV.table(problems.map(\.record), header: Problem.header)
        case .table:
            guard !problems.isEmpty else { return summary + "\n" }
            var table = TextTable([.init("problem"), .init("chunk", .right), .init("file"), .init("expected"), .init("actual"), .init("detail")])
            for p in problems {
                table.append([p.kind.rawValue, p.chunkID.map(String.init) ?? "", p.file, p.expectedSHA256.map(Human.shortHash) ?? "",
                              p.actualSHA256.map(Human.shortHash) ?? "", p.detail])
            }
            return table.render() + summary + "\n"
        }
    }
}
