/// One entry of a folder's manifest: a regular file (with its size and executable bit) or an
/// empty folder. Folders that hold something are implied by their contents and not listed.
public struct TreeEntry: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        case file(size: Int64, executable: Bool)
        case emptyFolder
    }
    public let path: TreePath
    public let kind: Kind

    public init(path: TreePath, kind: Kind) {
        self.path = path
        self.kind = kind
    }

    public var size: Int64 { if case .file(let size, _) = kind { size } else { 0 } }
    public var isFile: Bool { if case .file = kind { true } else { false } }
}

/// A shared folder's entries in canonical order, each checked against the ones before it.
///
/// The order (`TreePath.<`) puts a folder's contents right after it, so every conflict is
/// between neighbours: a duplicate is equal to the entry before it, and a path that is both
/// a file and a folder (or an "empty" folder that holds something) has the entry before it
/// as a proper prefix. A receiver checks entries one at a time as they arrive, keeping only
/// the last, and refuses the manifest at the first bad one (docs/PROTOCOL.md, "Folders").
public struct FileTree: Hashable, Sendable {
    /// More than any release or dataset we know of, and the receiver's memory stays bounded:
    /// at most about 4 KiB of path per entry.
    public static let maximumEntries = 1_000_000

    public private(set) var entries: [TreeEntry] = []
    /// The sum of the files' sizes, bounded by `ChunkLayout.maximumFileSize`.
    public private(set) var totalSize: Int64 = 0

    public init() {}

    /// Entries checked in order, as the owner's scan or a manifest's FILES frames give them.
    public init(_ entries: some Sequence<TreeEntry>) throws(FileTreeError) {
        for entry in entries { try append(entry) }
    }

    /// An entry as an index stores it (`folder_entries`).
    public typealias StoredEntry = (path: String, isFolder: Bool, size: Int64, executable: Bool)

    /// A tree from an index's rows, every path and entry checked again as if it came from
    /// the network: an index is input too.
    public init(stored: [StoredEntry]) throws {
        try self.init(stored.map { row throws -> TreeEntry in
            TreeEntry(path: try TreePath(validating: row.path), kind: row.isFolder ? .emptyFolder : .file(size: row.size, executable: row.executable))
        })
    }

    public var count: Int { entries.count }
    public var files: [TreeEntry] { entries.filter(\.isFile) }

    /// The position of the entry at `path`, by binary search over the canonical order.
    public func index(of path: TreePath) -> Int? {
        var low = 0, high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].path < path { low = middle + 1 } else { high = middle }
        }
        return low < entries.count && entries[low].path == path ? low : nil
    }

    public mutating func append(_ entry: TreeEntry) throws(FileTreeError) {
        guard entries.count < Self.maximumEntries else { throw .tooManyEntries(entries.count + 1) }
        if let previous = entries.last {
            if previous.path == entry.path { throw .duplicate(entry.path) }
            if previous.path.isProperPrefix(of: entry.path) {
                throw previous.isFile ? .fileIsAlsoFolder(previous.path) : .emptyFolderHolds(previous.path, entry.path)
            }
            guard previous.path < entry.path else { throw .outOfOrder(entry.path, after: previous.path) }
        }
        guard entry.size >= 0, entry.size <= ChunkLayout.maximumFileSize - totalSize else {
            throw .tooLarge(entry.path, entry.size)
        }
        totalSize += entry.size
        entries.append(entry)
    }

    /// A refused count, before any entry is read: the header's claim alone.
    public static func checkCount(_ count: Int) throws(FileTreeError) {
        guard count >= 1, count <= maximumEntries else { throw .tooManyEntries(count) }
    }
}

public enum FileTreeError: Error, Equatable, CustomStringConvertible {
    case tooManyEntries(Int)
    case duplicate(TreePath)
    case fileIsAlsoFolder(TreePath)
    case emptyFolderHolds(TreePath, TreePath)
    case outOfOrder(TreePath, after: TreePath)
    case tooLarge(TreePath, Int64)

    public var description: String {
        switch self {
        case .tooManyEntries(let count):
            "a folder of \(count) entries is refused: between 1 and \(FileTree.maximumEntries) are supported"
        case .duplicate(let path): "path \(path.text.debugDescription) is listed twice"
        case .fileIsAlsoFolder(let path): "path \(path.text.debugDescription) is both a file and a folder"
        case .emptyFolderHolds(let folder, let inside):
            "folder \(folder.text.debugDescription) is listed as empty but holds \(inside.text.debugDescription)"
        case .outOfOrder(let path, let previous):
            "path \(path.text.debugDescription) comes after \(previous.text.debugDescription), out of order"
        case .tooLarge(let path, let size):
            "file \(path.text.debugDescription) of \(size) bytes takes the folder past \(ChunkLayout.maximumFileSize) bytes"
        }
    }
}
