/// Everything a peer needs to know about the shared file: name, layout and every hash.
///
/// The whole-file hash doubles as the swarm's file ID: two peers with the same
/// file ID are sharing the same bytes.
public struct Manifest: Hashable, Sendable {
    public let fileName: String
    public let layout: ChunkLayout
    public let chunkHashes: [Digest32]
    public let fileHash: Digest32

    public init(fileName: String, layout: ChunkLayout, chunkHashes: [Digest32], fileHash: Digest32) throws(ManifestError) {
        try FileName.validate(fileName)
        guard chunkHashes.count == layout.chunkCount else {
            throw .hashCountMismatch(expected: layout.chunkCount, got: chunkHashes.count)
        }
        self.fileName = fileName
        self.layout = layout
        self.chunkHashes = chunkHashes
        self.fileHash = fileHash
    }

    public var fileID: Digest32 { fileHash }
    public var chunkCount: Int { layout.chunkCount }
    public var fileSize: Int64 { layout.fileSize }
    public var chunkSize: Int { layout.chunkSize }

    public func hash(of id: ChunkID) -> Digest32 { chunkHashes[id.index] }
    public func size(of id: ChunkID) -> Int { layout.size(of: id) }
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
