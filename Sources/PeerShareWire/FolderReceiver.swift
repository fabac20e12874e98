import PeerShareCore

/// Collects a folder's manifest on a download connection: FOLDER, its FILES batches, then
/// its HASHES (docs/PROTOCOL.md, "Folders"). Each entry is checked against the one before it
/// as it arrives (`FileTree.append`), so the first bad path ends the manifest; memory grows
/// with what was received, never with the counts a remote declared.
public struct FolderReceiver: Sendable {
    public let header: FolderHeader
    public private(set) var tree = FileTree()
    private var hashesCursor: HashesCursor?
    private var hashes: [Digest32] = []

    public init(_ header: FolderHeader) {
        self.header = header
    }

    public var entriesComplete: Bool { tree.count == Int(header.entryCount) }
    public var isComplete: Bool { hashesCursor?.isComplete ?? false }

    /// Adds one FILES batch; once the last entry is in, checks the totals the header claimed.
    public mutating func add(first: UInt32, _ entries: [TreeEntry]) throws(WireError) {
        guard Int(first) == tree.count else {
            throw .malformed(.files, "the batch starts at entry \(first), but the folder continues at entry \(tree.count)")
        }
        guard entries.count <= Int(header.entryCount) - tree.count else {
            throw .malformed(.files, "the batch of \(entries.count) entries from \(first) runs past the entry count \(header.entryCount)")
        }
        for entry in entries {
            do { try tree.append(entry) } catch { throw .malformed(.files, error.description) }
        }
        guard entriesComplete else { return }
        guard tree.totalSize == header.totalSize else {
            throw .malformed(.folder, "the entries add up to \(tree.totalSize) bytes, not the \(header.totalSize) announced")
        }
        let layout: TreeLayout
        do { layout = try TreeLayout(tree: tree, chunkSize: Int(header.chunkSize)) } catch { throw .malformed(.folder, error.description) }
        guard layout.chunkCount == Int(header.chunkCount) else {
            throw .malformed(.folder, "the entries make \(layout.chunkCount) chunks, not the \(header.chunkCount) announced")
        }
        hashesCursor = HashesCursor(expected: layout.chunkCount)
    }

    public mutating func add(first: UInt32, _ batch: [Digest32]) throws(WireError) {
        guard var cursor = hashesCursor else { throw .notAllowed(.hashes, "before the folder's last FILES") }
        try cursor.advance(first: first, count: batch.count)
        hashesCursor = cursor
        hashes.append(contentsOf: batch)
    }

    public func manifest() throws(WireError) -> FolderManifest {
        guard isComplete else { throw .malformed(.hashes, "the folder manifest ended before its last hash") }
        do {
            return try FolderManifest(name: header.name, tree: tree, chunkSize: Int(header.chunkSize), chunkHashes: hashes,
                                      contentHash: header.contentHash)
        } catch {
            throw .malformed(.folder, error.description)
        }
    }
}

extension FolderManifest {
    /// Bytes of entries per FILES frame: well inside a frame, and a few thousand entries each.
    public static let filesBatchBytes = 256 * 1024

    /// What an owner sends in MANIFEST's place: FOLDER, the FILES batches, the HASHES.
    public func messages() -> [PeerMessage] {
        var messages: [PeerMessage] = [.folder(FolderHeader(
            totalSize: tree.totalSize, chunkSize: UInt32(layout.chunkSize), chunkCount: UInt32(chunkCount),
            entryCount: UInt32(tree.count), contentHash: contentHash, name: name))]
        var batch: [TreeEntry] = []
        var batchBytes = 0
        var first = 0
        for (index, entry) in tree.entries.enumerated() {
            let length = FolderCoding.entryLength(entry)
            if !batch.isEmpty, batchBytes + length > Self.filesBatchBytes {
                messages.append(.files(first: UInt32(first), batch))
                batch = []
                batchBytes = 0
                first = index
            }
            batch.append(entry)
            batchBytes += length
        }
        if !batch.isEmpty { messages.append(.files(first: UInt32(first), batch)) }
        return messages + PeerMessage.hashBatches(chunkHashes)
    }
}

extension PeerMessage {
    /// Chunk hashes as HASHES messages, in order, at most `WireLimits.maximumHashesPerMessage`
    /// each: what follows a MANIFEST, or a FOLDER's last FILES.
    public static func hashBatches(_ hashes: [Digest32]) -> [PeerMessage] {
        stride(from: 0, to: hashes.count, by: WireLimits.maximumHashesPerMessage).map { start in
            .hashes(first: UInt32(start), Array(hashes[start..<min(start + WireLimits.maximumHashesPerMessage, hashes.count)]))
        }
    }
}
