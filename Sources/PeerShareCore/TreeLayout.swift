/// How a folder's files divide into chunks: each file starts on a chunk boundary (as in
/// BEP 52), so a chunk belongs to exactly one file. File k's chunks are numbered on from the
/// chunks of the files before it in manifest order; empty files and folders have none.
/// docs/PROTOCOL.md ("Folders") says why: a bad or missing chunk names one file, a file is
/// complete when its own chunks are, and one chunk is one `pwrite` or `sendfile` region.
public struct TreeLayout: Hashable, Sendable {
    public struct FileSpan: Hashable, Sendable {
        /// The file's position in `FileTree.entries`.
        public let entryIndex: Int
        public let layout: ChunkLayout
        /// The file's first chunk; its chunks are `firstChunk ..< firstChunk + layout.chunkCount`.
        public let firstChunk: Int
        public var chunkRange: Range<Int> { firstChunk..<(firstChunk + layout.chunkCount) }
    }

    public let chunkSize: Int
    /// Files that have chunks (size > 0), in manifest order.
    public let spans: [FileSpan]
    public let chunkCount: Int
    public let totalSize: Int64
    /// The chunk grid: chunk i at i × chunk size of a stream where each file is padded to a
    /// chunk boundary. Offsets and the count match; sizes are the spans' own (`place(of:)`).
    public let grid: ChunkLayout

    public init(tree: FileTree, chunkSize: Int) throws(LayoutError) {
        var spans: [FileSpan] = []
        var next = 0
        for (index, entry) in tree.entries.enumerated() where entry.size > 0 {
            let layout = try ChunkLayout(fileSize: entry.size, chunkSize: chunkSize)
            // Both terms are at most ChunkID.maximumCount, so the sum cannot overflow.
            guard next + layout.chunkCount <= ChunkID.maximumCount else { throw .tooManyChunks(Int64(next + layout.chunkCount)) }
            spans.append(FileSpan(entryIndex: index, layout: layout, firstChunk: next))
            next += layout.chunkCount
        }
        self.chunkSize = chunkSize
        self.spans = spans
        self.chunkCount = next
        self.totalSize = tree.totalSize
        self.grid = try ChunkLayout(fileSize: Int64(next) * Int64(chunkSize), chunkSize: chunkSize)
    }

    public func contains(_ id: ChunkID) -> Bool { id.index < chunkCount }

    /// The span holding chunk `id`, found by binary search; nil outside the layout.
    public func span(of id: ChunkID) -> FileSpan? {
        guard contains(id) else { return nil }
        var low = 0, high = spans.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if spans[middle].firstChunk <= id.index { low = middle } else { high = middle - 1 }
        }
        return spans[low]
    }

    /// Where chunk `id` lies: its file and its byte offset and size within that file.
    public func place(of id: ChunkID) -> (span: FileSpan, offset: Int64, size: Int)? {
        guard let span = span(of: id) else { return nil }
        let local = ChunkID(UInt32(id.index - span.firstChunk))
        return (span, span.layout.offset(of: local), span.layout.size(of: local))
    }

    /// The chunks of the file at `entryIndex` (empty for empty files and folders).
    public func chunks(ofEntry entryIndex: Int) -> Range<Int> {
        // Spans are in entry order: the first not before `entryIndex`, by binary search.
        var low = 0, high = spans.count
        while low < high {
            let middle = (low + high) / 2
            if spans[middle].entryIndex < entryIndex { low = middle + 1 } else { high = middle }
        }
        return low < spans.count && spans[low].entryIndex == entryIndex ? spans[low].chunkRange : 0..<0
    }
}
