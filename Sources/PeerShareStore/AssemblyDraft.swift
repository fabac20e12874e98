#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPosixShim
import Crypto
import PeerShareCore

/// The complete file in the making. For chunk files, chunks `0 ..< nextChunk` have been
/// hashed into the running whole-file SHA-256 and copied into `output`, a temporary file
/// that takes the file's name when `finish` has checked the hash. A single file needs
/// neither copy nor hash: its chunks are already in place, each checked on arrival. A value
/// owned by one task at a time; the store methods that take it block, so they run on a
/// thread pool.
public struct AssemblyDraft: Sendable {
    var hasher = SHA256()
    /// The next chunk to take in: every chunk before it is hashed (and copied or staged).
    public internal(set) var nextChunk = 0
    /// The copy being written (chunk files only).
    var output: DraftFile?

    /// Whether the copy's next writes bypass the page cache (see `DraftFile`).
    public var direct: Bool { output?.direct ?? false }

    /// Tests set this to take the path of a file system that refuses direct writes.
    public var refuseDirectWritesForTesting: Bool {
        get { output?.refuseDirectWritesForTesting ?? false }
        set { output?.refuseDirectWritesForTesting = newValue }
    }
}

/// A temporary file receiving the assembled copy of a chunk-files node.
///
/// The copy is written once and never read back by the node, so where the file system allows
/// it, it is written with direct I/O: the bytes go from the staging buffer to the disk
/// without a second copy into the page cache, which would only have to be written back
/// later (and evicts the chunk files that uploads are served from). The final fsync then has
/// only metadata left to flush. Where direct I/O is refused, the same writes go through the
/// page cache, with writeback started after each step.
struct DraftFile: Sendable {
    let fd: Int32
    let temporary: String
    /// Bytes in the file (staged bytes not counted).
    var bytesWritten: Int64 = 0
    var direct: Bool
    let staging: StagingBuffer
    var refuseDirectWritesForTesting = false

    /// Creates the temporary file, which start-up deletes if this process dies first.
    init(in folder: String, directIO: Bool) throws(FileSystemError) {
        let (fd, temporary) = try PosixFiles.createTemporary(in: folder, tag: "assembly-")
        guard let staging = StagingBuffer() else {
            close(fd)
            unlink(temporary)
            throw FileSystemError(operation: "no memory for the staging buffer of", path: temporary, errno: ENOMEM)
        }
        self.fd = fd
        self.temporary = temporary
        self.staging = staging
        self.direct = directIO && peershare_set_direct_io(fd, 1) == 0
    }

    /// Writes the staged bytes out. Direct writes must be whole blocks, so unless `final`
    /// a partial last block stays staged; at the end it goes out through the page cache, as
    /// does everything once direct I/O is off.
    mutating func flush(final: Bool) throws(FileSystemError) {
        if direct {
            try writeWholeBlocksDirectly()
            if direct {
                guard final && staging.filled > 0 else { return }
                stopDirectIO()
            }
        }
        let count = staging.filled
        guard count > 0 else { return }
        try PosixFiles.writeAll(fd, UnsafeRawBufferPointer(start: staging.base, count: count), path: temporary)
        staging.consume(count)
        PosixFiles.startWriteback(fd, from: bytesWritten, count: Int64(count))
        bytesWritten += Int64(count)
    }

    /// Writes every whole block staged with direct I/O. A file system that takes the flag
    /// but refuses the write (EINVAL), or a short write that leaves the file's end off a
    /// block boundary, turns direct I/O off; the caller then writes the rest buffered.
    private mutating func writeWholeBlocksDirectly() throws(FileSystemError) {
        let alignment = Int(PEERSHARE_DIRECT_IO_ALIGNMENT)
        while direct {
            let whole = staging.filled / alignment * alignment
            guard whole > 0 else { return }
            let written = refuseDirectWritesForTesting ? -1 : write(fd, staging.base, whole)
            let failure = refuseDirectWritesForTesting ? EINVAL : errno
            if written > 0 {
                staging.consume(written)
                bytesWritten += Int64(written)
                if written % alignment != 0 { stopDirectIO() }
            } else if written < 0 && failure == EINTR {
                continue
            } else if written < 0 && failure == EINVAL {
                stopDirectIO()
            } else {
                throw FileSystemError(operation: "cannot write", path: temporary, errno: written < 0 ? failure : EIO)
            }
        }
    }

    private mutating func stopDirectIO() {
        direct = false
        _ = peershare_set_direct_io(fd, 0)
    }

    /// Closes and deletes the unfinished copy.
    func abandon() {
        close(fd)
        unlink(temporary)
    }
}

/// The draft's staging buffer: aligned for direct I/O, 1 MiB (ten 100 KiB chunks per
/// write). Owned by one draft, and so by one task at a time.
final class StagingBuffer: @unchecked Sendable {
    static let capacity = 1 << 20
    let base: UnsafeMutableRawPointer
    /// Bytes staged, from `base`.
    var filled = 0
    var room: Int { Self.capacity - filled }

    init?() {
        var pointer: UnsafeMutableRawPointer?
        guard posix_memalign(&pointer, Int(PEERSHARE_DIRECT_IO_ALIGNMENT), Self.capacity) == 0, let pointer else { return nil }
        base = pointer
    }

    deinit { free(base) }

    /// Drops the first `count` staged bytes, keeping the rest at the front.
    func consume(_ count: Int) {
        if count < filled { memmove(base, base + count, filled - count) }
        filled -= count
    }
}

public enum AssemblyError: Error, CustomStringConvertible {
    case corruptChunk(ChunkID, Digest32)
    case wrongFileHash(Digest32)
    case incomplete(Int, of: Int)

    public var description: String {
        switch self {
        case .incomplete(let done, let count): "only \(done) of \(count) chunks are in the file"
        case .corruptChunk(let id, let digest): "chunk \(id) on disk hashes to \(digest.short), not what the manifest says"
        case .wrongFileHash(let digest): "the assembled bytes hash to \(digest.short), not the manifest's file hash"
        }
    }
}

extension ChunkStore {
    /// When the whole-file hash is wrong, names the culprit: re-hashes each chunk and throws
    /// for the first that does not match, else the whole-file error itself.
    func blameChunk(of manifest: Manifest, whole: Digest32) throws -> Never {
        for id in manifest.layout.chunkIDs {
            let chunk = try read(id, of: manifest)
            let digest = chunk.withUnsafeReadableBytes { Digest32(SHA256.hash(data: $0)) }
            if digest != manifest.hash(of: id) { throw AssemblyError.corruptChunk(id, digest) }
        }
        throw AssemblyError.wrongFileHash(whole)
    }
}
