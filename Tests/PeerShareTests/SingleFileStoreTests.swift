import Foundation
import NIOCore
import Testing
@testable import PeerShareCore
@testable import PeerShareStore

@Suite("One file, every chunk in place")
struct SingleFileStoreTests {
    /// Writes every chunk of `manifest`, cut from `data`, in the order of `ids`.
    func fill(_ store: SingleFileStore, _ manifest: Manifest, _ data: [UInt8], order ids: [ChunkID]) throws {
        for id in ids {
            let start = Int(manifest.layout.offset(of: id))
            try store.write(id, bytes: ByteBuffer(bytes: data[start..<start + manifest.size(of: id)]), of: manifest)
        }
    }

    @Test("chunks written in any order assemble into the file, under its name, with no copy left behind",
          arguments: [(Int64(0), 100), (Int64(1), 100), (Int64(950), 100), (Int64(3 * 102_400 + 17), 102_400)])
    func assemble(size: Int64, chunkSize: Int) throws {
        let root = temporaryDirectory()
        let store = try SingleFileStore(root: root, source: nil)
        let (manifest, data) = try sampleManifest(size: size, chunkSize: chunkSize)
        try store.prepare(for: manifest, assembled: false)
        #expect(PosixFiles.fileSize(store.partialPath) == size, "preallocated at the file's size")
        var random = SeededGenerator(seed: UInt64(size) + 1)
        try fill(store, manifest, data, order: manifest.layout.chunkIDs.shuffled(using: &random))
        for id in manifest.layout.chunkIDs {
            let slice = try store.openForSending(id, of: manifest)
            defer { close(slice.descriptor) }
            #expect(slice.offset == manifest.layout.offset(of: id) && slice.count == manifest.size(of: id))
        }
        var draft = try store.beginAssembly(of: manifest)
        try store.append(to: &draft, upTo: manifest.chunkCount / 2, of: manifest)
        try store.append(to: &draft, upTo: manifest.chunkCount, of: manifest)
        #expect(try store.finish(draft, of: manifest) == manifest.fileID)
        #expect(try Data(contentsOf: URL(fileURLWithPath: root + "/" + manifest.fileName)) == Data(data))
        #expect(!FileManager.default.fileExists(atPath: store.partialPath))
        #expect(try FileManager.default.contentsOfDirectory(atPath: root) == [manifest.fileName])
        // Once assembled, chunks are served from the file under its name.
        if manifest.chunkCount > 0 {
            #expect(try store.read(ChunkID(0), of: manifest) == ByteBuffer(bytes: data[0..<manifest.size(of: ChunkID(0))]))
        }
    }

    @Test("assembly hashes nothing again (each chunk was checked on arrival); a chunk damaged in place is found by a re-hash")
    func damagedChunk() throws {
        let store = try SingleFileStore(root: temporaryDirectory(), source: nil)
        let (manifest, data) = try sampleManifest(size: 950, chunkSize: 100)
        try store.prepare(for: manifest, assembled: false)
        try fill(store, manifest, data, order: manifest.layout.chunkIDs)
        try store.write(ChunkID(4), bytes: ByteBuffer(repeating: 0, count: 100), of: manifest)
        var short = try store.beginAssembly(of: manifest)
        try store.append(to: &short, upTo: 9, of: manifest)
        #expect(throws: AssemblyError.self, "a file with chunks missing never takes the name") { try store.finish(short, of: manifest) }
        var draft = try store.beginAssembly(of: manifest)
        try store.append(to: &draft, upTo: manifest.chunkCount, of: manifest)
        #expect(try store.finish(draft, of: manifest) == manifest.fileID)
        let all = ChunkSet.full(manifest.chunkCount)
        let check = store.reconcile(manifest, indexed: all, rehash: all, assembled: true)
        #expect(check.droppedRows.map(\.id) == [ChunkID(4)], "\(check.droppedRows)")
    }

    @Test("start-up: rows whose bytes are re-hashed are kept or dropped; a file cut short drops every row")
    func reconcile() throws {
        let store = try SingleFileStore(root: temporaryDirectory(), source: nil)
        let (manifest, data) = try sampleManifest(size: 950, chunkSize: 100)
        try store.prepare(for: manifest, assembled: false)
        try fill(store, manifest, data, order: [0, 1, 2, 3].map { ChunkID($0) })
        let indexed = ChunkSet(capacity: manifest.chunkCount, [0, 1, 2, 3, 5].map { ChunkID($0) })
        let rehash = ChunkSet(capacity: manifest.chunkCount, [2, 3, 5].map { ChunkID($0) })
        let check = store.reconcile(manifest, indexed: indexed, rehash: rehash, assembled: false)
        #expect(check.rehashed == [ChunkID(2), ChunkID(3)])
        #expect(check.droppedRows.map(\.id) == [ChunkID(5)], "chunk 5 was never written: its bytes are zeros")

        #expect(truncate(store.partialPath, 500) == 0)
        let cut = store.reconcile(manifest, indexed: indexed, rehash: ChunkSet(capacity: manifest.chunkCount), assembled: false)
        #expect(cut.droppedRows.count == 5 && cut.droppedRows[0].reason.contains("is 500 bytes, not 950"))
    }

    @Test("killed between the rename and its row: the complete file goes back to its temporary name, and every row stays")
    func killedAfterRename() throws {
        let root = temporaryDirectory()
        let store = try SingleFileStore(root: root, source: nil)
        let (manifest, data) = try sampleManifest(size: 950, chunkSize: 100)
        try store.prepare(for: manifest, assembled: false)
        try fill(store, manifest, data, order: manifest.layout.chunkIDs)
        var draft = try store.beginAssembly(of: manifest)
        try store.append(to: &draft, upTo: manifest.chunkCount, of: manifest)
        _ = try store.finish(draft, of: manifest)
        // A new process: the index still says "not assembled".
        let restarted = try SingleFileStore(root: root, source: nil)
        let indexed = ChunkSet.full(manifest.chunkCount)
        let check = restarted.reconcile(manifest, indexed: indexed, rehash: ChunkSet(capacity: manifest.chunkCount), assembled: false)
        #expect(check.droppedRows.isEmpty, "\(check.droppedRows)")
        #expect(FileManager.default.fileExists(atPath: restarted.partialPath))
        #expect(try Data(contentsOf: URL(fileURLWithPath: restarted.partialPath)) == Data(data))
    }

    @Test("an owner serves its source in place, and notices the source cut short")
    func ownerServesSource() throws {
        let dir = temporaryDirectory()
        let (manifest, data) = try sampleManifest(size: 950, chunkSize: 100)
        try Data(data).write(to: URL(fileURLWithPath: dir + "/f.bin"))
        let store = try SingleFileStore(root: dir + "/owner", source: dir + "/f.bin")
        try store.prepare(for: manifest, assembled: true)
        #expect(try store.read(ChunkID(9), of: manifest) == ByteBuffer(bytes: data[900..<950]))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/owner").isEmpty, "no copy of the file")
        #expect(truncate(dir + "/f.bin", 920) == 0)
        #expect(throws: FileSystemError.self) { try store.openForSending(ChunkID(9), of: manifest) }
        #expect(throws: FileSystemError.self) { try store.prepare(for: manifest, assembled: true) }
    }
}
