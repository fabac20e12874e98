import NIOCore

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

    public init(maximumFrameLength: Int = WireLimits.maximumFrameLength) {
        self.maximumFrameLength = maximumFrameLength
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
        return try PeerMessage.decode(type: type, payload: &body)
    }
}

/// Writes each message as a length prefix followed by its body.
public struct PeerMessageEncoder: MessageToByteEncoder {
    public typealias OutboundIn = PeerMessage

    public init() {}

    public func encode(data: PeerMessage, out: inout ByteBuffer) throws {
        data.encodeFrame(into: &out)
    }
}

extension PeerMessage {
    public func encodeFrame(into out: inout ByteBuffer) {
        out.reserveCapacity(minimumWritableBytes: WireLimits.lengthFieldBytes + bodyLength)
        out.writeInteger(UInt32(bodyLength))
        encodeBody(into: &out)
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
