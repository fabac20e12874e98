import Foundation
import NIOCore
import Testing
@testable import PeerShareCore
@testable import PeerShareStore
@testable import PeerShareWire

private func path(_ text: String) throws -> TreePath { try TreePath(validating: text) }
private func file(_ text: String, _ size: Int64 = 1, executable: Bool = false) throws -> TreeEntry {
    TreeEntry(path: try path(text), kind: .file(size: size, executable: executable))
}

@Suite("Folders: paths from the network are checked before anything is written")
struct FolderPathTests {
    @Test("paths that climb out, are absolute, hold NUL or control bytes, are too long or deep, or are not NFC are refused",
          arguments: [
              ("a/../../x", "\"..\""), ("/etc/x", "absolute"), ("a\u{0}b", "control"), ("a//b", "empty component"), ("a/", "empty component"),
              ("", "empty"), ("./x", "\".\""), ("x\\y", "separator"), ("a/.peershare-tmp-1", "reserved"), ("e\u{301}", "NFC"),
              ("a/b\u{7f}", "control"), (String(repeating: "a", count: 10_000), "over 4096"), (String(repeating: "a/", count: 64) + "z", "levels deep"),
              (String(repeating: "n", count: 256), "over 255"),
          ])
    func refused(text: String, reason: String) {
        #expect { try TreePath(validating: text) } throws: { error in
            let line = "\(error)"
            return line.contains(reason) && !line.contains("\n") && line.utf8.count < 400
        }
    }

    @Test("ordinary paths in Greek, CJK and emoji, 64 deep, 4,096 bytes, pass")
    func accepted() throws {
        for text in ["a", "a/b/c.txt", "Ελληνικά/文件/🎉 party.txt", String(repeating: "d/", count: 63) + "f",
                     String(repeating: "x", count: 255) + "/" + String(repeating: "y", count: 255)] {
            #expect(try path(text).text == text)
        }
    }

    @Test("a duplicate, a file that is also a folder, an empty folder that holds something, and disorder are refused")
    func treeConflicts() throws {
        #expect(throws: FileTreeError.duplicate(try path("a"))) { try FileTree([try file("a"), try file("a")]) }
        #expect(throws: FileTreeError.fileIsAlsoFolder(try path("a"))) { try FileTree([try file("a"), try file("a/b")]) }
        // "a-x" sorts between "a" and "a/…" by bytes, but not by components: still caught.
        #expect(throws: FileTreeError.self) { try FileTree([try file("a"), try file("a-x"), try file("a/b")]) }
        #expect(throws: FileTreeError.emptyFolderHolds(try path("d"), try path("d/f"))) {
            try FileTree([TreeEntry(path: try path("d"), kind: .emptyFolder), try file("d/f")])
        }
        #expect(throws: FileTreeError.outOfOrder(try path("a"), after: try path("b"))) { try FileTree([try file("b"), try file("a")]) }
        let tree = try FileTree([try file("a"), try file("a-x"), try file("b/c"), TreeEntry(path: try path("b/d"), kind: .emptyFolder)])
        #expect(tree.count == 4 && tree.totalSize == 3)
        #expect(throws: FileTreeError.tooManyEntries(10_000_000)) { try FileTree.checkCount(10_000_000) }
    }

    @Test("each file starts on a chunk boundary; a chunk names its file, offset and size")
    func layout() throws {
        let tree = try FileTree([try file("a", 0), try file("b", 1), try file("c", 102_400), try file("d", 102_401),
                                 TreeEntry(path: try path("e"), kind: .emptyFolder)])
        let layout = try TreeLayout(tree: tree, chunkSize: 102_400)
        #expect(layout.chunkCount == 4 && layout.totalSize == 204_802)
        #expect(layout.chunks(ofEntry: 0) == 0..<0 && layout.chunks(ofEntry: 1) == 0..<1 && layout.chunks(ofEntry: 3) == 2..<4)
        let last = try #require(layout.place(of: ChunkID(3)))
        #expect(last.span.entryIndex == 3 && last.offset == 102_400 && last.size == 1)
        #expect(layout.place(of: ChunkID(1))?.span.entryIndex == 2)
        #expect(layout.place(of: ChunkID(4)) == nil)
    }
}

@Suite("Folders on the wire: FOLDER and FILES")
struct FolderWireTests {
    /// A manifest of a small varied folder, and its messages as bytes on the wire.
    func sample() throws -> FolderManifest {
        let tree = try FileTree([try file("bin/run", 10, executable: true), try file("data/Ωμέγα.txt", 250_000),
                                 TreeEntry(path: try path("empty"), kind: .emptyFolder), try file("zero", 0)])
        let hashes = (0..<4).map { Digest32.of([UInt8($0)]) }
        return try FolderManifest(name: "release", tree: tree, chunkSize: 102_400, chunkHashes: hashes, contentHash: Digest32.of([9]))
    }

    func received(_ messages: [PeerMessage]) throws -> FolderManifest {
        var receiver: FolderReceiver?
        for message in messages {
            var frame = message.frame
            var decoder = PeerMessageDecoder()
            switch try #require(try decoder.decodeOne(&frame)) {
            case .folder(let header): receiver = FolderReceiver(header)
            case .files(let first, let entries): try receiver?.add(first: first, entries)
            case .hashes(let first, let hashes): try receiver?.add(first: first, hashes)
            default: Issue.record("unexpected message")
            }
        }
        return try #require(receiver).manifest()
    }

    @Test("a folder's manifest crosses the wire intact, its ID recomputed from what arrived")
    func roundTrip() throws {
        let manifest = try sample()
        #expect(try received(manifest.messages()) == manifest)
        #expect(manifest.entry(of: ChunkID(3))?.path.text == "data/Ωμέγα.txt")
        // Any change to an entry changes the ID.
        let flipped = try FileTree(manifest.tree.entries.map { entry in
            entry.path.text == "bin/run" ? try file("bin/run", 10, executable: false) : entry
        })
        #expect(FolderManifest.folderID(tree: flipped, chunkSize: 102_400, chunkHashes: manifest.chunkHashes) != manifest.folderID)
    }

    @Test("many entries are split over several FILES frames, each under the frame limit")
    func batches() throws {
        let tree = try FileTree((0..<20_000).map { try file(String(format: "f%05d/%@", $0, String(repeating: "x", count: 40))) })
        let manifest = try FolderManifest(name: "many", tree: tree, chunkSize: 102_400,
                                          chunkHashes: Array(repeating: Digest32.of([1]), count: 20_000), contentHash: Digest32.of([2]))
        let messages = manifest.messages()
        let files = messages.filter { $0.kind == .files }
        #expect(files.count > 1 && files.allSatisfy { $0.bodyLength < WireLimits.maximumFrameLength })
        #expect(try received(messages).folderID == manifest.folderID)
    }

    /// One FILES frame holding one entry, spelled byte by byte as a hostile owner might.
    func filesFrame(first: UInt32 = 0, flags: UInt8 = 0, size: UInt64 = 1, path: [UInt8], length: Int? = nil) -> ByteBuffer {
        var body = ByteBuffer()
        body.writeInteger(PeerMessage.Kind.files.rawValue)
        body.writeInteger(first)
        body.writeInteger(flags)
        body.writeInteger(size)
        body.writeInteger(UInt16(length ?? path.count))
        body.writeBytes(path)
        var frame = ByteBuffer()
        frame.writeInteger(UInt32(body.readableBytes))
        frame.writeImmutableBuffer(body)
        return frame
    }

    @Test("hostile entries are refused by the decoder, in one line naming the entry",
          arguments: [
              ("a/../../x", "\"..\""), ("/etc/x", "absolute"), ("a\u{0}b", "control"), ("e\u{301}", "NFC"),
          ])
    func hostileEntries(text: String, reason: String) {
        var frame = filesFrame(path: Array(text.utf8))
        var decoder = PeerMessageDecoder()
        #expect { _ = try decoder.decodeOne(&frame) } throws: { "\($0)".contains(reason) && "\($0)".contains("FILES") }
    }

    @Test("a 10,000-byte path, unknown flags, a folder with a size, and a claim of 10,000,000 entries are refused before use")
    func hostileFields() throws {
        var long = filesFrame(path: Array(repeating: UInt8(ascii: "a"), count: 10_000), length: 10_000)
        var decoder = PeerMessageDecoder()
        #expect { _ = try decoder.decodeOne(&long) } throws: { "\($0)".contains("10000 bytes, over 4096") }
        var flags = filesFrame(flags: 0x80, path: Array("a".utf8))
        var decoder2 = PeerMessageDecoder()
        #expect { _ = try decoder2.decodeOne(&flags) } throws: { "\($0)".contains("unknown flags") }
        var sized = filesFrame(flags: TreeEntry.emptyFolderFlag, size: 5, path: Array("d".utf8))
        var decoder3 = PeerMessageDecoder()
        #expect { _ = try decoder3.decodeOne(&sized) } throws: { "\($0)".contains("empty folder of 5 bytes") }

        let header = FolderHeader(totalSize: 0, chunkSize: 102_400, chunkCount: 0, entryCount: 10_000_000, contentHash: Digest32.of([0]), name: "x")
        var huge = PeerMessage.folder(header).frame
        var decoder4 = PeerMessageDecoder()
        #expect { _ = try decoder4.decodeOne(&huge) } throws: { "\($0)".contains("10000000 entries") }
    }

    @Test("across batches, a duplicate and a file that is also a folder are refused by the receiver; totals must match the header")
    func receiverConflicts() throws {
        let header = FolderHeader(totalSize: 2, chunkSize: 102_400, chunkCount: 2, entryCount: 2, contentHash: Digest32.of([0]), name: "x")
        var duplicate = FolderReceiver(header)
        try duplicate.add(first: 0, [try file("a")])
        #expect { try duplicate.add(first: 1, [try file("a")]) } throws: { "\($0)".contains("listed twice") }
        var both = FolderReceiver(header)
        try both.add(first: 0, [try file("a")])
        #expect { try both.add(first: 1, [try file("a/b")]) } throws: { "\($0)".contains("both a file and a folder") }
        var lying = FolderReceiver(FolderHeader(totalSize: 5, chunkSize: 102_400, chunkCount: 2, entryCount: 2, contentHash: Digest32.of([0]), name: "x"))
        #expect { try lying.add(first: 0, [try file("a"), try file("b")]) } throws: { "\($0)".contains("not the 5 announced") }
        var skipping = FolderReceiver(header)
        #expect { try skipping.add(first: 1, [try file("a")]) } throws: { "\($0)".contains("continues at entry 0") }
        var early = FolderReceiver(header)
        #expect { try early.add(first: 0, [Digest32.of([1])]) } throws: { "\($0)".contains("before the folder's last FILES") }
    }
}
