#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import PeerShareCore

/// Where a node keeps the bytes of its chunks (docs/STORAGE.md, "Two layouts").
public enum StorageLayout: String, CaseIterable, Sendable, CustomStringConvertible {
    /// The seed's procedure: one file per chunk under `chunks/`, plus the assembled file.
    case chunkFiles = "chunk-files"
    /// What BitTorrent clients do: every chunk written in place into one file of the
    /// file's size, which takes the file's name once complete. The owner serves its source.
    case singleFile = "single-file"

    public var description: String { rawValue }
}

/// A range of a file to send with `sendfile`. The receiver owns the open descriptor.
public struct FileSlice: Sendable {
    public let descriptor: CInt
    public let offset: Int64
    public let count: Int
}

/// The seam between a node and its disk: where chunk bytes go, how they come back for an
/// upload, how they become durable, what start-up finds, and how the complete file is made.
/// Two implementations: `ChunkFilesStore` and `SingleFileStore`. `NodeStorage` pairs one
/// with the index. Every method blocks, so each is called on a thread pool, never on an
/// event loop or the cooperative pool.
public protocol ChunkStore: Sendable {
    var layout: StorageLayout { get }
    /// The node's folder: the summary file, the index by default, and (for chunk files)
    /// `chunks/` live here.
    var root: String { get }

    /// Readies the store once the manifest is known. `assembled` says the complete file was
    /// already made in an earlier run.
    func prepare(for manifest: Manifest, assembled: Bool) throws
    /// Writes a chunk's verified bytes and returns once the write has returned: from then on
    /// the kernel holds them, and only a machine crash before the next `sync` can lose them.
    func write(_ id: ChunkID, bytes: ByteBuffer, of manifest: Manifest) throws
    /// Makes every write that returned before this call durable.
    func sync() throws
    /// The chunk's bytes as an open file range, for `sendfile`; its size was checked.
    func openForSending(_ id: ChunkID, of manifest: Manifest) throws -> FileSlice
    /// The chunk's bytes.
    func read(_ id: ChunkID, of manifest: Manifest) throws -> ByteBuffer
    /// Where a chunk's bytes are, as a path and an offset (peershare-inspect verify).
    func location(of id: ChunkID, in manifest: Manifest) -> (path: String, offset: Int64)

    /// Compares the folder with the index at start-up, before `prepare`, repairing what it
    /// can (see `StartupCheck`). `rehash` names the indexed chunks whose bytes must be hashed
    /// again; `assembled` says whether the index records the complete file as made.
    func reconcile(_ manifest: Manifest, indexed: ChunkSet, rehash: ChunkSet, assembled: Bool) -> StartupCheck

    /// True when assembly writes a copy of the chunks and hashes it (chunk files), so the node
    /// feeds it in steps while chunks arrive; false when the chunks already are the file
    /// (a single file), so assembly only makes it durable under its name once all are held.
    var assemblyCopiesChunks: Bool { get }
    /// The complete file, built while chunks arrive (see `AssemblyDraft`).
    func beginAssembly(of manifest: Manifest) throws -> AssemblyDraft
    func append(to draft: inout AssemblyDraft, upTo end: Int, of manifest: Manifest) throws
    /// Checks the copy's whole-file hash (if `assemblyCopiesChunks`) and makes the file durable
    /// under its name; returns the digest the file was checked against.
    func finish(_ draft: AssemblyDraft, of manifest: Manifest) throws -> Digest32
    func abandon(_ draft: AssemblyDraft)
    /// Where the complete file is once assembled.
    func assembledPath(for manifest: Manifest) -> String
}

extension ChunkStore {
    public var summaryPath: String { root + "/" + summaryFileName }

    /// The summary file: the IDs of the chunks held, one per line, ascending. Written to a
    /// temporary file and renamed, so it is never seen half-written; not fsynced, since every
    /// start writes it afresh from the index (a machine crash can at worst leave an older one).
    public func writeSummary(_ ids: [ChunkID]) throws {
        var text = ""
        text.reserveCapacity(ids.count * 7)
        for id in ids { text += "\(id.rawValue)\n" }
        try PosixFiles.writeAtomically(summaryPath, directory: root, durably: false) { fd, path in
            try PosixFiles.writeAll(fd, ByteBuffer(string: text), path: path)
        }
    }

    /// Whether the assembled file is still there at its size; for a folder, every entry at
    /// its size (start-up's cheap check; `peershare-inspect verify` checks the bytes).
    public func assembledLooksIntact(_ manifest: Manifest) -> Bool {
        if let folder = manifest.folder { return FolderBuilder(root: root, folder: folder).looksComplete() }
        return PosixFiles.fileSize(assembledPath(for: manifest)) == manifest.fileSize
    }

    /// Deletes the temporary files an interrupted write left in `folders`.
    func removeStaleTemporaries(in folders: [String]) -> [String] {
        var removed: [String] = []
        for folder in folders {
            for name in PosixFiles.listDirectory(folder) where name.hasPrefix(PosixFiles.temporaryPrefix) {
                // A folder's staging tree (FolderBuilder) is a folder: removed without following links.
                if unlink(folder + "/" + name) != 0, errno == EISDIR { try? StagedTree.remove(folder + "/" + name) }
                removed.append(name)
            }
        }
        return removed
    }
}

public let summaryFileName = "summary.txt"

/// Opens a node's store: `layout` in `root`. An owner's single-file store serves its source
/// file where it is (`source`); a peer's keeps its file in `root`. Unless `create`, the
/// folders must exist already and nothing is made (a reader such as peershare-inspect).
public func makeChunkStore(_ layout: StorageLayout, root: String, source: String? = nil, create: Bool = true) throws -> any ChunkStore {
    switch layout {
    case .chunkFiles: try ChunkFilesStore(root: root, create: create)
    case .singleFile: try SingleFileStore(root: root, source: source, create: create)
    }
}
