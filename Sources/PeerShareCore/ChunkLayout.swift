/// How a file of a given size divides into fixed-size chunks.
///
/// Every chunk is `chunkSize` bytes except the last, which holds the remainder.
/// An empty file has no chunks at all.
public struct ChunkLayout: Hashable, Sendable {
    /// The seed's chunk size: 100 KiB.
    public static let defaultChunkSize = 102_400
    /// Bounded so that one chunk plus its header always fits in a frame (docs/PROTOCOL.md).
    public static let maximumChunkSize = 1_048_576

    /// The largest file a layout can describe: the most chunks of the largest size
    /// (8,388,608,000,000 bytes, about 7.6 TiB).
    public static let maximumFileSize = Int64(ChunkID.maximumCount) * Int64(maximumChunkSize)

    public let fileSize: Int64
    public let chunkSize: Int
    /// ⌈fileSize / chunkSize⌉, at most `ChunkID.maximumCount`.
    public let chunkCount: Int

    /// Both numbers may come from outside (a MANIFEST, an index, a file's size), so the
    /// count is computed without an addition that could overflow: the quotient plus one for
    /// a remainder. `(fileSize + chunkSize - 1) / chunkSize` traps near 2⁶³.
    public init(fileSize: Int64, chunkSize: Int) throws(LayoutError) {
        guard fileSize >= 0 else { throw .negativeFileSize(fileSize) }
        guard chunkSize > 0, chunkSize <= Self.maximumChunkSize else {
            throw .chunkSizeOutOfRange(chunkSize)
        }
        let (whole, rest) = fileSize.quotientAndRemainder(dividingBy: Int64(chunkSize))
        let count = whole + (rest > 0 ? 1 : 0)  // whole ≤ (2⁶³ − 1) / 2 whenever rest > 0
        guard count <= Int64(ChunkID.maximumCount) else { throw .tooManyChunks(count) }
        self.fileSize = fileSize
        self.chunkSize = chunkSize
        self.chunkCount = Int(count)
    }

    public var chunkIDs: [ChunkID] {
        (0..<chunkCount).map { ChunkID(UInt32($0)) }
    }

    public func contains(_ id: ChunkID) -> Bool {
        Int(id.rawValue) < chunkCount
    }

    /// The byte offset of a chunk within the file. At most (2³² − 1) × 2²⁰ < 2⁵³, so
    /// even an ID outside the layout cannot overflow.
    public func offset(of id: ChunkID) -> Int64 {
        Int64(id.rawValue) * Int64(chunkSize)
    }

    /// The exact size a chunk must have; only the last one may be short. The caller checks
    /// `contains` first: an ID from outside is judged before it is used.
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
