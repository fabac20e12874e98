#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOConcurrencyHelpers
import NIOCore
import PeerShareCore

/// BitTorrent's layout: a peer writes every verified chunk in place, at its offset, into one
/// file of the file's size. The file is preallocated under a temporary name
/// (`.peershare-partial` in the folder) and takes the file's name once every chunk is in
/// (each was checked on arrival: docs/STORAGE.md, "Hash once"). No byte is written or hashed
/// twice, and the disk holds the file once. An owner serves its source file where it is,
/// with no copy.
public final class SingleFileStore: ChunkStore {
    public let root: String
    public var layout: StorageLayout { .singleFile }
    public var assemblyCopiesChunks: Bool { false }
    /// The owner's source file, served in place; nil for a peer.
    public let source: String?
    /// The file a peer fills, until it takes the file's name.
    public var partialPath: String { root + "/" + Self.partialName }
    public static let partialName = ".peershare-partial"

    private struct State {
        /// The partial file, open for writing (a peer that has not assembled yet).
        var writer: Int32?
        var assembled = false
        /// A shared folder's files (SingleFileStore+Folder.swift).
        var placement: FolderPlacement?
    }
    private let state = NIOLockedValueBox(State())

    var isAssembled: Bool { state.withLockedValue { $0.assembled } }
    var currentPlacement: FolderPlacement? { state.withLockedValue { $0.placement } }
    func setPlacement(_ placement: FolderPlacement) { state.withLockedValue { $0.placement = placement } }

    public init(root: String, source: String?, create: Bool = true) throws(FileSystemError) {
        if create { try PosixFiles.makeDirectory(root) } else { try PosixFiles.checkDirectory(root) }
        self.root = root
        self.source = source.map(PosixFiles.absolutePath)
    }

    deinit {
        if let fd = state.withLockedValue({ $0.writer }) { close(fd) }
    }

    public func assembledPath(for manifest: Manifest) -> String { source ?? root + "/" + manifest.fileName }

    /// Where the bytes are now: the source, the partial file, or (assembled) the file itself.
    private func dataPath(_ manifest: Manifest) -> String {
        if let source { return source }
        return state.withLockedValue { $0.assembled } ? assembledPath(for: manifest) : partialPath
    }

    public func location(of id: ChunkID, in manifest: Manifest) -> (path: String, offset: Int64) {
        if manifest.folder != nil { return folderLocation(of: id, in: manifest) }
        return (dataPath(manifest), manifest.layout.offset(of: id))
    }

    /// Says whether the file was assembled, without touching the disk: for a reader such as
    /// peershare-inspect, which must not create or allocate anything.
    public func noteAssembled(_ assembled: Bool) {
        state.withLockedValue { $0.assembled = assembled }
    }

    /// A peer that has not assembled yet opens (creating if needed) its partial file at the
    /// file's full size. A peer whose complete file lost chunks (damaged, cut short) moves it
    /// back to the temporary name while they are fetched again. An owner checks its source
    /// still has the indexed size.
    public func prepare(for manifest: Manifest, assembled: Bool) throws {
        if let folder = manifest.folder { return try prepareFolder(folder, of: manifest, assembled: assembled) }
        if let source {
            let size = try PosixFiles.status(source).size
            guard size == manifest.fileSize else {
                throw FileSystemError(operation: "the source is \(size) bytes, not the indexed \(manifest.fileSize):", path: source, errno: EINVAL)
            }
            return
        }
        try state.withLockedValue { state in
            state.assembled = assembled
            guard !assembled, state.writer == nil else { return }
            let complete = assembledPath(for: manifest)
            if PosixFiles.fileSize(partialPath) == nil, PosixFiles.fileSize(complete) != nil, rename(complete, partialPath) != 0 {
                throw FileSystemError(operation: "cannot move back to \(partialPath):", path: complete, errno: errno)
            }
            state.writer = try PosixFiles.openPreallocated(partialPath, size: manifest.fileSize)
        }
    }

    private func writer() throws(FileSystemError) -> Int32 {
        guard let fd = state.withLockedValue({ $0.writer }) else {
            throw FileSystemError(operation: "not open for writing:", path: partialPath, errno: EBADF)
        }
        return fd
    }

    public func write(_ id: ChunkID, bytes: ByteBuffer, of manifest: Manifest) throws {
        if manifest.folder != nil { return try writeFolderChunk(id, bytes: bytes, of: manifest) }
        try PosixFiles.writeAll(try writer(), bytes, at: manifest.layout.offset(of: id), path: partialPath)
    }

    /// fdatasync of the partial file: its data, and its size if that changed.
    public func sync() throws {
        if let placement = currentPlacement { try placement.sync() }
        guard let fd = state.withLockedValue({ $0.writer }) else { return }
        guard fdatasync(fd) == 0 else { throw FileSystemError(operation: "cannot sync", path: partialPath, errno: errno) }
    }

    /// Opens the file for one upload, after checking it still reaches past the chunk (an
    /// owner's source can be truncated under it).
    public func openForSending(_ id: ChunkID, of manifest: Manifest) throws -> FileSlice {
        if manifest.folder != nil { return try openFolderChunk(id, of: manifest) }
        let path = dataPath(manifest)
        let offset = manifest.layout.offset(of: id), count = manifest.size(of: id)
        let fd = try PosixFiles.openForReading(path)
        guard let size = PosixFiles.size(of: fd), Int64(size) >= offset + Int64(count) else {
            close(fd)
            throw FileSystemError(operation: "file ends before chunk \(id):", path: path, errno: EIO)
        }
        return FileSlice(descriptor: fd, offset: offset, count: count)
    }

    public func read(_ id: ChunkID, of manifest: Manifest) throws -> ByteBuffer {
        if manifest.folder != nil { return try readFolderChunk(id, of: manifest) }
        return try PosixFiles.read(path: dataPath(manifest), offset: manifest.layout.offset(of: id), count: manifest.size(of: id))
    }

    // MARK: Assembly: the chunks are in place, each checked on arrival.

    public func beginAssembly(of manifest: Manifest) throws -> AssemblyDraft { AssemblyDraft() }

    /// Nothing to copy and nothing to hash again: each chunk was checked against the manifest
    /// before it was written, and the manifest against the file ID (docs/STORAGE.md, "Hash
    /// once"). `--recheck` and `peershare-inspect verify` re-hash the file in place.
    public func append(to draft: inout AssemblyDraft, upTo end: Int, of manifest: Manifest) throws {
        draft.nextChunk = max(draft.nextChunk, end)
    }

    /// Makes the file durable under its name: fsync, rename, fsync of the folder. Returns
    /// the file ID its chunks were checked against.
    public func finish(_ draft: AssemblyDraft, of manifest: Manifest) throws -> Digest32 {
        guard draft.nextChunk == manifest.chunkCount else {
            throw AssemblyError.incomplete(draft.nextChunk, of: manifest.chunkCount)
        }
        guard source == nil else { return manifest.fileID }
        if manifest.folder != nil {
            try finishFolder(of: manifest)
            return manifest.fileID
        }
        try state.withLockedValue { state in
            guard let fd = state.writer else { return }
            try PosixFiles.fsync(fd, path: partialPath)
            let path = assembledPath(for: manifest)
            guard rename(partialPath, path) == 0 else { throw FileSystemError(operation: "cannot rename into", path: path, errno: errno) }
            try PosixFiles.fsyncDirectory(root)
            close(fd)
            state.writer = nil
            state.assembled = true
        }
        return manifest.fileID
    }

    public func abandon(_ draft: AssemblyDraft) {}
}
