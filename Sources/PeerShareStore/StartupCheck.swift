#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import NIOCore
import PeerShareCore

/// What a node finds in its folder at start-up, compared with its index.
///
/// The index is trusted for what it says a chunk *is* (size and hash were verified before the
/// row was written), but the folder may have changed underneath it: a crash between a write
/// and its commit leaves bytes without a row, a machine crash can lose bytes whose rows
/// survived (see docs/STORAGE.md, "Crash consistency"), an operator may delete or damage
/// files. Sizes are always checked; the chunks in `rehash` are hashed again as well.
public struct StartupCheck: Sendable {
    public struct Adopted: Sendable {
        public let id: ChunkID
        public let size: Int
        public let sha256: Digest32
    }

    public var staleTemporaries: [String] = []
    /// Indexed chunks whose bytes are missing, the wrong size or the wrong hash.
    public var droppedRows: [(id: ChunkID, reason: String)] = []
    /// Indexed chunks hashed again and found good.
    public var rehashed: [ChunkID] = []
    /// Unindexed chunk files that hash correctly: verified before a crash lost their row.
    public var adopted: [Adopted] = []
    /// Unindexed chunk files that do not match the manifest; deleted.
    public var discarded: [(file: String, reason: String)] = []
    /// Unindexed chunk files that could not be read (permissions, I/O errors): neither
    /// adopted nor deleted, since they may hold verified bytes. A download replaces them.
    public var unreadable: [(file: String, reason: String)] = []
    /// The complete file (single file: the only copy) is gone or the wrong size.
    public var assembledFileLost = false

    public var isClean: Bool { staleTemporaries.isEmpty && droppedRows.isEmpty && adopted.isEmpty && discarded.isEmpty && unreadable.isEmpty }

    /// The SHA-256 of `count` bytes at `offset`; a failure to open or read is thrown with
    /// its errno, never mistaken for damage.
    static func hash(path: String, offset: Int64 = 0, count: Int) throws -> Digest32 {
        let bytes = try PosixFiles.read(path: path, offset: offset, count: count)
        return bytes.withUnsafeReadableBytes { Digest32(SHA256.hash(data: $0)) }
    }

    /// Re-hashes an indexed chunk: good, dropped (bytes wrong), or dropped as unreadable.
    mutating func rehash(_ id: ChunkID, path: String, offset: Int64, of manifest: Manifest, deleteIfWrong: Bool) {
        do {
            let digest = try Self.hash(path: path, offset: offset, count: manifest.size(of: id))
            if digest == manifest.hash(of: id) {
                rehashed.append(id)
            } else {
                if deleteIfWrong { unlink(path) }
                droppedRows.append((id, "its bytes hash to \(digest.short), not \(manifest.hash(of: id).short)"))
            }
        } catch {
            // Not vouched for, so not offered; not deleted, since the bytes may be fine.
            droppedRows.append((id, "its bytes cannot be read: \(error)"))
        }
    }
}

extension ChunkFilesStore {
    /// Deletes stale temporaries; drops rows whose chunk file is missing or the wrong size
    /// (or, in `rehash`, the wrong hash); adopts unindexed chunk files that hash right and
    /// deletes those that do not.
    public func reconcile(_ manifest: Manifest, indexed: ChunkSet, rehash: ChunkSet, assembled: Bool) -> StartupCheck {
        var result = StartupCheck()
        result.staleTemporaries = removeStaleTemporaries(in: [root, chunksFolder])
        for id in indexed.members {
            let path = path(of: id)
            let expected = manifest.size(of: id)
            guard let size = PosixFiles.fileSize(path) else {
                result.droppedRows.append((id, "its file is missing"))
                continue
            }
            if size != Int64(expected) {
                unlink(path)
                result.droppedRows.append((id, "its file is \(size) bytes, not \(expected)"))
            } else if rehash.contains(id) {
                result.rehash(id, path: path, offset: 0, of: manifest, deleteIfWrong: true)
            }
        }
        for name in PosixFiles.listDirectory(chunksFolder) {
            guard let id = Self.chunkID(fromFileName: name), !indexed.contains(id) else { continue }
            adoptOrDiscard(name, id: id, manifest: manifest, into: &result)
        }
        return result
    }

    private func adoptOrDiscard(_ name: String, id: ChunkID, manifest: Manifest, into result: inout StartupCheck) {
        let path = chunksFolder + "/" + name
        guard manifest.contains(id) else {
            unlink(path)
            result.discarded.append((name, "chunk \(id) is not in the manifest"))
            return
        }
        let expected = manifest.size(of: id)
        guard let size = PosixFiles.fileSize(path), size == Int64(expected) else {
            unlink(path)
            result.discarded.append((name, "it is not the \(expected) bytes the manifest gives chunk \(id)"))
            return
        }
        let digest: Digest32
        do {
            digest = try StartupCheck.hash(path: path, count: expected)
        } catch {
            result.unreadable.append((name, "\(error)"))
            return
        }
        guard digest == manifest.hash(of: id) else {
            unlink(path)
            result.discarded.append((name, "it hashes to \(digest.short), not \(manifest.hash(of: id).short)"))
            return
        }
        result.adopted.append(.init(id: id, size: expected, sha256: digest))
    }
}

extension SingleFileStore {
    /// Deletes stale temporaries and checks the one file has the file's size: if it is gone
    /// or cut short, every row is dropped (its bytes went with it) and a peer starts a new
    /// partial file. Chunks in `rehash` are hashed again in place. Bytes without a row cannot
    /// be told from preallocated space without hashing every chunk, so nothing is adopted:
    /// such a chunk is fetched again and written over itself.
    public func reconcile(_ manifest: Manifest, indexed: ChunkSet, rehash: ChunkSet, assembled: Bool) -> StartupCheck {
        var result = StartupCheck()
        result.staleTemporaries = removeStaleTemporaries(in: [root])
        noteAssembled(assembled)
        if let folder = manifest.folder {
            reconcileFolder(folder, manifest, indexed: indexed, rehash: rehash, assembled: assembled, result: &result)
            return result
        }
        // Killed between the rename and the row that records it: the complete file, its hash
        // already checked, has its name but the index does not know. It goes back to its
        // temporary name; the next assembly checks it again and names it.
        let complete = assembledPath(for: manifest)
        if source == nil, !assembled, PosixFiles.fileSize(partialPath) == nil, PosixFiles.fileSize(complete) == manifest.fileSize {
            _ = rename(complete, partialPath)
        }
        let (path, _) = location(of: ChunkID(0), in: manifest)
        let size = PosixFiles.fileSize(path)
        guard size == manifest.fileSize else {
            let reason = size.map { "\(path) is \($0) bytes, not \(manifest.fileSize)" } ?? "\(path) is missing"
            result.droppedRows = indexed.members.map { ($0, reason) }
            result.assembledFileLost = path != partialPath
            return result
        }
        for id in rehash.members where indexed.contains(id) {
            result.rehash(id, path: path, offset: manifest.layout.offset(of: id), of: manifest, deleteIfWrong: false)
        }
        return result
    }
}
