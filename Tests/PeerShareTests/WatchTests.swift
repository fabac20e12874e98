import CPosixShim
import Foundation
import PeerShareCLI
import Testing

/// The demo as a pipe sees it (as in CI): plain log lines only, JSON when asked, results on
/// stdout, and the report it writes.
@Suite(.serialized) struct WatchEndToEndTests {
    @Test func demoThroughAPipeWritesJSONLogsNoEscapesAndAReport() async throws {
        let dir = temporaryDirectory("watch-demo")
        let result = try await runCommand(Binaries.peershare, ["demo", "--size", "600KiB", "--peers", "3", "--chunk-size", "102400",
                                                               "--dir", dir, "--log-format", "json", "--report", "--timeout", "60"],
                                          timeout: .seconds(90))
        #expect(result.status == 0, "\(result.stderr.suffix(2000))")
        // Not a terminal: no control characters at all, on either stream.
        for (name, text) in [("stdout", result.stdout), ("stderr", result.stderr)] {
            #expect(!text.unicodeScalars.contains { $0 == "\u{1B}" || $0 == "\r" }, "\(name) holds control characters")
        }
        // stderr: every line one JSON object with the event row's fields.
        let lines = result.stderr.split(separator: "\n")
        var received: [String: Set<Int>] = [:]
        var peer1Rows: Set<String> = []
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
            for field in ["at", "level", "node", "kind", "chunk_id", "source_kind", "source", "message"] {
                #expect(object[field] != nil, "\(field) missing in \(line)")
            }
            if object["kind"] as? String == "chunk_received", let node = object["node"] as? String, let chunk = object["chunk_id"] as? Int {
                #expect(object["source"] is String)
                received[node, default: []].insert(chunk)
                if node == "peer1" { peer1Rows.insert("\(object["at"]!) \(chunk) \(object["source_kind"]!) \(object["source"]!) \(object["message"]!)") }
            }
        }
        // The log lines and the index's rows are the same events, field for field.
        let events = try await runCommand(Binaries.inspect, ["events", "--db", dir + "/peer1/peer.db", "--kind", "chunk_received", "--format", "json"])
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(events.stdout.utf8)) as? [[String: Any]])
        #expect(Set(rows.map { "\($0["at"]!) \($0["chunk_id"]!) \($0["source_kind"]!) \($0["source"]!) \($0["message"]!)" }) == peer1Rows)
        #expect(rows.count == 6)
        // 600 KiB in 100 KiB chunks: every peer logged receiving each of the 6 chunks.
        #expect(received == ["peer1": Set(0..<6), "peer2": Set(0..<6), "peer3": Set(0..<6)])
        // stdout: the results, and the report's path.
        #expect(result.stdout.contains("result: 3/3 peers complete and identical"))
        let reportLine = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("report: ") })
        let path = String(reportLine.dropFirst("report: ".count))
        #expect(path == URL(fileURLWithPath: dir).standardizedFileURL.path + "/swarm.html")
        let html = try String(contentsOfFile: path, encoding: .utf8)
        #expect(html.components(separatedBy: "class=\"peer-row\"").count - 1 == 3)
        #expect(html.components(separatedBy: "class=\"arrival\"").count - 1 == 18)

        // The same report from peershare-inspect, given the demo folder.
        let out = dir + "/again.html"
        let inspect = try await runCommand(Binaries.inspect, ["report", "--dir", dir, "--out", out, "--quiet"])
        #expect(inspect.status == 0 && inspect.stdout == out + "\n" && inspect.stderr.isEmpty, "\(inspect.stderr)")
        #expect(try String(contentsOfFile: out, encoding: .utf8).components(separatedBy: "class=\"arrival\"").count - 1 == 18)
    }

    @Test func quietDemoPrintsOnlyResults() async throws {
        let dir = temporaryDirectory("watch-quiet")
        let result = try await runCommand(Binaries.peershare, ["demo", "--size", "200KiB", "--peers", "2", "--dir", dir, "--quiet"], timeout: .seconds(90))
        #expect(result.status == 0)
        #expect(result.stderr.isEmpty, "\(result.stderr)")
        #expect(result.stdout.contains("result: 2/2 peers complete and identical"))
    }

    @Test func badLoggingArgumentsAreOneLineErrors() async throws {
        let level = try await runCommand(Binaries.peershare, ["peer", "--owner", "127.0.0.1:1", "--port", "0", "--dir", temporaryDirectory(), "--log-level", "loud"])
        #expect(level.status == 64)
        #expect(level.stderr.hasPrefix("peershare: error: ") && level.stderr.split(separator: "\n").count == 1, "\(level.stderr)")
        let both = try await runCommand(Binaries.inspect, ["--db", "x.db", "--quiet", "--log-level", "debug"])
        #expect(both.status == 64)
        #expect(both.stderr.contains("--quiet and --log-level debug contradict each other"))
        let format = try await runCommand(Binaries.peershare, ["demo", "--log-format", "xml"])
        #expect(format.status == 64 && format.stderr.split(separator: "\n").count == 1)
    }

    @Test func reportArgumentsAndMissingInputs() async throws {
        let none = try await runCommand(Binaries.inspect, ["report"])
        #expect(none.status == 64 && none.stderr.contains("give the indexes with --db, or a demo folder with --dir"))
        let missing = try await runCommand(Binaries.inspect, ["report", "--db", "/nonexistent/peer.db"])
        #expect(missing.status == 1 && missing.stderr == "peershare-inspect: error: no such file: /nonexistent/peer.db\n")
        let notDemo = try await runCommand(Binaries.inspect, ["report", "--dir", temporaryDirectory()])
        #expect(notDemo.status == 1 && notDemo.stderr.contains("holds no peerN/peer.db"))
    }
}

/// A pseudo-terminal for a child's stderr, so that it sees a terminal of a known width.
struct PseudoTerminal {
    let master: Int32
    let slave: FileHandle

    init(columns: UInt16) throws {
        struct PTYError: Error {}
        var name = [CChar](repeating: 0, count: 256)
        master = peershare_open_pty(&name, name.count)
        guard master >= 0 else { throw PTYError() }
        let path = String(decoding: name.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let fd = open(path, O_RDWR | O_NOCTTY)
        guard fd >= 0 else { throw PTYError() }
        var size = winsize(ws_row: 40, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(fd, UInt(TIOCSWINSZ), &size)
        // Raw output: the bytes the program wrote, without "\n" becoming "\r\n".
        var mode = termios()
        tcgetattr(fd, &mode)
        cfmakeraw(&mode)
        tcsetattr(fd, TCSANOW, &mode)
        slave = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    /// Everything written to the terminal until every writer has closed it (EIO on Linux),
    /// or at most `limit`; read on a thread of its own so that the writer never blocks on a
    /// full buffer.
    func readAll(limit: Duration = .seconds(120)) async -> String {
        let master = self.master
        let deadline = ContinuousClock.now + limit
        return await withCheckedContinuation { continuation in
            Thread {
                var bytes: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while ContinuousClock.now < deadline {
                    var ready = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
                    if poll(&ready, 1, 250) == 0 { continue }
                    let count = read(master, &buffer, buffer.count)
                    if count < 0 && errno == EINTR { continue }
                    guard count > 0 else { break }
                    bytes += buffer[0..<count]
                }
                close(master)
                continuation.resume(returning: String(decoding: bytes, as: UTF8.self))
            }.start()
        }
    }
}

@Suite(.serialized) struct LiveLinesEndToEndTests {
    @Test func demoOnATerminalDrawsOneLinePerPeerInPlace() async throws {
        let dir = temporaryDirectory("watch-tty")
        let out = dir + "/stdout"
        let terminal = try PseudoTerminal(columns: 100)
        let demo = try ChildProcess(name: "demo", executable: Binaries.peershare,
                                    arguments: ["demo", "--size", "1MiB", "--peers", "2", "--dir", dir + "/run", "--log-level", "warning"],
                                    stdout: .file(out), stderr: .handle(terminal.slave), environment: ["TERM": "xterm"])
        // Only the child holds the terminal open now, so reading ends when it exits.
        try terminal.slave.close()
        let screen = Task { await terminal.readAll() }
        let status = await demo.waitForExit(timeout: .seconds(90))
        if status == nil { await demo.stop(grace: .seconds(1)) }
        let text = await screen.value
        #expect(status == 0, "\(text.suffix(2000))")
        // The two-line block is erased and redrawn in place…
        #expect(text.contains("\r\u{1B}[2A\u{1B}[J"), "\(text.suffix(2000))")
        // …and its last drawing shows both peers complete, each line within the width.
        let last = text.components(separatedBy: "\u{1B}[J").last ?? ""
        let lines = last.split(separator: "\n").map(String.init)
        #expect(lines.count == 2, "\(last)")
        for (i, line) in lines.enumerated() {
            #expect(line.hasPrefix("peer\(i + 1) [####"), "\(line)")
            #expect(line.contains("11/11 chunks 100%") && line.hasSuffix("exit 0"), "\(line)")
            #expect(line.count < 100)
        }
        // The results on stdout (not a terminal) carry no control characters.
        let results = try String(contentsOfFile: out, encoding: .utf8)
        #expect(results.contains("result: 2/2 peers complete and identical"))
        #expect(!results.unicodeScalars.contains { $0 == "\u{1B}" || $0 == "\r" })
    }
}

extension LiveLinesEndToEndTests {
    @Test func peerOnATerminalDrawsItsProgressLine() async throws {
        let dir = temporaryDirectory("watch-tty-peer")
        _ = try writeTestFile(dir + "/movie.bin", size: 5 * 102_400 + 7)
        let owner = try ChildProcess(name: "owner", executable: Binaries.peershare,
                                     arguments: ["owner", "--file", dir + "/movie.bin", "--port", "0", "--dir", dir + "/owner", "--peers", "1", "--quiet"],
                                     stdout: .lines(echo: false), stderr: .discard)
        defer { Task { await owner.stop() } }
        let listening = try #require(await owner.waitForLine(prefix: "listening on ", timeout: .seconds(30)))
        let endpoint = String(listening.dropFirst("listening on ".count))

        let terminal = try PseudoTerminal(columns: 90)
        let peer = try ChildProcess(name: "peer", executable: Binaries.peershare,
                                    arguments: ["peer", "--name", "solo", "--owner", endpoint, "--port", "0", "--dir", dir + "/peer", "--wait-for-downloaders", "0"],
                                    stdout: .discard, stderr: .handle(terminal.slave), environment: ["TERM": "xterm"])
        try terminal.slave.close()
        let screen = Task { await terminal.readAll() }
        let status = await peer.waitForExit(timeout: .seconds(60))
        if status == nil { await peer.stop(grace: .seconds(1)) }
        let text = await screen.value
        #expect(status == 0, "\(text.suffix(2000))")
        // Log lines scroll above the one-line block, which is erased before each…
        #expect(text.contains("\r\u{1B}[1A\u{1B}[J"))
        #expect(text.contains(" solo received chunk "))
        // …and the line left on screen is the final state.
        let last = try #require(text.components(separatedBy: "\u{1B}[J").last)
        #expect(last.hasPrefix("solo [####") && last.contains("6/6 chunks 100%") && last.hasSuffix("assembled\n"), "\(last)")
        #expect(last.split(separator: "\n").allSatisfy { $0.count < 90 })
    }
}
