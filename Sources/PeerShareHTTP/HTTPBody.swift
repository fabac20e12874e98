import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// An open file range on its way to the socket with `sendfile`, never read into memory.
/// Its descriptor is closed when the last reference goes: after the channel has written
/// it, or dropped it unwritten because the connection closed.
public final class HTTPFile: Sendable {
    let region: FileRegion

    /// Takes ownership of `descriptor`; the range is `count` bytes from `offset`.
    public init(descriptor: CInt, offset: Int64, count: Int) {
        region = FileRegion(fileHandle: NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: descriptor),
                            readerIndex: Int(offset), endIndex: Int(offset) + count)
    }

    public var count: Int { region.readableBytes }

    deinit { try? region.fileHandle.close() }
}

/// What a connection's task writes: a response part, or a file range of a body.
public enum HTTPOutboundPart: Sendable {
    case part(HTTPServerResponsePart)
    case file(HTTPFile)
}

/// Turns a file range into a body part whose file stays open until the socket has taken
/// it (the write's promise holds the last reference).
final class FileBodyWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPOutboundPart
    typealias OutboundOut = HTTPServerResponsePart

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .part(let part):
            context.write(wrapOutboundOut(part), promise: promise)
        case .file(let file):
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in withExtendedLifetime(file) {} }
            written.futureResult.cascade(to: promise)
            context.write(wrapOutboundOut(.body(.fileRegion(file.region))), promise: written)
        }
    }
}

@available(*, unavailable)
extension FileBodyWriter: Sendable {}

/// Hands a streamed body's pieces to the connection, counting them: a body shorter or
/// longer than its `Content-Length` ends the connection instead of corrupting the next
/// response.
public struct HTTPBodyWriter: Sendable {
    let outbound: NIOAsyncChannelOutboundWriter<HTTPOutboundPart>
    let written = NIOLockedValueBox<Int64>(0)

    public func write(_ bytes: ByteBuffer) async throws {
        written.withLockedValue { $0 += Int64(bytes.readableBytes) }
        try await outbound.write(.part(.body(.byteBuffer(bytes))))
    }

    public func write(_ file: HTTPFile) async throws {
        written.withLockedValue { $0 += Int64(file.count) }
        try await outbound.write(.file(file))
    }

    var count: Int64 { written.withLockedValue { $0 } }
}
