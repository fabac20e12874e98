import Foundation
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareInspect
@testable import PeerShareStore

// MARK: Helpers

/// Parses JSON output into Foundation values.
func parseJSON(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Any {
    try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
}

/// A strict RFC 4180 parser: rows of cells. Fails on a stray quote.
func parseCSV(_ text: String) throws -> [[String]] {
    struct BadCSV: Error {}
    var rows: [[String]] = []
    var row: [String] = []
    var cell = ""
    var quoted = false
    var chars = Array(text)[...]
    while let c = chars.popFirst() {
        if quoted {
            if c == "\"" {
                if chars.first == "\"" { cell.append("\""); chars.removeFirst() } else { quoted = false }
            } else {
                cell.append(c)
            }
        } else {
            switch c {
            case "\"" where cell.isEmpty: quoted = true
            case "\"": throw BadCSV()
            case ",": row.append(cell); cell = ""
            case "\n": row.append(cell); rows.append(row); row = []; cell = ""
            default: cell.append(c)
            }
        }
    }
    guard !quoted, row.isEmpty, cell.isEmpty else { throw BadCSV() }
    return rows
}

func records(_ text: String) throws -> [[String: Any]] {
    try #require(try parseJSON(text) as? [[String: Any]])
}

func record(_ text: String) throws -> [String: Any] {
    try #require(try parseJSON(text) as? [String: Any])
}

extension InspectFixture {
    func open() throws -> InspectDatabase { try InspectDatabase(path: db) }
    /// A report with the fixture's temporary folder replaced by DIR, for exact comparison.
    func normalised(_ text: String) -> String { text.replacingOccurrences(of: dir, with: "DIR") }
}

/// Every file in a folder (recursively) with its SHA-256: to prove nothing was changed.
/// SQLite's side files (-wal, -shm), which a reader of a WAL index may create, are left out.
func folderDigest(_ path: String) -> [String: String] {
    var out: [String: String] = [:]
    let enumerator = FileManager.default.enumerator(atPath: path)
    while let name = enumerator?.nextObject() as? String {
        if name.hasSuffix("-wal") || name.hasSuffix("-shm") { continue }
        var isFolder: ObjCBool = false
        let full = path + "/" + name
        guard FileManager.default.fileExists(atPath: full, isDirectory: &isFolder), !isFolder.boolValue else { continue }
        out[name] = fileDigest(full)?.hex ?? "unreadable"
    }
    return out
}

// MARK: Reports, in process

@Suite("peershare-inspect reports on fixture indexes")
struct InspectReportTests {
    @Test("overview: a complete peer over three runs, as a table")
    func overviewTable() throws {
        let f = try InspectFixture.completePeer()
        let text = f.normalised(try Overview.load(try f.open()).render(.table))
        #expect(text == """
            node      peer peer1
            index     DIR/peer.db (schema \(Migrations.latestVersion))
            folder    DIR
            storage   chunk files (DIR/chunks)
            file      movie.bin, 450 B, 5 chunks of 100 B
            sha256    8cc320995b6816bfb62d3eab11db4d75e12302caf61f2f38be640d0191a9ace8
            state     assembled at 2025-11-25 14:00:02.020
            chunks    5 of 5 held (100.0%), 450 B
            share     2 chunks from the owner, 2 held
            arrivals  first 2025-11-25 14:00:00.012, last 2025-11-25 14:00:02.010; complete 2.01 s after the first start
            runs      3 (2 restarts); last started 2025-11-25 14:00:02.000, stopped 2025-11-25 14:00:02.030: complete
            rejected  0 chunks failed verification

            received from  kind   chunks  bytes    busy  throughput
            owner          owner       2  200 B  6.0 ms  32.6 KiB/s
            peer2          peer        3  250 B  3.5 ms  69.8 KiB/s

            sent to  kind  chunks  bytes    busy  throughput
            peer3    peer       1  100 B  1.0 ms  97.7 KiB/s

            """)
    }

    @Test("overview JSON: complete, partial, owner and rejecting indexes")
    func overviewJSON() throws {
        let complete = try InspectFixture.completePeer()
        let c = try record(try Overview.load(try complete.open()).render(.json))
        #expect(c["role"] as? String == "peer" && c["name"] as? String == "peer1")
        #expect(c["state"] as? String == "assembled")
        #expect(c["chunks_held"] as? Int == 5 && c["chunk_count"] as? Int == 5 && c["bytes_held"] as? Int == 450)
        #expect(c["runs"] as? Int == 3 && c["restarts"] as? Int == 2)
        #expect(c["first_received_at"] as? String == "2025-11-25T14:00:00.012000Z")
        #expect(c["last_received_at"] as? String == "2025-11-25T14:00:02.010500Z")
        #expect(c["complete_after_us"] as? Int == 2_010_500)
        #expect(c["file_sha256"] as? String == complete.manifest.fileHash.hex)
        #expect(c["directory"] as? String == complete.dir)
        let from = try #require(c["received_from"] as? [[String: Any]])
        #expect(from.map { $0["source"] as? String } == ["owner", "peer2"])
        #expect(from.map { $0["chunks"] as? Int } == [2, 3])
        #expect(from[0]["busy_us"] as? Int == 6_000 && from[0]["bytes_per_second"] as? Int == 33_333)
        let to = try #require(c["sent_to"] as? [[String: Any]])
        #expect(to.count == 1 && to[0]["source"] as? String == "peer3" && to[0]["chunks"] as? Int == 1)

        let partial = try record(try Overview.load(try InspectFixture.partialPeer().open()).render(.json))
        #expect(partial["state"] as? String == "partial")
        #expect(partial["chunks_held"] as? Int == 2 && partial["share_chunks"] as? Int == 2 && partial["share_held"] as? Int == 1)
        #expect(partial["complete_after_us"] is NSNull && partial["last_run_stopped_at"] is NSNull)

        let owner = try record(try Overview.load(try InspectFixture.owner().open()).render(.json))
        #expect(owner["role"] as? String == "owner" && owner["state"] as? String == "complete")
        let split = try #require(owner["received_from"] as? [[String: Any]])
        #expect(split.count == 1 && split[0]["source"] as? String == "split from the file" && split[0]["source_kind"] as? String == "file")
        #expect(split[0]["chunks"] as? Int == 5)
        let uploads = try #require(owner["sent_to"] as? [[String: Any]])
        #expect(uploads.map { $0["source"] as? String } == ["peer1", "peer2", "peer3"])
        #expect(uploads.map { $0["chunks"] as? Int } == [2, 2, 1])
        #expect(uploads.map { $0["bytes"] as? Int } == [200, 200, 50])

        let rejecting = try record(try Overview.load(try InspectFixture.rejectingPeer().open()).render(.json))
        #expect(rejecting["rejected_chunks"] as? Int == 2)
        #expect(rejecting["last_run_outcome"] as? String == "stopped by signal")
    }

    @Test("chunks: a partial peer's table; --missing and --from as JSON")
    func chunks() throws {
        let f = try InspectFixture.partialPeer()
        let database = try f.open()
        #expect(try ChunkList.load(database).render(.table) == """
            chunk  size  sha256        state    share  source  received                 duration  rejected
                0   100  c22e490daa44  held            peer3   2025-11-25 14:00:00.025    5.0 ms
                1   100  b5013eee3fec  missing         -       -                               -
                2   100  53eaceebb43c  held     yes    owner   2025-11-25 14:00:00.020   10.0 ms
                3   100  3542ac309d95  missing  yes    -       -                               -
                4    50  aa988808a719  missing         -       -                               -
            5 chunks: 2 held, 3 missing

            """)
        let missing = try records(try ChunkList.load(database, filter: .missing).render(.json))
        #expect(missing.map { $0["chunk_id"] as? Int } == [1, 3, 4])
        #expect(missing.allSatisfy { $0["state"] as? String == "missing" && $0["source"] is NSNull })
        #expect(missing.map { $0["in_share"] as? Bool } == [false, true, false])

        let complete = try InspectFixture.completePeer().open()
        let fromPeer2 = try records(try ChunkList.load(complete, filter: .from("peer2")).render(.json))
        #expect(fromPeer2.map { $0["chunk_id"] as? Int } == [2, 3, 4])
        #expect(fromPeer2[0]["received_at"] as? String == "2025-11-25T14:00:01.011000Z")
        #expect(fromPeer2[0]["duration_us"] as? Int == 1_000 && fromPeer2[0]["bytes_per_second"] as? Int == 100_000)
        #expect(fromPeer2[0]["sha256"] as? String == f.manifest.hash(of: ChunkID(2)).hex)
        // A kind works as well as a name.
        #expect(try records(try ChunkList.load(complete, filter: .from("owner")).render(.json)).map { $0["chunk_id"] as? Int } == [0, 1])
        #expect(try records(try ChunkList.load(complete, filter: .from("peer")).render(.json)).count == 3)
        let error = #expect(throws: InspectError.self) { try ChunkList.load(complete, filter: .from("peer9")) }
        #expect(error?.description.contains("no source named peer9") == true)
        #expect(error?.description.contains("known: owner, peer2, peer3") == true)
        #expect(try ChunkList.load(complete, filter: .missing).render(.table) == "0 chunks missing\n")
    }

    @Test("chunk ID: every attempt, who sent it, verification, and who it went to")
    func chunkStory() throws {
        let rejecting = try InspectFixture.rejectingPeer().open()
        #expect(try ChunkStory.load(rejecting, chunk: 1).render(.table) == """
            chunk     1 of 5: 100 B
            sha256    b5013eee3fecd7a37067c1011524a0ade0171a1aa4f500225061b98bfd40dad9
            state     held: from the owner, at 2025-11-25 14:00:00.054, in 4.0 ms (24.4 KiB/s)

            received from  requested/started        finished                 duration  bytes  outcome   detail
            peer4          2025-11-25 14:00:00.020  2025-11-25 14:00:00.023    3.0 ms    100  rejected  SHA-256 000000000000 does not match the manifest's b5013eee3fec
            peer4          2025-11-25 14:00:00.030  2025-11-25 14:00:00.033    3.0 ms    100  rejected  SHA-256 000000000001 does not match the manifest's b5013eee3fec
            owner          2025-11-25 14:00:00.050  2025-11-25 14:00:00.054    4.0 ms    100  verified

            sent: to nobody yet

            time                     kind             chunk  source  message
            2025-11-25 14:00:00.023  chunk_rejected       1  peer4   rejected chunk 1 from peer4: SHA-256 000000000000 does not match the manifest's b5013eee3fec
            2025-11-25 14:00:00.033  chunk_rejected       1  peer4   rejected chunk 1 from peer4: SHA-256 000000000001 does not match the manifest's b5013eee3fec
            2025-11-25 14:00:00.050  chunk_requested      1  owner   requested chunk 1 from owner
            2025-11-25 14:00:00.054  chunk_received       1  owner   received chunk 1 from owner

            """)
        let story = try record(try ChunkStory.load(rejecting, chunk: 1).render(.json))
        let attempts = try #require(story["attempts"] as? [[String: Any]])
        #expect(attempts.map { $0["outcome"] as? String } == ["rejected", "rejected", "verified"])
        #expect(attempts.map { $0["source"] as? String } == ["peer4", "peer4", "owner"])
        #expect((attempts[0]["detail"] as? String)?.hasPrefix("SHA-256 000000000000") == true)
        #expect((story["events"] as? [Any])?.count == 4)

        // Uploads: the complete peer later sent chunk 0 to peer3.
        let complete = try InspectFixture.completePeer().open()
        let zero = try record(try ChunkStory.load(complete, chunk: 0).render(.json))
        let uploads = try #require(zero["uploads"] as? [[String: Any]])
        #expect(uploads.count == 1 && uploads[0]["source"] as? String == "peer3" && uploads[0]["outcome"] as? String == "sent")
        #expect(zero["in_share"] as? Bool == true && zero["source"] as? String == "owner")

        // The owner's chunk: split from the file, then sent to the peer whose share it is.
        let owner = try InspectFixture.owner().open()
        let ownerText = try ChunkStory.load(owner, chunk: 4).render(.table)
        #expect(ownerText.contains("state     held: split from the file, at 2025-11-25 14:00:00.002"))
        #expect(ownerText.contains("received: no transfer, split from the file"))
        #expect(ownerText.contains("peer3    2025-11-25 14:00:00.300  2025-11-25 14:00:00.300    500 µs     50"))

        let missing = try ChunkStory.load(try InspectFixture.partialPeer().open(), chunk: 4).render(.table)
        #expect(missing.contains("state     missing") && missing.contains("received: no attempt yet") && missing.contains("events: none"))
        let outside = #expect(throws: InspectError.self) { try ChunkStory.load(complete, chunk: 5) }
        #expect(outside?.description == "chunk 5 is not in the manifest: movie.bin has chunks 0 to 4")
    }

    @Test("sources: per peer, owner or file, both directions, with failures")
    func sources() throws {
        let owner = try InspectFixture.owner().open()
        #expect(try SourceReport.load(owner).render(.table) == """
            source               kind  held  received  in rate  rejected       sent     out rate  share  last transfer
            split from the file  file     5         0        -         0          0            -      0  -
            peer1                peer     0         0        -         0  2 (200 B)  195.3 KiB/s      2  2025-11-25 14:00:00.101
            peer2                peer     0         0        -         0  2 (200 B)  195.3 KiB/s      2  2025-11-25 14:00:00.201
            peer3                peer     0         0        -         0   1 (50 B)   97.7 KiB/s      1  2025-11-25 14:00:00.300

            """)
        let rejecting = try records(try SourceReport.load(try InspectFixture.rejectingPeer().open()).render(.json))
        #expect(rejecting.map { $0["source"] as? String } == ["owner", "peer4"])
        #expect(rejecting[1]["rejected"] as? Int == 2 && rejecting[1]["received"] as? Int == 0 && rejecting[1]["held"] as? Int == 0)
        #expect(rejecting[0]["received"] as? Int == 2 && rejecting[0]["received_bytes"] as? Int == 150)
        #expect(rejecting[0]["receive_busy_us"] as? Int == 5_000 && rejecting[0]["receive_bytes_per_second"] as? Int == 30_000)
        #expect(rejecting[0]["first_transfer_at"] as? String == "2025-11-25T14:00:00.010000Z")
        let complete = try records(try SourceReport.load(try InspectFixture.completePeer().open()).render(.json))
        #expect(complete.map { $0["source"] as? String } == ["owner", "peer2", "peer3"])
        #expect(complete[2]["sent"] as? Int == 1 && complete[2]["send_bytes_per_second"] as? Int == 100_000)
    }

    @Test("events: kind, chunk, since, until and limit")
    func events() throws {
        let database = try InspectFixture.completePeer().open()
        func ids(_ filter: EventLog.Filter) throws -> [String] {
            try EventLog.load(database, filter: filter).rows.map { "\($0.kind)\($0.chunkID.map { " \($0)" } ?? "")" }
        }
        #expect(try EventLog.load(database).rows.count == 18)
        // --limit without --since: the latest N, oldest first.
        #expect(try ids(.init(limit: 3)) == ["chunk_received 4", "assembled", "stopped"])
        #expect(try ids(.init(kinds: ["chunk_received"])) == (0...4).map { "chunk_received \($0)" })
        #expect(try ids(.init(kinds: ["chunk_sent", "assembled"])) == ["chunk_sent 0", "assembled"])
        #expect(try ids(.init(chunk: 0)) == ["chunk_requested 0", "chunk_received 0", "chunk_sent 0"])
        // A bare time of day is on the day of the latest event; --since inclusive, --until exclusive.
        let second = try #require(TimeArgument(parsing: "14:00:01"))
        let third = try #require(TimeArgument(parsing: "14:00:02"))
        #expect(try ids(.init(since: second, until: third)) == ["started", "chunk_requested 2", "chunk_received 2", "chunk_requested 3", "chunk_received 3", "chunk_sent 0"])
        // --limit with --since: the first N after it.
        #expect(try ids(.init(since: second, limit: 2)) == ["started", "chunk_requested 2"])
        #expect(try ids(.init(since: TimeArgument(parsing: "2025-11-25T14:00:02Z"))).count == 5)
        #expect(try ids(.init(since: TimeArgument(parsing: "2025-11-25T15:00:02+01:00"))).count == 5)
        #expect(try ids(.init(since: TimeArgument(parsing: "@\(InspectFixture.t0 + 2_020_000)"))) == ["assembled", "stopped"])
        #expect(try ids(.init(kinds: ["chunk_received"], since: second, until: third)) == ["chunk_received 2", "chunk_received 3"])
        #expect(try ids(.init(until: TimeArgument(parsing: "2025-11-25"))).isEmpty)

        #expect(try EventLog.load(database, filter: .init(chunk: 0)).render(.table) == """
            time                     kind             chunk  source  message
            2025-11-25 14:00:00.010  chunk_requested      0  owner   requested chunk 0 from owner
            2025-11-25 14:00:00.012  chunk_received       0  owner   received chunk 0 from owner
            2025-11-25 14:00:01.021  chunk_sent           0  peer3   sent chunk 0 to peer3 (100 B)

            """)
        let json = try records(try EventLog.load(database, filter: .init(limit: 1)).render(.json))
        #expect(json.count == 1)
        #expect(json[0]["kind"] as? String == "stopped" && json[0]["at"] as? String == "2025-11-25T14:00:02.030000Z")
        #expect(json[0]["chunk_id"] is NSNull && json[0]["message"] as? String == "stopped: complete")
        #expect(try EventLog.load(database, filter: .init(kinds: ["fallback"])).render(.table) == "no events match\n")
    }

    @Test("CSV: every command parses, with the documented header, one row per JSON row")
    func csv() async throws {
        let fixtures = [try InspectFixture.completePeer(), try InspectFixture.partialPeer(), try InspectFixture.owner(), try InspectFixture.rejectingPeer()]
        for f in fixtures {
            let database = try f.open()
            let overview = try parseCSV(try Overview.load(database).render(.csv))
            #expect(overview.count == 2 && overview[0].first == "database" && overview[0].count == overview[1].count)
            #expect(overview[0].contains("rejected_chunks") && !overview[0].contains("received_from"))

            let chunks = try parseCSV(try ChunkList.load(database).render(.csv))
            #expect(chunks[0] == ChunkList.header)
            #expect(chunks.count == 6 && chunks.dropFirst().allSatisfy { $0.count == ChunkList.header.count })
            #expect(try parseCSV(try ChunkList.load(database, filter: .missing).render(.csv))[0] == ChunkList.header)

            let story = try parseCSV(try ChunkStory.load(database, chunk: 1).render(.csv))
            let storyJSON = try record(try ChunkStory.load(database, chunk: 1).render(.json))
            #expect(story[0] == TransferRow.header)
            #expect(story.count - 1 == ((storyJSON["attempts"] as? [Any])?.count ?? 0) + ((storyJSON["uploads"] as? [Any])?.count ?? 0))

            let sources = try parseCSV(try SourceReport.load(database).render(.csv))
            #expect(sources[0] == SourceReport.header)
            #expect(sources.count - 1 == (try records(try SourceReport.load(database).render(.json))).count)

            let events = try parseCSV(try EventLog.load(database).render(.csv))
            #expect(events[0] == EventRow.header)
            #expect(events.count - 1 == (try EventLog.load(database)).rows.count)

            let verify = try parseCSV(try await VerifyReport.run(database).render(.csv))
            #expect(verify == [VerifyReport.Problem.header])
        }
        // A message with a comma and a quote survives the round trip.
        #expect(try parseCSV(CSV.line(["a,b", "say \"hi\"", "plain"]) + "\n") == [["a,b", "say \"hi\"", "plain"]])
    }

    @Test("times: printed in UTC, parsed in the documented forms")
    func times() throws {
        #expect(Timestamp.iso(InspectFixture.t0 + 1_234_567) == "2025-11-25T14:00:01.234567Z")
        #expect(Timestamp.short(InspectFixture.t0 + 1_234_567) == "2025-11-25 14:00:01.234")
        #expect(Timestamp.iso(0) == "1970-01-01T00:00:00.000000Z")
        #expect(Timestamp.iso(951_782_400_000_000) == "2000-02-29T00:00:00.000000Z")
        #expect(TimeArgument(parsing: "2025-11-25T14:00:00Z") == .absolute(InspectFixture.t0))
        #expect(TimeArgument(parsing: "2025-11-25 14:00") == .absolute(InspectFixture.t0))
        #expect(TimeArgument(parsing: "2025-11-25T14:00:00.5") == .absolute(InspectFixture.t0 + 500_000))
        #expect(TimeArgument(parsing: "2025-11-25T16:30:00+02:30") == .absolute(InspectFixture.t0))
        #expect(TimeArgument(parsing: "2025-11-25") == .absolute(InspectFixture.t0 - 14 * 3_600_000_000))
        #expect(TimeArgument(parsing: "14:02") == .timeOfDay((14 * 60 + 2) * 60_000_000))
        #expect(TimeArgument(parsing: "14:02:03.25")?.resolve(latest: InspectFixture.t0) == InspectFixture.t0 + 123_250_000)
        for bad in ["yesterday", "25:00", "2025-13-01", "14:00:00Z+", "2025-11-25T14", "@x", ""] {
            #expect(TimeArgument(parsing: bad) == nil, "\(bad) should not parse")
        }
    }

    @Test("verify: clean folders pass; a flipped byte, a missing file and unindexed files are each reported; nothing changes")
    func verify() async throws {
        for f in [try InspectFixture.completePeer(), try InspectFixture.owner()] {
            let report = try await VerifyReport.run(try f.open())
            #expect(report.isClean && report.checked == 5 && report.bytesHashed == 450, "\(report.problems)")
        }
        let f = try InspectFixture.partialPeer()  // holds 0 and 2
        var chunk2 = try Data(contentsOf: URL(fileURLWithPath: f.chunkPath(2)))
        chunk2[17] ^= 0x01
        try chunk2.write(to: URL(fileURLWithPath: f.chunkPath(2)))
        try FileManager.default.removeItem(atPath: f.chunkPath(0))
        try Data(f.bytes(of: 1)).write(to: URL(fileURLWithPath: f.chunkPath(1)))  // a good copy with no row
        try Data("not a chunk".utf8).write(to: URL(fileURLWithPath: f.chunkPath(3)))  // a bad copy with no row
        try Data("notes".utf8).write(to: URL(fileURLWithPath: f.dir + "/chunks/notes.txt"))
        try Data("half".utf8).write(to: URL(fileURLWithPath: f.dir + "/chunks/.peershare-tmp-1-2"))
        let before = folderDigest(f.dir)

        let report = try await VerifyReport.run(try f.open())
        #expect(folderDigest(f.dir) == before, "verify changed the folder")
        #expect(!report.isClean && report.temporaryFiles == 1 && report.checked == 2)
        #expect(PosixFileSize.of(f.db + "-wal") ?? 0 == 0)
        #expect(report.problems.map { "\($0.kind.rawValue) \($0.chunkID.map(String.init) ?? "-") \($0.file)" } == [
            "unindexed - chunks/notes.txt", "missing 0 chunks/000000.chunk", "unindexed 1 chunks/000001.chunk",
            "mismatch 2 chunks/000002.chunk", "unindexed 3 chunks/000003.chunk",
        ])
        let mismatch = report.problems[3]
        #expect(mismatch.expectedSHA256 == f.manifest.hash(of: ChunkID(2)).hex && mismatch.actualSHA256 == Digest32.of(chunk2).hex)
        #expect(report.problems[2].detail.hasPrefix("a good copy") && report.problems[4].detail.hasPrefix("does not match"))
        let table = f.normalised(report.render(.table))
        #expect(table.hasSuffix("2 indexed chunks checked in DIR (211 B hashed): 5 problems (1 mismatch, 1 missing, 3 unindexed); 1 temporary file(s) of interrupted writes ignored\n"), "\(table)")
        let json = try record(report.render(.json))
        #expect(json["clean"] as? Bool == false && (json["problems"] as? [Any])?.count == 5)
    }

    @Test("verify finds the chunk files through the folder the node recorded, even when the index is elsewhere")
    func verifyRecordedFolder() async throws {
        let f = try InspectFixture.completePeer()
        let elsewhere = temporaryDirectory() + "/copy.db"
        try FileManager.default.copyItem(atPath: f.db, toPath: elsewhere)
        let report = try await VerifyReport.run(try InspectDatabase(path: elsewhere))
        #expect(report.directory == f.dir && report.isClean && report.checked == 5)
        let error = await #expect(throws: InspectError.self) { try await VerifyReport.run(try InspectDatabase(path: elsewhere), directory: "/nonexistent") }
        #expect(error?.description == "no chunk folder at /nonexistent/chunks; pass the node's folder with --dir")
    }

    @Test("a reader sees one consistent snapshot while a writer holds the index: committed rows yes, uncommitted no")
    func concurrentWriter() throws {
        let f = try InspectFixture.partialPeer()
        let writer = try ChunkIndex(path: f.db, role: .peer, nodeName: "peer2", now: InspectFixture.t0 + 5_000_000)
        defer { writer.close(outcome: "test") }
        try f.writeChunkFiles([3])
        try f.receive(writer, 3, from: InspectFixture.owner, requestedAt: InspectFixture.t0 + 5_010_000, receivedAt: InspectFixture.t0 + 5_020_000)
        try writer.db.execute("BEGIN IMMEDIATE")
        try writer.db.run("DELETE FROM chunks WHERE chunk_id = 0")
        let database = try f.open()
        let overview = try Overview.load(database)
        #expect(overview.chunksHeld == 3 && overview.runs == 2)
        #expect(try ChunkList.load(database, filter: .missing).rows.map(\.chunkID) == [1, 4])
        try writer.db.execute("COMMIT")
        #expect(try Overview.load(database).chunksHeld == 2)
    }

    @Test("events --follow prints the history, then new events as they commit, and stops with the node's run")
    func follow() async throws {
        let f = try InspectFixture.partialPeer()
        let writer = try ChunkIndex(path: f.db, role: .peer, nodeName: "peer2", now: InspectFixture.t0 + 5_000_000)
        let (output, continuation) = AsyncStream<String>.makeStream()
        let path = f.db
        let follower = Task {
            defer { continuation.finish() }
            let database = try InspectDatabase(path: path)
            // The 30 s bound only stops a broken test; the writer's stop ends it.
            try await EventLog.follow(database, filter: .init(), format: .json,
                                      limits: .init(untilStopped: true, duration: .seconds(30), interval: .milliseconds(20))) { continuation.yield($0) }
        }
        var lines = output.makeAsyncIterator()
        let history = try #require(await lines.next())
        #expect(history.split(separator: "\n").count == 6)
        try f.writeChunkFiles([3])
        try f.receive(writer, 3, from: InspectFixture.owner, requestedAt: InspectFixture.t0 + 5_010_000, receivedAt: InspectFixture.t0 + 5_020_000)
        try writer.record(EventRecord(at: InspectFixture.t0 + 5_030_000, kind: .stopped, message: "stopped: test"))
        writer.close(outcome: "test", now: InspectFixture.t0 + 5_030_000)
        var rest = ""
        while let chunk = await lines.next() { rest += chunk }
        try await follower.value
        let kinds = try rest.split(separator: "\n").map { try record(String($0))["kind"] as? String }
        #expect(kinds == ["chunk_requested", "chunk_received", "stopped"])
    }

    @Test("a new peer that has no manifest yet, and an index at schema 2 (before node.directory), both read")
    func earlyAndOlderIndexes() async throws {
        let fresh = temporaryDirectory() + "/peer.db"
        try ChunkIndex(path: fresh, role: .peer, nodeName: "fresh", now: InspectFixture.t0).close(outcome: "stopped by signal", now: InspectFixture.t0 + 1)
        let database = try InspectDatabase(path: fresh)
        let overview = try Overview.load(database)
        #expect(overview.state == "no_manifest" && overview.chunksHeld == 0)
        #expect(overview.render(.table).contains("file      no manifest yet"))
        #expect(try ChunkList.load(database).rows.isEmpty)
        let error = #expect(throws: InspectError.self) { try ChunkStory.load(database, chunk: 0) }
        #expect(error?.description.hasSuffix("has no manifest yet, so no chunks") == true)

        let old = temporaryDirectory() + "/old.db"
        do {
            let db = try SQLiteConnection(path: old, mode: .readWrite)
            for migration in EmbeddedSchema.migrations where migration.version <= 2 {
                try db.transaction {
                    try db.execute(migration.sql)
                    try db.execute("PRAGMA user_version = \(migration.version)")
                }
            }
            try db.run("INSERT INTO node (id, role, name, created_at) VALUES (1, 'peer', 'old', ?)", InspectFixture.t0)
            db.close()
        }
        let older = try InspectDatabase(path: old)
        #expect(older.schemaVersion == 2)
        let o = try Overview.load(older)
        #expect(o.node.name == "old" && o.node.directory == nil)
        #expect(try EventLog.load(older).rows.isEmpty && SourceReport.load(older).rows.isEmpty)
        try FileManager.default.createDirectory(atPath: (old as NSString).deletingLastPathComponent + "/chunks", withIntermediateDirectories: true)
        #expect(try await VerifyReport.run(older).isClean)
    }

    @Test("query plans: the filtered and per-chunk queries use an index, never a scan of the events")
    func queryPlans() throws {
        let database = try InspectFixture.completePeer().open()
        let plans = QueryPlans()
        database.plans = plans
        _ = try Overview.load(database)
        _ = try ChunkList.load(database, filter: .from("peer2"))
        _ = try ChunkStory.load(database, chunk: 1)
        _ = try EventLog.load(database, filter: .init(kinds: ["chunk_received"], limit: 5))
        _ = try EventLog.load(database, filter: .init(since: .absolute(InspectFixture.t0), limit: 5))
        _ = try EventLog.load(database, filter: .init(limit: 5))
        func plan(_ fragment: String) -> String {
            plans.entries.filter { $0.sql.contains(fragment) }.map { $0.plan.joined(separator: " | ") }.joined(separator: " || ")
        }
        #expect(plan("min(received_at)").contains("COVERING INDEX chunks_by_time"))
        #expect(plan("outcome = 'rejected'").contains("transfers_rejected"))
        #expect(plan("WHERE c.source_id IN").contains("chunks_by_source"))
        #expect(plan("FROM transfers WHERE chunk_id = ?").contains("transfers_by_chunk"))
        #expect(plan("WHERE chunk_id = ? ORDER BY at").contains("events_by_chunk"))
        #expect(plan("WHERE kind IN (?)").contains("events_by_kind"))
        #expect(plan("WHERE at >= ? ORDER BY at, id LIMIT").contains("events_by_time"))
        #expect(plan("ORDER BY at DESC, id DESC").contains("events_by_time"))
        for entry in plans.entries where entry.sql.contains("FROM events") {
            #expect(!entry.plan.contains { $0.hasPrefix("SCAN events") && !$0.contains("INDEX") }, "\(entry.sql): \(entry.plan)")
        }
    }
}

// MARK: The real binary

@Suite("peershare-inspect, the executable", .serialized)
struct InspectCommandTests {
    func inspect(_ arguments: [String], timeout: Duration = .seconds(60)) async throws -> CommandResult {
        try await runCommand(Binaries.inspect, arguments, timeout: timeout)
    }

    func expectOneLineError(_ result: CommandResult, containing text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status != 0, "exit 0 for an error: \(result.stdout)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "expected one line: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.hasPrefix("peershare-inspect: error: "), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(text), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stdout.isEmpty, "stdout: \(result.stdout)", sourceLocation: sourceLocation)
    }

    @Test("each broken input is one clear line and a non-zero exit")
    func errors() async throws {
        let dir = temporaryDirectory()
        expectOneLineError(try await inspect(["--db", dir + "/nope.db"]), containing: "no such file: \(dir)/nope.db")
        expectOneLineError(try await inspect(["--db", dir]), containing: "is a folder")

        let junk = dir + "/junk.db"
        try Data(repeating: 0x42, count: 4096).write(to: URL(fileURLWithPath: junk))
        expectOneLineError(try await inspect(["--db", junk]), containing: "\(junk) is not a SQLite database")

        let other = dir + "/other.db"
        do {
            let db = try SQLiteConnection(path: other, mode: .readWrite)
            try db.execute("CREATE TABLE notes (text TEXT); INSERT INTO notes VALUES ('hello')")
            db.close()
        }
        expectOneLineError(try await inspect(["chunks", "--db", other]), containing: "\(other) is not a PeerShare index: its application_id is 0")

        let newer = try InspectFixture.completePeer()
        do {
            let db = try SQLiteConnection(path: newer.db, mode: .readWrite)
            try db.execute("PRAGMA user_version = 99")
            db.close()
        }
        expectOneLineError(try await inspect(["sources", "--db", newer.db]), containing: "schema version 99, newer than the \(Migrations.latestVersion) this build knows")

        // Every page but the first (the header and the schema) overwritten.
        let corrupt = try InspectFixture.completePeer()
        let handle = try #require(FileHandle(forUpdatingAtPath: corrupt.db))
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: 4096)
        try handle.write(contentsOf: Data(repeating: 0xA5, count: Int(size) - 4096))
        try handle.close()
        for command in [[], ["chunks"], ["events"], ["verify"]] {
            expectOneLineError(try await inspect(command + ["--db", corrupt.db]), containing: "\(corrupt.db) is corrupt: ")
        }
    }

    @Test("bad arguments are one line too", arguments: [
        (["chunks", "--missing", "--from", "owner"], "--missing and --from cannot be combined"),
        (["events", "--kind", "nonsense"], "--kind nonsense is not an event kind"),
        (["events", "--since", "yesterday"], "--since 'yesterday' is not a time"),
        (["events", "--since", "14:00", "--until", "2020-01-01", "--follow"], "--follow cannot be combined with --until"),
        (["events", "--limit", "0"], "--limit must be 1 or more"),
        (["events", "--until-stopped"], "need --follow"),
        (["--format", "xml"], "xml"),
        (["chunk", "5"], "chunk 5 is not in the manifest"),
        (["chunks", "--from", "peer9"], "no source named peer9"),
        (["chunk"], "Missing expected argument"),
    ])
    func badArguments(arguments: [String], message: String) async throws {
        let f = try InspectFixture.completePeer(arguments.joined(separator: "_"))
        expectOneLineError(try await inspect(arguments + ["--db", f.db]), containing: message)
    }

    @Test("every command, in every format, leaves the index byte for byte as it was")
    func readOnly() async throws {
        let f = try InspectFixture.completePeer()
        let before = fileDigest(f.db)
        let folderBefore = folderDigest(f.dir + "/chunks")
        let commands = [[], ["chunks"], ["chunks", "--missing"], ["chunks", "--from", "peer2"], ["chunk", "0"], ["sources"],
                        ["events"], ["events", "--kind", "chunk_received", "--since", "14:00:01", "--limit", "2"], ["verify"],
                        ["events", "--follow", "--follow-for", "0.2", "--interval", "0.05"]]
        for command in commands {
            for format in ["table", "json", "csv"] {
                let result = try await inspect(command + ["--db", f.db, "--format", format])
                #expect(result.status == 0, "\(command) \(format): \(result.stderr)")
                #expect(result.stderr.isEmpty)
                if format == "json", !command.contains("--follow") { _ = try parseJSON(result.stdout) }
                if format == "csv" { _ = try parseCSV(result.stdout) }
            }
        }
        #expect(fileDigest(f.db) == before, "the index changed")
        #expect(folderDigest(f.dir + "/chunks") == folderBefore, "the chunk folder changed")
        // Opening a WAL index may create SQLite's side files, but nothing is ever written to the log.
        let wal = PosixFileSize.of(f.db + "-wal")
        #expect(wal == nil || wal == 0, "the reader wrote \(wal ?? 0) bytes of WAL")
    }

    @Test("verify exits 0 on a clean folder and 1 when it finds problems, listing each")
    func verifyExitStatus() async throws {
        let f = try InspectFixture.completePeer()
        let clean = try await inspect(["verify", "--db", f.db])
        #expect(clean.status == 0 && clean.stdout.hasSuffix("all match the index\n"), "\(clean)")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: f.chunkPath(4)))
        bytes[0] ^= 0x80
        try bytes.write(to: URL(fileURLWithPath: f.chunkPath(4)))
        try FileManager.default.removeItem(atPath: f.chunkPath(1))
        try Data("stray".utf8).write(to: URL(fileURLWithPath: f.dir + "/chunks/000009.chunk"))
        let dirty = try await inspect(["verify", "--db", f.db, "--format", "csv"])
        #expect(dirty.status == 1, "\(dirty)")
        let rows = try parseCSV(dirty.stdout)
        #expect(rows.dropFirst().map { "\($0[0]) \($0[1])" } == ["missing 1", "mismatch 4", "unindexed 9"])
        let table = try await inspect(["verify", "--db", f.db, "--dir", f.dir])
        #expect(table.status == 1 && table.stdout.contains("3 problems (1 mismatch, 1 missing, 1 unindexed)"))
    }

    @Test("a writer holding the index open (and its write lock) does not block the reader")
    func whileWriterHoldsTheLock() async throws {
        let f = try InspectFixture.partialPeer()
        let writer = try ChunkIndex(path: f.db, role: .peer, nodeName: "peer2", now: InspectFixture.t0 + 5_000_000)
        try f.writeChunkFiles([3])
        try f.receive(writer, 3, from: InspectFixture.owner, requestedAt: InspectFixture.t0 + 5_010_000, receivedAt: InspectFixture.t0 + 5_020_000)
        try writer.db.execute("BEGIN IMMEDIATE")
        try writer.db.run("DELETE FROM chunks")
        let result = try await inspect(["chunks", "--db", f.db, "--format", "json"], timeout: .seconds(30))
        try writer.db.execute("ROLLBACK")
        writer.close(outcome: "test")
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try records(result.stdout).filter { $0["state"] as? String == "held" }.map { $0["chunk_id"] as? Int } == [0, 2, 3])
    }

    @Test("events --follow ends on SIGINT with exit 0")
    func followInterrupted() async throws {
        let f = try InspectFixture.completePeer()
        let follower = try ChildProcess(name: "inspect", executable: Binaries.inspect,
                                        arguments: ["events", "--db", f.db, "--follow", "--limit", "2", "--interval", "0.05"],
                                        stdout: .lines(echo: false))
        let line = await follower.waitForLine(timeout: .seconds(30)) { $0.contains("stopped: complete") }
        #expect(line != nil)
        follower.signal(SIGINT)
        let status = await follower.waitForExit(timeout: .seconds(30))
        if status == nil { follower.signal(SIGKILL) }
        #expect(status == 0)
    }

    @Test("a real swarm: --follow tails a running peer live; chunk provenance, sources and verify on its index and the owner's")
    func realSwarm() async throws {
        var swarm = try await Swarm.start(fileSize: 1_500_000, peers: 3, launchPeers: false)
        defer { Task { [swarm] in await swarm.stopAll() } }
        // peer1 gets its share from the owner, then waits for its download neighbour peer2.
        let peer1 = try swarm.launch(1, lines: true)
        swarm.peers.append(peer1)
        let shared = await peer1.waitForLine(timeout: .seconds(60)) { $0.contains("share from the owner") }
        try #require(shared != nil, "peer1 got no share:\n\(swarm.log(of: 1))")

        let followLog = swarm.dir + "/follow.out"
        let follower = try ChildProcess(name: "inspect", executable: Binaries.inspect,
                                        arguments: ["events", "--db", swarm.database(of: 1), "--follow", "--until-stopped", "--interval", "0.05"],
                                        stdout: .lines(echo: false, copyTo: followLog), stderr: .file(swarm.dir + "/follow.err"))
        // The history is printed first...
        #expect(await follower.waitForLine(timeout: .seconds(30)) { $0.contains("share_received") } != nil)
        // ...then what happens once the neighbours start: chunks from peer2, assembly, the stop.
        swarm.peers.append(try swarm.launch(2))
        swarm.peers.append(try swarm.launch(3))
        #expect(await follower.waitForLine(timeout: .seconds(60)) { $0.contains("chunk_received") && $0.contains("from peer2") } != nil)
        #expect(await follower.waitForLine(timeout: .seconds(60)) { $0.contains("assembled") } != nil)
        let followStatus = await follower.waitForExit(timeout: .seconds(60))
        if followStatus == nil { follower.signal(SIGKILL) }
        #expect(followStatus == 0, "follow did not end with peer1:\n\(tail(followLog))")
        let statuses = await swarm.waitForPeers()
        #expect(statuses == [0, 0, 0], "\(swarm.log(of: 1))")
        let followed = try String(contentsOfFile: followLog, encoding: .utf8)
        #expect(followed.split(separator: "\n").last?.contains("stopped") == true, "\(tail(followLog))")

        // Provenance: every chunk held, each from the owner (the share) or the neighbour.
        let database = try InspectDatabase(path: swarm.database(of: 1))
        let chunks = try ChunkList.load(database)
        #expect(chunks.rows.count == 15 && chunks.rows.allSatisfy(\.held))
        let names = Set(chunks.rows.compactMap { $0.source?.name })
        #expect(names.isSubset(of: ["owner", "peer2"]), "\(names)")
        #expect(chunks.rows.filter(\.inShare).allSatisfy { $0.source?.name == "owner" })
        let fromPeer2 = try #require(chunks.rows.first { $0.source?.name == "peer2" })
        let story = try ChunkStory.load(database, chunk: fromPeer2.chunkID)
        #expect(story.attempts.last?.outcome == "verified" && story.attempts.last?.source?.name == "peer2")
        #expect(story.events.map(\.kind).contains("chunk_received"))
        let overview = try Overview.load(database)
        #expect(overview.state == "assembled" && overview.chunksHeld == 15 && overview.completeAfterMicros != nil)
        let sources = try SourceReport.load(database)
        #expect(sources.rows.first { $0.source.name == "peer3" }.map { $0.sent > 0 } == true, "peer3 downloads from peer1")

        let ownerDB = swarm.dir + "/owner/owner.db"
        let owner = try await inspect(["--db", ownerDB, "--format", "json"])
        let ownerJSON = try record(owner.stdout)
        #expect((ownerJSON["received_from"] as? [[String: Any]])?.first?["source"] as? String == "split from the file")
        #expect(Set(((ownerJSON["sent_to"] as? [[String: Any]]) ?? []).compactMap { $0["source"] as? String }) == ["peer1", "peer2", "peer3"])

        for db in [swarm.database(of: 1), ownerDB] {
            let verify = try await inspect(["verify", "--db", db])
            #expect(verify.status == 0 && verify.stdout.contains("15 indexed chunks checked"), "\(verify)")
        }
        let text = try await inspect(["chunk", String(fromPeer2.chunkID), "--db", swarm.database(of: 1)])
        #expect(text.stdout.contains("held: from peer2"), "\(text.stdout)")
    }

    @Test("10,000 chunks and 100,000 events: every command answers (times printed, not asserted)")
    func large() async throws {
        let clock = ContinuousClock()
        let started = clock.now
        // PEERSHARE_INSPECT_CHUNK_SIZE=102400 builds the 1 GiB version (docs/INSPECT-NOTES.md).
        let chunkSize = ProcessInfo.processInfo.environment["PEERSHARE_INSPECT_CHUNK_SIZE"].flatMap(Int.init) ?? 1024
        let f = try await InspectFixture.largeOffThePool(chunkSize: chunkSize)
        print("inspect speed: built a 10,000-chunk, 100,000-event index in \(clock.now - started): \(f.db)")
        let database = try f.open()
        #expect(try database.read { try $0.scalarInt("SELECT count(*) FROM events") } == 100_000)
        let commands: [[String]] = [
            [], ["chunks"], ["chunks", "--missing"], ["chunks", "--from", "peer3"], ["chunk", "5000"], ["sources"],
            ["events", "--limit", "50"], ["events", "--kind", "chunk_rejected"], ["events", "--chunk", "1234"],
            ["events", "--since", "14:30", "--until", "14:31"], ["events", "--format", "json"], ["verify"],
        ]
        for command in commands {
            let t = clock.now
            let result = try await inspect(command + ["--db", f.db], timeout: .seconds(120))
            let elapsed = clock.now - t
            #expect(result.status == 0, "\(command): \(result.stderr)")
            print("inspect speed: \(command.isEmpty ? "overview" : command.joined(separator: " ")): \(elapsed), \(result.stdout.utf8.count) bytes out")
        }
        let overview = try Overview.load(database)
        let missing = try ChunkList.load(database, filter: .missing).rows.count
        #expect(overview.chunksHeld == 9_500 && missing == 500)
    }
}

enum PosixFileSize {
    static func of(_ path: String) -> Int64? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value
    }
}
