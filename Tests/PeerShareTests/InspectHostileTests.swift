import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import PeerShareCore
@testable import PeerShareInspect
@testable import PeerShareStore

/// A damaged or hostile index: the complete-peer fixture with rows rewritten past the schema's
/// CHECKs (`PRAGMA ignore_check_constraints`), or with a table rebuilt without its key.
struct HostileIndex: CustomTestStringConvertible, Sendable {
    let name: String
    let sql: [String]
    /// Command → what its refusal must say. Every other command must render.
    var refusals: [String: String] = [:]

    var testDescription: String { name }

    static let min = "-9223372036854775808"
    static let max = "9223372036854775807"
    static func source(_ name: String) -> String { "(SELECT id FROM sources WHERE name = '\(name)')" }

    static func invalidManifest(_ name: String, _ assignment: String, _ reason: String) -> HostileIndex {
        let refusal = "the index's manifest is invalid: " + reason
        return HostileIndex(name: "manifest: " + name, sql: ["UPDATE manifest SET " + assignment],
                            refusals: ["overview": refusal, "chunk": refusal, "report": refusal, "verify": refusal])
    }

    static let all: [HostileIndex] = [
        HostileIndex(name: "one event at Int64.min", sql: ["UPDATE events SET at = \(min) WHERE id = (SELECT min(id) FROM events)"]),
        HostileIndex(name: "every event at Int64.min", sql: ["UPDATE events SET at = \(min)"],
                     refusals: ["events-since": "--since 03:00:00 is outside the index's time range",
                                "events-until": "--until 23:59:59.999999 is outside the index's time range"]),
        // Int64.max is 04:00:54.775807 on its day: 03:00 that day exists, 05:00 does not.
        HostileIndex(name: "latest event at Int64.max", sql: ["UPDATE events SET at = \(max) WHERE id = (SELECT max(id) FROM events)"],
                     refusals: ["events-since": "--since 05:00:00 is outside the index's time range",
                                "events-until": "--until 23:59:59.999999 is outside the index's time range"]),
        HostileIndex(name: "times at both ends of Int64", sql: [
            "UPDATE chunks SET received_at = \(min) WHERE chunk_id = 0",
            "UPDATE chunks SET received_at = \(max) WHERE chunk_id = 4",
            "UPDATE runs SET started_at = \(min) WHERE id = (SELECT min(id) FROM runs)",
            "UPDATE runs SET started_at = \(max), stopped_at = \(min) WHERE id = (SELECT max(id) FROM runs)",
            "UPDATE transfers SET started_at = \(min), finished_at = \(max)",
            "UPDATE manifest SET recorded_at = \(min), assembled_at = \(max)",
        ]),
        HostileIndex(name: "a 10 TB chunk in 1 µs", sql: [
            "UPDATE chunks SET size = 10000000000000, duration_us = 1 WHERE chunk_id = 0",
            "UPDATE manifest_chunks SET size = 10000000000000 WHERE chunk_id = 0",
            "UPDATE transfers SET bytes = 10000000000000, finished_at = started_at + 1",
        ]),
        // One group of `sources` each, so SourceReport adds them in Swift (saturating); the
        // overview's SQL sum() over both refuses with SQLite's own overflow check.
        HostileIndex(name: "bytes summing past Int64.max", sql: [
            "UPDATE transfers SET bytes = \(max) WHERE direction = 'out'",
            "INSERT INTO transfers (chunk_id, direction, source_id, started_at, finished_at, bytes, outcome) VALUES (1, 'out', \(source("peer3")), 1, \(max), \(max), 'rejected')",
            "UPDATE chunks SET size = \(max) WHERE chunk_id = 4",
        ], refusals: ["overview": "is damaged: a sum of its rows overflows 64 bits"]),
        HostileIndex(name: "chunk IDs at both ends of Int64", sql: [
            "UPDATE chunks SET chunk_id = \(max) WHERE chunk_id = 4",
            "UPDATE chunks SET chunk_id = -1 WHERE chunk_id = 3",
            "UPDATE transfers SET chunk_id = \(min) WHERE chunk_id = 2",
            "UPDATE events SET chunk_id = \(max) WHERE chunk_id = 1",
            "INSERT INTO share (chunk_id) VALUES (\(max))",
        ]),
        HostileIndex(name: "no manifest, chunk IDs at both ends of Int64", sql: [
            "DELETE FROM manifest",
            "UPDATE chunks SET chunk_id = \(max) WHERE chunk_id = 4",
            "UPDATE chunks SET chunk_id = \(min) WHERE chunk_id = 3",
        ], refusals: ["chunk": "has no manifest yet, so no chunks"]),
        invalidManifest("chunk_count -1", "chunk_count = -1", "chunk_count -1 is outside 0...8000000"),
        invalidManifest("chunk_count Int64.min", "chunk_count = \(min)", "chunk_count \(min) is outside 0...8000000"),
        invalidManifest("chunk_count Int64.max", "chunk_count = \(max)", "chunk_count \(max) is outside 0...8000000"),
        invalidManifest("chunk_count 10^12", "chunk_count = 1000000000000, file_size = 100000000000000",
                        "chunk_count 1000000000000 is outside 0...8000000"),
        invalidManifest("chunk_count not the file's", "chunk_count = 7",
                        "chunk_count 7 does not match file_size 450 in chunks of 100 bytes (5 chunks)"),
        invalidManifest("chunk_size 0", "chunk_size = 0", "chunk_size 0 is outside 1...1048576"),
        invalidManifest("chunk_size Int64.min", "chunk_size = \(min)", "chunk_size \(min) is outside 1...1048576"),
        invalidManifest("file_size -1", "file_size = -1", "file_size -1 is negative"),
        invalidManifest("file_size Int64.max", "file_size = \(max)",
                        "file_size \(max) in chunks of 100 bytes: the file would need 92233720368547759 chunks"),
        HostileIndex(name: "sources without a key, one id twice", sql: [
            "CREATE TABLE old_sources AS SELECT * FROM sources",
            "DROP TABLE sources",
            "CREATE TABLE sources (id INTEGER, kind TEXT, name TEXT, address TEXT, node_id BLOB)",
            "INSERT INTO sources SELECT * FROM old_sources",
            "INSERT INTO sources SELECT id, 'peer', 'impostor', NULL, NULL FROM old_sources",
            "DROP TABLE old_sources",
        ]),
        // Chunk 4's row gone, so verify looks its hash up in manifest_chunks, which has it twice.
        HostileIndex(name: "manifest_chunks without a key, one chunk twice", sql: [
            "CREATE TABLE old_chunks AS SELECT * FROM manifest_chunks",
            "DROP TABLE manifest_chunks",
            "CREATE TABLE manifest_chunks (chunk_id INTEGER, size INTEGER, sha256 BLOB)",
            "INSERT INTO manifest_chunks SELECT * FROM old_chunks",
            "INSERT INTO manifest_chunks SELECT chunk_id, size, zeroblob(32) FROM old_chunks WHERE chunk_id = 4",
            "DROP TABLE old_chunks",
            "DELETE FROM chunks WHERE chunk_id = 4",
        ], refusals: ["verify": "the index's manifest hashes are malformed or incomplete"]),
    ]

    /// The fixture, rewritten.
    func build(_ label: String) throws -> InspectFixture {
        let f = try InspectFixture.completePeer(label)
        let db = try SQLiteConnection(path: f.db, mode: .readWrite)
        defer { db.close() }
        try db.execute("PRAGMA ignore_check_constraints = ON")
        try db.execute("PRAGMA foreign_keys = OFF")
        for statement in sql { try db.execute(statement) }
        return f
    }
}

/// Every inspect command, in every output format, as the CLI runs it.
enum InspectRun {
    static let commands = ["overview", "chunks", "chunk", "sources", "events", "events-since", "events-until", "report", "verify"]

    static func run(_ command: String, _ database: InspectDatabase) async throws -> String {
        let formats = OutputFormat.allCases
        let hour: Int64 = 3_600_000_000
        switch command {
        case "overview": return try formats.map { try Overview.load(database).render($0) }.joined()
        case "chunks":
            let filters: [ChunkList.Filter] = [.all, .missing, .from("peer")]
            return try filters.flatMap { filter in try formats.map { try ChunkList.load(database, filter: filter).render($0) } }.joined()
        case "chunk": return try (0..<5).flatMap { id in try formats.map { try ChunkStory.load(database, chunk: id).render($0) } }.joined()
        case "sources": return try formats.map { try SourceReport.load(database).render($0) }.joined()
        case "events": return try formats.map { try EventLog.load(database).render($0) }.joined()
        case "events-since":
            return try [3 * hour, 5 * hour].map { try EventLog.load(database, filter: .init(since: .timeOfDay($0))).render(.table) }.joined()
        case "events-until": return try EventLog.load(database, filter: .init(until: .timeOfDay(24 * hour - 1))).render(.json)
        case "report": return try SwarmReport.load([database]).html()
        case "verify": return try await formats.asyncMap { try await VerifyReport.run(database).render($0) }.joined()
        default: fatalError("unknown command \(command)")
        }
    }
}

private extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}

@Suite("peershare-inspect on damaged and hostile indexes: a clear refusal or sane output, never a trap")
struct InspectHostileTests {
    @Test("every command on a hostile index", arguments: HostileIndex.all)
    func everyCommand(_ index: HostileIndex) async throws {
        let f = try index.build(index.name)
        let database = try f.open()
        for command in InspectRun.commands {
            do {
                let output = try await InspectRun.run(command, database)
                #expect(index.refusals[command] == nil, "\(command) rendered; expected a refusal: \(index.refusals[command] ?? "")")
                #expect(!output.isEmpty)
            } catch let error as InspectError {
                let expected = try #require(index.refusals[command], "\(command) refused: \(error)")
                #expect(error.description.contains(expected), "\(command): \(error)")
                #expect(!error.description.contains("\n"))
            }
        }
    }

    @Test("values that do not fit are shown as \"-\" (table) or null (JSON), not computed")
    func dashes() throws {
        let ends = try HostileIndex.all.first { $0.name == "times at both ends of Int64" }!.build("ends").open()
        let overview = try record(Overview.load(ends).render(.json))
        #expect(overview["complete_after_us"] is NSNull)
        #expect(overview["first_started_at"] as? String == "-290308-12-21T19:59:05.224192Z")
        let story = try ChunkStory.load(ends, chunk: 0)
        #expect(story.attempts.first?.durationMicros == nil)
        #expect(story.render(.table).contains("  -  "))

        let fast = try HostileIndex.all.first { $0.name == "a 10 TB chunk in 1 µs" }!.build("fast").open()
        let chunk0 = try #require(try records(ChunkList.load(fast).render(.json)).first)
        #expect(chunk0["bytes_per_second"] is NSNull)
        #expect(try SourceReport.load(fast).rows.first { $0.source.name == "owner" }?.receiveRate == nil)

        let sums = try HostileIndex.all.first { $0.name == "bytes summing past Int64.max" }!.build("sums").open()
        #expect(try SourceReport.load(sums).rows.first { $0.source.name == "peer3" }?.sentBytes == Int64.max)
    }

    @Test("times at the ends of Int64 print, and a time of day on such a day is refused, not wrapped")
    func timestamps() {
        #expect(Timestamp.iso(Int64.min) == "-290308-12-21T19:59:05.224192Z")
        #expect(Timestamp.iso(Int64.max) == "294247-01-10T04:00:54.775807Z")
        #expect(Timestamp.short(Int64.min + 1) == "-290308-12-21 19:59:05.224")
        #expect(Timestamp.iso(-1) == "1969-12-31T23:59:59.999999Z")
        #expect(Timestamp.startOfDay(Int64.min) == nil)
        #expect(Timestamp.startOfDay(Int64.max) == Int64.max - 14_454_775_807)
        #expect(Timestamp.startOfDay(-1) == -86_400_000_000)
        let hour: Int64 = 3_600_000_000
        #expect(TimeArgument.timeOfDay(3 * hour).resolve(latest: Int64.max) == Int64.max - 14_454_775_807 + 3 * hour)
        #expect(TimeArgument.timeOfDay(5 * hour).resolve(latest: Int64.max) == nil)
        #expect(TimeArgument.timeOfDay(0).resolve(latest: Int64.min) == nil)
        #expect(TimeArgument.timeOfDay(5 * hour + 250_000).text == "05:00:00.250000")
        #expect(Human.bytesPerSecond(bytes: 10_000_000_000_000, micros: 1) == nil)
        #expect(Human.bytesPerSecond(bytes: Int64.max, micros: 1) == nil)
        #expect(Human.bytesPerSecond(bytes: Int64.min, micros: 1) == nil)
        #expect(Human.bytesPerSecond(bytes: 1_000, micros: 500) == 2_000_000)
        #expect(Human.rate(approximately: .infinity) == "-" && Human.rate(approximately: .nan) == "-")
        #expect(Int64.max.saturatingAdd(1) == .max && Int64.min.saturatingAdd(-1) == .min)
    }

    @Test("a swarm report of hand-built hostile nodes draws a bounded, well-formed page")
    func hostileSwarmNodes() throws {
        func node(_ name: String, chunkCount: Int64?, chunks: [Int64], times: [Int64]) -> SwarmReport.Node {
            let arrivals = zip(chunks, times).map { SwarmReport.Arrival(chunk: $0, at: $1, bytes: Int64.max, durationMicros: 1, sourceKind: "peer", source: "peer9") }
            return SwarmReport.Node(name: name, role: "peer", database: name + ".db", fileName: "f", fileSize: Int64.max, chunkCount: chunkCount,
                                    arrivals: arrivals, rejections: [.init(chunk: Int64.min, at: Int64.min, source: "peer9", detail: nil)],
                                    runStarts: [Int64.max, Int64.min], assembledAt: nil)
        }
        let report = SwarmReport(nodes: [
            node("huge", chunkCount: 1_000_000_000_000, chunks: [0, 1, Int64.max], times: [Int64.min, Int64.max, 0]),
            node("negative", chunkCount: -5, chunks: [-1, Int64.min], times: [Int64.max, Int64.max]),
            node("none", chunkCount: nil, chunks: [Int64.max, 7, Int64.min], times: [0, 1, Int64.min + 1]),
            node("max", chunkCount: Int64.max, chunks: [3, 3], times: [Int64.max, Int64.max]),
        ])
        let html = report.html()
        let cells = html.components(separatedBy: "<rect class=\"cell").count - 1
        #expect(cells <= 2 * SwarmReport.maximumMapCells + 1)
        #expect(html.contains("chunks 0 to 399: 2 held"))
        let parser = XMLParser(data: Data(html.utf8))
        #expect(parser.parse(), "\(parser.parserError.map { "\($0)" } ?? "")")
    }
}

@Suite("peershare-inspect, the executable, on hostile input", .serialized)
struct InspectHostileCommandTests {
    func expectOneLineError(_ result: CommandResult, containing text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status != 0, "exit 0 for an error: \(result.stdout)", sourceLocation: sourceLocation)
        #expect(result.stderr.split(separator: "\n").count == 1, "expected one line: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.hasPrefix("peershare-inspect: error: "), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(text), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stdout.isEmpty, "stdout: \(result.stdout)", sourceLocation: sourceLocation)
    }

    @Test("a hostile manifest, a time past Int64 and unbounded options are one line and a non-zero exit")
    func refusals() async throws {
        let manifest = try HostileIndex.invalidManifest("count", "chunk_count = \(HostileIndex.max)", "").build("cli-manifest")
        for command in [[], ["chunk", "0"], ["report", "--out", manifest.dir + "/swarm.html"]] {
            expectOneLineError(try await runCommand(Binaries.inspect, command + ["--db", manifest.db]),
                               containing: "\(manifest.db): the index's manifest is invalid: chunk_count \(HostileIndex.max) is outside 0...8000000")
        }
        let late = try HostileIndex.all.first { $0.name == "latest event at Int64.max" }!.build("cli-late")
        expectOneLineError(try await runCommand(Binaries.inspect, ["events", "--since", "05:00", "--db", late.db]),
                           containing: "--since 05:00:00 is outside the index's time range: its latest event is at 294247-01-10 04:00:54.775 UTC")
        let ok = try await runCommand(Binaries.inspect, ["events", "--since", "03:00", "--db", late.db])
        #expect(ok.status == 0 && ok.stdout.contains("294247-01-10 04:00:54.775"), "\(ok.stderr)")
        for value in ["inf", "nan", "1e17", "0"] {
            expectOneLineError(try await runCommand(Binaries.inspect, ["events", "--follow", "--follow-for", value, "--db", late.db]),
                               containing: "--follow-for must be more than 0 and at most 31536000 seconds")
        }
        let missing = temporaryDirectory() + "/nothing"
        expectOneLineError(try await runCommand(Binaries.inspect, ["report", "--dir", missing, "--out", temporaryDirectory() + "/r.html"]),
                           containing: "cannot read the folder \(missing): no such file or directory")
        expectOneLineError(try await runCommand(Binaries.inspect, ["report", "--dir", late.db, "--out", temporaryDirectory() + "/r.html"]),
                           containing: "cannot read the folder \(late.db): not a directory")
    }
}
