import NIOCore
import NIOHTTP1

/// A streamed body came out shorter or longer than it said.
struct BodyLengthMismatch: Error {}

/// One connection's requests and responses, in order, until either side closes it.
struct HTTPExchange<Responder: HTTPResponder> {
    let responder: Responder

    func serve(_ connection: HTTPListener.Connection) async {
        // A reset or a guard's close ends the connection, and only it: nothing to report.
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var sentBody = false
            var finished = false
            for try await part in inbound where !finished {
                switch part {
                case .head(let started):
                    head = started
                    sentBody = false
                case .body:
                    // Nothing served here takes a body; it is not kept, and refused below.
                    sentBody = true
                case .end:
                    guard let request = head else { return }
                    head = nil
                    let (response, keepOpen) = await answer(request, sentBody: sentBody)
                    try await write(response, to: request, keepOpen: keepOpen, outbound)
                    if !keepOpen {
                        // A lingering close (see RequestGuard): FIN now, the rest read and dropped.
                        outbound.finish()
                        finished = true
                    }
                }
            }
        }
    }

    /// Answers one request, over the connection cap, and closes.
    func refuse(_ connection: HTTPListener.Connection, _ response: HTTPResponse) async {
        try? await connection.executeThenClose { inbound, outbound in
            try await write(response, to: nil, keepOpen: false, outbound)
            // A lingering close (see RequestGuard), bounded by its deadline.
            outbound.finish()
            for try await _ in inbound {}
        }
    }

    private func answer(_ head: HTTPRequestHead, sentBody: Bool) async -> (HTTPResponse, keepOpen: Bool) {
        if sentBody { return (.text(.payloadTooLarge, "requests here carry no body"), false) }
        guard head.method == .GET || head.method == .HEAD else {
            var refusal = HTTPResponse.text(.methodNotAllowed, "only GET and HEAD")
            refusal.headers.add(name: "Allow", value: "GET, HEAD")
            return (refusal, head.isKeepAlive)
        }
        let request = HTTPRequest(method: head.method, uri: head.uri, headers: head.headers)
        return (await responder.respond(to: request), head.isKeepAlive)
    }

    private func write(_ response: HTTPResponse, to request: HTTPRequestHead?, keepOpen: Bool,
                       _ outbound: NIOAsyncChannelOutboundWriter<HTTPOutboundPart>) async throws {
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: "\(response.body.length)")
        headers.replaceOrAdd(name: "Connection", value: keepOpen ? "keep-alive" : "close")
        let head = HTTPResponseHead(version: request?.version ?? .http1_1, status: response.status, headers: headers)
        guard request?.method != .HEAD else {
            try await outbound.write(contentsOf: [.part(.head(head)), .part(.end(nil))])
            return
        }
        switch response.body {
        case .bytes(let bytes):
            var parts: [HTTPOutboundPart] = [.part(.head(head))]
            if bytes.readableBytes > 0 { parts.append(.part(.body(.byteBuffer(bytes)))) }
            parts.append(.part(.end(nil)))
            try await outbound.write(contentsOf: parts)
        case .stream(let length, let producer):
            try await outbound.write(.part(.head(head)))
            let writer = HTTPBodyWriter(outbound: outbound)
            try await producer(writer)
            // A body that does not match its Content-Length cannot be followed by another
            // response: the connection ends here.
            guard writer.count == length else { throw BodyLengthMismatch() }
            try await outbound.write(.part(.end(nil)))
        }
    }
}
