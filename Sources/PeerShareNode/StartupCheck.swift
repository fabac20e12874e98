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
/// row was written), but the folder may have changed underneath it: a crash between rename and
/// commit leaves a file without a row, an operator may delete or damage files. An ordinary
/// start checks sizes only; `recheck` re-hashes every indexed chunk as well.
struct StartupCheck: Sendable {
    struct Adopted: Sendable {
        let id: ChunkID
        let size: Int
        let sha256: Digest32
    }

    var staleTemporaries: [String] = []
    /// Indexed chunks whose file is missing, the wrong size or (with recheck) the wrong hash.
    var droppedRows: [(id: ChunkID, reason: String)] = []
    /// Unindexed chunk files that hash correctly: verified before a crash lost their row.
    var adopted: [Adopted] = []
    /// Unindexed chunk files that do not match the manifest; deleted.
    var discarded: [(file: String, reason: String)] = []
    /// Unindexed chunk files that could not be read (permissions, I/O errors): neither
    /// adopted nor deleted, since they may hold verified bytes. A download replaces them.
    var unreadable: [(file: String, reason: String)] = []

    var isClean: Bool { staleTemporaries.isEmpty && droppedRows.isEmpty && adopted.isEmpty && discarded.isEmpty && unreadable.isEmpty }

    /// Blocking: run on a thread pool. Deletes what it reports as stale, dropped or discarded.
    static func run(manifest: Manifest, indexed: Set<ChunkID>, directory: ChunkDirectory, recheck: Bool) -> StartupCheck {
        var result = StartupCheck()
        for folder in [directory.root, directory.chunksFolder] {
            for name in PosixFiles.listDirectory(folder) where name.hasPrefix(PosixFiles.temporaryPrefix) {
                unlink(folder + "/" + name)
                result.staleTemporaries.append(name)
            }
        }
        for id in indexed.sorted() {
            let path = directory.path(of: id)
            guard manifest.contains(id) else {
                result.droppedRows.append((id, "chunk \(id) is not in the manifest"))
                continue
            }
            let expected = manifest.size(of: id)
            guard let size = PosixFiles.fileSize(path) else {
                result.droppedRows.append((id, "its file is missing"))
                continue
            }
            if size != Int64(expected) {
                unlink(path)
                result.droppedRows.append((id, "its file is \(size) bytes, not \(expected)"))
                continue
            }
            guard recheck else { continue }
            do {
                let digest = try hash(path: path, size: expected)
                if digest != manifest.hash(of: id) {
                    unlink(path)
                    result.droppedRows.append((id, "its file hashes to \(digest.short), not \(manifest.hash(of: id).short)"))
                }
            } catch {
                // Not vouched for, so not offered; not deleted, since the bytes may be fine.
                result.droppedRows.append((id, "its file cannot be read: \(error)"))
            }
        }
        for name in PosixFiles.listDirectory(directory.chunksFolder) {
            guard let id = ChunkDirectory.chunkID(fromFileName: name), !indexed.contains(id) else { continue }
            let path = directory.chunksFolder + "/" + name
            guard manifest.contains(id) else {
                unlink(path)
                result.discarded.append((name, "chunk \(id) is not in the manifest"))
                continue
            }
            let expected = manifest.size(of: id)
            guard let size = PosixFiles.fileSize(path), size == Int64(expected) else {
                unlink(path)
                result.discarded.append((name, "it is not the \(expected) bytes the manifest gives chunk \(id)"))
                continue
            }
            let digest: Digest32
            do {
                digest = try hash(path: path, size: expected)
            } catch {
                result.unreadable.append((name, "\(error)"))
                continue
            }
            guard digest == manifest.hash(of: id) else {
                unlink(path)
                result.discarded.append((name, "it hashes to \(digest.short), not \(manifest.hash(of: id).short)"))
                continue
            }
            result.adopted.append(Adopted(id: id, size: expected, sha256: digest))
        }
        return result
    }

    /// The SHA-256 of a chunk file of `size` bytes; a failure to open or read it is thrown
    /// with its errno, never mistaken for damage.
    private static func hash(path: String, size: Int) throws -> Digest32 {
        let fd = try PosixFiles.openForReading(path)
        defer { close(fd) }
        var buffer = ByteBuffer()
        var failure: (any Error)?
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            do {
                let n = try PosixFiles.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[..<size]), path: path)
                if n != size { failure = FileSystemError(operation: "cannot read all \(size) bytes of", path: path, errno: EIO) }
                return n
            } catch {
                failure = error
                return 0
            }
        }
        if let failure { throw failure }
        return buffer.withUnsafeReadableBytes { Digest32(SHA256.hash(data: $0)) }
    }
}
