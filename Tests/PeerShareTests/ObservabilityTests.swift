import Foundation
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareStore

/// The port from an "http listening on HOST:PORT" line; comes before "listening on".
func httpPort(of process: ChildProcess, timeout: Duration = .seconds(60)) async throws -> Int {
    guard let line = await process.waitForLine(prefix: "http listening on", timeout: timeout),
          let port = Int(line.split(separator: ":").last ?? "")
    else { throw SwarmError("\(process.name) did not start its HTTP listener") }
    return port
}

/// An owner with `--http` on 127.0.0.1, its wire and HTTP ports read from its output.
func startObservedOwner(dir: String, fileSize: Int, peers: Int = 2, options: [String] = []) async throws -> (ChildProcess, wire: Int, http: Int) {
    let source = dir + "/source.bin"
    _ = try writeTestFile(source, size: fileSize)
    let owner = try Swarm.startOwner(dir: dir, source: source, peers: peers, options: ["--http", "127.0.0.1:0"] + options)
    do {
        let http = try await httpPort(of: owner)
        return (owner, try await listeningPort(of: owner), http)
    } catch {
        owner.signal(SIGKILL)
        throw SwarmError("\(error)\n" + tail(dir + "/owner.log"))
    }
}

/// The JSON of `GET /status`.
func fetchStatus(port: Int) async throws -> [String: Any] {
    let reply = try await RawHTTP.get(port: port, "/status")
    guard reply.status == 200, let object = try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any] else {
        throw SwarmError("GET /status: \(reply.text.prefix(300))")
    }
    return object
}

@Suite("The HTTP listener refuses hostile clients", .serialized)
struct HTTPHardeningTests {
    @Test("a huge header, 10,000 headers, bad methods and /../ get bounded refusals, and the node keeps serving")
    func hostileClients() async throws {
        let dir = temporaryDirectory()
        let (owner, wirePort, port) = try await startObservedOwner(dir: dir, fileSize: 1_000_000, peers: 1)
        defer { owner.signal(SIGKILL) }

        // 1 MiB in one header: refused once it passes the field limit, without reading it all.
        let huge = Array("GET /status HTTP/1.1\r\nHost: x\r\nX-Big: ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20) + Array("\r\n\r\n".utf8)
        let hugeReply = try await RawHTTP.exchange(port: port, huge)
        #expect(hugeReply.status == 431 || hugeReply.bytes.isEmpty, "\(hugeReply.text.prefix(200))")
        #expect(hugeReply.status != 200)

        // 10,000 small headers: over the count limit.
        let many = "GET /status HTTP/1.1\r\nHost: x\r\n" + String(repeating: "X-H: v\r\n", count: 10_000) + "\r\n"
        let manyReply = try await RawHTTP.exchange(port: port, Array(many.utf8))
        #expect(manyReply.status == 431 || manyReply.bytes.isEmpty, "\(manyReply.text.prefix(200))")
        #expect(manyReply.status != 200)

        // Methods other than GET and HEAD; a method that is not one at all.
        #expect(try await RawHTTP.get(port: port, "/status", method: "DELETE").status == 405)
        #expect(try await RawHTTP.get(port: port, "/status", method: "POST").status == 405)
        #expect(try await RawHTTP.get(port: port, "/status", method: "BREW\u{1}").status == 400)
        // Paths outside the routes, however spelled.
        for path in ["/../owner/owner.db", "/status/../metrics", "/%2e%2e/owner.db", "/metrics/", "//status", "/nope"] {
            #expect(try await RawHTTP.get(port: port, path).status == 404, "\(path)")
        }
        // Garbage instead of a request line.
        #expect(try await RawHTTP.exchange(port: port, Array("\u{0}\u{1}\u{2} nonsense\r\n\r\n".utf8)).status == 400)

        // HEAD has the headers and no body; keep-alive answers two requests on one connection.
        let head = try await RawHTTP.get(port: port, "/status", method: "HEAD")
        #expect(head.status == 200 && head.body.isEmpty && head.text.contains("Content-Length: "))
        let twice = try await RawHTTP.exchange(port: port, Array(("GET /status HTTP/1.1\r\nHost: x\r\n\r\n" + "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").utf8))
        #expect(twice.statuses == [200, 200], "\(twice.text.prefix(300))")

        // And the node still serves: its status, and the whole file to a peer.
        let status = try await fetchStatus(port: port)
        #expect(status["phase"] as? String == "seeding")
        let peer = try startPeer("peer1", storage: .chunkFiles, dir: dir, owner: "127.0.0.1:\(wirePort)", options: ["--wait-for-downloaders", "0"])
        defer { peer.signal(SIGKILL) }
        #expect(await peer.waitForExit(timeout: .seconds(60)) == 0, "\(tail(dir + "/peer1.log"))")
        #expect(fileDigest(dir + "/peer1/source.bin") == fileDigest(dir + "/source.bin"))
    }

    /// Its own owner: a 1 s head timeout would also cut off ordinary requests on a loaded
    /// machine, and the other tests here must not depend on how loaded it is.
    @Test("slowloris: a client that never finishes its request head is dropped after the head timeout")
    func slowClient() async throws {
        let dir = temporaryDirectory()
        let (owner, _, port) = try await startObservedOwner(dir: dir, fileSize: 1000, options: ["--http-head-timeout", "1"])
        defer { owner.signal(SIGKILL) }
        // A header line every 200 ms never completes the head; dropped after about 1 s.
        let dripped = try await RawHTTP.drip(port: port)
        #expect(dripped != nil, "a slow client was still connected after 20 s")
        if let dripped { #expect(dripped < .seconds(10)) }
        #expect(owner.exitStatus == nil, "the owner died:\n\(tail(dir + "/owner.log"))")
    }

    @Test("past the connection cap, the next connection is answered 503 and closed; the places come back when the holders leave")
    func connectionCap() async throws {
        let dir = temporaryDirectory()
        let (owner, _, port) = try await startObservedOwner(dir: dir, fileSize: 1000, options: ["--http-max-connections", "4"])
        defer { owner.signal(SIGKILL) }
        // Each holder has had its answer, so the listener counts it: the fifth is refused.
        let statuses = try await RawHTTP.holdUntilRefused(port: port, limit: 6)
        #expect(statuses == [200, 200, 200, 200, 503], "\(statuses)")
        // The holders have closed; the listener frees their places as it sees them go (bounded).
        var after = try await RawHTTP.get(port: port, "/status")
        for _ in 0..<200 where after.status == 503 {
            try await Task.sleep(for: .milliseconds(50))
            after = try await RawHTTP.get(port: port, "/status")
        }
        #expect(after.status == 200)
    }

    @Test("--http refuses a malformed address, and an address in use, with one line")
    func badAddresses() async throws {
        let dir = temporaryDirectory()
        _ = try writeTestFile(dir + "/f.bin", size: 1000)
        let malformed = try await runCommand(Binaries.peershare, ["owner", "--file", dir + "/f.bin", "--port", "0", "--dir", dir + "/o", "--http", "nowhere"])
        #expect(malformed.status != 0 && malformed.stderr.contains("--http") && malformed.stderr.split(separator: "\n").count == 1, "\(malformed.stderr)")
        try FileManager.default.createDirectory(atPath: dir + "/first", withIntermediateDirectories: true)
        let (owner, _, port) = try await startObservedOwner(dir: dir + "/first", fileSize: 1000)
        defer { owner.signal(SIGKILL) }
        let taken = try await runCommand(Binaries.peershare, ["owner", "--file", dir + "/f.bin", "--port", "0", "--dir", dir + "/o2", "--http", "127.0.0.1:\(port)"])
        #expect(taken.status != 0 && taken.stderr.contains("cannot listen for HTTP on 127.0.0.1:\(port)"), "\(taken.stderr)")
        #expect(!taken.stderr.contains("Fatal error"))
    }
}
