import NIOCore
import NIOHTTP1

/// Sits between the HTTP decoder and the connection's task: closes a connection that is too
/// slow to send a request head or to take its response (`HTTPLimits`), and answers a request
/// the decoder refused (431 for headers over the limits, 400 for anything else malformed)
/// before the connection closes.
final class RequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let limits: HTTPLimits
    private var deadline: Scheduled<Void>?
    /// Request heads read whose responses have not been fully written.
    private var unanswered = 0
    private var responseStarted = false
    /// Set once a malformed request was answered: the rest of what the client sends is dropped.
    private var refused = false

    init(limits: HTTPLimits) {
        self.limits = limits
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(limits.headTimeout, context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(limits.headTimeout, context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            unanswered += 1
            arm(limits.responseTimeout, context: context)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head: responseStarted = true
        case .body: break
        case .end:
            responseStarted = false
            unanswered = max(0, unanswered - 1)
            arm(unanswered > 0 ? limits.responseTimeout : limits.headTimeout, context: context)
        }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // After a refusal the decoder reports every further read as an error: nothing to add.
        guard !refused else { return }
        guard let parseError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        refused = true
        // A response half written cannot be followed by another: the close says it all.
        guard !responseStarted else {
            context.close(promise: nil)
            return
        }
        let status: HTTPResponseStatus = parseError == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
        let body = ByteBuffer(string: status == .badRequest ? "malformed request\n" : "request headers over the limit\n")
        let headers = HTTPHeaders([("Connection", "close"), ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "\(body.readableBytes)")])
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        // A lingering close: the answer, then a FIN, while what the client still sends is
        // read and dropped. Closing outright with its bytes unread would send a reset, which
        // can destroy the answer before the client reads it. The deadline ends it for good.
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(mode: .output, promise: nil) }
        arm(limits.headTimeout, context: context)
    }

    /// The connection closes unless the next step happens within `timeout`.
    private func arm(_ timeout: TimeAmount, context: ChannelHandlerContext) {
        deadline?.cancel()
        let channel = context.channel
        deadline = context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
    }
}

@available(*, unavailable)
extension RequestGuard: Sendable {}
