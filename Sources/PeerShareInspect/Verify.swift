import Crypto
import Foundation
import PeerShareCore
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
        /// In a shared folder, the folder's file the chunk belongs to: the damaged file.
        public var sharedFile: String? = nil

        public var record: Record {
            Record([
                "problem": .string(kind.rawValue), "chunk_id": .optional(chunkID), "file": .string(file),
                "expected_sha256": .optional(expectedSHA256), "actual_sha256": .optional(actualSHA256), "detail": .string(detail),
                "shared_file": .optional(sharedFile),
            ])
        }

        static let header = ["problem", "chunk_id", "file", "expected_sha256", "actual_sha256", "detail", "shared_file"]
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

    /// Where a node's folder is: `--dir` if given, else the folder the node recorded, else the
    /// folder holding the index.
    public static func folder(for database: InspectDatabase, override: String?) throws -> String {
        if let override { return override }
        let recorded = try database.read { try database.node($0).directory }
        if let recorded, FileManager.default.fileExists(atPath: recorded) { return recorded }
        return URL(fileURLWithPath: database.path).deletingLastPathComponent().path
    }

    public static func run(_ database: InspectDatabase, directory override: String? = nil) async throws -> VerifyReport {
        let directory = try folder(for: database, override: override)
        let snapshot = try VerifySnapshot(database)
        let store = try snapshot.store(in: directory)
        var problems: [Problem] = []
        if snapshot.integrity != ["ok"] {
            problems.append(Problem(kind: .indexCorrupt, chunkID: nil, file: database.path, detail: snapshot.integrity.prefix(5).joined(separator: "; ")))
        }
        guard let manifest = snapshot.manifest else {
            return VerifyReport(database: database.path, directory: directory, checked: 0, bytesHashed: 0, temporaryFiles: 0, problems: problems)
        }
        var found = VerifyTargets(store: store, manifest: manifest, directory: directory, indexed: snapshot.indexed)
        if let chunkFiles = store as? ChunkFilesStore { try found.listChunkFiles(chunkFiles, database: database) }
        let digests = try await hashAll(found.toHash.map { found.slice(of: $0.id) } + found.unindexed.map { found.unindexedSlice($0) })
        var bytesHashed: Int64 = 0
        for (chunk, digest) in zip(found.toHash, digests.prefix(found.toHash.count)) {
            let name = found.name(of: chunk.id)
            if chunk.rowHash != chunk.manifestHash {
                problems.append(Problem(kind: .indexMismatch, chunkID: chunk.id, file: name, expectedSHA256: chunk.manifestHash, actualSHA256: chunk.rowHash,
                                        detail: "the index row's hash differs from the manifest's"))
            }
            switch digest {
            case .none:
                problems.append(Problem(kind: .missing, chunkID: chunk.id, file: name, expectedSHA256: chunk.manifestHash, detail: "indexed, but its bytes are not there"))
            case .some(let (hash, size)):
                bytesHashed = bytesHashed.saturatingAdd(size)
                if size != chunk.size {
                    problems.append(Problem(kind: .mismatch, chunkID: chunk.id, file: name, expectedSHA256: chunk.manifestHash, actualSHA256: hash,
                                            detail: "\(size) bytes, expected \(chunk.size)"))
                } else if hash != chunk.manifestHash {
                    problems.append(Problem(kind: .mismatch, chunkID: chunk.id, file: name, expectedSHA256: chunk.manifestHash, actualSHA256: hash,
                                            detail: "its SHA-256 differs from the manifest's"))
                }
            }
        }
        for (id, digest) in zip(found.unindexed, digests.dropFirst(found.toHash.count)) {
            let expected = id >= 0 && id < manifest.chunkCount ? Human.hex(manifest.hash(of: ChunkID(UInt32(id))).bytes) : nil
            let verdict = if expected == nil { "not a chunk of the manifest" }
                else if digest?.0 == expected { "a good copy the index does not list (the node adopts such files at its next start)" }
                else { "does not match the manifest (the node deletes such files at its next start)" }
            if let digest { bytesHashed = bytesHashed.saturatingAdd(digest.1) }
            problems.append(Problem(kind: .unindexed, chunkID: id, file: found.unindexedName(id), expectedSHA256: expected,
                                    actualSHA256: digest?.0, detail: verdict))
        }
        problems += found.strangers
        if let folder = manifest.folder {
            for i in problems.indices {
                guard let id = problems[i].chunkID, id >= 0, id < Int64(folder.chunkCount), let entry = folder.entry(of: ChunkID(UInt32(id))) else { continue }
                problems[i].sharedFile = manifest.fileName + "/" + entry.path.text
            }
        }
        problems.sort { ($0.chunkID ?? -1, $0.kind.rawValue, $0.file) < ($1.chunkID ?? -1, $1.kind.rawValue, $1.file) }
        return VerifyReport(database: database.path, directory: directory, checked: found.toHash.count, bytesHashed: bytesHashed,
                            temporaryFiles: found.temporaries, problems: problems)
    }

    /// SHA-256 and size of each slice (nil where it cannot be read), hashed in parallel.
    static func hashAll(_ slices: [ByteRange]) async throws -> [(String, Int64)?] {
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8))
        var results = [(String, Int64)?](repeating: nil, count: slices.count)
        try await withThrowingTaskGroup(of: (Int, (String, Int64)?).self) { group in
            var next = 0
            func start() {
                guard next < slices.count else { return }
                let index = next
                let slice = slices[index]
                next += 1
                group.addTask { (index, hash(slice)) }
            }
            for _ in 0..<workers { start() }
            while let (index, result) = try await group.next() {
                results[index] = result
                start()
            }
        }
        return results
    }

    /// Streams a byte range of a file (to its end when `count` is nil) through SHA-256 in
    /// 1 MiB reads. A range cut short by the end of the file hashes what is there.
    static func hash(_ range: ByteRange) -> (String, Int64)? {
        let fd = open(range.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var hasher = SHA256()
        var total: Int64 = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while range.count.map({ total < $0 }) ?? true {
            let want = range.count.map { min(buffer.count, Int($0 - total)) } ?? buffer.count
            let n = pread(fd, buffer.baseAddress, want, off_t(range.offset + total))
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
        var text = "\(checked) indexed chunks checked in \(directory) (\(Human.bytes(bytesHashed)) hashed): "
        text += isClean ? "all match the index" : "\(problems.count) problem\(problems.count == 1 ? "" : "s")"
        let counts = Dictionary(grouping: problems, by: \.kind.rawValue).map { "\($0.value.count) \($0.key)" }.sorted()
        if !counts.isEmpty { text += " (" + counts.joined(separator: ", ") + ")" }
        if temporaryFiles > 0 { text += "; \(temporaryFiles) temporary file(s) of interrupted writes ignored" }
        let damaged = Set(problems.compactMap(\.sharedFile)).sorted()
        if !damaged.isEmpty {
            text += "; damaged: " + damaged.prefix(10).joined(separator: ", ") + (damaged.count > 10 ? " and \(damaged.count - 10) more" : "")
        }
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
                              p.actualSHA256.map(Human.shortHash) ?? "", p.detail + (p.sharedFile.map { "; part of \($0)" } ?? "")])
            }
            return table.render() + summary + "\n"
        }
    }
}
