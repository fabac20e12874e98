import Crypto
import Foundation
import PeerShareCLI
import PeerShareCore
import Testing

/// Helpers for tests that run the real `peershare` executables.
enum Binaries {
    /// On Linux the test runner lives in the build's bin folder, beside the executables.
    static var folder: String {
        let fromBundle = Bundle.main.bundleURL.path
        if FileManager.default.isExecutableFile(atPath: fromBundle + "/peershare") { return fromBundle }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    }
    static var peershare: String { folder + "/peershare" }
    static var inspect: String { folder + "/peershare-inspect" }
}

/// The result of running a command to completion.
struct CommandResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs a command to completion, bounded by `timeout`; a command still running then is killed.
func runCommand(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(60)) async throws -> CommandResult {
    let dir = temporaryDirectory("cmd")
    let outPath = dir + "/stdout", errPath = dir + "/stderr"
    let child = try ChildProcess(name: "command", executable: executable, arguments: arguments, stdout: .file(outPath), stderr: .file(errPath))
    var status = await child.waitForExit(timeout: timeout)
    if status == nil {
        child.signal(SIGKILL)
        status = await child.waitForExit(timeout: .seconds(10))
        Issue.record("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout)")
    }
    return CommandResult(status: status ?? -1,
                         stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                         stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
}

/// Deterministic test content of any size.
func writeTestFile(_ path: String, size: Int, seed: UInt8 = 1) throws -> Digest32 {
    var bytes = [UInt8](repeating: 0, count: size)
    var state: UInt32 = 2_166_136_261 &+ UInt32(seed)
    for i in 0..<size {
        state = (state ^ UInt32(truncatingIfNeeded: i)) &* 16_777_619
        bytes[i] = UInt8(truncatingIfNeeded: state >> 13)
    }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return Digest32.of(bytes)
}

/// The manifest an owner makes of the file at `path`, computed here independently of it.
func manifest(ofFile path: String, chunkSize: Int = ChunkLayout.defaultChunkSize) throws -> Manifest {
    let data = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    let layout = try ChunkLayout(fileSize: Int64(data.count), chunkSize: chunkSize)
    let hashes = layout.chunkIDs.map { id in
        Digest32.of(data[Int(layout.offset(of: id))..<Int(layout.offset(of: id)) + layout.size(of: id)])
    }
    return try Manifest(fileName: String(path.split(separator: "/").last ?? ""), layout: layout, chunkHashes: hashes, fileHash: Digest32.of(data))
}

/// The swarm's file ID of the file at `path` (the hash of its layout and chunk hashes), as
/// the owner announces it in HELLO.
func contentID(ofFile path: String, chunkSize: Int = ChunkLayout.defaultChunkSize) throws -> Digest32 {
    try manifest(ofFile: path, chunkSize: chunkSize).fileID
}

func fileDigest(_ path: String) -> Digest32? {
    guard let data = FileManager.default.contents(atPath: path) else { return nil }
    return Digest32(SHA256.hash(data: data))
}

/// The tail of a log file, for failure messages.
func tail(_ path: String, lines: Int = 30) -> String {
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(no log at \(path))"
    return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
}
