import Foundation
import NIOCore
import PeerShareCore
import PeerShareFuzzing
import PeerShareWire

// The libFuzzer entry point for every target in PeerShareFuzzing (tools/fuzz builds it with
// --sanitize=fuzzer -DFUZZING). PEERSHARE_FUZZ_TARGET names the target: wire (default),
// frames or session. Built normally, the executable replays inputs instead.

/// Read once, when the first input arrives.
let selectedTarget = FuzzTarget(rawValue: ProcessInfo.processInfo.environment["PEERSHARE_FUZZ_TARGET"] ?? "wire") ?? .wire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let failure = selectedTarget.run(Array(UnsafeBufferPointer(start: data, count: size))) {
        // Under libFuzzer a find must crash: that is how it saves the input and reports it.
        fatalError("\(selectedTarget) target: \(failure)")
    }
    return 0
}

#if !FUZZING
/// Without libFuzzer: `peershare-fuzz [--target T] FILE...` replays inputs (a corpus, a
/// crash) through a target, and `peershare-fuzz --write-seeds DIR` writes the wire seed
/// corpus: one file per message kind.
@main
struct FuzzReplay {
    static func main() throws {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "--write-seeds", arguments.count == 2 {
            for (name, message) in seedMessages() {
                try Data(message.frame.readableBytesView).write(to: URL(fileURLWithPath: arguments[1] + "/seed-" + name))
            }
            return
        }
        var target = FuzzTarget.wire
        if arguments.first == "--target" {
            guard arguments.count >= 2, let named = FuzzTarget(rawValue: arguments[1]) else {
                fail("--target takes one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))", status: 2)
            }
            target = named
            arguments.removeFirst(2)
        }
        arguments = arguments.filter { !$0.hasPrefix("-") }
        var failures = 0
        for path in arguments {
            guard let input = FileManager.default.contents(atPath: path) else { fail("cannot read \(path)", status: 2) }
            if let failure = target.run(Array(input)) {
                FileHandle.standardError.write(Data("peershare-fuzz: \(path): \(failure)\n".utf8))
                failures += 1
            }
        }
        guard failures == 0 else { exit(1) }
        print("replayed \(arguments.count) inputs through the \(target) target: no failures")
    }

    static func fail(_ message: String, status: Int32) -> Never {
        FileHandle.standardError.write(Data("peershare-fuzz: \(message)\n".utf8))
        exit(status)
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
