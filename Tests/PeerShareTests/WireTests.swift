import Foundation
import NIOCore
import NIOEmbedded
import NIOTestUtils
import PeerShareFuzzing
import Testing
@testable import PeerShareCore
@testable import PeerShareWire

/// One of each message, for round trips and the decoder verifier.
let sampleMessages: [PeerMessage] = {
    let digest = Digest32.of(Array("chunk".utf8))
    return [
        .hello(Hello(role: .peer, fileID: digest, name: "peer3")),
        .hello(Hello(role: .owner, fileID: Hello.unknownFileID, name: "owner")),
        .hello(Hello(role: .peer, fileID: digest, name: "peer4", listenPort: 7004, advertisedHost: "192.168.1.5", findsNeighbours: true)),
        .hello(Hello(version: 2, role: .peer, fileID: digest, name: "old")),
        .getPeers(wanted: 4),
        .peers([]),
        .peers([PeerAddress(name: "peer1", endpoint: Endpoint(host: "10.0.0.1", port: 7001)),
                PeerAddress(name: "peer2", endpoint: Endpoint(host: "fe80::1%eth0", port: 65_535)),
                PeerAddress(name: "peer3", endpoint: Endpoint(host: "node-3.example.org", port: 1))]),
        .manifest(ManifestHeader(fileSize: 2_621_457, chunkSize: 102_400, chunkCount: 26, fileHash: digest, fileName: "movie.mkv")),
        .manifest(ManifestHeader(fileSize: 0, chunkSize: 102_400, chunkCount: 0, fileHash: digest, fileName: "empty")),
        .hashes(first: 0, [digest, digest, digest]),
        .share(bitfield: [0b1111_0000]),
        .chunkList(bitfield: [0xff, 0x80]),
        .chunkList(bitfield: []),
        .have(ChunkID(17)),
        .request(ChunkID(0)),
        .reject(ChunkID(4_000_000)),
        .keepAlive,
        .piece(ChunkID(25), ByteBuffer(bytes: Array(repeating: 0xab, count: 17))),
        .piece(ChunkID(3), ByteBuffer(bytes: (0..<102_400).map { UInt8(truncatingIfNeeded: $0) })),
    ]
}()

@Suite("Wire protocol: frames and messages")
struct WireTests {
    @Test("every message re-encodes to the bytes it was decoded from")
    func roundTrip() throws {
        for message in sampleMessages {
            var frame = message.frame
            let original = frame
            var decoder = PeerMessageDecoder()
            let decoded = try #require(try decoder.decodeOne(&frame))
            #expect(decoded == message)
            #expect(decoded.frame == original)
            #expect(frame.readableBytes == 0)
        }
    }

    @Test("the decoder handles whole, split and byte-by-byte input (NIO's verifier)")
    func verifier() throws {
        // Byte-by-byte feeding is quadratic in frame size, so the full-size PIECE is left to roundTrip.
        let pairs = sampleMessages.filter { $0.bodyLength < 20_000 }.map { ($0.frame, [$0]) }
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) { PeerMessageDecoder() }
    }

    @Test("the channel writer puts exactly each message's frame on the wire, a PIECE's chunk bytes as a buffer of their own")
    func writer() throws {
        let channel = EmbeddedChannel(handler: PeerMessageWriter())
        defer { _ = try? channel.finish() }
        for message in sampleMessages {
            try channel.writeOutbound(OutboundFrame.message(message))
            var written: [ByteBuffer] = []
            while let data = try channel.readOutbound(as: IOData.self) {
                guard case .byteBuffer(let buffer) = data else { Issue.record("a message became a file region"); continue }
                written.append(buffer)
            }
            var wire = ByteBuffer()
            for buffer in written { wire.writeImmutableBuffer(buffer) }
            #expect(wire == message.frame, "\(message.kind)")
            if case .piece(_, let data) = message {
                #expect(written.count == 2 && written[1] == data, "a PIECE is its 9-byte head, then the chunk bytes untouched")
            } else {
                #expect(written.count == 1)
            }
        }
    }

    @Test("a PIECE sent from a chunk file is the same frame, and the file is closed once written")
    func writerFromFile() throws {
        let bytes = (0..<102_400).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let path = NSTemporaryDirectory() + "peershare-writer-\(UUID().uuidString).chunk"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let channel = EmbeddedChannel(handler: PeerMessageWriter())
        defer { _ = try? channel.finish() }

        var file: ChunkFile? = ChunkFile(descriptor: open(path, O_RDONLY), size: bytes.count)
        let handle = try #require(file).region.fileHandle
        try channel.writeOutbound(OutboundFrame.pieceFromFile(ChunkID(3), try #require(file)))
        file = nil
        guard case .byteBuffer(var wire) = try channel.readOutbound(as: IOData.self),
              case .fileRegion(let region) = try channel.readOutbound(as: IOData.self) else {
            Issue.record("expected a head buffer, then a file region")
            return
        }
        #expect(region.readerIndex == 0 && region.endIndex == bytes.count)
        wire.writeBytes(bytes)
        #expect(wire == PeerMessage.piece(ChunkID(3), ByteBuffer(bytes: bytes)).frame)
        #expect(!handle.isOpen, "the chunk file stays open only until its region is written")
    }

    @Test("several frames in one read, and a frame split across reads")
    func splitFrames() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(PeerMessageDecoder()))
        var all = ByteBuffer()
        for message in sampleMessages { all.writeImmutableBuffer(message.frame) }
        let cut = all.readableBytes / 3
        try channel.writeInbound(all.getSlice(at: 0, length: cut)!)
        try channel.writeInbound(all.getSlice(at: cut, length: all.readableBytes - cut)!)
        var decoded: [PeerMessage] = []
        while let message = try channel.readInbound(as: PeerMessage.self) { decoded.append(message) }
        #expect(decoded == sampleMessages)
        #expect(try channel.finish().isClean)
    }

    @Test("a length over the cap is refused before any payload arrives")
    func oversizedLength() {
        var decoder = PeerMessageDecoder()
        var buffer = ByteBuffer(bytes: [0xff, 0xff, 0xff, 0xff])
        #expect(throws: WireError.frameTooLarge(0xffff_ffff)) { try decoder.decodeOne(&buffer) }
        var justOver = ByteBuffer()
        justOver.writeInteger(UInt32(WireLimits.maximumFrameLength + 1))
        var fresh = PeerMessageDecoder()
        #expect(throws: WireError.frameTooLarge(UInt32(WireLimits.maximumFrameLength + 1))) { try fresh.decodeOne(&justOver) }
    }

    @Test("a largest-chunk PIECE fits exactly under the cap")
    func largestPieceFits() throws {
        let message = PeerMessage.piece(ChunkID(0), ByteBuffer(repeating: 1, count: ChunkLayout.maximumChunkSize))
        var frame = message.frame
        #expect(frame.readableBytes == 4 + WireLimits.maximumFrameLength)
        var decoder = PeerMessageDecoder()
        #expect(try decoder.decodeOne(&frame) == message)
    }

    @Test("unknown types, empty frames and trailing bytes are errors")
    func malformed() {
        var decoder = PeerMessageDecoder()
        var unknown = ByteBuffer(bytes: [0, 0, 0, 1, 0x7f])
        #expect(throws: WireError.unknownType(0x7f)) { try decoder.decodeOne(&unknown) }
        var empty = ByteBuffer(bytes: [0, 0, 0, 0])
        var d2 = PeerMessageDecoder()
        #expect(throws: WireError.emptyFrame) { try d2.decodeOne(&empty) }
        var longHave = ByteBuffer(bytes: [0, 0, 0, 6, 0x06, 0, 0, 0, 1, 9])
        var d3 = PeerMessageDecoder()
        #expect(throws: WireError.self) { try d3.decodeOne(&longHave) }
    }

    @Test("a manifest whose name would escape the folder is refused")
    func hostileManifestName() {
        let digest = Digest32.of([1])
        for name in ["../../x", "/etc/passwd", "a/b"] {
            var frame = PeerMessage.manifest(ManifestHeader(fileSize: 1, chunkSize: 10, chunkCount: 1, fileHash: digest, fileName: name)).frame
            var decoder = PeerMessageDecoder()
            #expect(throws: WireError.self) { try decoder.decodeOne(&frame) }
        }
    }

    @Test("a manifest whose count does not match its size is refused")
    func inconsistentManifest() {
        var frame = PeerMessage.manifest(ManifestHeader(fileSize: 1000, chunkSize: 100, chunkCount: 11, fileHash: Digest32.of([1]), fileName: "f")).frame
        var decoder = PeerMessageDecoder()
        #expect(throws: WireError.self) { try decoder.decodeOne(&frame) }
    }

    @Test("bytes left at EOF are an error, not silence")
    func leftoverAtEOF() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(PeerMessageDecoder()))
        var frame = PeerMessage.have(ChunkID(1)).frame
        try channel.writeInbound(frame.readSlice(length: 6)!)
        #expect(throws: WireError.truncatedAtEOF(bufferedBytes: 2)) { try channel.finish() }
    }

    @Test("thousands of random and mutated frames: each decodes and re-encodes to its bytes, or throws a WireError")
    func randomisedFrames() {
        let seed = UInt64(ProcessInfo.processInfo.environment["PEERSHARE_WIRE_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64(UInt32.max))
        print("randomised frame test seed: \(seed) (set PEERSHARE_WIRE_SEED to replay)")
        var random = SeededGenerator(seed: seed)
        let frames = sampleMessages.map { Array($0.frame.readableBytesView) }
        var decodedCount = 0, refusedCount = 0
        for round in 0..<6_000 {
            var bytes: [UInt8]
            switch round % 6 {
            case 0:  // pure noise, sometimes behind a plausible length
                bytes = (0..<Int.random(in: 0...64, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
                if Bool.random(using: &random) {
                    bytes = [0, 0, 0, UInt8(bytes.count + 1), UInt8.random(in: 1...11, using: &random)] + bytes
                }
            case 1:  // a real frame with a few bytes flipped
                bytes = frames.randomElement(using: &random)!
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] ^= UInt8.random(in: 1...255, using: &random)
                }
            case 2:  // truncated or extended
                bytes = frames.randomElement(using: &random)!
                if Bool.random(using: &random) { bytes.removeLast(Int.random(in: 0...bytes.count, using: &random)) }
                else { bytes += (0..<Int.random(in: 1...8, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) } }
            case 3:  // a consistent length prefix around a mutated body
                var body = Array(frames.randomElement(using: &random)!.dropFirst(4))
                body[Int.random(in: 0..<body.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                if body.count > 1, Bool.random(using: &random) { body.removeLast(Int.random(in: 1..<body.count, using: &random)) }
                let n = UInt32(body.count)
                bytes = [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + body
            case 4:  // several frames spliced, one cut short
                bytes = (0..<Int.random(in: 2...4, using: &random)).flatMap { _ in frames.randomElement(using: &random)! }
                bytes.removeLast(Int.random(in: 0...min(bytes.count, 40), using: &random))
            default:  // a hostile length prefix
                bytes = [UInt8.random(in: 0...255, using: &random), 0xff, 0xff, 0xff, 0x08] + (0..<16).map { _ in 0 }
            }
            do {
                let result = try PeerMessageDecoder.frames(in: bytes)
                decodedCount += result.frames.count
                for (message, original) in result.frames {
                    #expect(Array(message.frame.readableBytesView) == Array(original), "seed \(seed) round \(round): \(message.kind) does not re-encode to its bytes")
                }
            } catch {
                refusedCount += 1  // typed: the compiler guarantees it is a WireError
            }
        }
        print("randomised frames: \(decodedCount) messages decoded, \(refusedCount) inputs refused")
        #expect(decodedCount > 1_000 && refusedCount > 1_000, "the mutations should exercise both outcomes")
    }

    @Test("every input in the fuzz corpus (seeds and past crashes) passes its target", arguments: FuzzTarget.allCases)
    func fuzzCorpus(target: FuzzTarget) throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("FuzzCorpus/\(target.rawValue)")
        let files = try FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)
        #expect(files.count >= (target == .wire ? 12 : 1))
        for file in files {
            #expect(target.run(Array(try Data(contentsOf: file))) == nil, "\(file.lastPathComponent)")
        }
    }
}
