import NIOCore
import NIOHTTP1
import PeerShareCore
import PeerShareHTTP
import PeerShareStore

/// BEP 19 web seeding (docs/PROTOCOL.md, "HTTP"): GET and HEAD of `/files/<file name>`,
/// whole or one byte range, from the chunks the node holds, with `sendfile`. Nothing but the
/// node's own file is ever read: the name must be the manifest's, and the bytes come from
/// the store's chunks.
enum WebSeed {
    static let prefix = "/files/"

    static func respond(to request: HTTPRequest, node: Node) async -> HTTPResponse {
        guard let manifest = await node.manifest,
              let name = percentDecoded(request.path.dropFirst(prefix.count)), name == manifest.fileName
        else { return .notFound }
        let size = manifest.fileSize
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
        let chunks = Int(first / chunkSize)...Int(last / chunkSize)
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
                let start = Int64(index) * chunkSize
                let from = max(first, start) - start, to = min(last + 1, start + Int64(slice.count)) - start
                try await writer.write(HTTPFile(descriptor: slice.descriptor, offset: slice.offset + from, count: Int(to - from)))
                metrics.webSeedSent.increment(by: to - from)
            }
        }
        return HTTPResponse(status: status, contentType: "application/octet-stream", body: body, headers: headers)
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
