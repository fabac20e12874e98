/// The fuzzer's bytes read as a sequence of decisions, for the structure-aware targets.
///
/// Random bytes rarely spell a 64-bit field near 2⁶³: mutation flips a bit or copies a few
/// bytes at a time. Here one byte picks a whole boundary value instead, so every field of a
/// frame visits the edges of its range, the protocol's limits and the limits ± 1 as often
/// as anything else. Once the input runs out, every decision reads zero: the shortest
/// input still builds a well-formed conversation.
public struct FuzzInput {
    private var bytes: ArraySlice<UInt8>

    public init(_ bytes: some Collection<UInt8>) {
        self.bytes = ArraySlice(bytes)
    }

    public var isExhausted: Bool { bytes.isEmpty }

    public mutating func byte() -> UInt8 {
        bytes.popFirst() ?? 0
    }

    public mutating func bool() -> Bool {
        byte() & 1 == 1
    }

    /// A number in 0..<count (count ≥ 1), from one byte or two.
    public mutating func index(below count: Int) -> Int {
        precondition(count >= 1)
        let raw = count <= 256 ? Int(byte()) : Int(byte()) << 8 | Int(byte())
        return raw % count
    }

    public mutating func pick<T>(_ options: [T]) -> T {
        options[index(below: options.count)]
    }

    /// `count` raw bytes, zeros once the input runs out.
    public mutating func raw(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in byte() }
    }

    /// A value for a field of `width` bytes. Most choices are a boundary; the rest read
    /// the field's bytes as they are (big-endian, as on the wire), so that mutation and the
    /// comparison-guided dictionary can still steer them.
    public mutating func field(width: Int, near hints: [UInt64] = []) -> UInt64 {
        let mask: UInt64 = width >= 8 ? .max : (1 << UInt64(width * 8)) - 1
        let choice = byte()
        switch choice {
        case 0..<160:
            let table = Boundaries.values + hints.flatMap { [$0 &- 1, $0, $0 &+ 1] }
            return table[Int(choice) % table.count] & mask
        default:
            return raw(width).reduce(0) { $0 << 8 | UInt64($1) } & mask
        }
    }
}

/// Integers at the edges of the types and of the protocol's limits (docs/PROTOCOL.md).
public enum Boundaries {
    public static let limits: [UInt64] = [
        64,          // HELLO name bytes
        253,         // advertised and PEERS host bytes
        255,         // file-name bytes
        16_384,      // hashes per HASHES
        102_400,     // default chunk size
        1_000_000,   // bitfield bytes of the largest count
        1_048_576,   // largest chunk size
        1_048_581,   // largest frame
        8_000_000,   // largest chunk count
    ]

    public static let values: [UInt64] = {
        var values: [UInt64] = [0, 1, 2, 7, 8, 9, 31, 32, 33, 127, 128, 255, 256, 65_535, 65_536]
        for limit in limits { values += [limit - 1, limit, limit + 1] }
        values += [
            UInt64(Int32.max), 1 << 31, UInt64(UInt32.max), 1 << 32,
            UInt64(Int64.max) - 1_048_576, UInt64(Int64.max) - 102_400, UInt64(Int64.max) - 1,
            UInt64(Int64.max), 1 << 63, UInt64.max - 1, UInt64.max,
            8_000_000 * 1_048_576, 8_000_000 * 1_048_576 + 1, 8_000_000 * 102_400, 8_000_000 * 102_400 + 1,
        ]
        return values
    }()
}
