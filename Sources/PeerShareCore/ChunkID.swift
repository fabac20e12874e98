/// The position of a chunk within the file, counted from zero.
public struct ChunkID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    /// A chunk-ID list travels as a bitfield inside one frame, so the count is bounded by the frame size.
    public static let maximumCount = 8 * 1_000_000

    public let rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ value: UInt32) { self.rawValue = value }

    public var index: Int { Int(rawValue) }
    public var description: String { String(rawValue) }

    public static func < (lhs: ChunkID, rhs: ChunkID) -> Bool { lhs.rawValue < rhs.rawValue }
}

extension ChunkID {
    /// Runs of consecutive IDs in ascending `ids`: [0, 1, 2, 5] as [0...2, 5...5].
    public static func runs(of ids: some Sequence<ChunkID>) -> [ClosedRange<UInt32>] {
        var runs: [ClosedRange<UInt32>] = []
        for id in ids {
            if let last = runs.last, last.upperBound &+ 1 == id.rawValue {
                runs[runs.count - 1] = last.lowerBound...id.rawValue
            } else {
                runs.append(id.rawValue...id.rawValue)
            }
        }
        return runs
    }
}
