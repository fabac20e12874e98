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

    var isClean: Bool { staleTemporaries.isEmpty && droppedRows.isEmpty && adopted.isEmpty && discarded.isEmpty }

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
            if recheck, let digest = hash(path: path, size: expected), digest != manifest.hash(of: id) {
                unlink(path)
                result.droppedRows.append((id, "its file hashes to \(digest.short), not \(manifest.hash(of: id).short)"))
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
            guard PosixFiles.fileSize(path) == Int64(expected), let digest = hash(path: path, size: expected), digest == manifest.hash(of: id) else {
                unlink(path)
                result.discarded.append((name, "it does not match the manifest"))
                continue
            }
            result.adopted.append(Adopted(id: id, size: expected, sha256: digest))
        }
        return result
    }

    private static func hash(path: String, size: Int) -> Digest32? {
        guard let fd = try? PosixFiles.openForReading(path) else { return nil }
        defer { close(fd) }
        var buffer = ByteBuffer()
        var ok = true
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            guard let n = try? PosixFiles.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[..<size]), path: path), n == size else {
                ok = false
                return 0
            }
            return n
        }
        guard ok else { return nil }
        return buffer.withUnsafeReadableBytes { Digest32(SHA256.hash(data: $0)) }
    }
}
