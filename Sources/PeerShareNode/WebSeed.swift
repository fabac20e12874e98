import NIOCore
import NIOHTTP1
import PeerShareCore
import PeerShareHTTP
import PeerShareStore

/// BEP 19 web seeding (docs/PROTOCOL.md, "HTTP"): GET and HEAD of `/files/<file name>`, or
/// of `/files/<folder name>/<path>` for each file of a shared folder, whole or one byte
/// range, from the chunks the node holds, with `sendfile`. Nothing but the node's own
/// files is ever read: the path must be one the manifest lists, and the bytes come from the
/// store's chunks.
enum WebSeed {
    static let prefix = "/files/"

    static func respond(to request: HTTPRequest, node: Node) async -> HTTPResponse {
        guard let manifest = await node.manifest, let (size, firstChunk) = target(request.path.dropFirst(prefix.count), in: manifest)
        else { return .notFound }
        var headers = HTTPHeaders([("Accept-Ranges", "bytes")])
        let status: HTTPResponseStatus, first: Int64, last: Int64
        switch ByteRangeRequest(header: request.headers.first(name: "Range"), size: size) {
        case .whole:
            (status, first, last) = (.ok, 0, size - 1)
        case .range(let from, let to):
            (status, first, last) = (.partialContent, from, to)
            headers.add(name: "Content-Range", value: "bytes \(from)-\(to)/\(size)")
        case .unsatisfiable:
            var refusal = HTTPResponse.text(.rangeNotSatisfiable, "range not satisfiable: the file is \(size) bytes")
            refusal.headers.add(name: "Content-Range", value: "bytes */\(size)")
            return refusal
        }
        guard size > 0 else { return HTTPResponse(status: .ok, contentType: "application/octet-stream", body: ByteBuffer(), headers: headers) }
        let chunkSize = Int64(manifest.chunkSize)
        // A folder's file starts on a chunk boundary: its chunks run on from its first.
        let chunks = (firstChunk + Int(first / chunkSize))...(firstChunk + Int(last / chunkSize))
        guard await node.holdsAll(chunks) else {
            // A partial node: BEP 19 clients keep a seed that says come back later.
            var busy = HTTPResponse.text(.serviceUnavailable, "this node does not hold bytes \(first)-\(last) yet")
            busy.headers.add(name: "Retry-After", value: "10")
            return busy
        }
        let metrics = node.metrics
        let body = HTTPResponse.Body.stream(length: last - first + 1) { writer in
            for index in chunks {
                let id = ChunkID(UInt32(index))
                let slice = try await node.openHeldChunk(id, of: manifest)
                let start = Int64(index - firstChunk) * chunkSize
                let from = max(first, start) - start, to = min(last + 1, start + Int64(slice.count)) - start
                try await writer.write(HTTPFile(descriptor: slice.descriptor, offset: slice.offset + from, count: Int(to - from)))
                metrics.webSeedSent.increment(by: to - from)
            }
        }
        return HTTPResponse(status: status, contentType: "application/octet-stream", body: body, headers: headers)
    }

    /// The file a path names: its size and first chunk. A single file is `/files/<name>`; a
    /// folder's files are `/files/<folder name>/<path>`, each segment percent-decoded alone
    /// and the path matched byte for byte against the manifest's (NFC) entries.
    static func target(_ rest: Substring, in manifest: Manifest) -> (size: Int64, firstChunk: Int)? {
        guard let folder = manifest.folder else {
            return percentDecoded(rest) == manifest.fileName ? (manifest.fileSize, 0) : nil
        }
        var segments: [String] = []
        for raw in rest.split(separator: "/", omittingEmptySubsequences: false) {
            guard let segment = percentDecoded(raw) else { return nil }
            segments.append(segment)
        }
        guard segments.count >= 2, segments[0].utf8.elementsEqual(folder.name.utf8),
              let path = try? TreePath(validating: segments.dropFirst().joined(separator: "/")),
              let index = folder.tree.index(of: path), folder.tree.entries[index].isFile
        else { return nil }
        return (folder.tree.entries[index].size, folder.layout.chunks(ofEntry: index).lowerBound)
    }

    /// The path's rest, percent-decoded; nil for a bad escape or a decoded NUL or `/`, which
    /// no file name has.
    static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var utf8 = text.utf8.makeIterator()
        while let byte = utf8.next() {
            guard byte == UInt8(ascii: "%") else { bytes.append(byte); continue }
            guard let high = utf8.next().flatMap(Hex.value(of:)), let low = utf8.next().flatMap(Hex.value(of:)) else { return nil }
            bytes.append(high << 4 | low)
        }
        guard !bytes.contains(0), !bytes.contains(UInt8(ascii: "/")) else { return nil }
        return String(validating: bytes, as: UTF8.self)
    }

}

extension Node {
    /// Whether every chunk of `range` is held (verified and indexed).
    func holdsAll(_ range: ClosedRange<Int>) -> Bool {
        range.allSatisfy { $0 < held.capacity && held.contains(ChunkID(UInt32($0))) }
    }

    /// A held chunk's bytes as an open file range, opened on the I/O threads.
    nonisolated func openHeldChunk(_ id: ChunkID, of manifest: Manifest) async throws -> FileSlice {
        let store = self.store
        return try await io.runIfActive { try store.openForSending(id, of: manifest) }
    }
}
