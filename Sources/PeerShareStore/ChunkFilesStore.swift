#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import NIOCore
import PeerShareCore

/// The seed's layout: one file per chunk under `chunks/`, named by its zero-padded ID, and
/// the assembled file beside them once every chunk is held.
///
/// Every path is built from a chunk ID or a checked file name, so nothing is ever written
/// outside the folder. All methods block: call them from a thread pool.
public struct ChunkFilesStore: ChunkStore {
    public let root: String
    public let chunksFolder: String
    public var layout: StorageLayout { .chunkFiles }
    public var assemblyCopiesChunks: Bool { true }

    public init(root: String, create: Bool = true) throws(FileSystemError) {
        self.root = root
        self.chunksFolder = root + "/chunks"
        if create {
            try PosixFiles.makeDirectory(root)
            try PosixFiles.makeDirectory(chunksFolder)
        } else {
            try PosixFiles.checkDirectory(chunksFolder)
        }
    }

    public func path(of id: ChunkID) -> String {
        // Zero-padded so that `ls` lists chunks in file order.
        let digits = String(id.rawValue)
        return chunksFolder + "/" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits + ".chunk"
    }

    /// The chunk ID a file in `chunks/` stands for, or nil if the name is not one of ours.
    public static func chunkID(fromFileName name: String) -> ChunkID? {
        guard name.hasSuffix(".chunk") else { return nil }
        let digits = name.dropLast(6)
        guard digits.count >= 6, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber), let value = UInt32(digits) else { return nil }
        return ChunkID(value)
    }

    public func assembledPath(for manifest: Manifest) -> String { root + "/" + manifest.fileName }

    public func location(of id: ChunkID, in manifest: Manifest) -> (path: String, offset: Int64) { (path(of: id), 0) }

    public func prepare(for manifest: Manifest, assembled: Bool) throws {}

    /// Writes the chunk to a temporary file and renames it into place, so a chunk file under
    /// its final name is always whole. No fsync: `sync` makes a whole batch durable at once.
    public func write(_ id: ChunkID, bytes: ByteBuffer, of manifest: Manifest) throws {
        try write(id, bytes: bytes)
    }

    /// The same, for an owner splitting its source before the manifest exists.
    public func write(_ id: ChunkID, bytes: ByteBuffer) throws {
        let (fd, temporary) = try PosixFiles.createTemporary(in: chunksFolder, tag: "\(id.rawValue)-")
        do {
            try PosixFiles.writeAll(fd, bytes, path: temporary)
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path(of: id)) == 0 else {
            let error = FileSystemError(operation: "cannot rename into", path: path(of: id), errno: errno)
            unlink(temporary)
            throw error
        }
    }

    /// One sync of the file system holding the chunks: every chunk file written so far, and
    /// the folder entries naming them, in one call instead of an fsync each.
    public func sync() throws {
        try PosixFiles.syncFileSystem(containing: chunksFolder)
    }

    /// Opens a chunk file to be sent with `sendfile`, after checking it has the size the
    /// manifest gives: the PIECE's length prefix is written before the file's bytes.
    public func openForSending(_ id: ChunkID, of manifest: Manifest) throws -> FileSlice {
        let path = path(of: id)
        let expected = manifest.size(of: id)
        let fd = try PosixFiles.openForReading(path)
        guard let size = PosixFiles.size(of: fd), size == expected else {
            close(fd)
            throw FileSystemError(operation: "chunk file is not \(expected) bytes:", path: path, errno: EIO)
        }
        return FileSlice(descriptor: fd, offset: 0, count: expected)
    }

    public func read(_ id: ChunkID, of manifest: Manifest) throws -> ByteBuffer {
        let path = path(of: id)
        let fd = try PosixFiles.openForReading(path)
        defer { close(fd) }
        return try PosixFiles.read(fd, offset: 0, count: manifest.size(of: id), path: path)
    }

    // MARK: Assembly

    public func beginAssembly(of manifest: Manifest) throws -> AssemblyDraft {
        // A folder is built in one go at `finish` (FolderBuilder): nothing to stream before.
        manifest.folder == nil ? try beginAssembly(directIO: true) : AssemblyDraft()
    }

    /// Starts the assembled copy; `directIO` false keeps it in the page cache (tests).
    public func beginAssembly(directIO: Bool) throws -> AssemblyDraft {
        AssemblyDraft(output: try DraftFile(in: root, directIO: directIO))
    }

    /// Appends chunks `draft.nextChunk ..< end` from their chunk files, hashing them into the
    /// whole-file hash. The bytes go through the draft's staging buffer and leave it in large
    /// aligned writes; up to one block may stay staged for the next step. On failure the
    /// draft is abandoned.
    public func append(to draft: inout AssemblyDraft, upTo end: Int, of manifest: Manifest) throws {
        if manifest.folder != nil {
            draft.nextChunk = end
            return
        }
        do {
            while draft.nextChunk < end {
                let id = ChunkID(UInt32(draft.nextChunk))
                try stage(id, expectedSize: manifest.size(of: id), into: &draft)
                draft.nextChunk += 1
            }
            try draft.output?.flush(final: false)
        } catch {
            abandon(draft)
            throw error
        }
    }

    /// Reads one chunk file into the staging buffer (flushing it whenever it fills) and
    /// hashes what it read.
    private func stage(_ id: ChunkID, expectedSize: Int, into draft: inout AssemblyDraft) throws {
        guard var output = draft.output else { return }
        let path = path(of: id)
        let fd = try PosixFiles.openForReading(path)
        defer { close(fd) }
        var remaining = expectedSize
        while remaining > 0 {
            if output.staging.room == 0 { try output.flush(final: false) }
            let room = UnsafeMutableRawBufferPointer(start: output.staging.base + output.staging.filled, count: min(remaining, output.staging.room))
            let n = try PosixFiles.read(fd, into: room, path: path)
            guard n == room.count else { throw FileSystemError(operation: "chunk file is short:", path: path, errno: EIO) }
            draft.hasher.update(bufferPointer: UnsafeRawBufferPointer(room))
            output.staging.filled += n
            remaining -= n
        }
        draft.output = output
    }

    /// Checks the whole-file hash and makes the copy durable under the file's name (fsync,
    /// rename, fsync of the folder). Each chunk was verified when it arrived, so only the
    /// whole file is hashed; if that fails, the chunks are re-hashed to name the culprit.
    /// The draft is closed either way.
    public func finish(_ draft: AssemblyDraft, of manifest: Manifest) throws -> Digest32 {
        if let folder = manifest.folder {
            let digest = try FolderBuilder(root: root, folder: folder).build(expected: manifest.fileHash) { self.path(of: $0) }
            guard digest == manifest.fileHash else { try blameChunk(of: manifest, whole: digest) }
            return digest
        }
        let whole = Digest32(draft.hasher.finalize())
        guard var output = draft.output else { throw AssemblyError.wrongFileHash(whole) }
        guard draft.nextChunk == manifest.chunkCount, whole == manifest.fileHash else {
            abandon(draft)
            try blameChunk(of: manifest, whole: whole)
        }
        do {
            try output.flush(final: true)
            try PosixFiles.fsync(output.fd, path: output.temporary)
        } catch {
            abandon(draft)
            throw error
        }
        close(output.fd)
        let path = assembledPath(for: manifest)
        guard rename(output.temporary, path) == 0 else {
            let error = FileSystemError(operation: "cannot rename into", path: path, errno: errno)
            unlink(output.temporary)
            throw error
        }
        try PosixFiles.fsyncDirectory(root)
        return whole
    }

    public func abandon(_ draft: AssemblyDraft) {
        draft.output?.abandon()
    }

    /// Concatenates every chunk into the file's name in one go (tests; the node assembles a
    /// few chunks at a time while they arrive).
    public func assemble(_ manifest: Manifest) throws -> Digest32 {
        var draft = try beginAssembly(of: manifest)
        try append(to: &draft, upTo: manifest.chunkCount, of: manifest)
        return try finish(draft, of: manifest)
    }
}
