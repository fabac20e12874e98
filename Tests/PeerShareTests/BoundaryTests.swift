import NIOCore
import Testing
@testable import PeerShareCore
@testable import PeerShareWire

// Numbers from outside at the edges of Int64 and of every limit in docs/PROTOCOL.md,
// written as tables: each row is an input and what a user would see.

/// What a layout should come to: its chunk count and last chunk's size, or the refusal.
enum LayoutExpectation: Sendable, CustomStringConvertible {
    case chunks(Int, lastSize: Int)
    case refused(LayoutError)

    var description: String {
        switch self {
        case .chunks(let n, let last): "\(n) chunks, the last of \(last) bytes"
        case .refused(let error): "refused: \(error)"
        }
    }
}

struct LayoutCase: Sendable, CustomTestStringConvertible {
    let fileSize: Int64
    let chunkSize: Int
    let expected: LayoutExpectation
    var testDescription: String { "\(fileSize) bytes in chunks of \(chunkSize): \(expected)" }
}

let layoutCases: [LayoutCase] = {
    let max = ChunkLayout.maximumFileSize
    let mib = ChunkLayout.maximumChunkSize
    return [
        LayoutCase(fileSize: 0, chunkSize: 102_400, expected: .chunks(0, lastSize: 0)),
        LayoutCase(fileSize: 1, chunkSize: 1, expected: .chunks(1, lastSize: 1)),
        LayoutCase(fileSize: 102_401, chunkSize: 102_400, expected: .chunks(2, lastSize: 1)),
        LayoutCase(fileSize: Int64(mib), chunkSize: mib, expected: .chunks(1, lastSize: mib)),
        LayoutCase(fileSize: Int64(mib) + 1, chunkSize: mib, expected: .chunks(2, lastSize: 1)),
        // The chunk-count limit, from both sides, at three chunk sizes.
        LayoutCase(fileSize: 8_000_000, chunkSize: 1, expected: .chunks(8_000_000, lastSize: 1)),
        LayoutCase(fileSize: 8_000_001, chunkSize: 1, expected: .refused(.tooManyChunks(8_000_001))),
        LayoutCase(fileSize: 8_000_000 * 102_400, chunkSize: 102_400, expected: .chunks(8_000_000, lastSize: 102_400)),
        LayoutCase(fileSize: 8_000_000 * 102_400 + 1, chunkSize: 102_400, expected: .refused(.tooManyChunks(8_000_001))),
        LayoutCase(fileSize: max, chunkSize: mib, expected: .chunks(8_000_000, lastSize: mib)),
        LayoutCase(fileSize: max + 1, chunkSize: mib, expected: .refused(.tooManyChunks(8_000_001))),
        // The edges of Int64: a count that needs no addition to compute.
        LayoutCase(fileSize: .max, chunkSize: 1, expected: .refused(.tooManyChunks(.max))),
        LayoutCase(fileSize: .max, chunkSize: 102_400, expected: .refused(.tooManyChunks(Int64.max / 102_400 + 1))),
        LayoutCase(fileSize: .max, chunkSize: mib, expected: .refused(.tooManyChunks(1 << 43))),
        LayoutCase(fileSize: .max - 1, chunkSize: 2, expected: .refused(.tooManyChunks((1 << 62) - 1))),
        LayoutCase(fileSize: Int64(Int32.max), chunkSize: 1, expected: .refused(.tooManyChunks(Int64(Int32.max)))),
        LayoutCase(fileSize: 1 << 32, chunkSize: mib, expected: .chunks(4096, lastSize: mib)),
        // Sizes that are not sizes.
        LayoutCase(fileSize: -1, chunkSize: 10, expected: .refused(.negativeFileSize(-1))),
        LayoutCase(fileSize: .min, chunkSize: 10, expected: .refused(.negativeFileSize(.min))),
        LayoutCase(fileSize: 10, chunkSize: 0, expected: .refused(.chunkSizeOutOfRange(0))),
        LayoutCase(fileSize: 10, chunkSize: -1, expected: .refused(.chunkSizeOutOfRange(-1))),
        LayoutCase(fileSize: 10, chunkSize: mib + 1, expected: .refused(.chunkSizeOutOfRange(mib + 1))),
        LayoutCase(fileSize: 10, chunkSize: .max, expected: .refused(.chunkSizeOutOfRange(.max))),
        LayoutCase(fileSize: .max, chunkSize: .min, expected: .refused(.chunkSizeOutOfRange(.min))),
    ]
}()

@Suite("Numbers from outside at their edges")
struct BoundaryTests {
    @Test("chunk layouts at the edges of Int64 and of the protocol's limits", arguments: layoutCases)
    func layout(_ row: LayoutCase) throws {
        switch row.expected {
        case .refused(let expected):
            #expect(throws: expected) { try ChunkLayout(fileSize: row.fileSize, chunkSize: row.chunkSize) }
        case .chunks(let count, let lastSize):
            let layout = try ChunkLayout(fileSize: row.fileSize, chunkSize: row.chunkSize)
            #expect(layout.chunkCount == count)
            guard count > 0 else { return }
            let last = ChunkID(UInt32(count - 1))
            #expect(layout.size(of: last) == lastSize)
            #expect(layout.offset(of: last) + Int64(lastSize) == row.fileSize, "the chunks add up to the file")
            #expect(layout.contains(last) && !layout.contains(ChunkID(UInt32(count))))
            #expect(!layout.contains(ChunkID(.max)))
            #expect(layout.offset(of: ChunkID(.max)) == Int64(UInt32.max) * Int64(row.chunkSize), "an ID outside the layout cannot overflow its offset")
        }
    }

    struct ManifestFrame: Sendable, CustomTestStringConvertible {
        let size: UInt64, chunkSize: UInt32, count: UInt32
        /// Part of the refusal a user reads, or nil if the frame is valid.
        let refusal: String?
        var testDescription: String { "MANIFEST of \(size) bytes, chunks of \(chunkSize), count \(count)" }

        /// The frame as a client written from docs/PROTOCOL.md would send it.
        var bytes: [UInt8] {
            var payload = ByteBuffer()
            payload.writeInteger(PeerMessage.Kind.manifest.rawValue)
            payload.writeInteger(size)
            payload.writeInteger(chunkSize)
            payload.writeInteger(count)
            payload.writeBytes([UInt8](repeating: 7, count: 32))
            payload.writeInteger(UInt16(1))
            payload.writeBytes(Array("f".utf8))
            var frame = ByteBuffer()
            frame.writeInteger(UInt32(payload.readableBytes))
            frame.writeBuffer(&payload)
            return Array(frame.readableBytesView)
        }
    }

    static let manifestFrames: [ManifestFrame] = [
        ManifestFrame(size: UInt64(Int64.max), chunkSize: 1, count: 0, refusal: "file size 9223372036854775807 is over the largest possible 8388608000000 bytes"),
        ManifestFrame(size: UInt64(Int64.max), chunkSize: 102_400, count: 0, refusal: "is over the largest possible"),
        ManifestFrame(size: .max, chunkSize: 1_048_576, count: .max, refusal: "file size 18446744073709551615 is over"),
        ManifestFrame(size: 1 << 63, chunkSize: 1_048_576, count: 0, refusal: "is over the largest possible"),
        ManifestFrame(size: 8_000_001, chunkSize: 1, count: 8_000_001, refusal: "the file would need 8000001 chunks; at most 8000000 are supported"),
        ManifestFrame(size: UInt64(ChunkLayout.maximumFileSize) + 1, chunkSize: 1_048_576, count: 8_000_001, refusal: "file size 8388608000001 is over"),
        ManifestFrame(size: 8_000_000 * 102_400 + 1, chunkSize: 102_400, count: 8_000_001, refusal: "the file would need 8000001 chunks"),
        ManifestFrame(size: 10, chunkSize: 0, count: 0, refusal: "chunk size 0 is outside 1...1048576 bytes"),
        ManifestFrame(size: 10, chunkSize: 1_048_577, count: 1, refusal: "chunk size 1048577 is outside"),
        ManifestFrame(size: 10, chunkSize: .max, count: 1, refusal: "chunk size 4294967295 is outside"),
        ManifestFrame(size: 10, chunkSize: 4, count: .max, refusal: "chunk count 4294967295 does not match 10 bytes in chunks of 4"),
        ManifestFrame(size: UInt64(ChunkLayout.maximumFileSize), chunkSize: 1_048_576, count: 8_000_000, refusal: nil),
        ManifestFrame(size: 0, chunkSize: 1, count: 0, refusal: nil),
    ]

    @Test("MANIFEST frames at the edges: refused with the real reason, or decoded", arguments: manifestFrames)
    func manifestFrame(_ row: ManifestFrame) throws {
        var decoder = PeerMessageDecoder()
        var buffer = ByteBuffer(bytes: row.bytes)
        do {
            let message = try decoder.decodeOne(&buffer)
            #expect(row.refusal == nil, "decoded \(String(describing: message)); expected a refusal")
            guard case .manifest(let header) = message else { Issue.record("not a MANIFEST"); return }
            #expect(header.fileSize == Int64(row.size) && header.chunkCount == row.count)
        } catch {
            guard let refusal = row.refusal else { Issue.record("refused a valid frame: \(error)"); return }
            #expect(error.description.hasPrefix("malformed MANIFEST: "))
            #expect(error.description.contains(refusal), "\(error)")
        }
    }

    @Test("HASHES must continue the manifest exactly and stop at its count",
          arguments: [
              ([(0, 4)], nil),
              ([(0, 2), (2, 2)], nil),
              ([(0, 5)], "the batch of 5 hashes from chunk 0 runs past the chunk count 4"),
              ([(0, 2), (2, 3)], "the batch of 3 hashes from chunk 2 runs past the chunk count 4"),
              ([(1, 1)], "the batch starts at chunk 1, but the manifest continues at chunk 0"),
              ([(0, 2), (0, 2)], "the batch starts at chunk 0, but the manifest continues at chunk 2"),
              ([(UInt32.max, 1)], "the batch starts at chunk 4294967295"),
              ([(0, 16_384)], "runs past the chunk count 4"),
          ] as [([(UInt32, Int)], String?)])
    func hashesBatches(_ batches: [(UInt32, Int)], refusal: String?) throws {
        var receiver = try ManifestReceiver(ManifestHeader(fileSize: 400, chunkSize: 100, chunkCount: 4, fileHash: Digest32.of([1]), fileName: "f"))
        do {
            for (first, count) in batches {
                try receiver.add(first: first, Array(repeating: Digest32.of([2]), count: count))
            }
            #expect(refusal == nil)
            #expect(try receiver.manifest().chunkCount == 4)
        } catch {
            #expect(refusal.map { error.description.contains($0) } == true, "\(error)")
        }
    }

    @Test("a manifest that ends early is refused, and memory follows the hashes received, not the count declared")
    func manifestEndsEarly() throws {
        var receiver = try ManifestReceiver(ManifestHeader(fileSize: 8_000_000, chunkSize: 1, chunkCount: 8_000_000, fileHash: Digest32.of([1]), fileName: "f"))
        try receiver.add(first: 0, [Digest32.of([2])])
        #expect(throws: WireError.malformed(.hashes, "the manifest ended after 1 of 8000000 hashes")) { try receiver.manifest() }
    }
}

/// One conversation as the remote sends it, in the notation of the rows below:
/// `HELLO(owner)`, `MANIFEST(4)` (a manifest of 4 chunks), `HASHES(0,2)`, or a bare type.
func conversation(_ picture: String) -> [PeerMessage] {
    let id = Digest32.of([9])
    return picture.split(separator: " ").map { token in
        let name = token.prefix { $0 != "(" }
        let numbers = token.drop { $0 != "(" }.dropFirst().dropLast().split(separator: ",").compactMap { UInt32($0) }
        switch name {
        case "HELLO": return .hello(Hello(role: token.contains("owner") ? .owner : .peer, fileID: id, name: "remote"))
        case "MANIFEST": return .manifest(ManifestHeader(fileSize: Int64(numbers[0]) * 10, chunkSize: 10, chunkCount: numbers[0], fileHash: id, fileName: "f"))
        case "HASHES": return .hashes(first: numbers[0], Array(repeating: id, count: Int(numbers[1])))
        case "SHARE": return .share(bitfield: [0x80])
        case "CHUNK-LIST": return .chunkList(bitfield: [0x80])
        case "HAVE": return .have(ChunkID(1))
        case "REQUEST": return .request(ChunkID(1))
        case "PIECE": return .piece(ChunkID(1), ByteBuffer(bytes: [1, 2, 3]))
        case "REJECT": return .reject(ChunkID(1))
        case "GET-PEERS": return .getPeers(wanted: 4)
        case "PEERS": return .peers([PeerAddress(name: "p", endpoint: Endpoint(host: "10.0.0.1", port: 7000))])
        case "SIGNATURE": return .manifestSignature(signerKey: [1, 2, 3], signature: [4, 5])
        default: return .keepAlive
        }
    }
}

@Suite("Which messages each side accepts, and when")
struct ConversationGateTests {
    @Test("a message out of place is refused on its type byte, with the reason",
          arguments: [
              (.uploading, "MANIFEST(4)", "MANIFEST is not allowed before HELLO"),
              (.uploading, "KEEPALIVE", "KEEPALIVE is not allowed before HELLO"),
              (.uploading, "REQUEST", "REQUEST is not allowed before HELLO"),
              (.uploading, "HELLO MANIFEST(4)", "MANIFEST is not allowed from a downloader"),
              (.uploading, "HELLO HASHES(0,1)", "HASHES is not allowed from a downloader"),
              (.uploading, "HELLO PIECE", "PIECE is not allowed on an upload connection"),
              (.uploading, "HELLO HELLO", "HELLO is not allowed after the HELLO already received"),
              (.uploading, "HELLO(owner)", "HELLO is not allowed with the owner's role from a downloader"),
              (.uploading, "HELLO CHUNK-LIST HAVE REQUEST KEEPALIVE REQUEST CHUNK-LIST", nil),
              (.downloading, "PIECE", "PIECE is not allowed before HELLO"),
              (.downloading, "HELLO(owner) CHUNK-LIST", "CHUNK-LIST is not allowed while the owner's MANIFEST is due"),
              (.downloading, "HELLO(owner) MANIFEST(4) HASHES(0,2) SHARE", "SHARE is not allowed while HASHES are due (2 of 4 hashes received)"),
              (.downloading, "HELLO(owner) MANIFEST(4) HASHES(0,2) HASHES(1,2)", "the batch starts at chunk 1, but the manifest continues at chunk 2"),
              (.downloading, "HELLO(owner) MANIFEST(4) HASHES(0,5)", "the batch of 5 hashes from chunk 0 runs past the chunk count 4"),
              (.downloading, "HELLO(owner) MANIFEST(4) HASHES(0,4) CHUNK-LIST", "CHUNK-LIST is not allowed while the owner's SHARE is due"),
              (.downloading, "HELLO(owner) MANIFEST(4) KEEPALIVE HASHES(0,2) HASHES(2,2) SHARE CHUNK-LIST PIECE REJECT HAVE KEEPALIVE", nil),
              (.downloading, "HELLO(owner) MANIFEST(0) SHARE CHUNK-LIST", nil),
              (.downloading, "HELLO(owner) MANIFEST(4) HASHES(0,4) SHARE MANIFEST(4)", "MANIFEST is not allowed after the owner's manifest and share"),
              (.downloading, "HELLO MANIFEST(4) HASHES(0,4) CHUNK-LIST PIECE", nil),
              (.downloading, "HELLO MANIFEST(4) HASHES(0,4) SHARE", "SHARE is not allowed from a peer"),
              (.downloading, "HELLO MANIFEST(4) CHUNK-LIST", "CHUNK-LIST is not allowed while HASHES are due (0 of 4 hashes received)"),
              (.downloading, "HELLO KEEPALIVE MANIFEST(0) CHUNK-LIST", nil),
              (.downloading, "HELLO CHUNK-LIST MANIFEST(4)", "MANIFEST is not allowed from a peer"),
              (.downloading, "HELLO REQUEST", "REQUEST is not allowed on a download connection"),
              (.downloading, "HELLO CHUNK-LIST HAVE PIECE REJECT", nil),
              (.uploading, "HELLO GET-PEERS CHUNK-LIST GET-PEERS", nil),
              (.uploading, "GET-PEERS", "GET-PEERS is not allowed before HELLO"),
              (.uploading, "HELLO PEERS", "PEERS is not allowed on an upload connection"),
              (.downloading, "HELLO PEERS CHUNK-LIST PEERS", nil),
              (.downloading, "HELLO(owner) MANIFEST(0) SHARE PEERS", nil),
              (.downloading, "HELLO(owner) MANIFEST(4) HASHES(0,4) SIGNATURE SHARE CHUNK-LIST", nil),
              (.downloading, "HELLO(owner) MANIFEST(4) HASHES(0,2) SIGNATURE", "MANIFEST-SIGNATURE is not allowed except right after a manifest's last HASHES"),
              (.downloading, "HELLO(owner) MANIFEST(4) HASHES(0,4) SHARE SIGNATURE", "MANIFEST-SIGNATURE is not allowed except right after"),
              (.downloading, "HELLO(owner) MANIFEST(4) HASHES(0,4) SIGNATURE SIGNATURE", "MANIFEST-SIGNATURE is not allowed except right after"),
              (.downloading, "HELLO MANIFEST(4) HASHES(0,4) KEEPALIVE SIGNATURE CHUNK-LIST PIECE", nil),
              (.downloading, "HELLO CHUNK-LIST SIGNATURE", "MANIFEST-SIGNATURE is not allowed except right after"),
              (.uploading, "HELLO SIGNATURE", "MANIFEST-SIGNATURE is not allowed except right after"),
              (.downloading, "HELLO(owner) PEERS", "PEERS is not allowed while the owner's MANIFEST is due"),
              (.downloading, "HELLO GET-PEERS", "GET-PEERS is not allowed on a download connection"),
          ] as [(ConversationGate.Side, String, String?)])
    func gate(side: ConversationGate.Side, picture: String, refusal: String?) {
        var decoder = PeerMessageDecoder(gate: ConversationGate(side: side))
        var buffer = ByteBuffer()
        for message in conversation(picture) { message.encodeFrame(into: &buffer) }
        do {
            while try decoder.decodeOne(&buffer) != nil {}
            #expect(refusal == nil, "\(picture) was accepted")
            #expect(buffer.readableBytes == 0)
        } catch {
            #expect(refusal.map { error.description.contains($0) } == true, "\(picture): \(error)")
        }
    }
}
