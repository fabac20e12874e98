import Crypto

/// A SHA-256 digest as 32 raw bytes, comparable and printable as hex.
public struct Digest32: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 32
    public let bytes: [UInt8]

    public init?(bytes: some Sequence<UInt8>) {
        let array = Array(bytes)
        guard array.count == Self.byteCount else { return nil }
        self.bytes = array
    }

    public init?(hex: String) {
        guard hex.utf8.count == 64 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var iterator = hex.utf8.makeIterator()
        while let high = iterator.next(), let low = iterator.next() {
            guard let h = Hex.value(of: high), let l = Hex.value(of: low) else { return nil }
            out.append(h << 4 | l)
        }
        self.bytes = out
    }

    public init(_ digest: SHA256.Digest) {
        self.bytes = Array(digest)
    }

    public static func of(_ data: some Sequence<UInt8>) -> Digest32 {
        var hasher = SHA256()
        hasher.update(data: Array(data))
        return Digest32(hasher.finalize())
    }

    public var hex: String { Hex.encode(bytes) }

    public var description: String { hex }
    /// The first 12 hex digits, enough to tell chunks apart in a log line.
    public var short: String { String(hex.prefix(12)) }

}
