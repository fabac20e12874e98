import NIOCore
import NIOHTTP1

/// One connection's requests and responses, in order, until either side closes it.
struct HTTPExchange<Responder: HTTPResponder> {
    let responder: Responder

    func serve(_ connection: HTTPListener.Connection) async {
        // A reset or a guard's close ends the connection, and only it: nothing to report.
        try? await connection.executeThenClose { inbound, outbound in
            var head: HTTPRequestHead?
            var sentBody = false
            for try await part in inbound {
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
                    if !keepOpen { return }
                }
            }
        }
    }

    /// Answers one request, over the connection cap, and closes.
    func refuse(_ connection: HTTPListener.Connection, _ response: HTTPResponse) async {
        try? await connection.executeThenClose { _, outbound in
            try await write(response, to: nil, keepOpen: false, outbound)
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
                       _ outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>) async throws {
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: "\(response.body.readableBytes)")
        headers.replaceOrAdd(name: "Connection", value: keepOpen ? "keep-alive" : "close")
        let version = request?.version ?? .http1_1
        var parts: [HTTPServerResponsePart] = [.head(HTTPResponseHead(version: version, status: response.status, headers: headers))]
        if request?.method != .HEAD, response.body.readableBytes > 0 { parts.append(.body(.byteBuffer(response.body))) }
        parts.append(.end(nil))
        try await outbound.write(contentsOf: parts)
    }
}
