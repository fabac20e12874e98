import Crypto

/// Everything a peer needs to rebuild a shared folder: its name, entries, chunk layout and
/// every chunk hash (docs/PROTOCOL.md, "Folders"). A node carries it inside a `Manifest`.
public struct FolderManifest: Hashable, Sendable {
    public let name: String
    public let tree: FileTree
    public let layout: TreeLayout
    public let chunkHashes: [Digest32]
    /// SHA-256 of the files' bytes concatenated in manifest order.
    public let contentHash: Digest32
    /// The swarm's ID, over the entries and every chunk hash (see `folderID(...)`).
    public let folderID: Digest32

    public init(name: String, tree: FileTree, chunkSize: Int, chunkHashes: [Digest32], contentHash: Digest32) throws(FolderManifestError) {
        do { try FileName.validate(name) } catch { throw .badName(error) }
        guard TreePath.isNFC(name) else { throw .badName(.badFileName(name, reason: "it is not in Unicode NFC")) }
        let layout: TreeLayout
        do { layout = try TreeLayout(tree: tree, chunkSize: chunkSize) } catch { throw .badLayout(error) }
        guard chunkHashes.count == layout.chunkCount else { throw .hashCountMismatch(expected: layout.chunkCount, got: chunkHashes.count) }
        self.name = name
        self.tree = tree
        self.layout = layout
        self.chunkHashes = chunkHashes
        self.contentHash = contentHash
        self.folderID = Self.folderID(tree: tree, chunkSize: chunkSize, chunkHashes: chunkHashes)
    }

    public var chunkCount: Int { layout.chunkCount }

    public typealias StoredEntry = FileTree.StoredEntry

    /// A folder manifest from an index's rows, every path and entry checked again as if it
    /// came from the network: an index is input too.
    public init(name: String, chunkSize: Int, chunkHashes: [Digest32], contentHash: Digest32, stored: [StoredEntry]) throws {
        try self.init(name: name, tree: try FileTree(stored: stored), chunkSize: chunkSize, chunkHashes: chunkHashes, contentHash: contentHash)
    }

    /// SHA-256 of "PSHR-TREE1", the chunk size (4) and entry count (4), each entry's flags
    /// (1), size (8), path length (2) and path, then every chunk hash; numbers big-endian.
    public static func folderID(tree: FileTree, chunkSize: Int, chunkHashes: [Digest32]) -> Digest32 {
        var hasher = SHA256()
        var head = Array("PSHR-TREE1".utf8)
        head += withUnsafeBytes(of: UInt32(truncatingIfNeeded: chunkSize).bigEndian, Array.init)
        head += withUnsafeBytes(of: UInt32(truncatingIfNeeded: tree.count).bigEndian, Array.init)
        hasher.update(data: head)
        for entry in tree.entries { hasher.update(data: entryBytes(entry)) }
        for hash in chunkHashes { hasher.update(data: hash.bytes) }
        return Digest32(hasher.finalize())
    }

    /// An entry as FILES carries it: flags, size, path length, path.
    public static func entryBytes(_ entry: TreeEntry) -> [UInt8] {
        let path = Array(entry.path.text.utf8)
        var bytes: [UInt8] = [entry.flags]
        bytes += withUnsafeBytes(of: UInt64(entry.size).bigEndian, Array.init)
        bytes += withUnsafeBytes(of: UInt16(truncatingIfNeeded: path.count).bigEndian, Array.init)
        return bytes + path
    }

    /// The entry a chunk belongs to: the file a damaged or missing chunk names.
    public func entry(of id: ChunkID) -> TreeEntry? {
        layout.span(of: id).map { tree.entries[$0.entryIndex] }
    }
}

extension TreeEntry {
    /// FILES's flags: 0x01 executable, 0x02 an empty folder.
    public static let executableFlag: UInt8 = 0x01
    public static let emptyFolderFlag: UInt8 = 0x02

    public var flags: UInt8 {
        switch kind {
        case .file(_, let executable): executable ? Self.executableFlag : 0
        case .emptyFolder: Self.emptyFolderFlag
        }
    }
}

public enum FolderManifestError: Error, Equatable, CustomStringConvertible {
    case badName(ManifestError)
    case badLayout(LayoutError)
    case hashCountMismatch(expected: Int, got: Int)

    public var description: String {
        switch self {
        case .badName(let error): "folder \(error.description)"
        case .badLayout(let error): error.description
        case .hashCountMismatch(let expected, let got): "folder manifest lists \(got) chunk hashes for \(expected) chunks"
        }
    }
}
