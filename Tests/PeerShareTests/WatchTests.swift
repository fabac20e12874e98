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
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
            for field in ["at", "level", "node", "kind", "chunk_id", "source_kind", "source", "message"] {
                #expect(object[field] != nil, "\(field) missing in \(line)")
            }
            if object["kind"] as? String == "chunk_received", let node = object["node"] as? String, let chunk = object["chunk_id"] as? Int {
                #expect(object["source"] is String)
                received[node, default: []].insert(chunk)
            }
        }
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
