/// How a file of a given size divides into fixed-size chunks.
///
/// Every chunk is `chunkSize` bytes except the last, which holds the remainder.
/// An empty file has no chunks at all.
public struct ChunkLayout: Hashable, Sendable {
    /// The seed's chunk size: 100 KiB.
    public static let defaultChunkSize = 102_400
    /// Bounded so that one chunk plus its header always fits in a frame (docs/PROTOCOL.md).
    public static let maximumChunkSize = 1_048_576

    public let fileSize: Int64
    public let chunkSize: Int

    public init(fileSize: Int64, chunkSize: Int) throws(LayoutError) {
        guard fileSize >= 0 else { throw .negativeFileSize(fileSize) }
        guard chunkSize > 0, chunkSize <= Self.maximumChunkSize else {
            throw .chunkSizeOutOfRange(chunkSize)
        }
        let count = (fileSize + Int64(chunkSize) - 1) / Int64(chunkSize)
        guard count <= Int64(ChunkID.maximumCount) else { throw .tooManyChunks(count) }
        self.fileSize = fileSize
        self.chunkSize = chunkSize
    }

    public var chunkCount: Int {
        Int((fileSize + Int64(chunkSize) - 1) / Int64(chunkSize))
    }

    public var chunkIDs: [ChunkID] {
        (0..<chunkCount).map { ChunkID(UInt32($0)) }
    }

    public func contains(_ id: ChunkID) -> Bool {
        Int(id.rawValue) < chunkCount
    }

    /// The byte offset of a chunk within the file.
    public func offset(of id: ChunkID) -> Int64 {
        Int64(id.rawValue) * Int64(chunkSize)
    }

    /// The exact size a chunk must have; only the last one may be short.
    public func size(of id: ChunkID) -> Int {
        precondition(contains(id), "chunk \(id) is outside a layout of \(chunkCount) chunks")
        let remaining = fileSize - offset(of: id)
        return Int(min(Int64(chunkSize), remaining))
    }
}

public enum LayoutError: Error, Equatable, CustomStringConvertible {
    case negativeFileSize(Int64)
    case chunkSizeOutOfRange(Int)
    case tooManyChunks(Int64)

    public var description: String {
        switch self {
        case .negativeFileSize(let size): "file size \(size) is negative"
        case .chunkSizeOutOfRange(let size):
            "chunk size \(size) is outside 1...\(ChunkLayout.maximumChunkSize) bytes"
        case .tooManyChunks(let count):
            "the file would need \(count) chunks; at most \(ChunkID.maximumCount) are supported"
        }
    }
}
