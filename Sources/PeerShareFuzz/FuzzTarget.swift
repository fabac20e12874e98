import Foundation
import NIOCore
import PeerShareCore
import PeerShareWire

// A libFuzzer target for the frame decoder and message parser (tools/fuzz builds it with
// --sanitize=fuzzer -DFUZZING). Every input must either decode into messages that re-encode
// to the same bytes, or throw a typed WireError; anything else (a trap, a mismatch) is a find.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let mismatch = PeerMessageDecoder.roundTripMismatch(in: Array(UnsafeBufferPointer(start: data, count: size))) {
        // Under libFuzzer a find must crash: that is how it saves the input and reports it.
        fatalError("round trip failed: \(mismatch)")
    }
    return 0
}

#if !FUZZING
/// Without libFuzzer: `peershare-fuzz FILE...` replays inputs (the corpus, a crash), and
/// `peershare-fuzz --write-seeds DIR` writes the seed corpus: one file per message kind.
@main
struct FuzzReplay {
    static func main() throws {
        var arguments = CommandLine.arguments.dropFirst()
        if arguments.first == "--write-seeds", let dir = arguments.dropFirst().first {
            for (name, message) in seedMessages() {
                try Data(message.frame.readableBytesView).write(to: URL(fileURLWithPath: dir + "/seed-" + name))
            }
            return
        }
        arguments = arguments.filter { !$0.hasPrefix("-") }
        var failures = 0
        for path in arguments {
            guard let input = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("peershare-fuzz: cannot read \(path)\n".utf8))
                exit(2)
            }
            if let mismatch = PeerMessageDecoder.roundTripMismatch(in: Array(input)) {
                FileHandle.standardError.write(Data("peershare-fuzz: \(path): round trip failed: \(mismatch)\n".utf8))
                failures += 1
            }
        }
        guard failures == 0 else { exit(1) }
        print("replayed \(arguments.count) inputs: no failures")
    }

    static func seedMessages() -> [(String, PeerMessage)] {
        let digest = Digest32.of(Array("seed".utf8))
        return [
            ("hello", .hello(Hello(role: .peer, fileID: digest, name: "peer1"))),
            ("hello-owner", .hello(Hello(role: .owner, fileID: Hello.unknownFileID, name: "owner"))),
            ("manifest", .manifest(ManifestHeader(fileSize: 250_000, chunkSize: 102_400, chunkCount: 3, fileHash: digest, fileName: "movie.mkv"))),
            ("manifest-empty", .manifest(ManifestHeader(fileSize: 0, chunkSize: 102_400, chunkCount: 0, fileHash: digest, fileName: "e"))),
            ("hashes", .hashes(first: 0, [digest, digest])),
            ("share", .share(bitfield: [0b1110_0000])),
            ("chunklist", .chunkList(bitfield: [0xff, 0x80])),
            ("have", .have(ChunkID(7))),
            ("request", .request(ChunkID(2))),
            ("piece", .piece(ChunkID(1), ByteBuffer(bytes: Array(repeating: 0x61, count: 64)))),
            ("reject", .reject(ChunkID(9))),
            ("keepalive", .keepAlive),
        ]
    }
}
#endif
