import Foundation

/// A file's or folder's place inside a shared folder: one or more components, each a valid
/// `FileName` in NFC, joined by `/` on the wire. Never absolute, never `.`/`..`, never empty;
/// its bytes are what a peer will create under `--dir/<tree name>/`, so each rule here stands
/// between a manifest from the network and the peer's file system (docs/PROTOCOL.md, "Folders").
public struct TreePath: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// Deeper than any real release or dataset; bounds the work per path.
    public static let maximumDepth = 64
    /// Linux's PATH_MAX: no path longer than this could be opened in one call anyway.
    public static let maximumBytes = 4_096

    public let components: [String]

    /// Checks `text` as a path from outside: `a/b/c`, in NFC, every component a valid name.
    public init(validating text: String) throws(TreePathError) {
        guard !text.isEmpty else { throw .init(text, "it is empty") }
        guard text.utf8.count <= Self.maximumBytes else {
            throw .init(text, "it is \(text.utf8.count) bytes, over \(Self.maximumBytes)")
        }
        guard text.utf8.first != UInt8(ascii: "/") else { throw .init(text, "it is absolute") }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard parts.count <= Self.maximumDepth else {
            throw .init(text, "it is \(parts.count) levels deep, over \(Self.maximumDepth)")
        }
        for part in parts {
            if part.isEmpty { throw .init(text, "it has an empty component (a doubled or trailing /)") }
            let quoted = TreePathError.clipped(part, to: 60).debugDescription
            do { try FileName.validate(part) } catch { throw .init(text, "component \(quoted): \(error.reason)") }
            guard Self.isNFC(part) else { throw .init(text, "component \(quoted) is not in Unicode NFC") }
        }
        self.components = parts
    }

    /// A path built from components already checked (the owner's scan normalises and checks them).
    init(checkedComponents: [String]) { self.components = checkedComponents }

    public var text: String { components.joined(separator: "/") }
    public var description: String { text }
    public var depth: Int { components.count }

    /// Whether `self` is a folder that holds `other` somewhere below it.
    public func isProperPrefix(of other: TreePath) -> Bool {
        components.count < other.components.count && zip(components, other.components).allSatisfy { Self.sameBytes($0, $1) }
    }

    /// Component by component, each by its UTF-8 bytes: a folder's contents follow it at
    /// once, so a file that is also a folder shows up in neighbouring entries (`FileTree`).
    public static func < (lhs: TreePath, rhs: TreePath) -> Bool {
        for (left, right) in zip(lhs.components, rhs.components) where !sameBytes(left, right) {
            return left.utf8.lexicographicallyPrecedes(right.utf8)
        }
        return lhs.components.count < rhs.components.count
    }

    /// Byte equality: Swift's `==` on strings is canonical equivalence, which would call an
    /// NFD name equal to its NFC twin.
    public static func == (lhs: TreePath, rhs: TreePath) -> Bool {
        lhs.components.count == rhs.components.count && zip(lhs.components, rhs.components).allSatisfy { sameBytes($0, $1) }
    }
    public func hash(into hasher: inout Hasher) {
        for component in components { hasher.combine(Array(component.utf8)); hasher.combine(0xFF as UInt8) }
    }

    static func sameBytes(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

    /// A name's NFC form; an owner's names may be NFD on disk (macOS writes them so).
    public static func nfc(_ name: String) -> String { name.precomposedStringWithCanonicalMapping }
    public static func isNFC(_ name: String) -> Bool { sameBytes(nfc(name), name) }
}

public struct TreePathError: Error, Equatable, CustomStringConvertible {
    public let path: String
    public let reason: String
    init(_ path: String, _ reason: String) {
        // Cut: the path came from outside and may be 10,000 bytes of anything.
        self.path = Self.clipped(path, to: 120)
        self.reason = reason
    }

    static func clipped(_ text: String, to bytes: Int) -> String {
        text.utf8.count > bytes ? String(decoding: Array(text.utf8.prefix(bytes)), as: UTF8.self) + "…" : text
    }
    public var description: String { "path \(path.debugDescription) is refused: \(reason)" }
}

extension ManifestError {
    /// The reason alone, for messages that name the thing themselves.
    public var reason: String {
        switch self {
        case .badFileName(_, let reason): reason
        default: description
        }
    }
}
