import Foundation
import NIOCore
import Testing
@testable import PeerShareCore
@testable import PeerShareNode
@testable import PeerShareStore

@Suite("Chunk files on disk")
struct ChunkFilesStoreTests {
    @Test("a chunk written reads back identical, and no temporary file is left")
    func writeRead() throws {
        let directory = try ChunkFilesStore(root: temporaryDirectory())
        let (manifest, data) = try sampleManifest(size: 8 * 1000 + 500, chunkSize: 1000)
        let bytes = ByteBuffer(bytes: data[7000..<8000])
        try directory.write(ChunkID(7), bytes: bytes, of: manifest)
        #expect(try directory.read(ChunkID(7), of: manifest) == bytes)
        #expect(directory.path(of: ChunkID(7)).hasSuffix("/chunks/000007.chunk"))
        let entries = try FileManager.default.contentsOfDirectory(atPath: directory.chunksFolder)
        #expect(entries == ["000007.chunk"])
        try directory.write(ChunkID(8), bytes: bytes, of: manifest)
        #expect(throws: FileSystemError.self, "a chunk file of the wrong size is refused") { try directory.openForSending(ChunkID(8), of: manifest) }
    }

    @Test("the summary file lists one chunk ID per line")
    func summary() throws {
        let directory = try ChunkFilesStore(root: temporaryDirectory())
        try directory.writeSummary([0, 1, 17].map { ChunkID($0) })
        #expect(try String(contentsOfFile: directory.summaryPath, encoding: .utf8) == "0\n1\n17\n")
        try directory.writeSummary([])
        #expect(try String(contentsOfFile: directory.summaryPath, encoding: .utf8) == "")
    }

    @Test("assembly produces the original bytes, and refuses chunks that do not hash to the file")
    func assembly() throws {
        let directory = try ChunkFilesStore(root: temporaryDirectory())
        let (manifest, data) = try sampleManifest(size: 250, chunkSize: 100)
        try writeChunks(of: manifest, from: data, into: directory)
        #expect(try directory.assemble(manifest) == manifest.fileHash)
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory.assembledPath(for: manifest))) == Data(data))

        try FileManager.default.removeItem(atPath: directory.assembledPath(for: manifest))
        try directory.write(ChunkID(1), bytes: ByteBuffer(repeating: 0, count: 100))
        #expect(throws: (any Error).self) { try directory.assemble(manifest) }
        #expect(!FileManager.default.fileExists(atPath: directory.assembledPath(for: manifest)), "a bad assembly must not appear under the file's name")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.root).filter { $0.hasPrefix(".peershare-tmp") }.isEmpty)
    }

    @Test("assembly a few chunks at a time gives the same bytes; a short or abandoned draft never appears under the file's name")
    func assemblyInSteps() throws {
        let directory = try ChunkFilesStore(root: temporaryDirectory())
        let (manifest, data) = try sampleManifest(size: 950, chunkSize: 100)
        try writeChunks(of: manifest, from: data, into: directory)
        func temporaries() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: directory.root).filter { $0.hasPrefix(".peershare-tmp") }
        }
        var draft = try directory.beginAssembly(directIO: true)
        for end in [1, 1, 4, 9, 10] {
            try directory.append(to: &draft, upTo: end, of: manifest)
            #expect(draft.nextChunk == end)
        }
        #expect(try temporaries().count == 1, "the draft is a temporary file until it is finished")
        #expect(try directory.finish(draft, of: manifest) == manifest.fileHash)
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory.assembledPath(for: manifest))) == Data(data))
        #expect(try temporaries().isEmpty)

        try FileManager.default.removeItem(atPath: directory.assembledPath(for: manifest))
        var short = try directory.beginAssembly(directIO: true)
        try directory.append(to: &short, upTo: 9, of: manifest)
        #expect(throws: AssemblyError.self) { try directory.finish(short, of: manifest) }
        directory.abandon(try directory.beginAssembly(directIO: true))
        #expect(!FileManager.default.fileExists(atPath: directory.assembledPath(for: manifest)))
        #expect(try temporaries().isEmpty)

        // A chunk file that vanished mid-draft: the step fails and takes its draft with it.
        var broken = try directory.beginAssembly(directIO: true)
        try directory.append(to: &broken, upTo: 3, of: manifest)
        try FileManager.default.removeItem(atPath: directory.path(of: ChunkID(3)))
        #expect(throws: FileSystemError.self) { try directory.append(to: &broken, upTo: 5, of: manifest) }
        #expect(try temporaries().isEmpty)
    }

    /// Real chunk sizes take the direct-I/O path (whole blocks from an aligned buffer, a
    /// partial block carried to the next step, the tail through the page cache), and the
    /// buffered path must give the same bytes.
    @Test("assembly in steps gives the original bytes, with direct I/O and without",
          arguments: [(Int64(3 * 102_400 * 10 + 123), 102_400), (Int64(1_500_007), 5_000), (Int64(2 * 1_048_576), 4_096)], [true, false])
    func assemblyLarge(file: (size: Int64, chunkSize: Int), directIO: Bool) throws {
        let directory = try ChunkFilesStore(root: temporaryDirectory())
        defer { try? FileManager.default.removeItem(atPath: directory.root) }
        let (manifest, data) = try sampleManifest(size: file.size, chunkSize: file.chunkSize)
        try writeChunks(of: manifest, from: data, into: directory)
        var draft = try directory.beginAssembly(directIO: directIO)
        if !directIO { #expect(!draft.direct) }
        var end = 0
        for step in [1, 3, 64, 7] where end < manifest.chunkCount {
            end = min(manifest.chunkCount, end + step)
            try directory.append(to: &draft, upTo: end, of: manifest)
        }
        try directory.append(to: &draft, upTo: manifest.chunkCount, of: manifest)
        #expect(try directory.finish(draft, of: manifest) == manifest.fileHash)
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory.assembledPath(for: manifest))) == Data(data))
    }

    @Test("a file system that refuses direct writes midway gets the same bytes through the page cache")
    func directWritesRefused() throws {
        let directory = try ChunkFilesStore(root: temporaryDirectory())
        defer { try? FileManager.default.removeItem(atPath: directory.root) }
        let (manifest, data) = try sampleManifest(size: 40 * 102_400 + 77, chunkSize: 102_400)
        try writeChunks(of: manifest, from: data, into: directory)
        var draft = try directory.beginAssembly(directIO: true)
        try directory.append(to: &draft, upTo: 15, of: manifest)
        draft.refuseDirectWritesForTesting = true
        try directory.append(to: &draft, upTo: 30, of: manifest)
        #expect(!draft.direct, "a refused direct write turns direct I/O off")
        try directory.append(to: &draft, upTo: manifest.chunkCount, of: manifest)
        #expect(try directory.finish(draft, of: manifest) == manifest.fileHash)
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory.assembledPath(for: manifest))) == Data(data))
    }

    @Test("an empty file assembles to an empty file")
    func emptyAssembly() throws {
        let directory = try ChunkFilesStore(root: temporaryDirectory())
        let (manifest, _) = try sampleManifest(size: 0)
        #expect(try directory.assemble(manifest) == manifest.fileHash)
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory.assembledPath(for: manifest))).isEmpty)
    }

    /// Every chunk of `manifest`, cut from `data`, as the chunk files a peer would hold.
    private func writeChunks(of manifest: Manifest, from data: [UInt8], into directory: ChunkFilesStore) throws {
        for id in manifest.layout.chunkIDs {
            let start = Int(manifest.layout.offset(of: id))
            try directory.write(id, bytes: ByteBuffer(bytes: data[start..<start + manifest.size(of: id)]))
        }
    }
}
