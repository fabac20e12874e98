import PeerShareCore

/// Arithmetic on numbers read from an index. Every column comes from outside: a damaged or
/// hostile index can hold Int64.min or Int64.max anywhere, and Swift traps on overflow. So
/// sums saturate, differences say when they do not fit, and conversions are checked.
enum Bounded {
    /// `later - earlier`, or nil when it is not an Int64 (a report then shows "-").
    static func difference(_ later: Int64, _ earlier: Int64) -> Int64? {
        let (difference, overflow) = later.subtractingReportingOverflow(earlier)
        return overflow ? nil : difference
    }

    /// A computed value as an Int64 (rounded), or nil when it is not finite or too large.
    static func int64(_ value: Double) -> Int64? {
        Int64(exactly: value.rounded())
    }

    /// A chunk ID from a row as an index, when it can name a chunk at all
    /// (0 ..< ChunkID.maximumCount): only then may it be counted past or used as a position.
    static func chunkIndex(_ id: Int64) -> Int? {
        (0..<Int64(ChunkID.maximumCount)).contains(id) ? Int(id) : nil
    }
}

extension Int64 {
    /// `self + other`, held at Int64.max or Int64.min instead of trapping.
    func saturatingAdd(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }
}
