import Crypto
import Foundation
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareStore

/// The bytes of an HTTP reply's body.
extension RawHTTP.Reply {
    var bodyBytes: [UInt8] {
        guard let end = bytes.indices.dropLast(3).first(where: { bytes[$0...$0 + 3] == [13, 10, 13, 10] }) else { return [] }
        return Array(bytes[(end + 4)...])
    }

    func header(_ name: String) -> String? {
        for line in text.components(separatedBy: "\r\n").dropFirst() {
            if line.isEmpty { break }
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].lowercased() == name.lowercased() { return parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return nil
    }
}

func rangeRequest(_ path: String, range: String?, method: String = "GET") -> [UInt8] {
    Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(range.map { "Range: \($0)\r\n" } ?? "")Connection: close\r\n\r\n".utf8)
}

@Suite("Web seeding: a node serves its file over HTTP (BEP 19)", .serialized)
struct WebSeedTests {
    static let size = 300_000

    @Test("whole file, ranges at the edges, suffixes, past the end, several, HEAD, malformed Range and traversal")
    func rangesAndRefusals() async throws {
        let dir = temporaryDirectory()
        let (owner, _, port) = try await startObservedOwner(dir: dir, fileSize: Self.size, peers: 1)
        defer { owner.signal(SIGKILL) }
        let file = Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/source.bin")))
        let path = "/files/source.bin"

        let whole = try await RawHTTP.exchange(port: port, rangeRequest(path, range: nil))
        #expect(whole.status == 200 && whole.bodyBytes == file && whole.header("Accept-Ranges") == "bytes")
        for (range, first, last) in [("bytes=0-0", 0, 0), ("bytes=299999-299999", 299_999, 299_999), ("bytes=-10", 299_990, 299_999),
                                     ("bytes=299990-", 299_990, 299_999), ("bytes=102399-102400", 102_399, 102_400),
                                     ("bytes=1000-999999", 1000, 299_999)] {
            let reply = try await RawHTTP.exchange(port: port, rangeRequest(path, range: range))
            #expect(reply.status == 206, "\(range): \(reply.text.prefix(200))")
            #expect(reply.header("Content-Range") == "bytes \(first)-\(last)/\(Self.size)", "\(range)")
            #expect(reply.bodyBytes == Array(file[first...last]), "\(range)")
        }
        for range in ["bytes=300000-300100", "bytes=5-1", "bytes=abc", "bytes=-0", "bytes=99999999999999999999-"] {
            let reply = try await RawHTTP.exchange(port: port, rangeRequest(path, range: range))
            #expect(reply.status == 416 && reply.header("Content-Range") == "bytes */\(Self.size)", "\(range): \(reply.text.prefix(200))")
        }
        // Several ranges, or another unit: the whole file, as RFC 9110 allows.
        for range in ["bytes=0-1,5-6", "pages=1-2"] {
            let reply = try await RawHTTP.exchange(port: port, rangeRequest(path, range: range))
            #expect(reply.status == 200 && reply.bodyBytes.count == Self.size, "\(range)")
        }
        let head = try await RawHTTP.exchange(port: port, rangeRequest(path, range: "bytes=10-19", method: "HEAD"))
        #expect(head.status == 206 && head.header("Content-Length") == "10" && head.bodyBytes.isEmpty)
        // Two ranges on one kept-alive connection, as a BitTorrent client asks for pieces.
        let twice = try await RawHTTP.exchange(port: port, Array(("GET \(path) HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n"
            + "GET \(path) HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\nConnection: close\r\n\r\n").utf8))
        #expect(twice.statuses == [206, 206])
        for bad in ["/files/../owner/owner.db", "/files/%2e%2e%2fowner%2fowner.db", "/files/..%2fowner.db", "/files/source.bin/x",
                    "/files/", "/files/source.bin%00", "/files/%zz", "/files/other.bin"] {
            #expect(try await RawHTTP.get(port: port, bad).status == 404, "\(bad)")
        }
        if let curl = SystemTool.path("curl") {
            let out = dir + "/curl.part"
            let result = try await runCommand(curl, ["-s", "-f", "-r", "100-199", "-o", out, "http://127.0.0.1:\(port)\(path)"])
            let part = Array(try Data(contentsOf: URL(fileURLWithPath: out)))
            #expect(result.status == 0 && part == Array(file[100...199]))
        }
    }

    @Test("a node still fetching answers 503 with Retry-After for what it lacks, and 206 for what it holds")
    func partialNode() async throws {
        let dir = temporaryDirectory()
        let (owner, wire, _) = try await startObservedOwner(dir: dir, fileSize: 2_000_000, peers: 1, options: ["--max-upload-rate", "100KiB"])
        defer { owner.signal(SIGKILL) }
        let peer = try startPeer("peer1", storage: .singleFile, dir: dir, owner: "127.0.0.1:\(wire)", options: ["--http", "127.0.0.1:0", "--wait-for-downloaders", "0"])
        defer { peer.signal(SIGKILL) }
        let port = try await httpPort(of: peer)
        #expect(await peer.waitForLine(timeout: .seconds(30)) { receivedChunk($0, from: "owner") } != nil)
        let status = try await fetchStatus(port: port)
        let held = (status["held"] as? [String: Any])?["ranges"] as? [[Int]] ?? []
        let firstHeld = try #require(held.first?.first)
        let missing = try #require(((status["missing"] as? [String: Any])?["ranges"] as? [[Int]])?.last?.last)
        let busy = try await RawHTTP.exchange(port: port, rangeRequest("/files/source.bin", range: "bytes=\(missing * 102_400)-\(missing * 102_400 + 9)"))
        #expect(busy.status == 503 && busy.header("Retry-After") != nil, "\(busy.text.prefix(200))")
        #expect(try await RawHTTP.get(port: port, "/files/source.bin").status == 503)
        let ok = try await RawHTTP.exchange(port: port, rangeRequest("/files/source.bin", range: "bytes=\(firstHeld * 102_400)-\(firstHeld * 102_400 + 9)"))
        #expect(ok.status == 206 && ok.bodyBytes.count == 10)
    }

    @Test("in a private swarm /files is off, unless --http-serve-file, which the log warns about")
    func privateSwarm() async throws {
        for serve in [false, true] {
            let dir = temporaryDirectory("private\(serve)")
            let (owner, _, port) = try await startObservedOwner(dir: dir, fileSize: 100_000, peers: 1, options: ["--private"] + (serve ? ["--http-serve-file"] : []))
            defer { owner.signal(SIGKILL) }
            _ = await owner.waitForLine(prefix: "ticket: ", timeout: .seconds(30))
            #expect(try await RawHTTP.get(port: port, "/files/source.bin").status == (serve ? 200 : 404))
            #expect(try await RawHTTP.get(port: port, "/status").status == 200)
            await owner.stop()
            let log = (try? String(contentsOfFile: dir + "/owner.log", encoding: .utf8)) ?? ""
            #expect(log.contains("--http-serve-file: the file of this private swarm is served") == serve, "\(log)")
        }
    }
}
