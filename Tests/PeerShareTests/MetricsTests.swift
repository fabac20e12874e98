import Foundation
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareStore

/// A tool from the system's packages, or nil: tests that need one are skipped without it.
enum SystemTool {
    static func path(_ name: String) -> String? {
        ["/usr/bin/", "/usr/local/bin/", "/bin/"].map { $0 + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}

/// Samples of a Prometheus text exposition, by name with labels (`name{a="b"}`).
func parseExposition(_ text: String) -> [String: Double] {
    var samples: [String: Double] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        samples[String(line[..<space])] = value
    }
    return samples
}

/// An owner and two peers in a ring, each with `--http`; the peers stay up once complete.
struct ObservedSwarm {
    let dir: String
    let owner: ChildProcess
    let ownerHTTP: Int
    let peers: [ChildProcess]
    let peerHTTP: [Int]

    static func start(fileSize: Int, label: String = #function) async throws -> ObservedSwarm {
        let dir = temporaryDirectory(label)
        let (owner, wire, ownerHTTP) = try await startObservedOwner(dir: dir, fileSize: fileSize)
        var peers: [ChildProcess] = [], ports: [Int] = []
        do {
            let wirePorts = try reserveFreePorts(2)
            // Both started before either is waited for, so that each finds the other soon.
            for i in 0..<2 {
                peers.append(try startPeer("peer\(i + 1)", storage: .chunkFiles, dir: dir, owner: "127.0.0.1:\(wire)", port: wirePorts[i],
                                           downloadFrom: ["127.0.0.1:\(wirePorts[1 - i])"], options: ["--keep-serving", "--http", "127.0.0.1:0"]))
            }
            for peer in peers { ports.append(try await httpPort(of: peer)) }
        } catch {
            for process in peers + [owner] { process.signal(SIGKILL) }
            throw error
        }
        return ObservedSwarm(dir: dir, owner: owner, ownerHTTP: ownerHTTP, peers: peers, peerHTTP: ports)
    }

    func stop() async {
        for process in peers + [owner] { await process.stop() }
    }

    /// For `defer`: synchronous, so that no process outlives a failed test.
    func kill() {
        for process in peers + [owner] { process.signal(SIGKILL) }
    }

    func waitUntilComplete() async -> Bool {
        for peer in peers where !(await waitForAssembly(peer, timeout: .seconds(90))) { return false }
        return true
    }
}

@Suite("Metrics and status over --http", .serialized)
struct MetricsTests {
    @Test("at the end of a swarm, /metrics agrees with each index: chunks held, bytes by source, bytes sent by receiver")
    func metricsAgreeWithIndex() async throws {
        let swarm = try await ObservedSwarm.start(fileSize: 3_000_000)
        defer { swarm.kill() }
        #expect(await swarm.waitUntilComplete(), "\(tail(swarm.dir + "/peer1.log"))")
        for (i, port) in swarm.peerHTTP.enumerated() {
            let samples = parseExposition(try await RawHTTP.get(port: port, "/metrics").body)
            let db = try SQLiteConnection(path: swarm.dir + "/peer\(i + 1)/peer.db", mode: .readOnly)
            #expect(samples["peershare_chunks_held"] == Double(try db.scalarInt("SELECT count(*) FROM chunks") ?? -1))
            #expect(samples["peershare_chunks"] == Double(try db.scalarInt("SELECT chunk_count FROM manifest") ?? -1))
            let bySource = try db.query("SELECT s.kind, s.name, sum(c.size) FROM chunks c JOIN sources s ON s.id = c.source_id GROUP BY s.id") {
                (kind: $0.text(0), name: $0.text(1), bytes: $0.int(2))
            }
            // Usually the owner and the other peer; the owner alone if the other was slow to start.
            #expect(!bySource.isEmpty && bySource.reduce(0) { $0 + $1.bytes } == 3_000_000, "peer\(i + 1): \(bySource)")
            for row in bySource {
                #expect(samples["peershare_received_bytes_total{kind=\"\(row.kind)\",remote=\"\(row.name)\"}"] == Double(row.bytes),
                        "peer\(i + 1) from \(row.name)")
            }
            #expect(samples["peershare_connections_opened_total{direction=\"out\"}"] ?? 0 >= 2)
            #expect(samples["process_resident_memory_bytes"] ?? 0 > 0)
        }
        let owner = parseExposition(try await RawHTTP.get(port: swarm.ownerHTTP, "/metrics").body)
        // Upload rows are committed a few milliseconds after the bytes went out: a clean stop
        // flushes them, and nothing is sent after the scrape (both peers are complete).
        await swarm.owner.stop()
        let ownerDB = try SQLiteConnection(path: swarm.dir + "/owner/owner.db", mode: .readOnly)
        let sent = try ownerDB.query("SELECT s.name, sum(t.bytes) FROM transfers t JOIN sources s ON s.id = t.source_id WHERE t.direction = 'out' GROUP BY s.id") {
            (name: $0.text(0), bytes: $0.int(1))
        }
        #expect(!sent.isEmpty)
        for row in sent {
            #expect(owner["peershare_sent_bytes_total{kind=\"peer\",remote=\"\(row.name)\"}"] == Double(row.bytes), "owner to \(row.name)")
        }
        #expect(owner["peershare_upload_slots"] == 8)
    }

    @Test("/status mid-transfer lists the requests in flight, with source and age")
    func statusShowsRequestsInFlight() async throws {
        let dir = temporaryDirectory()
        // A crawling owner (100 KiB/s): the peer always waits for something.
        let (owner, wire, _) = try await startObservedOwner(dir: dir, fileSize: 2_000_000, peers: 1, options: ["--max-upload-rate", "100KiB"])
        defer { owner.signal(SIGKILL) }
        let peer = try startPeer("peer1", storage: .chunkFiles, dir: dir, owner: "127.0.0.1:\(wire)", options: ["--http", "127.0.0.1:0", "--wait-for-downloaders", "0"])
        defer { peer.signal(SIGKILL) }
        let port = try await httpPort(of: peer)
        #expect(await peer.waitForLine(timeout: .seconds(30)) { receivedChunk($0, from: "owner") } != nil)
        let status = try await fetchStatus(port: port)
        #expect(status["phase"] as? String == "downloading")
        let inFlight = status["in_flight"] as? [[String: Any]] ?? []
        #expect(!inFlight.isEmpty, "\(status)")
        for request in inFlight {
            #expect(request["source"] as? String == "owner")
            #expect((0..<20).contains(request["chunk"] as? Int ?? -1))
            #expect(request["age_ms"] as? Int ?? -1 >= 0)
        }
        let held = status["held"] as? [String: Any], missing = status["missing"] as? [String: Any]
        #expect((held?["count"] as? Int ?? 0) + (missing?["count"] as? Int ?? 0) == 20)
        #expect((held?["count"] as? Int ?? 0) >= 1)
    }

    @Test("promtool check metrics passes every node's /metrics",
          .enabled(if: SystemTool.path("promtool") != nil, "promtool is not installed (Debian's prometheus package)"))
    func promtoolAccepts() async throws {
        let swarm = try await ObservedSwarm.start(fileSize: 1_000_000)
        defer { swarm.kill() }
        #expect(await swarm.waitUntilComplete())
        for port in [swarm.ownerHTTP] + swarm.peerHTTP {
            let path = swarm.dir + "/metrics-\(port).txt"
            try (try await RawHTTP.get(port: port, "/metrics").body).write(toFile: path, atomically: true, encoding: .utf8)
            let check = try await runCommand("/bin/sh", ["-c", "promtool check metrics < \(path)"])
            #expect(check.status == 0, "promtool: \(check.stdout) \(check.stderr)")
        }
    }

    @Test("a real Prometheus server scrapes a swarm's nodes, and its query API returns their peershare_ series",
          .enabled(if: SystemTool.path("prometheus") != nil, "prometheus is not installed (Debian's prometheus package)"))
    func prometheusScrapes() async throws {
        let swarm = try await ObservedSwarm.start(fileSize: 1_000_000)
        defer { swarm.kill() }
        #expect(await swarm.waitUntilComplete())
        let targets = ([swarm.ownerHTTP] + swarm.peerHTTP).map { "'127.0.0.1:\($0)'" }.joined(separator: ", ")
        let config = swarm.dir + "/prometheus.yml"
        try """
            global:
              scrape_interval: 1s
            scrape_configs:
              - job_name: peershare
                static_configs:
                  - targets: [\(targets)]
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let port = try reserveFreePorts(1)[0]
        let prometheus = try ChildProcess(name: "prometheus", executable: SystemTool.path("prometheus") ?? "prometheus",
                                          arguments: ["--config.file=\(config)", "--storage.tsdb.path=\(swarm.dir)/tsdb",
                                                      "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn"],
                                          stdout: .file(swarm.dir + "/prometheus.log"), stderr: .file(swarm.dir + "/prometheus.err"))
        defer { prometheus.signal(SIGKILL) }
        // Scrapes come every second and nothing announces one: ask until all three nodes' series are there (bounded).
        var series: [[String: Any]] = []
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let reply = try? await RawHTTP.get(port: port, "/api/v1/query?query=peershare_chunks_held"), reply.status == 200,
               let object = try? JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any],
               let data = object["data"] as? [String: Any], let result = data["result"] as? [[String: Any]], result.count == 3 {
                series = result
                break
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        #expect(series.count == 3, "\(tail(swarm.dir + "/prometheus.err"))")
        for sample in series {
            let value = (sample["value"] as? [Any])?.last as? String
            #expect(value == "10", "\(sample)")
            #expect((sample["metric"] as? [String: String])?["job"] == "peershare")
        }
    }
}
