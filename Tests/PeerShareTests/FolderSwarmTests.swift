import Foundation
import NIOCore
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareStore
@testable import PeerShareWire

/// A FILES frame spelled byte by byte, as a hostile owner may: (flags, size, path bytes, declared length).
func rawFilesFrame(first: UInt32 = 0, _ entries: [(flags: UInt8, size: UInt64, path: [UInt8], length: Int?)]) -> [UInt8] {
    var body = ByteBuffer()
    body.writeInteger(PeerMessage.Kind.files.rawValue)
    body.writeInteger(first)
    for entry in entries {
        body.writeInteger(entry.flags)
        body.writeInteger(entry.size)
        body.writeInteger(UInt16(entry.length ?? entry.path.count))
        body.writeBytes(entry.path)
    }
    var frame = ByteBuffer()
    frame.writeInteger(UInt32(body.readableBytes))
    frame.writeImmutableBuffer(body)
    return Array(frame.readableBytesView)
}

/// A FOLDER frame announcing `entries` entries of one byte in all.
func folderHeader(_ entries: UInt32) -> [UInt8] {
    Array(PeerMessage.folder(FolderHeader(totalSize: 1, chunkSize: 102_400, chunkCount: 1, entryCount: entries,
                                          contentHash: Digest32.of([2]), name: "tree")).frame.readableBytesView)
}

/// A fake owner that answers HELLO with `frames` (a FOLDER and FILES of its choosing).
func fakeOwnerSending(_ frames: [UInt8]) -> @Sendable (NIOAsyncChannel<ByteBuffer, ByteBuffer>) async throws -> Void {
    { connection in
        try await connection.executeThenClose { inbound, outbound in
            var reads = inbound.makeAsyncIterator()
            guard try await reads.next() != nil else { return }
            try await outbound.write(PeerMessage.hello(Hello(role: .owner, fileID: Digest32.of([1]), name: "owner")).frame)
            try await outbound.write(ByteBuffer(bytes: frames))
            while try await reads.next() != nil {}
        }
    }
}

@Suite("A folder as one swarm: real owner and peer processes", .serialized)
struct FolderSwarmTests {
    @Test("a varied tree of 1,000 files, one of 100 MiB, arrives identical at every peer: bytes, names in NFC, exec bits, empty folders",
          arguments: StorageLayout.allCases)
    func variedTree(storage: StorageLayout) async throws {
        let tree = try await VariedTree.make(in: temporaryDirectory("varied-source"), files: 1_000, largeFileSize: 100 << 20)
        let swarm = try await Swarm.start(fileSize: 0, peers: 2, storage: storage, sharing: tree.path, label: "folder-ring-\(storage)")
        // About 600 MB on disk in all: removed at the end, whatever the outcome (the logs are in the failures).
        defer { for folder in [tree.root, swarm.dir] { try? FileManager.default.removeItem(atPath: folder) } }
        let statuses = await swarm.waitForPeers(timeout: .seconds(300))
        await swarm.stopAll()
        let expected = try treeListing(tree.path, normalising: true)
        #expect(expected.count > 1_000)
        for i in 1...2 {
            #expect(statuses[i - 1] == 0, "peer\(i) exit status \(String(describing: statuses[i - 1])):\n\(swarm.log(of: i))")
            let copy = swarm.dir + "/peer\(i)/" + tree.name
            let listing = try treeListing(copy)
            let identical = listing == expected
            #expect(identical, "peer\(i)'s tree differs:\n\(listingDifference(expected, listing))")
            let db = try SQLiteConnection(path: swarm.database(of: i), mode: .readOnly)
            let chunks = try db.scalarInt("SELECT chunk_count FROM manifest") ?? -1
            #expect(try db.scalarInt("SELECT count(*) FROM chunks") == chunks && chunks > 1_000)
            #expect(try db.scalarInt("SELECT count(*) FROM folder_entries") ?? 0 > 1_000)
            let summary = try String(contentsOfFile: swarm.dir + "/peer\(i)/summary.txt", encoding: .utf8)
            #expect(summary == (0..<chunks).map { "\($0)\n" }.joined(), "peer\(i)'s summary")
            let verify = try await runCommand(Binaries.inspect, ["verify", "--db", swarm.database(of: i)])
            #expect(verify.status == 0, "verify peer\(i): \(verify.stdout)\(verify.stderr)")
        }
        let diff = try await runCommand("/usr/bin/diff", ["-r", swarm.dir + "/peer1/" + tree.name, swarm.dir + "/peer2/" + tree.name])
        #expect(diff.status == 0, "diff -r: \(diff.stdout.prefix(500))")
        try await inspectFiles(swarm, storage: storage)
        if storage == .singleFile {
            // Written in place: no chunk files, and the tree is the only copy.
            #expect(!FileManager.default.fileExists(atPath: swarm.dir + "/peer1/chunks"))
        }
    }

    /// `files` lists every entry, complete, with its sources; after one flipped byte in a
    /// chunk of large/model.bin, `verify` names that file.
    func inspectFiles(_ swarm: Swarm, storage: StorageLayout) async throws {
        let database = swarm.database(of: 1)
        let files = try await runCommand(Binaries.inspect, ["files", "--db", database, "--format", "json"])
        let rows = try #require(try parseJSON(files.stdout) as? [[String: Any]], "\(files.stdout.prefix(300))\(files.stderr)")
        let db = try SQLiteConnection(path: database, mode: .readOnly)
        #expect(Int64(rows.count) == (try db.scalarInt("SELECT count(*) FROM folder_entries")))
        let large = try #require(rows.first { $0["path"] as? String == "release/large/model.bin" })
        #expect(large["state"] as? String == "complete" && large["chunks"] as? Int == 1_024 && large["held"] as? Int == 1_024, "\(large)")
        #expect(Set((large["sources"] as? String ?? "").split(separator: " ")).isSubset(of: ["owner", "peer2"]))
        #expect(rows.filter { $0["kind"] as? String == "file" }.allSatisfy { $0["state"] as? String == "complete" })

        let first = try #require(try db.scalarInt("SELECT first_chunk FROM folder_entries WHERE path = 'large/model.bin'"))
        // Chunk 7 of the file: its chunk file, or its bytes in the file itself.
        let (path, offset): (String, UInt64) = storage == .chunkFiles
            ? (try ChunkFilesStore(root: swarm.dir + "/peer1", create: false).path(of: ChunkID(UInt32(first + 7))), 10)
            : (swarm.dir + "/peer1/release/large/model.bin", 7 * 102_400 + 10)
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: offset)
        let byte = try handle.read(upToCount: 1)?.first ?? 0
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: [0x5A ^ byte])
        try handle.close()
        let verify = try await runCommand(Binaries.inspect, ["verify", "--db", database, "--format", "json"])
        #expect(verify.status != 0)
        let problems = (try parseJSON(verify.stdout) as? [String: Any])?["problems"] as? [[String: Any]] ?? []
        #expect(problems.count == 1 && problems.first?["shared_file"] as? String == "release/large/model.bin", "\(verify.stdout)")
        let table = try await runCommand(Binaries.inspect, ["verify", "--db", database])
        #expect(table.stdout.contains("damaged: release/large/model.bin"), "\(table.stdout)")
    }

    @Test("the web seed serves each file of a folder at /files/<folder>/<path>: whole, one range across a chunk boundary, HEAD; nothing else")
    func webSeed() async throws {
        let tree = try await VariedTree.make(in: temporaryDirectory("webseed-source"), files: 60, largeFileSize: 300_000)
        let dir = temporaryDirectory("folder-webseed")
        let owner = try Swarm.startOwner(dir: dir, source: tree.path, peers: 1, options: ["--http", "127.0.0.1:0"])
        defer { owner.signal(SIGKILL) }
        let port = try await httpPort(of: owner)
        _ = try await listeningPort(of: owner)
        func body(_ reply: RawHTTP.Reply) -> [UInt8] {
            guard let end = reply.bytes.indices.first(where: { reply.bytes[$0...].starts(with: Array("\r\n\r\n".utf8)) }) else { return [] }
            return Array(reply.bytes[(end + 4)...])
        }
        let large = try [UInt8](Data(contentsOf: URL(fileURLWithPath: tree.path + "/large/model.bin")))
        #expect(body(try await RawHTTP.get(port: port, "/files/release/large/model.bin")) == large)
        let range = try await RawHTTP.exchange(port: port, Array("GET /files/release/large/model.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=102390-102409\r\nConnection: close\r\n\r\n".utf8))
        #expect(range.status == 206 && range.text.contains("Content-Range: bytes 102390-102409/300000"), "\(range.text.prefix(300))")
        #expect(body(range) == Array(large[102_390...102_409]))
        // A name written in NFD on the owner's disk is served under its NFC name, percent-encoded.
        let accented = "/files/release/caf%C3%A9/r%C3%A9sum%C3%A9.pdf"
        let nfdOnDisk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: tree.path + "/" + "café/résumé.pdf".decomposedStringWithCanonicalMapping)))
        #expect(body(try await RawHTTP.get(port: port, accented)) == nfdOnDisk)
        let head = try await RawHTTP.get(port: port, "/files/release/bin/tool", method: "HEAD")
        #expect(head.status == 200 && head.text.contains("Content-Length: 70000") && body(head).isEmpty)
        let empty = try await RawHTTP.get(port: port, "/files/release/zero/empty-0")
        #expect(empty.status == 200 && body(empty).isEmpty)
        for path in ["/files/release", "/files/release/", "/files/release/empty", "/files/release/large/../bin/tool", "/files/release//bin/tool",
                     "/files/release/%2e%2e/owner/owner.db", "/files/release/bin%2Ftool", "/files/other/bin/tool", "/files/release/bin/tool/"] {
            #expect(try await RawHTTP.get(port: port, path).status == 404, "\(path)")
        }
    }

    @Test("a private swarm shares a folder: peers with the ticket rebuild it; the signed manifest covers the entries")
    func privateFolder() async throws {
        let tree = try await VariedTree.make(in: temporaryDirectory("private-source"), files: 80, largeFileSize: 600_000)
        let swarm = try await Swarm.start(fileSize: 0, peers: 2, isPrivate: true, sharing: tree.path, label: "folder-private")
        let statuses = await swarm.waitForPeers(timeout: .seconds(120))
        await swarm.stopAll()
        let expected = try treeListing(tree.path, normalising: true)
        for i in 1...2 {
            #expect(statuses[i - 1] == 0, "peer\(i):\n\(swarm.log(of: i))")
            let copy = try treeListing(swarm.dir + "/peer\(i)/" + tree.name)
            let identical = copy == expected
            #expect(identical, "peer\(i):\n\(listingDifference(expected, copy))")
            let db = try SQLiteConnection(path: swarm.database(of: i), mode: .readOnly)
            #expect(try db.scalarInt("SELECT count(*) FROM manifest_signature") == 1)
        }
    }

    @Test("a fake owner's manifest with a path attack is refused in one line, and nothing is written outside --dir",
          arguments: [
              ("a/../../x", folderHeader(1) + rawFilesFrame([(0, 1, Array("a/../../x".utf8), nil)]), "\"..\""),
              ("/etc/x", folderHeader(1) + rawFilesFrame([(0, 1, Array("/etc/x".utf8), nil)]), "absolute"),
              ("a NUL byte", folderHeader(1) + rawFilesFrame([(0, 1, Array("a\u{0}b".utf8), nil)]), "NUL"),
              ("a duplicate path", folderHeader(2) + rawFilesFrame([(0, 1, Array("a".utf8), nil), (0, 0, Array("a".utf8), nil)]), "listed twice"),
              ("a file and a folder", folderHeader(2) + rawFilesFrame([(0, 1, Array("a".utf8), nil), (0, 0, Array("a/b".utf8), nil)]), "both a file and a folder"),
              ("10,000,000 entries", folderHeader(10_000_000), "10000000 entries"),
              ("a 10,000-byte path", folderHeader(1) + rawFilesFrame([(0, 1, Array(repeating: UInt8(ascii: "a"), count: 10_000), 10_000)]), "over 4096"),
          ])
    func pathAttacks(attack: String, frames: [UInt8], reason: String) async throws {
        let sandbox = temporaryDirectory("path-attack")
        let victim = sandbox + "/victim"
        let result = try await withRawServer(handle: fakeOwnerSending(frames)) { ownerPort in
            try await runCommand(Binaries.peershare, ["peer", "--owner", "127.0.0.1:\(ownerPort)", "--port", "0", "--dir", victim], timeout: .seconds(60))
        }
        #expect(result.status != 0 && result.status < 128, "\(attack): exit \(result.status)\n\(result.stderr)")
        let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("peershare: error:") }
        #expect(errors.count == 1 && errors[0].contains(reason), "\(attack): \(result.stderr)")
        #expect(!result.stderr.contains("Fatal error"))
        // Nothing beside the victim's folder, nothing in it but the node's own files.
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox) == ["victim"])
        let own = Set(try FileManager.default.contentsOfDirectory(atPath: victim))
        #expect(own.isSubset(of: ["peer.db", "peer.db-wal", "peer.db-shm", "chunks", "summary.txt"]), "\(attack): \(own)")
        #expect(!FileManager.default.fileExists(atPath: "/etc/x"))
        let db = try SQLiteConnection(path: victim + "/peer.db", mode: .readOnly)
        #expect(try db.scalarInt("SELECT count(*) FROM manifest") == 0, "\(attack): the refused manifest must not be stored")
    }
}

/// A folder's regular files as "PATH SHA256" lines by bytes (no modes, no folders): what a
/// v1 torrent carries.
func fileLines(_ root: String, normalising: Bool = false) throws -> [[UInt8]] {
    try treeListing(root, normalising: normalising).compactMap { line in
        guard line.first == UInt8(ascii: "f") else { return nil }
        let fields = line.split(separator: UInt8(ascii: " "))
        // "f PATH MODE SHA": the path may hold spaces, so keep all but the mode and hash.
        return Array(fields.dropFirst().dropLast(2).joined(separator: [UInt8(ascii: " ")])) + [UInt8(ascii: " ")] + Array(fields.last ?? [])
    }
}

@Suite("A folder through a multi-file .torrent", .serialized)
struct FolderTorrentTests {
    /// An owner of a varied folder and one complete peer, both web seeds, and a .torrent
    /// written from the owner's index (whose disk spells some names in NFD).
    static func seeded(label: String = #function) async throws -> (tree: VariedTree, dir: String, torrent: String, stop: @Sendable () -> Void) {
        let tree = try await VariedTree.make(in: temporaryDirectory(label + "-source"), files: 200, largeFileSize: 3_000_000)
        let dir = temporaryDirectory(label)
        let owner = try Swarm.startOwner(dir: dir, source: tree.path, peers: 1, options: ["--http", "127.0.0.1:0"])
        let ownerHTTP = try await httpPort(of: owner)
        let wire = try await listeningPort(of: owner)
        let peer = try startPeer("peer1", storage: .chunkFiles, dir: dir, owner: "127.0.0.1:\(wire)",
                                 options: ["--http", "127.0.0.1:0", "--keep-serving", "--wait-for-downloaders", "0"])
        let stop: @Sendable () -> Void = { for process in [peer, owner] { process.signal(SIGKILL) } }
        let peerHTTP = try await httpPort(of: peer)
        guard await waitForAssembly(peer, of: "release", timeout: .seconds(90)) else { stop(); throw SwarmError("peer1 did not assemble:\n" + tail(dir + "/peer1.log")) }
        let torrent = dir + "/release.torrent"
        let result = try await runCommand(Binaries.peershare, ["torrent", "--db", dir + "/owner/owner.db", "--out", torrent,
                                                               "--web-seed", "http://127.0.0.1:\(ownerHTTP)/files/", "--web-seed", "http://127.0.0.1:\(peerHTTP)/files/"])
        guard result.status == 0, result.stdout.contains("the folder release (") else { stop(); throw SwarmError("peershare torrent: \(result.stdout)\(result.stderr)") }
        return (tree, dir, torrent, stop)
    }

    @Test("aria2c downloads the folder through the multi-file .torrent from two PeerShare web seeds, every file byte for byte",
          .enabled(if: SystemTool.path("aria2c") != nil, "aria2c is not installed"))
    func aria2() async throws {
        let (tree, dir, torrent, stop) = try await Self.seeded()
        defer { stop() }
        _ = try await TorrentTests.aria2c(torrent, into: dir + "/aria2")
        let expected = try fileLines(tree.path, normalising: true), got = try fileLines(dir + "/aria2/release")
        let identical = got == expected
        #expect(identical && expected.count == 200, "\(listingDifference(expected, got))")
    }

    @Test("python3-libtorrent downloads the folder through the multi-file .torrent, every file byte for byte",
          .enabled(if: Libtorrent.available, "python3-libtorrent is not installed"))
    func libtorrent() async throws {
        let (tree, dir, torrent, stop) = try await Self.seeded()
        defer { stop() }
        _ = try await TorrentTests.libtorrentGet(torrent, into: dir + "/lt")
        let expected = try fileLines(tree.path, normalising: true), got = try fileLines(dir + "/lt/release")
        let identical = got == expected
        #expect(identical && expected.count == 200, "\(listingDifference(expected, got))")
    }
}
