import Foundation
import PeerShareCore
import PeerShareStore

/// A range of a file to hash: `count` bytes from `offset`, or to the end when nil.
struct ByteRange: Sendable {
    let path: String
    let offset: Int64
    let count: Int64?
}

/// What verify reads from the index, in one snapshot (the folder is read after it).
struct VerifySnapshot {
    struct Indexed: Sendable { let id: Int64; let size: Int64; let rowHash: String; let manifestHash: String }
    var node: NodeInfo
    var manifest: Manifest?
    var assembled: Bool
    var source: String?
    var indexed: [Indexed]
    var integrity: [String]

    init(_ database: InspectDatabase) throws {
        (node, manifest, assembled, source, indexed, integrity) = try database.read { db in
            let node = try database.node(db)
            let info = try database.manifest(db)
            let rows = try db.query("SELECT c.chunk_id, m.size, c.sha256, m.sha256 FROM chunks c JOIN manifest_chunks m ON m.chunk_id = c.chunk_id ORDER BY c.chunk_id") {
                Indexed(id: $0.int(0), size: $0.int(1), rowHash: Human.hex($0.blob(2)), manifestHash: Human.hex($0.blob(3)))
            }
            let integrity = try db.query("PRAGMA quick_check") { $0.text(0) }
            let entries = info?.isFolder == true ? try database.folderEntries(db) : []
            return (node, try info.map { try Self.manifest($0, entries: entries, db: db, path: database.path) }, info?.assembledAt != nil, info?.sourcePath, rows, integrity)
        }
    }

    /// The manifest as the node holds it (its layout and hashes decide where each chunk is).
    private static func manifest(_ info: ManifestInfo, entries: [FolderManifest.StoredEntry], db: Reader, path: String) throws -> Manifest {
        let hashes = try db.query("SELECT sha256 FROM manifest_chunks ORDER BY chunk_id") { Digest32(bytes: $0.blob(0)) }
        guard let fileHash = Digest32(hex: info.sha256), hashes.count == Int(info.chunkCount), !hashes.contains(nil) else {
            throw InspectError("\(path): the index's manifest hashes are malformed or incomplete")
        }
        do {
            if info.isFolder {
                return Manifest(folder: try FolderManifest(name: info.fileName, chunkSize: Int(info.chunkSize), chunkHashes: hashes.compactMap { $0 },
                                                           contentHash: fileHash, stored: entries))
            }
            let layout = try ChunkLayout(fileSize: info.fileSize, chunkSize: Int(info.chunkSize))
            return try Manifest(fileName: info.fileName, layout: layout, chunkHashes: hashes.compactMap { $0 }, fileHash: fileHash)
        } catch {
            throw InspectError("\(path): the index's manifest is invalid: \(error)")
        }
    }

    /// Opens the node's store as the node does, without creating anything: the layout code
    /// is the node's own, never re-implemented here.
    func store(in directory: String) throws -> any ChunkStore {
        let owner = node.role == "owner"
        do {
            let store = try makeChunkStore(node.storage, root: directory, source: owner ? source : nil, create: false)
            (store as? SingleFileStore)?.noteAssembled(assembled)
            return store
        } catch {
            let what = node.storage == .chunkFiles ? "no chunk folder at \(directory)/chunks" : "no node folder at \(directory)"
            throw InspectError("\(what); pass the node's folder with --dir")
        }
    }
}

/// What verify hashes: every indexed chunk where the store keeps it and, for chunk files,
/// every chunk file the index does not list.
struct VerifyTargets {
    let store: any ChunkStore
    let manifest: Manifest
    let directory: String
    var toHash: [VerifySnapshot.Indexed]
    var unindexed: [Int64] = []
    /// Files in `chunks/` that are not chunk files at all.
    var strangers: [VerifyReport.Problem] = []
    var temporaries = 0
    private var onDisk: [Int64: String] = [:]

    init(store: any ChunkStore, manifest: Manifest, directory: String, indexed: [VerifySnapshot.Indexed]) {
        self.store = store
        self.manifest = manifest
        self.directory = directory
        self.toHash = indexed.filter { $0.id >= 0 && $0.id < manifest.chunkCount }
        // A folder that cannot be listed has no temporaries to count; hashing reports the rest.
        temporaries = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasPrefix(".peershare-tmp-") }.count
    }

    /// Lists `chunks/`: temporaries are counted, chunk files the index does not list are
    /// hashed too, anything else is reported. A running node renames a chunk file just
    /// before committing its row, so such a file is looked up again before it is called
    /// unindexed.
    mutating func listChunkFiles(_ chunkFiles: ChunkFilesStore, database: InspectDatabase) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: chunkFiles.chunksFolder).sorted()
        temporaries += names.filter { $0.hasPrefix(".peershare-tmp-") }.count
        for name in names where !name.hasPrefix(".peershare-tmp-") {
            if let id = ChunkFilesStore.chunkID(fromFileName: name) {
                onDisk[Int64(id.rawValue)] = name
            } else {
                strangers.append(.init(kind: .unindexed, chunkID: nil, file: "chunks/" + name, detail: "not a chunk file name (NNNNNN.chunk)"))
            }
        }
        let indexedIDs = Set(toHash.map(\.id))
        unindexed = onDisk.keys.filter { !indexedIDs.contains($0) }.sorted()
        guard !unindexed.isEmpty else { return }
        let late = try database.read { db in
            try db.query("SELECT c.chunk_id, m.size, c.sha256, m.sha256 FROM chunks c JOIN manifest_chunks m ON m.chunk_id = c.chunk_id WHERE c.chunk_id IN (\(unindexed.map(String.init).joined(separator: ",")))") {
                VerifySnapshot.Indexed(id: $0.int(0), size: $0.int(1), rowHash: Human.hex($0.blob(2)), manifestHash: Human.hex($0.blob(3)))
            }
        }
        toHash += late
        let lateIDs = Set(late.map(\.id))
        unindexed.removeAll { lateIDs.contains($0) }
    }

    /// Where an indexed chunk's bytes are. A chunk file is hashed whole, so a file of the
    /// wrong size shows; a range of a single file is exactly the chunk's bytes.
    func slice(of id: Int64) -> ByteRange {
        let (path, offset) = store.location(of: ChunkID(UInt32(id)), in: manifest)
        return ByteRange(path: path, offset: offset, count: store is ChunkFilesStore ? nil : Int64(manifest.size(of: ChunkID(UInt32(id)))))
    }

    func unindexedSlice(_ id: Int64) -> ByteRange {
        ByteRange(path: (store as? ChunkFilesStore)?.chunksFolder.appending("/" + (onDisk[id] ?? "")) ?? "", offset: 0, count: nil)
    }

    /// How a report names a chunk's bytes: `chunks/000007.chunk`, or `movie.bin@716800`.
    func name(of id: Int64) -> String {
        let (path, offset) = store.location(of: ChunkID(UInt32(id)), in: manifest)
        let relative = path.hasPrefix(directory + "/") ? String(path.dropFirst(directory.count + 1)) : path
        return store is ChunkFilesStore ? relative : "\(relative)@\(offset)"
    }

    func unindexedName(_ id: Int64) -> String { "chunks/" + (onDisk[id] ?? "") }
}
