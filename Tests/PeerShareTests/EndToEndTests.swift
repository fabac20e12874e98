import Foundation
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareStore

/// A swarm of real processes on 127.0.0.1: one owner (port chosen by the OS and read back
/// from its "listening on" line) and peers on ports checked as free, wired as a ring.
struct Swarm {
    let dir: String
    let source: String
    let owner: ChildProcess
    let ownerPort: Int
    let peerPorts: [Int]
    /// Extra arguments every peer gets.
    let peerOptions: [String]
    /// The layout every node of the swarm stores chunks in.
    let storage: StorageLayout
    var peers: [ChildProcess] = []
    /// A private swarm's ticket file (the owner's DIR/ticket), which peers join with.
    var ticketFile: String? = nil

    var count: Int { peerPorts.count }

    static func start(fileSize: Int, peers count: Int, ownerOptions: [String] = [], peerOptions: [String] = [],
                      launchPeers: Bool = true, storage: StorageLayout = .chunkFiles, isPrivate: Bool = false,
                      sharing given: String? = nil, label: String = #function) async throws -> Swarm {
        let dir = temporaryDirectory(label)
        let source = given ?? dir + "/source.bin"
        if given == nil { _ = try writeTestFile(source, size: fileSize) }
        let owner = try startOwner(dir: dir, source: source, peers: count,
                                   options: ownerOptions + ["--storage", storage.rawValue] + (isPrivate ? ["--private"] : []))
        guard let line = await owner.waitForLine(prefix: "listening on", timeout: .seconds(60)),
              let port = Int(line.split(separator: ":").last ?? "")
        else {
            await owner.stop()
            throw SwarmError("owner did not start:\n" + tail(dir + "/owner.log"))
        }
        var swarm = Swarm(dir: dir, source: source, owner: owner, ownerPort: port, peerPorts: try reserveFreePorts(count),
                          peerOptions: peerOptions + ["--storage", storage.rawValue], storage: storage)
        if isPrivate {
            guard await owner.waitForLine(prefix: "ticket: ", timeout: .seconds(60)) != nil else {
                await owner.stop()
                throw SwarmError("the private owner printed no ticket:\n" + tail(dir + "/owner.log"))
            }
            swarm.ticketFile = dir + "/owner/ticket"
        }
        if launchPeers {
            for i in 1...count { swarm.peers.append(try swarm.launch(i)) }
        }
        return swarm
    }

    static func startOwner(dir: String, source: String, peers: Int, options: [String]) throws -> ChildProcess {
        try ChildProcess(
            name: "owner", executable: Binaries.peershare,
            arguments: ["owner", "--file", source, "--port", "0", "--dir", dir + "/owner", "--peers", "\(peers)"] + options,
            stdout: .lines(echo: false), stderr: .file(dir + "/owner.log"))
    }

    /// The arguments of peer `i` (from 1): peer i downloads from peer i+1.
    func arguments(of i: Int) -> [String] {
        let joining = ticketFile.map { ["--ticket-file", $0] } ?? ["--owner", "127.0.0.1:\(ownerPort)"]
        var arguments = ["peer", "--name", "peer\(i)"] + joining + ["--port", "\(peerPorts[i - 1])",
                         "--dir", dir + "/peer\(i)", "--connect-timeout", "20"]
        arguments += count > 1 ? ["--download-from", "127.0.0.1:\(peerPorts[i % count])"] : ["--wait-for-downloaders", "0"]
        return arguments + peerOptions
    }

    /// Starts peer `i`; its log is appended to DIR/peerI.log and, with `lines`, also delivered as lines.
    func launch(_ i: Int, extra: [String] = [], lines: Bool = false, environment: [String: String] = [:]) throws -> ChildProcess {
        let log = dir + "/peer\(i).log"
        return try ChildProcess(name: "peer\(i)", executable: Binaries.peershare, arguments: arguments(of: i) + extra,
                                stdout: .discard, stderr: lines ? .lines(echo: false, copyTo: log) : .file(log), environment: environment)
    }

    /// Waits for every peer to exit on its own; returns their exit statuses.
    func waitForPeers(timeout: Duration = .seconds(120)) async -> [Int32?] {
        var statuses: [Int32?] = []
        for peer in peers { statuses.append(await peer.waitForExit(timeout: timeout)) }
        return statuses
    }

    func stopAll() async {
        for process in [owner] + peers { await process.stop(grace: .seconds(5)) }
    }

    func log(of peer: Int) -> String { tail(dir + "/peer\(peer).log") }
    func database(of peer: Int) -> String { dir + "/peer\(peer)/peer.db" }
}

struct SwarmError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@Suite("End to end: real owner and peer processes", .serialized)
struct EndToEndTests {
    @Test("five peers in a ring: identical copies, full summaries, an index row per chunk with provenance",
          arguments: StorageLayout.allCases)
    func ringOfFive(storage: StorageLayout) async throws {
        let size = 2_621_440 + 17
        let swarm = try await Swarm.start(fileSize: size, peers: 5, storage: storage, label: "ring-\(storage)")
        let statuses = await swarm.waitForPeers()
        await swarm.stopAll()
        let sourceBytes = try Data(contentsOf: URL(fileURLWithPath: swarm.source))
        let layout = try ChunkLayout(fileSize: Int64(size), chunkSize: 102_400)
        let expectedHashes = layout.chunkIDs.map { id in
            Digest32.of(sourceBytes[Int(layout.offset(of: id))..<Int(layout.offset(of: id)) + layout.size(of: id)])
        }
        for i in 1...5 {
            #expect(statuses[i - 1] == 0, "peer\(i) exit status \(String(describing: statuses[i - 1])):\n\(swarm.log(of: i))")
            let peerDir = swarm.dir + "/peer\(i)"
            #expect(fileDigest(peerDir + "/source.bin") == Digest32.of(sourceBytes), "peer\(i)'s copy differs")
            let summary = try String(contentsOfFile: peerDir + "/summary.txt", encoding: .utf8)
            #expect(summary == (0..<26).map { "\($0)\n" }.joined(), "peer\(i)'s summary")

            let db = try SQLiteConnection(path: peerDir + "/peer.db", mode: .readOnly)
            let rows = try db.query("SELECT chunk_id, size, sha256 FROM chunks ORDER BY chunk_id") { ($0.int(0), $0.int(1), $0.blob(2)) }
            #expect(rows.count == 26)
            for (id, chunkSize, hash) in rows {
                #expect(chunkSize == Int64(layout.size(of: ChunkID(UInt32(id)))))
                #expect(hash == expectedHashes[Int(id)].bytes, "peer\(i) chunk \(id) hash")
            }
            let sources = try db.query("SELECT DISTINCT s.kind, s.name FROM chunks c JOIN sources s ON s.id = c.source_id ORDER BY s.kind") { "\($0.text(0)):\($0.text(1))" }
            // In a ring the chunks come from the owner (the share) and from the download neighbour.
            #expect(sources == ["owner:owner", "peer:peer\(i % 5 + 1)"], "peer\(i) sources")
            let provenance = try db.scalarInt("SELECT count(*) FROM transfers WHERE direction = 'in' AND outcome = 'verified' AND bytes > 0 AND finished_at >= started_at")
            #expect(provenance == 26)
            let kinds = Set(try db.query("SELECT DISTINCT kind FROM events") { $0.text(0) })
            for kind in ["chunk_received", "chunk_requested", "list_sent", "list_received", "assembled", "chunk_sent", "request_handled"] {
                #expect(kinds.contains(kind), "peer\(i) has no \(kind) event")
            }
            #expect(try db.scalarText("PRAGMA integrity_check") == "ok")
            #expect(try db.scalarText("SELECT storage FROM node") == storage.rawValue)
            // A single file is written once, in place: the folder holds the file and nothing
            // else of its size, and no chunk files.
            let entries = Set(try FileManager.default.contentsOfDirectory(atPath: peerDir)).subtracting(["peer.db", "peer.db-wal", "peer.db-shm", "summary.txt"])
            #expect(entries == (storage == .chunkFiles ? ["chunks", "source.bin"] : ["source.bin"]), "peer\(i): \(entries)")
            let verify = try await runCommand(Binaries.inspect, ["verify", "--db", peerDir + "/peer.db"])
            #expect(verify.status == 0 && verify.stdout.contains("26 indexed chunks checked"), "\(verify)")
        }
        let ownerEntries = try FileManager.default.contentsOfDirectory(atPath: swarm.dir + "/owner")
        #expect(ownerEntries.contains("chunks") == (storage == .chunkFiles), "a single-file owner serves its source, with no copy: \(ownerEntries)")
        let ownerDB = try SQLiteConnection(path: swarm.dir + "/owner/owner.db", mode: .readOnly)
        #expect(try ownerDB.scalarInt("SELECT count(*) FROM chunks") == 26)
        #expect(try ownerDB.scalarInt("SELECT count(DISTINCT chunk_id) FROM transfers WHERE direction = 'out'") == 26, "the owner should have sent each chunk once")
    }

    @Test("edge-sized files: empty, smaller than a chunk, an exact multiple of the chunk size",
          arguments: [0, 1, 102_399, 4 * 102_400], StorageLayout.allCases)
    func edgeSizes(size: Int, storage: StorageLayout) async throws {
        let swarm = try await Swarm.start(fileSize: size, peers: 2, storage: storage, label: "edge\(size)-\(storage)")
        let statuses = await swarm.waitForPeers()
        await swarm.stopAll()
        let digest = fileDigest(swarm.source)
        for i in 1...2 {
            #expect(statuses[i - 1] == 0, "peer\(i):\n\(swarm.log(of: i))")
            #expect(fileDigest(swarm.dir + "/peer\(i)/source.bin") == digest)
        }
    }

    @Test("the demo runs a swarm and reports every peer complete", arguments: StorageLayout.allCases)
    func demo(storage: StorageLayout) async throws {
        let dir = temporaryDirectory()
        let result = try await runCommand(Binaries.peershare, ["demo", "--size", "700KiB", "--peers", "3", "--dir", dir, "--quiet", "--storage", storage.rawValue],
                                          timeout: .seconds(120))
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("result: 3/3 peers complete and identical, 716800 bytes each"))
    }
}

@Suite("Bad command-line input: one clear line, non-zero exit, no stack trace", .serialized)
struct CommandLineErrorTests {
    func expectOneCleanError(_ result: CommandResult, containing text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status != 0, sourceLocation: sourceLocation)
        let last = result.stderr.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.hasPrefix("peershare: error: "), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(last.contains(text), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        for marker in ["Fatal error", "Stack dump", "Backtrace", "Current stack trace", "💣"] {
            #expect(!result.stderr.contains(marker), "crash marker in stderr: \(result.stderr)", sourceLocation: sourceLocation)
        }
    }

    @Test("a missing file")
    func missingFile() async throws {
        let dir = temporaryDirectory()
        let result = try await runCommand(Binaries.peershare, ["owner", "--file", dir + "/nope.bin", "--port", "0", "--dir", dir + "/o"])
        expectOneCleanError(result, containing: "nope.bin")
        #expect(result.stderr.contains("No such file or directory"), "the errno, not a guess")
    }

    @Test("a port that is already in use")
    func portInUse() async throws {
        let swarm = try await Swarm.start(fileSize: 1000, peers: 1)
        defer { Task { await swarm.stopAll() } }
        _ = await swarm.waitForPeers()
        let dir = temporaryDirectory()
        let result = try await runCommand(Binaries.peershare, ["owner", "--file", swarm.source, "--port", "\(swarm.ownerPort)", "--dir", dir + "/o"])
        await swarm.stopAll()
        expectOneCleanError(result, containing: "cannot listen on 127.0.0.1:\(swarm.ownerPort): address already in use")
    }

    @Test("an owner that cannot be reached: bounded retries, each logged, then the error")
    func unreachableOwner() async throws {
        let dir = temporaryDirectory()
        let port = try reserveFreePorts(1)[0]
        let result = try await runCommand(Binaries.peershare, ["peer", "--owner", "127.0.0.1:\(port)", "--port", "0", "--dir", dir, "--connect-timeout", "1"])
        expectOneCleanError(result, containing: "cannot reach 127.0.0.1:\(port): connection refused")
        #expect(result.stderr.contains("retry 1 in 10 ms"))
        #expect(result.stderr.contains("retry 3 in 40 ms"))
    }

    @Test("malformed HOST:PORT", arguments: ["nonsense", "127.0.0.1:99999", "127.0.0.1:", ":7000"])
    func malformedEndpoint(text: String) async throws {
        let dir = temporaryDirectory()
        let result = try await runCommand(Binaries.peershare, ["peer", "--owner", text, "--port", "0", "--dir", dir])
        expectOneCleanError(result, containing: "not a valid HOST:PORT")
        #expect(result.stderr.split(separator: "\n").count == 1, "expected exactly one line: \(result.stderr)")
    }

    @Test("an invalid option value", arguments: [
        (["owner", "--file", "x", "--port", "70000"], "--port must be from 0 to 65535"),
        // Numbers that used to overflow on their way to a Duration or a share size.
        (["peer", "--owner", "127.0.0.1:1", "--port", "0", "--dir", "d", "--connect-timeout", "inf"], "--connect-timeout must be between 0 and 86400 seconds"),
        (["peer", "--owner", "127.0.0.1:1", "--port", "0", "--dir", "d", "--neighbour-timeout", "1e16"], "--neighbour-timeout must be between 0 and 86400 seconds"),
        (["demo", "--timeout", "inf"], "--timeout must be between 0 and 86400 seconds"),
        (["owner", "--file", "x", "--port", "0", "--peers", "9223372036854775807"], "--peers must be from 1 to 8000000"),
        (["demo", "--size", "-5"], "--size"),
    ])
    func badOption(arguments: [String], message: String) async throws {
        let result = try await runCommand(Binaries.peershare, arguments)
        expectOneCleanError(result, containing: message)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }
}
