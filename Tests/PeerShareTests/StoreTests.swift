import Foundation
import Testing
@testable import PeerShareCore
@testable import PeerShareStore

func temporaryDirectory(_ label: String = #function) -> String {
    let path = NSTemporaryDirectory() + "peershare-tests-\(label.prefix(24).filter { $0.isLetter || $0.isNumber })-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func sampleManifest(size: Int64 = 250, chunkSize: Int = 100, name: String = "f.bin") throws -> (Manifest, [UInt8]) {
    let data = (0..<Int(size)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    let layout = try ChunkLayout(fileSize: size, chunkSize: chunkSize)
    let hashes = layout.chunkIDs.map { id in
        Digest32.of(data[Int(layout.offset(of: id))..<Int(layout.offset(of: id)) + layout.size(of: id)])
    }
    return (try Manifest(fileName: name, layout: layout, chunkHashes: hashes, fileHash: Digest32.of(data)), data)
}

@Suite("SQLite wrapper")
struct SQLiteTests {
    @Test("open is defensive: WAL confirmed, extended codes, errors carry code, message and SQL")
    func defensiveOpen() throws {
        let dir = temporaryDirectory()
        let db = try SQLiteConnection(path: dir + "/x.db", mode: .readWrite)
        #expect(try db.scalarText("PRAGMA journal_mode") == "wal")
        #expect(try db.scalarInt("PRAGMA synchronous") == 1)  // NORMAL
        let error = #expect(throws: SQLiteError.self) { try db.run("INSERT INTO nowhere VALUES (?)", 1) }
        #expect(error?.primaryCode == 1)
        #expect(error?.message.contains("no such table: nowhere") == true)
        #expect(error?.sql == "INSERT INTO nowhere VALUES (?)")
    }

    @Test("a transaction rolls back when its body throws")
    func rollback() throws {
        let db = try SQLiteConnection(path: temporaryDirectory() + "/x.db", mode: .readWrite)
        try db.execute("CREATE TABLE t (v INTEGER)")
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try db.transaction {
                try db.run("INSERT INTO t VALUES (?)", 1)
                throw Boom()
            }
        }
        #expect(try db.scalarInt("SELECT count(*) FROM t") == 0)
        try db.transaction { try db.run("INSERT INTO t VALUES (?)", 2) }
        #expect(try db.scalarInt("SELECT sum(v) FROM t") == 2)
    }

    @Test("a file that is not SQLite is reported as such")
    func notADatabase() throws {
        let path = temporaryDirectory() + "/junk.db"
        try Data(repeating: 0x42, count: 4096).write(to: URL(fileURLWithPath: path))
        let error = #expect(throws: SQLiteError.self) { _ = try SQLiteConnection(path: path, mode: .readOnly) }
        #expect(error?.isNotADatabase == true)
    }

    @Test("values round-trip through binding: integers, text, blobs, nulls")
    func binding() throws {
        let db = try SQLiteConnection(path: temporaryDirectory() + "/x.db", mode: .readWrite)
        try db.execute("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, n INTEGER)")
        try db.run("INSERT INTO t VALUES (?, ?, ?, ?)", Int64.max, "héllo", [UInt8]([0, 1, 255]), Optional<Int>.none)
        let rows = try db.query("SELECT i, s, b, n FROM t") { ($0.int(0), $0.text(1), $0.blob(2), $0.optionalInt(3)) }
        #expect(rows.count == 1)
        #expect(rows[0].0 == Int64.max && rows[0].1 == "héllo" && rows[0].2 == [0, 1, 255] && rows[0].3 == nil)
    }
}

@Suite("Schema")
struct SchemaTests {
    @Test("the embedded schema is exactly Schema/*.sql (run tools/generate-schema after editing Schema/)")
    func embeddedMatchesFolder() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let folder = root.appendingPathComponent("Schema")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".sql") }.sorted()
        #expect(files == EmbeddedSchema.migrations.map(\.file))
        for migration in EmbeddedSchema.migrations {
            let text = try String(contentsOf: folder.appendingPathComponent(migration.file), encoding: .utf8)
            #expect(text == migration.sql + "\n", "\(migration.file) differs from the embedded copy")
            #expect(Int32(migration.file.prefix(3)) == migration.version)
        }
    }

    @Test("a new index is at the latest version, marked as PeerShare's")
    func migrated() throws {
        let index = try ChunkIndex(path: temporaryDirectory() + "/i.db", role: .peer, nodeName: "p")
        #expect(try index.db.scalarInt("PRAGMA user_version") == Int64(Migrations.latestVersion))
        #expect(try index.db.scalarInt("PRAGMA application_id") == Migrations.applicationID)
        #expect(try index.db.scalarText("PRAGMA integrity_check") == "ok")
    }

    @Test("the owner's membership rows: the first sighting is kept, and a restart prunes to the newest")
    func memberRows() throws {
        let index = try ChunkIndex(path: temporaryDirectory() + "/o.db", role: .owner, nodeName: "owner")
        for i in 0..<10 {
            try index.saveMember(.init(name: "m\(i)", address: "127.0.0.1:\(1000 + i)", firstSeen: Int64(i), lastSeen: Int64(100 + i), held: nil))
        }
        try index.saveMember(.init(name: "m0", address: "127.0.0.1:2000", firstSeen: 50, lastSeen: 200, held: ChunkSet(capacity: 3, [ChunkID(1)])))
        #expect(try index.db.scalarInt("SELECT first_seen FROM members WHERE name = 'm0'") == 0)
        #expect(try index.db.scalarInt("SELECT held_count FROM members WHERE name = 'm0'") == 1)
        try index.pruneMembers(keeping: 4)
        #expect(try index.memberCount() == 4)
        let kept = try index.db.query("SELECT name FROM members ORDER BY name") { $0.text(0) }
        #expect(kept == ["m0", "m7", "m8", "m9"])
    }

    @Test("an index from a newer PeerShare is refused, not downgraded")
    func newerSchema() throws {
        let path = temporaryDirectory() + "/i.db"
        do {
            let index = try ChunkIndex(path: path, role: .peer, nodeName: "p")
            try index.db.execute("PRAGMA user_version = 99")
            index.close(outcome: "test")
        }
        #expect(throws: IndexError.self) { try ChunkIndex(path: path, role: .peer, nodeName: "p") }
    }

    @Test("a peer's index is not opened as an owner's")
    func roleMismatch() throws {
        let path = temporaryDirectory() + "/i.db"
        try ChunkIndex(path: path, role: .peer, nodeName: "p").close(outcome: "test")
        #expect(throws: IndexError.self) { try ChunkIndex(path: path, role: .owner, nodeName: "owner") }
    }
}

@Suite("The chunk index")
struct ChunkIndexTests {
    @Test("manifest, chunks with provenance, shares and events persist across reopen")
    func persistence() throws {
        let path = temporaryDirectory() + "/i.db"
        let (manifest, _) = try sampleManifest()
        do {
            let index = try ChunkIndex(path: path, role: .peer, nodeName: "peer1")
            try index.saveManifest(manifest)
            try index.saveShare([ChunkID(0), ChunkID(2)])
            try index.commitChunks(
                [.init(id: ChunkID(2), size: 50, sha256: manifest.hash(of: ChunkID(2)), source: .init(kind: .owner, name: "owner"), startedAt: 1_000, finishedAt: 1_500),
                 .init(id: ChunkID(1), size: 100, sha256: manifest.hash(of: ChunkID(1)), source: .init(kind: .peer, name: "peer2"), startedAt: 2_000, finishedAt: 2_250)],
                events: [EventRecord(at: 1_500, kind: .chunkReceived, chunk: ChunkID(2), source: .init(kind: .owner, name: "owner"), message: "received chunk 2")])
            index.close(outcome: "test")
        }
        let index = try ChunkIndex(path: path, role: .peer, nodeName: "peer1")
        #expect(try index.manifest() == manifest)
        #expect(try index.share(chunkCount: 3) == [ChunkID(0), ChunkID(2)])
        // A row edited by hand or damaged is refused with what it holds, never trusted.
        for bad: Int64 in [-1, 3, Int64(UInt32.max) + 1] {
            try index.db.run("DELETE FROM share WHERE chunk_id NOT IN (0, 2)")
            try index.db.run("INSERT INTO share (chunk_id) VALUES (?)", bad)
            #expect(throws: IndexError.manifestMismatch("the index's share table names chunk \(bad), outside 0..<3")) { try index.share(chunkCount: 3) }
        }
        try index.db.run("DELETE FROM share WHERE chunk_id NOT IN (0, 2)")
        #expect(try index.heldChunks(capacity: 3).sorted == [ChunkID(1), ChunkID(2)])
        let provenance = try index.db.query("SELECT c.chunk_id, s.kind, s.name, c.received_at, c.duration_us, c.size FROM chunks c JOIN sources s ON s.id = c.source_id ORDER BY c.chunk_id") {
            "\($0.int(0)) \($0.text(1)) \($0.text(2)) \($0.int(3)) \($0.int(4)) \($0.int(5))"
        }
        #expect(provenance == ["1 peer peer2 2250 250 100", "2 owner owner 1500 500 50"])
        #expect(try index.db.scalarInt("SELECT count(*) FROM transfers WHERE direction = 'in' AND outcome = 'verified'") == 2)
        #expect(try index.db.scalarText("SELECT kind FROM events WHERE chunk_id = 2") == "chunk_received")
        #expect(try index.db.scalarInt("SELECT count(*) FROM runs") == 2)
    }

    @Test("a chunk cannot be indexed twice, and a failed commit leaves nothing behind")
    func atomicCommit() throws {
        let index = try ChunkIndex(path: temporaryDirectory() + "/i.db", role: .peer, nodeName: "p")
        let (manifest, _) = try sampleManifest()
        try index.saveManifest(manifest)
        let chunk = ChunkIndex.ReceivedChunk(id: ChunkID(0), size: 100, sha256: manifest.hash(of: ChunkID(0)), source: .init(kind: .owner, name: "o"), startedAt: 0, finishedAt: 1)
        try index.commitChunks([chunk], events: [])
        let other = ChunkIndex.ReceivedChunk(id: ChunkID(1), size: 100, sha256: manifest.hash(of: ChunkID(1)), source: .init(kind: .owner, name: "o"), startedAt: 0, finishedAt: 1)
        #expect(throws: SQLiteError.self) { try index.commitChunks([other, chunk], events: []) }
        #expect(try index.heldChunks(capacity: 3).sorted == [ChunkID(0)])
    }

    @Test("a chunk not in the manifest cannot be indexed (foreign key)")
    func foreignKey() throws {
        let index = try ChunkIndex(path: temporaryDirectory() + "/i.db", role: .peer, nodeName: "p")
        let (manifest, _) = try sampleManifest()
        try index.saveManifest(manifest)
        let bogus = ChunkIndex.ReceivedChunk(id: ChunkID(9), size: 1, sha256: manifest.hash(of: ChunkID(0)), source: .init(kind: .owner, name: "o"), startedAt: 0, finishedAt: 1)
        #expect(throws: SQLiteError.self) { try index.commitChunks([bogus], events: []) }
    }
}
