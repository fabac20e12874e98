import Foundation
import Testing
@testable import PeerShareCore
@testable import PeerShareStore

@Suite("An owner's folder, scanned for sharing")
struct FolderScannerTests {
    /// A folder with the cases a scan must get right, built with POSIX calls so that the
    /// names on disk are exactly the bytes given (NFD included).
    func makeTree() throws -> String {
        let root = temporaryDirectory() + "/release"
        let manager = FileManager.default
        for folder in ["bin", "docs/deep/er", "empty", "e\u{301}te\u{301}"] {
            try manager.createDirectory(atPath: root + "/" + folder, withIntermediateDirectories: true)
        }
        manager.createFile(atPath: root + "/bin/run", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755])
        manager.createFile(atPath: root + "/docs/deep/er/readme", contents: Data(repeating: 7, count: 1000))
        manager.createFile(atPath: root + "/zero", contents: Data())
        manager.createFile(atPath: root + "/e\u{301}te\u{301}/\u{65E5}\u{672C}", contents: Data("x".utf8))
        try manager.createSymbolicLink(atPath: root + "/passwd", withDestinationPath: "/etc/passwd")
        try manager.createSymbolicLink(atPath: root + "/docs/outside", withDestinationPath: "/etc")
        #expect(mkfifo(root + "/pipe", 0o600) == 0)
        return root
    }

    @Test("files, empty files and empty folders are listed in canonical order, names in NFC; symlinks and FIFOs are skipped")
    func scan() throws {
        let root = try makeTree()
        let scanned = try FolderScanner.scan(root)
        let listed = scanned.tree.entries.map { entry -> String in
            switch entry.kind {
            case .file(let size, let executable): "\(entry.path) \(size)\(executable ? " x" : "")"
            case .emptyFolder: "\(entry.path)/"
            }
        }
        // By UTF-8 bytes, "é" (0xC3 0xA9) sorts after "z".
        #expect(listed == ["bin/run 10 x", "docs/deep/er/readme 1000", "empty/", "zero 0", "\u{E9}t\u{E9}/\u{65E5}\u{672C} 1"])
        // The path on disk keeps the disk's own (NFD) spelling, to open the file by.
        let accented = try #require(scanned.tree.entries.firstIndex { $0.path.text.hasPrefix("\u{E9}") })
        #expect(Array(scanned.diskPaths[accented].utf8) == Array("e\u{301}te\u{301}/\u{65E5}\u{672C}".utf8))
        #expect(Set(scanned.skipped) == ["passwd", "docs/outside", "pipe"])
    }

    @Test("the owner's manifest: a hash per chunk of each file, the content hash over the files in order; a file changed since the scan is refused")
    func hashing() throws {
        let root = try makeTree()
        let scanned = try FolderScanner.scan(root)
        let manifest = try FolderHasher.manifest(of: scanned, root: root, name: "release", chunkSize: 512)
        // bin/run (10 bytes), readme (1000: two chunks of 512), zero (none), été/日本 (1).
        #expect(manifest.chunkCount == 4)
        let readme = [UInt8](repeating: 7, count: 1000)
        #expect(manifest.chunkHashes[1] == Digest32.of(readme[0..<512]) && manifest.chunkHashes[2] == Digest32.of(readme[512...]))
        #expect(manifest.contentHash == Digest32.of(Array("#!/bin/sh\n".utf8) + readme + Array("x".utf8)))
        #expect(manifest.entry(of: ChunkID(3))?.path.text == "\u{E9}t\u{E9}/\u{65E5}\u{672C}")

        let handle = try #require(FileHandle(forWritingAtPath: root + "/docs/deep/er/readme"))
        handle.seekToEndOfFile()
        handle.write(Data([1]))
        try handle.close()
        #expect { try FolderHasher.manifest(of: scanned, root: root, name: "release", chunkSize: 512) } throws: { "\($0)".contains("changed while it was being read") }
    }

    @Test("removing a stale staging tree never follows a symlink planted in it")
    func removerKeepsOutside() throws {
        let base = temporaryDirectory()
        let outside = base + "/outside", staging = base + "/.peershare-tmp-folder-1"
        try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: staging + "/a/b", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: outside + "/precious", contents: Data("keep".utf8))
        FileManager.default.createFile(atPath: staging + "/a/b/f", contents: Data("x".utf8))
        try FileManager.default.createSymbolicLink(atPath: staging + "/a/link", withDestinationPath: outside)
        try StagedTree.remove(staging)
        #expect(!FileManager.default.fileExists(atPath: staging))
        #expect(FileManager.default.contents(atPath: outside + "/precious") == Data("keep".utf8))
    }

    @Test("a tree built again over one whose folder was swapped for a symlink replaces it, and writes nothing through the link")
    func builderRefusesPlantedLink() throws {
        let root = temporaryDirectory(), outside = temporaryDirectory()
        let tree = try FileTree([TreeEntry(path: try TreePath(validating: "a/f"), kind: .file(size: 3, executable: false))])
        let folder = try FolderManifest(name: "t", tree: tree, chunkSize: 1024, chunkHashes: [Digest32.of(Array("abc".utf8))],
                                        contentHash: Digest32.of(Array("abc".utf8)))
        FileManager.default.createFile(atPath: root + "/chunk", contents: Data("abc".utf8))
        let built = try FolderBuilder(root: root, folder: folder).build(expected: folder.contentHash) { _ in root + "/chunk" }
        #expect(built == folder.contentHash)
        #expect(FileManager.default.contents(atPath: root + "/t/a/f") == Data("abc".utf8))
        // "t/a" swapped for a link to elsewhere (as an assembly whose row a crash lost would be
        // found): the next build writes into a fresh staging folder and replaces the tree.
        try FileManager.default.removeItem(atPath: root + "/t/a")
        try FileManager.default.createSymbolicLink(atPath: root + "/t/a", withDestinationPath: outside)
        _ = try FolderBuilder(root: root, folder: folder).build(expected: folder.contentHash) { _ in root + "/chunk" }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
        #expect(FileManager.default.contents(atPath: root + "/t/a/f") == Data("abc".utf8))
    }

    @Test("two names that are one name in NFC, a name that is not UTF-8, a reserved name and an empty folder are refused in one line")
    func refusals() throws {
        let twins = temporaryDirectory() + "/twins"
        try FileManager.default.createDirectory(atPath: twins, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: twins + "/caf\u{E9}", contents: Data())
        FileManager.default.createFile(atPath: twins + "/cafe\u{301}", contents: Data())
        #expect { try FolderScanner.scan(twins) } throws: { "\($0)".contains("same name once normalised to NFC") }

        let latin1 = temporaryDirectory() + "/latin1"
        try FileManager.default.createDirectory(atPath: latin1, withIntermediateDirectories: true)
        let raw: [CChar] = Array((latin1 + "/caf").utf8CString.dropLast()) + [CChar(bitPattern: 0xE9), 0]
        let rawFD = open(raw, O_CREAT | O_WRONLY, 0o644)
        #expect(rawFD >= 0)
        close(rawFD)
        #expect { try FolderScanner.scan(latin1) } throws: { "\($0)".contains("not named in UTF-8") }

        let reserved = temporaryDirectory() + "/reserved"
        try FileManager.default.createDirectory(atPath: reserved + "/.peershare-x", withIntermediateDirectories: true)
        #expect { try FolderScanner.scan(reserved) } throws: { "\($0)".contains("reserved") }

        let empty = temporaryDirectory() + "/nothing"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        #expect { try FolderScanner.scan(empty) } throws: { "\($0)".contains("nothing to share") }
        #expect { try FolderScanner.scan(empty + "/absent") } throws: { "\($0)".contains("cannot read") }
    }
}
