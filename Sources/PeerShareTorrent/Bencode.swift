/// Bencoding (BEP 3): the encoding of every .torrent. Integers, byte strings, lists, and
/// dictionaries whose keys are byte strings written in sorted order (raw bytes compared),
/// which is what makes an info dictionary hash the same in every client.
public indirect enum Bencode: Equatable, Sendable {
    case integer(Int64)
    case bytes([UInt8])
    case list([Bencode])
    case dictionary([String: Bencode])

    public static func string(_ text: String) -> Bencode { .bytes(Array(text.utf8)) }

    public var encoded: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    public func encode(into out: inout [UInt8]) {
        switch self {
        case .integer(let value):
            out += Array("i\(value)e".utf8)
        case .bytes(let bytes):
            out += Array("\(bytes.count):".utf8)
            out += bytes
        case .list(let items):
            out.append(UInt8(ascii: "l"))
            for item in items { item.encode(into: &out) }
            out.append(UInt8(ascii: "e"))
        case .dictionary(let entries):
            out.append(UInt8(ascii: "d"))
            for (key, value) in entries.sorted(by: { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }) {
                Bencode.string(key).encode(into: &out)
                value.encode(into: &out)
            }
            out.append(UInt8(ascii: "e"))
        }
    }

    public subscript(key: String) -> Bencode? {
        guard case .dictionary(let entries) = self else { return nil }
        return entries[key]
    }
}

/// Reads bencoded bytes back (tests, and checking what was written), bounded: nesting at
/// most 32 deep, lengths and integers checked before use, nothing after the value.
public struct BencodeDecoder {
    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    private let bytes: [UInt8]
    private var index = 0
    private static let maxDepth = 32

    public static func decode(_ bytes: [UInt8]) throws(Invalid) -> Bencode {
        var decoder = BencodeDecoder(bytes: bytes)
        let value = try decoder.value(depth: 0)
        guard decoder.index == bytes.count else { throw Invalid(description: "bytes after the value at offset \(decoder.index)") }
        return value
    }

    private init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    private mutating func value(depth: Int) throws(Invalid) -> Bencode {
        guard depth < Self.maxDepth else { throw Invalid(description: "nested deeper than \(Self.maxDepth)") }
        guard index < bytes.count else { throw Invalid(description: "ends early") }
        switch bytes[index] {
        case UInt8(ascii: "i"):
            index += 1
            let value = try number(until: UInt8(ascii: "e"), signed: true)
            return .integer(value)
        case UInt8(ascii: "l"):
            index += 1
            var items: [Bencode] = []
            while try peek() != UInt8(ascii: "e") { items.append(try value(depth: depth + 1)) }
            index += 1
            return .list(items)
        case UInt8(ascii: "d"):
            index += 1
            var entries: [String: Bencode] = [:]
            var previous: [UInt8]?
            while try peek() != UInt8(ascii: "e") {
                let key = try byteString()
                if let previous, !previous.lexicographicallyPrecedes(key) { throw Invalid(description: "dictionary keys out of order or repeated") }
                previous = key
                entries[String(decoding: key, as: UTF8.self)] = try value(depth: depth + 1)
            }
            index += 1
            return .dictionary(entries)
        default:
            return .bytes(try byteString())
        }
    }

    private func peek() throws(Invalid) -> UInt8 {
        guard index < bytes.count else { throw Invalid(description: "ends early") }
        return bytes[index]
    }

    private mutating func byteString() throws(Invalid) -> [UInt8] {
        let length = try number(until: UInt8(ascii: ":"), signed: false)
        guard length <= Int64(bytes.count - index) else { throw Invalid(description: "a string of \(length) bytes runs past the end") }
        defer { index += Int(length) }
        return Array(bytes[index..<index + Int(length)])
    }

    /// Digits up to `terminator`, at most 18 of them so the value fits before any arithmetic.
    private mutating func number(until terminator: UInt8, signed: Bool) throws(Invalid) -> Int64 {
        var negative = false
        if signed, index < bytes.count, bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        var value: Int64 = 0
        var digits = 0
        while index < bytes.count, bytes[index] != terminator {
            let byte = bytes[index]
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte), digits < 18 else { throw Invalid(description: "a bad number at offset \(index)") }
            value = value * 10 + Int64(byte - UInt8(ascii: "0"))
            digits += 1
            index += 1
        }
        guard digits > 0, index < bytes.count else { throw Invalid(description: "a bad number at offset \(index)") }
        index += 1
        return negative ? -value : value
    }
}
