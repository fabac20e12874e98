import Crypto

/// Everything a peer needs to know about the shared file: name, layout and every hash.
///
/// The swarm's file ID is the SHA-256 of the layout and every chunk hash (`contentID`), as a
/// BitTorrent info hash covers its piece hashes: a peer that checks the manifest against the
/// ID, and each chunk against the manifest as it arrives, has checked every byte of the file
/// once. Two peers with the same file ID are sharing the same bytes. The whole file's SHA-256
/// (`fileHash`) travels with it, for people and for the chunk-files layout's copy check.
///
/// A shared folder is a manifest too (`folder`): its name is the folder's, its file ID the
/// folder ID, its file hash the content hash, its size the files' total. Its chunks keep one
/// number space, and `layout` is then the chunk grid: chunk i at i × chunk size in a stream
/// where each file is padded to a chunk boundary (as BEP 47's padding files do); only the
/// sizes differ, and `size(of:)` gives each chunk's own.
public struct Manifest: Hashable, Sendable {
    public let fileName: String
    public let layout: ChunkLayout
    public let chunkHashes: [Digest32]
    public let fileHash: Digest32
    /// The swarm's file ID (see above).
    public let fileID: Digest32
    /// The folder's entries and where each file's chunks lie; nil for a single file.
    public let folder: FolderManifest?

    public init(fileName: String, layout: ChunkLayout, chunkHashes: [Digest32], fileHash: Digest32) throws(ManifestError) {
        try FileName.validate(fileName)
        guard chunkHashes.count == layout.chunkCount else {
            throw .hashCountMismatch(expected: layout.chunkCount, got: chunkHashes.count)
        }
        self.fileName = fileName
        self.layout = layout
        self.chunkHashes = chunkHashes
        self.fileHash = fileHash
        self.fileID = Self.contentID(layout: layout, chunkHashes: chunkHashes)
        self.folder = nil
    }

    /// A shared folder's manifest.
    public init(folder: FolderManifest) {
        self.fileName = folder.name
        self.layout = folder.layout.grid
        self.chunkHashes = folder.chunkHashes
        self.fileHash = folder.contentHash
        self.fileID = folder.folderID
        self.folder = folder
    }

    /// SHA-256 of "PSHR-ID2", the file size (8 bytes) and chunk size (4 bytes), big-endian,
    /// then every chunk hash in order (docs/PROTOCOL.md, "The file ID").
    public static func contentID(layout: ChunkLayout, chunkHashes: [Digest32]) -> Digest32 {
        var hasher = SHA256()
        var head = Array("PSHR-ID2".utf8)
        head += withUnsafeBytes(of: UInt64(layout.fileSize).bigEndian, Array.init)
        head += withUnsafeBytes(of: UInt32(layout.chunkSize).bigEndian, Array.init)
        hasher.update(data: head)
        for hash in chunkHashes { hasher.update(data: hash.bytes) }
        return Digest32(hasher.finalize())
    }
    public var chunkCount: Int { layout.chunkCount }
    public var fileSize: Int64 { folder?.tree.totalSize ?? layout.fileSize }
    public var chunkSize: Int { layout.chunkSize }
    public var chunkIDs: [ChunkID] { layout.chunkIDs }

    public func hash(of id: ChunkID) -> Digest32 { chunkHashes[id.index] }
    /// The caller checks `contains` first, as for `ChunkLayout.size(of:)`.
    public func size(of id: ChunkID) -> Int {
        guard let folder else { return layout.size(of: id) }
        return folder.layout.place(of: id).map(\.size) ?? layout.size(of: id)
    }
    public func contains(_ id: ChunkID) -> Bool { layout.contains(id) }

    /// Checks received bytes against the manifest: right size, right SHA-256.
    public func verify(_ id: ChunkID, bytes: some Sequence<UInt8>, count: Int) -> ChunkVerdict {
        guard contains(id) else { return .unknownChunk }
        guard count == size(of: id) else { return .wrongSize(expected: size(of: id), got: count) }
        let digest = Digest32.of(bytes)
        return digest == hash(of: id) ? .verified(digest) : .wrongHash(got: digest)
    }
}

public enum ChunkVerdict: Equatable, Sendable {
    case verified(Digest32)
    case unknownChunk
    case wrongSize(expected: Int, got: Int)
    case wrongHash(got: Digest32)
}

public enum ManifestError: Error, Equatable, CustomStringConvertible {
    case badFileName(String, reason: String)
    case hashCountMismatch(expected: Int, got: Int)

    public var description: String {
        switch self {
        case .badFileName(let name, let reason): "file name \(name.debugDescription) is refused: \(reason)"
        case .hashCountMismatch(let expected, let got): "manifest lists \(got) chunk hashes for \(expected) chunks"
        }
    }
}

/// The only file name we will ever create from a manifest: a single path component.
public enum FileName {
    public static let maximumBytes = 255

    public static func validate(_ name: String) throws(ManifestError) {
        if name.isEmpty { throw .badFileName(name, reason: "it is empty") }
        if name.utf8.count > maximumBytes { throw .badFileName(name, reason: "it is over \(maximumBytes) bytes") }
        if name == "." || name == ".." { throw .badFileName(name, reason: "it names a directory") }
        if name.utf8.contains(UInt8(ascii: "/")) || name.utf8.contains(UInt8(ascii: "\\")) {
            throw .badFileName(name, reason: "it holds a path separator")
        }
        if name.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) {
            throw .badFileName(name, reason: "it holds a NUL or control character")
        }
        if name.hasPrefix(".peershare") {
            throw .badFileName(name, reason: "the prefix .peershare is reserved for PeerShare's own files")
        }
    }
}
