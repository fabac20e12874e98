import NIOCore
import PeerShareCore

/// Splits the byte stream into length-prefixed frames and parses each into a `PeerMessage`.
///
/// The length is checked against `WireLimits.maximumFrameLength` as soon as its four bytes
/// arrive, before any payload is buffered, so a hostile length cannot make us allocate.
public struct PeerMessageDecoder: ByteToMessageDecoder {
    public typealias InboundOut = PeerMessage

    private enum State {
        case waitingForLength
        case waitingForBody(length: Int)
    }

    private var state = State.waitingForLength
    private let maximumFrameLength: Int
    /// Which messages the conversation accepts next; nil decodes any message (tests, tools).
    private var gate: ConversationGate?

    public init(maximumFrameLength: Int = WireLimits.maximumFrameLength, gate: ConversationGate? = nil) {
        self.maximumFrameLength = maximumFrameLength
        self.gate = gate
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let message = try decodeOne(&buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(message))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while let message = try decodeOne(&buffer) {
            context.fireChannelRead(Self.wrapInboundOut(message))
        }
        // Bytes left over at EOF are a frame the peer never finished: an error, not silence.
        if buffer.readableBytes > 0 || { if case .waitingForBody = state { true } else { false } }() {
            let buffered = buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: buffered)
            state = .waitingForLength
            throw WireError.truncatedAtEOF(bufferedBytes: buffered)
        }
        return .needMoreData
    }

    /// The decoding state machine, usable without a channel (tests, fuzzing).
    public mutating func decodeOne(_ buffer: inout ByteBuffer) throws(WireError) -> PeerMessage? {
        if case .waitingForLength = state {
            guard let length = buffer.readInteger(as: UInt32.self) else { return nil }
            guard length > 0 else { throw .emptyFrame }
            guard length <= maximumFrameLength else { throw .frameTooLarge(length) }
            state = .waitingForBody(length: Int(length))
        }
        guard case .waitingForBody(let length) = state, buffer.readableBytes >= length else { return nil }
        var body = buffer.readSlice(length: length)!
        state = .waitingForLength
        let type = body.readInteger(as: UInt8.self)!
        // The type is judged against the conversation before a byte of the payload is parsed.
        if let kind = PeerMessage.Kind(rawValue: type) { try gate?.admit(kind) }
        let message = try PeerMessage.decode(type: type, payload: &body)
        try gate?.passed(message)
        return message
    }
}

/// What a session hands its channel: a message, or a PIECE whose chunk bytes go from the
/// chunk file to the socket with `sendfile`, never read into memory.
public enum OutboundFrame: Sendable {
    case message(PeerMessage)
    case pieceFromFile(ChunkID, ChunkFile)
}

/// An open chunk file on its way to the socket as a PIECE's payload. Its file is closed
/// when the last reference goes: after the channel has written it, or dropped it unwritten
/// because the connection closed. Whoever opens it checks its size first, since the frame's
/// length is taken from it.
public final class ChunkFile: Sendable {
    public let region: FileRegion

    /// Takes ownership of `descriptor`; the chunk is `size` bytes from `offset`.
    public init(descriptor: CInt, offset: Int64 = 0, size: Int) {
        region = FileRegion(fileHandle: NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: descriptor), readerIndex: Int(offset), endIndex: Int(offset) + size)
    }

    deinit { try? region.fileHandle.close() }
}

/// Writes each frame as a length prefix followed by its body. A PIECE goes out as its
/// 9-byte head followed by the chunk bytes as they are: a buffer, which the socket write
/// gathers with the head into one `writev`, or a file region, sent with `sendfile`. The
/// 100 KiB are never copied into a frame buffer.
public final class PeerMessageWriter: ChannelOutboundHandler {
    public typealias OutboundIn = OutboundFrame
    public typealias OutboundOut = IOData

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .message(let message):
            var head = context.channel.allocator.buffer(capacity: WireLimits.lengthFieldBytes + min(message.bodyLength, 64))
            if let payload = message.encodeFrameHead(into: &head) {
                context.write(wrapOutboundOut(.byteBuffer(head)), promise: nil)
                context.write(wrapOutboundOut(.byteBuffer(payload)), promise: promise)
            } else {
                context.write(wrapOutboundOut(.byteBuffer(head)), promise: promise)
            }
        case .pieceFromFile(let id, let file):
            var head = context.channel.allocator.buffer(capacity: PeerMessage.pieceHeadLength)
            PeerMessage.writePieceHead(id, payloadLength: file.region.readableBytes, into: &head)
            context.write(wrapOutboundOut(.byteBuffer(head)), promise: nil)
            let written = context.eventLoop.makePromise(of: Void.self)
            // Holds the file open until the region is written or failed.
            written.futureResult.whenComplete { _ in withExtendedLifetime(file) {} }
            written.futureResult.cascade(to: promise)
            context.write(wrapOutboundOut(.fileRegion(file.region)), promise: written)
        }
    }
}

extension PeerMessage {
    public func encodeFrame(into out: inout ByteBuffer) {
        out.reserveCapacity(minimumWritableBytes: WireLimits.lengthFieldBytes + bodyLength)
        out.writeInteger(UInt32(bodyLength))
        encodeBody(into: &out)
    }

    /// Writes the frame, except that a PIECE's chunk bytes are returned instead of copied
    /// behind its head; they must follow it on the wire.
    public func encodeFrameHead(into out: inout ByteBuffer) -> ByteBuffer? {
        guard case .piece(let id, let data) = self else {
            encodeFrame(into: &out)
            return nil
        }
        Self.writePieceHead(id, payloadLength: data.readableBytes, into: &out)
        return data
    }

    /// A PIECE frame up to its chunk bytes: length prefix, type, chunk ID.
    static let pieceHeadLength = WireLimits.lengthFieldBytes + 1 + 4

    static func writePieceHead(_ id: ChunkID, payloadLength: Int, into out: inout ByteBuffer) {
        out.writeInteger(UInt32(1 + 4 + payloadLength))
        out.writeInteger(Kind.piece.rawValue)
        out.writeInteger(id.rawValue)
    }

    /// The complete frame, length prefix included.
    public var frame: ByteBuffer {
        var buffer = ByteBuffer()
        encodeFrame(into: &buffer)
        return buffer
    }
}

extension PeerMessageDecoder {
    /// Decodes every complete frame in `bytes`, pairing each message with the exact bytes it
    /// came from, and counts the bytes of an unfinished frame at the end. The randomised test
    /// and the fuzz target use it to check that re-encoding a message gives its bytes back.
    public static func frames(in bytes: [UInt8]) throws(WireError) -> (frames: [(message: PeerMessage, bytes: ArraySlice<UInt8>)], leftover: Int) {
        var decoder = PeerMessageDecoder()
        var buffer = ByteBuffer(bytes: bytes)
        var frames: [(message: PeerMessage, bytes: ArraySlice<UInt8>)] = []
        var start = buffer.readerIndex
        while let message = try decoder.decodeOne(&buffer) {
            frames.append((message, bytes[start..<buffer.readerIndex]))
            start = buffer.readerIndex
        }
        return (frames, bytes.count - start)
    }

    /// Decodes `bytes` and checks each frame re-encodes to exactly the bytes it came from.
    /// Returns a description of the first mismatch, or nil; malformed input is not a
    /// mismatch (it throws a typed `WireError`, which is the correct outcome).
    public static func roundTripMismatch(in bytes: [UInt8]) -> String? {
        guard let decoded = try? frames(in: bytes) else { return nil }
        for (message, original) in decoded.frames {
            let again = Array(message.frame.readableBytesView)
            if again != Array(original) {
                return "\(message.kind) of \(original.count) bytes re-encodes to \(again.count) different bytes"
            }
        }
        return nil
    }
}
