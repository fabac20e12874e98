/// A set of chunk IDs out of a known count, stored as a bitfield.
///
/// The bit order matches the wire (docs/PROTOCOL.md): chunk 0 is the high bit of byte 0,
/// as in BitTorrent's bitfield message (BEP 3).
public struct ChunkSet: Hashable, Sendable {
    public let capacity: Int
    private var words: [UInt64]
    public private(set) var count: Int

    public init(capacity: Int) {
        precondition(capacity >= 0)
        self.capacity = capacity
        self.words = Array(repeating: 0, count: (capacity + 63) / 64)
        self.count = 0
    }

    public init(capacity: Int, _ ids: some Sequence<ChunkID>) {
        self.init(capacity: capacity)
        for id in ids { insert(id) }
    }

    public static func full(_ capacity: Int) -> ChunkSet {
        ChunkSet(capacity: capacity, (0..<capacity).map { ChunkID(UInt32($0)) })
    }

    public var isEmpty: Bool { count == 0 }
    public var isComplete: Bool { count == capacity }

    public func contains(_ id: ChunkID) -> Bool {
        let i = id.index
        guard i < capacity else { return false }
        return words[i >> 6] & (1 << UInt64(i & 63)) != 0
    }

    @discardableResult
    public mutating func insert(_ id: ChunkID) -> Bool {
        let i = id.index
        precondition(i < capacity, "chunk \(id) is outside a set of \(capacity)")
        let mask: UInt64 = 1 << UInt64(i & 63)
        if words[i >> 6] & mask != 0 { return false }
        words[i >> 6] |= mask
        count += 1
        return true
    }

    @discardableResult
    public mutating func remove(_ id: ChunkID) -> Bool {
        let i = id.index
        guard i < capacity else { return false }
        let mask: UInt64 = 1 << UInt64(i & 63)
        if words[i >> 6] & mask == 0 { return false }
        words[i >> 6] &= ~mask
        count -= 1
        return true
    }

    /// Members in ascending order.
    public var sorted: [ChunkID] {
        var out: [ChunkID] = []
        out.reserveCapacity(count)
        out.append(contentsOf: members)
        return out
    }

    /// Members in ascending order, one at a time: for loops that may stop early, without
    /// building the whole array first (a 1 GiB file has 10,000 chunks).
    public var members: Members { Members(words: words) }

    public struct Members: Sequence, IteratorProtocol {
        fileprivate let words: [UInt64]
        private var wordIndex = 0
        private var bits: UInt64

        fileprivate init(words: [UInt64]) {
            self.words = words
            self.bits = words.first ?? 0
        }

        public mutating func next() -> ChunkID? {
            while bits == 0 {
                wordIndex += 1
                guard wordIndex < words.count else { return nil }
                bits = words[wordIndex]
            }
            let bit = bits.trailingZeroBitCount
            bits &= bits - 1
            return ChunkID(UInt32(wordIndex * 64 + bit))
        }
    }

    /// Members as runs of consecutive IDs, ascending: 0-19, 40, 42-45 as [0...19, 40...40, 42...45].
    public var runs: [ClosedRange<UInt32>] { ChunkID.runs(of: members) }

    /// Chunks of the file that are not in `self`.
    public var complement: ChunkSet {
        ChunkSet.full(capacity).subtracting(self)
    }

    /// Chunks in `self` that are not in `other`.
    public func subtracting(_ other: ChunkSet) -> ChunkSet {
        precondition(capacity == other.capacity)
        var result = self
        var total = 0
        for i in words.indices {
            result.words[i] = words[i] & ~other.words[i]
            total += result.words[i].nonzeroBitCount
        }
        result.count = total
        return result
    }

    // MARK: Wire form

    public static func bitfieldByteCount(capacity: Int) -> Int { (capacity + 7) / 8 }

    public var bitfield: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.bitfieldByteCount(capacity: capacity))
        for id in members {
            bytes[id.index >> 3] |= 0x80 >> UInt8(id.index & 7)
        }
        return bytes
    }

    /// Parses a bitfield; it must be exactly the right length with the spare trailing bits clear.
    public init?(capacity: Int, bitfield bytes: some Collection<UInt8>) {
        guard bytes.count == Self.bitfieldByteCount(capacity: capacity) else { return nil }
        self.init(capacity: capacity)
        for (byteIndex, byte) in bytes.enumerated() where byte != 0 {
            for bit in 0..<8 where byte & (0x80 >> UInt8(bit)) != 0 {
                let i = byteIndex * 8 + bit
                guard i < capacity else { return nil }
                insert(ChunkID(UInt32(i)))
            }
        }
    }
}
