import NIOCore
import PeerShareCore
import PeerShareWire

/// The fuzz targets (tools/fuzz). Each reads one input and returns nil, or a description
/// of what went wrong. A trap is a find too: under libFuzzer it ends the process, and
/// libFuzzer saves the input.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// Raw bytes into the frame decoder, alone and behind each side's conversation gate.
    case wire
    /// Structure-aware: frames of every type, each field a boundary value or raw bytes.
    case frames
    /// A whole conversation as one side sees it: HELLO, then MANIFEST and HASHES, SHARE,
    /// and the trading that follows, through the decoder and the checks sessions make.
    case session

    public func run(_ bytes: [UInt8]) -> String? {
        switch self {
        case .wire:
            return Self.decodeEverywhere(bytes)
        case .frames:
            var input = FuzzInput(bytes)
            var builder = FrameBuilder()
            repeat { builder.anyMessage(&input) } while !input.isExhausted && !builder.isFull
            return Self.decodeEverywhere(builder.bytes)
        case .session:
            var input = FuzzInput(bytes)
            return SessionScript.run(&input)
        }
    }

    /// Every frame must re-encode to its own bytes, and the gated decoders must refuse
    /// cleanly or decode the same messages as the plain one.
    static func decodeEverywhere(_ bytes: [UInt8]) -> String? {
        if let mismatch = PeerMessageDecoder.roundTripMismatch(in: bytes) { return "round trip failed: \(mismatch)" }
        for side in [ConversationGate.Side.uploading, .downloading] {
            var decoder = PeerMessageDecoder(gate: ConversationGate(side: side))
            var buffer = ByteBuffer(bytes: bytes)
            while (try? decoder.decodeOne(&buffer)).flatMap({ $0 }) != nil {}
        }
        return nil
    }
}
