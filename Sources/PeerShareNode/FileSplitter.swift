#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareStore

/// The owner's first job: hash every chunk and the whole file and, for chunk files, cut the
/// source into them.
enum FileSplitter {
    struct Result {
        let manifest: Manifest
        /// Every chunk, its file (if any) durable; the rows still need committing.
        let newChunks: [ChunkIndex.ReceivedChunk]
    }

    /// The size of the file to share, or why it cannot be shared (with errno).
    private static func sourceSize(_ path: String) throws -> Int64 {
        let status: PosixFiles.Status
        do { status = try PosixFiles.status(path) } catch { throw NodeError.failed(error.description) }
        guard status.isRegularFile else { throw NodeError.failed("cannot share \(path): not a regular file") }
        return status.size
    }

    /// Hashes the whole file without writing anything: the check a restarted owner makes
    /// when the source's size or modification time changed.
    static func hash(path: String, chunkSize: Int) throws -> (fileSize: Int64, fileHash: Digest32) {
        let size = try sourceSize(path)
        let fd = try PosixFiles.openForReading(path)
        defer { close(fd) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try PosixFiles.read(fd, into: $0, path: path) }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<n])) }
        }
        return (size, Digest32(hasher.finalize()))
    }

    /// Cuts the given chunks again from the source, each checked against the manifest, and
    /// makes them durable.
    static func recut(_ ids: [ChunkID], from source: OwnerSource, manifest: Manifest, into store: ChunkFilesStore) throws {
        for id in ids {
            guard let (path, offset) = source.location(of: id, in: manifest) else {
                throw NodeError.manifestChanged("chunk \(id) has no file in \(source.path); the folder changed. Pass --new-manifest to split it afresh")
            }
            let bytes = try PosixFiles.read(path: path, offset: offset, count: manifest.size(of: id))
            let digest = bytes.withUnsafeReadableBytes { Digest32(SHA256.hash(data: $0)) }
            guard digest == manifest.hash(of: id) else {
                throw NodeError.manifestChanged("chunk \(id) of \(path) no longer matches the indexed manifest; the file changed. Pass --new-manifest to split it afresh")
            }
            try store.write(id, bytes: bytes)
        }
        if !ids.isEmpty { try store.sync() }
    }

    /// Hashes the file and cuts it into `store`'s chunk files (none for a single file, which
    /// is served in place). Two threads read the file side by side: one feeds the whole-file
    /// SHA-256, the other hashes each chunk and writes it, so on two cores the split takes
    /// about as long as one pass. The chunk files are made durable at the end, before any
    /// row says they exist. `progress` hears the bytes done so far.
    static func split(path: String, chunkSize: Int, into store: ChunkFilesStore?,
                      progress: (@Sendable (Int64) -> Void)? = nil) async throws -> Result {
        let size = try sourceSize(path)
        let name = String(path.split(separator: "/").last ?? Substring(path))
        let layout: ChunkLayout
        do { layout = try ChunkLayout(fileSize: size, chunkSize: chunkSize) } catch {
            throw NodeError.failed("cannot share \(path): \(error)")
        }
        async let whole = NIOThreadPool.singleton.runIfActive { try hash(path: path, chunkSize: chunkSize).fileHash }
        async let chunks = NIOThreadPool.singleton.runIfActive { try cut(path: path, layout: layout, into: store, progress: progress) }
        let (fileHash, (hashes, newChunks)) = try await (whole, chunks)
        try store?.sync()
        let manifest = try Manifest(fileName: name, layout: layout, chunkHashes: hashes, fileHash: fileHash)
        return Result(manifest: manifest, newChunks: newChunks)
    }

    /// A folder (docs/PROTOCOL.md, "Folders"): scanned without following symlinks, each file
    /// read once for its chunk hashes and the content hash, and cut into `store`'s chunk files.
    static func splitFolder(path: String, chunkSize: Int, into store: ChunkFilesStore?) async throws -> (Result, OwnerSource) {
        let name = String(path.split(separator: "/").last ?? Substring(path))
        return try await NIOThreadPool.singleton.runIfActive {
            let scanned = try FolderScanner.scan(path)
            var newChunks: [ChunkIndex.ReceivedChunk] = []
            let folder = try FolderHasher.manifest(of: scanned, root: path, name: name, chunkSize: chunkSize) { id, bytes, digest, started in
                try store?.write(id, bytes: bytes)
                newChunks.append(.init(id: id, size: bytes.readableBytes, sha256: digest, source: .splitFromFile, startedAt: started, finishedAt: Clock.nowMicros()))
            }
            try store?.sync()
            return (Result(manifest: Manifest(folder: folder), newChunks: newChunks), OwnerSource(folder: path, scanned: scanned))
        }
    }

    /// Reads the file once, in order, hashing each chunk and writing it to `store`.
    private static func cut(path: String, layout: ChunkLayout, into store: ChunkFilesStore?,
                            progress: (@Sendable (Int64) -> Void)?) throws -> ([Digest32], [ChunkIndex.ReceivedChunk]) {
        let fd = try PosixFiles.openForReading(path)
        defer { close(fd) }
        var hashes: [Digest32] = []
        hashes.reserveCapacity(layout.chunkCount)
        var newChunks: [ChunkIndex.ReceivedChunk] = []
        var buffer = ByteBuffer()
        buffer.reserveCapacity(layout.chunkSize)
        var done: Int64 = 0
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
            let digest = buffer.withUnsafeReadableBytes { Digest32(SHA256.hash(data: $0)) }
            hashes.append(digest)
            try store?.write(id, bytes: buffer)
            newChunks.append(.init(id: id, size: expected, sha256: digest, source: .splitFromFile, startedAt: started, finishedAt: Clock.nowMicros()))
            done += Int64(expected)
            progress?(done)
        }
        return (hashes, newChunks)
    }
}
