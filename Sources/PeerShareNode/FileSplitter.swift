#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import NIOCore
import PeerShareCore
import PeerShareStore

/// The owner's first job: cut the source file into chunk files and hash everything.
enum FileSplitter {
    struct Result {
        let manifest: Manifest
        /// Chunks that had no row yet; their files are durable and they need indexing.
        let newChunks: [ChunkIndex.ReceivedChunk]
        let reused: Int
    }

    /// Reads the file once, sequentially. A chunk already indexed with the same hash and
    /// present on disk at the right size is kept as it is; any other is written durably.
    static func split(path: String, chunkSize: Int, into directory: ChunkDirectory, indexed: [ChunkID: Digest32]) throws -> Result {
        guard let size = PosixFiles.fileSize(path) else {
            throw NodeError.failed("cannot read \(path): \(PosixFiles.fileSize(path) == nil && access(path, F_OK) != 0 ? "no such file" : "not a regular file")")
        }
        let name = String(path.split(separator: "/").last ?? Substring(path))
        let layout = try ChunkLayout(fileSize: size, chunkSize: chunkSize)
        let fd = try PosixFiles.openForReading(path)
        defer { close(fd) }
        var whole = SHA256()
        var hashes: [Digest32] = []
        hashes.reserveCapacity(layout.chunkCount)
        var newChunks: [ChunkIndex.ReceivedChunk] = []
        var reused = 0
        var buffer = ByteBuffer()
        buffer.reserveCapacity(chunkSize)
        for id in layout.chunkIDs {
            let expected = layout.size(of: id)
            let started = Clock.nowMicros()
            buffer.clear()
            var failure: FileSystemError?
            let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: expected) { raw in
                do throws(FileSystemError) {
                    return try PosixFiles.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[..<expected]), path: path)
                } catch {
                    failure = error
                    return 0
                }
            }
            if let failure { throw failure }
            guard count == expected else { throw NodeError.failed("\(path) changed size while being split") }
            let digest = buffer.withUnsafeReadableBytes { raw in
                whole.update(bufferPointer: raw)
                return Digest32(SHA256.hash(data: raw))
            }
            hashes.append(digest)
            if indexed[id] == digest, PosixFiles.fileSize(directory.path(of: id)) == Int64(expected) {
                reused += 1
                continue
            }
            try directory.write(id, bytes: buffer)
            newChunks.append(.init(id: id, size: expected, sha256: digest, source: .splitFromFile, startedAt: started, finishedAt: Clock.nowMicros()))
        }
        let manifest = try Manifest(fileName: name, layout: layout, chunkHashes: hashes, fileHash: Digest32(whole.finalize()))
        return Result(manifest: manifest, newChunks: newChunks, reused: reused)
    }
}
