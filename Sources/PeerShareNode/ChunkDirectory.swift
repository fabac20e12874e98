#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CPosixShim
import Crypto
import NIOCore
import PeerShareCore
import PeerShareWire

/// A node's folder: one file per chunk under `chunks/`, the summary file, the assembled file.
///
/// Every path is built from a chunk ID or a checked file name, so nothing is ever written
/// outside the folder. All methods block: call them from a thread pool.
public struct ChunkDirectory: Sendable {
    public let root: String
    public let chunksFolder: String

    public static let summaryFileName = "summary.txt"

    public init(root: String) throws(FileSystemError) {
        try PosixFiles.makeDirectory(root)
        self.root = root
        self.chunksFolder = root + "/chunks"
        try PosixFiles.makeDirectory(chunksFolder)
    }

    public func path(of id: ChunkID) -> String {
        // Zero-padded so that `ls` lists chunks in file order.
        let digits = String(id.rawValue)
        return chunksFolder + "/" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits + ".chunk"
    }

    /// The chunk ID a file in `chunks/` stands for, or nil if the name is not one of ours.
    static func chunkID(fromFileName name: String) -> ChunkID? {
        guard name.hasSuffix(".chunk") else { return nil }
        let digits = name.dropLast(6)
        guard digits.count >= 6, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber), let value = UInt32(digits) else { return nil }
        return ChunkID(value)
    }

    public var summaryPath: String { root + "/" + Self.summaryFileName }

    public func assembledPath(for manifest: Manifest) -> String { root + "/" + manifest.fileName }

    public func write(_ id: ChunkID, bytes: ByteBuffer) throws {
        try PosixFiles.writeDurably(path(of: id), directory: chunksFolder) { fd, path in
            try PosixFiles.writeAll(fd, bytes, path: path)
        }
    }

    /// Writes a verified chunk to a new temporary file beside the chunk files, without
    /// fsync: `makeDurable` makes a whole batch of them durable at once.
    public func writeTemporary(_ id: ChunkID, bytes: ByteBuffer) throws -> String {
        let (fd, temporary) = try PosixFiles.createTemporary(in: chunksFolder, tag: "\(id.rawValue)-")
        defer { close(fd) }
        do {
            try PosixFiles.writeAll(fd, bytes, path: temporary)
        } catch {
            unlink(temporary)
            throw error
        }
        return temporary
    }

    /// Makes a batch of temporary chunk files durable under their final names: one sync of
    /// the file system for all their bytes, the renames, one fsync of the folder. Once this
    /// returns, every chunk in the batch is a complete, durable file (the index rows may
    /// follow). On failure the temporaries are removed; start-up reconciles any renamed ones.
    public func makeDurable(_ batch: [(id: ChunkID, temporary: String)]) throws {
        do {
            try PosixFiles.syncFileSystem(containing: chunksFolder)
            for (id, temporary) in batch {
                guard rename(temporary, path(of: id)) == 0 else {
                    throw FileSystemError(operation: "cannot rename into", path: path(of: id), errno: errno)
                }
            }
            try PosixFiles.fsyncDirectory(chunksFolder)
        } catch {
            for (_, temporary) in batch { unlink(temporary) }
            throw error
        }
    }

    /// Opens a chunk file to be sent with `sendfile`, after checking it has the size the
    /// manifest gives: the PIECE's length prefix is written before the file's bytes.
    public func openForSending(_ id: ChunkID, expectedSize: Int) throws(FileSystemError) -> ChunkFile {
        let path = path(of: id)
        let fd = try PosixFiles.openForReading(path)
        guard let size = PosixFiles.size(of: fd), size == expectedSize else {
            close(fd)
            throw FileSystemError(operation: "chunk file is not \(expectedSize) bytes:", path: path, errno: EIO)
        }
        return ChunkFile(descriptor: fd, size: expectedSize)
    }

    public func read(_ id: ChunkID, expectedSize: Int) throws(FileSystemError) -> ByteBuffer {
        let path = path(of: id)
        let fd = try PosixFiles.openForReading(path)
        defer { close(fd) }
        var buffer = ByteBuffer()
        var failure: FileSystemError?
        let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: expectedSize) { raw in
            do throws(FileSystemError) {
                return try PosixFiles.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[..<expectedSize]), path: path)
            } catch {
                failure = error
                return 0
            }
        }
        if let failure { throw failure }
        guard count == expectedSize else { throw FileSystemError(operation: "chunk file is short:", path: path, errno: EIO) }
        return buffer
    }

    /// The summary file: the IDs of the chunks held, one per line, ascending.
    public func writeSummary(_ ids: [ChunkID]) throws {
        var text = ""
        text.reserveCapacity(ids.count * 7)
        for id in ids { text += "\(id.rawValue)\n" }
        try PosixFiles.writeDurably(summaryPath, directory: root) { fd, path in
            try PosixFiles.writeAll(fd, ByteBuffer(string: text), path: path)
        }
    }

    /// Concatenates every chunk into the file's original name in one go (see `AssemblyDraft`
    /// for the same thing done a few chunks at a time).
    public func assemble(_ manifest: Manifest) throws -> Digest32 {
        var draft = try beginAssembly()
        try append(to: &draft, upTo: manifest.chunkCount, of: manifest)
        return try finish(draft, of: manifest)
    }

    /// Starts an assembled file: an empty temporary file in the root folder, which start-up
    /// deletes if this process dies before `finish` renames it into place. Its bytes are
    /// written with direct I/O where the file system allows it (see `AssemblyDraft`), unless
    /// `directIO` is false.
    public func beginAssembly(directIO: Bool = true) throws(FileSystemError) -> AssemblyDraft {
        let (fd, temporary) = try PosixFiles.createTemporary(in: root, tag: "assembly-")
        guard let staging = StagingBuffer() else {
            close(fd)
            unlink(temporary)
            throw FileSystemError(operation: "no memory for the staging buffer of", path: temporary, errno: ENOMEM)
        }
        let direct = directIO && peershare_set_direct_io(fd, 1) == 0
        return AssemblyDraft(fd: fd, temporary: temporary, direct: direct, staging: staging)
    }

    /// Appends chunks `draft.nextChunk ..< end` from their chunk files, hashing them into the
    /// whole-file hash. The bytes go through the draft's staging buffer and leave it in large
    /// aligned writes; up to one block may stay staged for the next step. On failure the
    /// draft is abandoned.
    public func append(to draft: inout AssemblyDraft, upTo end: Int, of manifest: Manifest) throws {
        do {
            while draft.nextChunk < end {
                let id = ChunkID(UInt32(draft.nextChunk))
                try stage(id, expectedSize: manifest.size(of: id), into: &draft)
                draft.nextChunk += 1
            }
            try draft.flush(final: false)
        } catch {
            abandon(draft)
            throw error
        }
    }

    /// Reads one chunk file into the staging buffer (flushing it whenever it fills) and
    /// hashes what it read.
    private func stage(_ id: ChunkID, expectedSize: Int, into draft: inout AssemblyDraft) throws {
        let path = path(of: id)
        let fd = try PosixFiles.openForReading(path)
        defer { close(fd) }
        var remaining = expectedSize
        while remaining > 0 {
            if draft.staging.room == 0 { try draft.flush(final: false) }
            let room = UnsafeMutableRawBufferPointer(start: draft.staging.base + draft.staging.filled, count: min(remaining, draft.staging.room))
            let n = try PosixFiles.read(fd, into: room, path: path)
            guard n == room.count else { throw FileSystemError(operation: "chunk file is short:", path: path, errno: EIO) }
            draft.hasher.update(bufferPointer: UnsafeRawBufferPointer(room))
            draft.staging.filled += n
            remaining -= n
        }
    }

    /// Checks the whole-file hash and makes the draft durable under the file's name (fsync,
    /// rename, fsync of the folder). Each chunk was verified when it arrived, so only the
    /// whole file is hashed; if that fails, the chunks are re-hashed to name the culprit.
    /// The draft is closed either way.
    public func finish(_ draft: AssemblyDraft, of manifest: Manifest) throws -> Digest32 {
        var draft = draft
        let whole = Digest32(draft.hasher.finalize())
        guard draft.nextChunk == manifest.chunkCount, whole == manifest.fileHash else {
            abandon(draft)
            for id in manifest.layout.chunkIDs {
                let chunk = try read(id, expectedSize: manifest.size(of: id))
                let digest = chunk.withUnsafeReadableBytes { Digest32(SHA256.hash(data: $0)) }
                if digest != manifest.hash(of: id) { throw AssemblyError.corruptChunk(id, digest) }
            }
            throw AssemblyError.wrongFileHash(whole)
        }
        do {
            try draft.flush(final: true)
            try PosixFiles.fsync(draft.fd, path: draft.temporary)
        } catch {
            abandon(draft)
            throw error
        }
        close(draft.fd)
        let path = assembledPath(for: manifest)
        guard rename(draft.temporary, path) == 0 else {
            let error = FileSystemError(operation: "cannot rename into", path: path, errno: errno)
            unlink(draft.temporary)
            throw error
        }
        try PosixFiles.fsyncDirectory(root)
        return whole
    }

    /// Closes and deletes an unfinished assembled file.
    public func abandon(_ draft: AssemblyDraft) {
        close(draft.fd)
        unlink(draft.temporary)
    }
}

/// An assembled file in the making: a temporary file holding chunks `0 ..< nextChunk` in
/// order (the last few bytes possibly still in its staging buffer), and the SHA-256 of those
/// bytes so far. A value owned by one task at a time; the `ChunkDirectory` methods that take
/// it block, so they run on a thread pool.
///
/// The assembled copy is written once and never read back by the node, so where the file
/// system allows it the draft is written with direct I/O: the bytes go from the staging
/// buffer to the disk without a second copy into the page cache, which would only have to
/// be written back later (and evicts the chunk files that uploads are served from). The
/// final fsync then has only metadata left to flush. Where direct I/O is refused, the same
/// writes go through the page cache, with writeback started after each step.
public struct AssemblyDraft: Sendable {
    fileprivate let fd: Int32
    fileprivate let temporary: String
    fileprivate var hasher = SHA256()
    /// Bytes in the file (staged bytes not counted).
    fileprivate var bytesWritten: Int64 = 0
    /// Whether the next writes bypass the page cache (see above).
    public fileprivate(set) var direct: Bool
    fileprivate let staging: StagingBuffer
    /// The next chunk to append: every chunk before it is in the file or staged.
    public fileprivate(set) var nextChunk = 0

    fileprivate init(fd: Int32, temporary: String, direct: Bool, staging: StagingBuffer) {
        self.fd = fd
        self.temporary = temporary
        self.direct = direct
        self.staging = staging
    }

    /// Writes the staged bytes out. Direct writes must be whole blocks, so unless `final`
    /// a partial last block stays staged; at the end it goes out through the page cache, as
    /// does everything once direct I/O is off.
    fileprivate mutating func flush(final: Bool) throws(FileSystemError) {
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

    /// Tests set this to take the path of a file system that refuses direct writes.
    var refuseDirectWritesForTesting = false
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

    public var description: String {
        switch self {
        case .corruptChunk(let id, let digest): "chunk \(id) on disk hashes to \(digest.short), not what the manifest says"
        case .wrongFileHash(let digest): "the assembled bytes hash to \(digest.short), not the manifest's file hash"
        }
    }
}
