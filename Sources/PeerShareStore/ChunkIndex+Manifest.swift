import PeerShareCore

/// The manifest a node holds (Schema: `manifest`, `manifest_chunks`, `folder_entries`):
/// saved once, read back at every start and checked again as input.
extension ChunkIndex {
    public func manifest() throws -> Manifest? {
        let rows = try db.query("SELECT file_name, file_size, chunk_size, chunk_count, file_sha256, kind FROM manifest WHERE id = 1") {
            ($0.text(0), $0.int(1), Int($0.int(2)), Int($0.int(3)), $0.blob(4), $0.text(5))
        }
        guard let (name, size, chunkSize, count, fileHash, kind) = rows.first else { return nil }
        let hashRows = try db.query("SELECT chunk_id, sha256 FROM manifest_chunks ORDER BY chunk_id") { ($0.int(0), $0.blob(1)) }
        guard hashRows.count == count, hashRows.enumerated().allSatisfy({ $0.offset == Int($0.element.0) }) else {
            throw IndexError.manifestMismatch("the index's manifest lists \(hashRows.count) chunk hashes for \(count) chunks")
        }
        guard let digest = Digest32(bytes: fileHash) else { throw IndexError.manifestMismatch("the index's file hash is malformed") }
        let hashes = try hashRows.map { row in
            guard let d = Digest32(bytes: row.1) else { throw IndexError.manifestMismatch("chunk \(row.0) has a malformed hash") }
            return d
        }
        if kind == "folder" {
            return Manifest(folder: try folderManifest(name: name, chunkSize: chunkSize, hashes: hashes, contentHash: digest))
        }
        let layout: ChunkLayout
        do { layout = try ChunkLayout(fileSize: size, chunkSize: chunkSize) } catch {
            throw IndexError.manifestMismatch("the index's manifest is invalid: \(error)")
        }
        return try Manifest(fileName: name, layout: layout, chunkHashes: hashes, fileHash: digest)
    }

    /// A folder's manifest from its rows (checked as if from the network).
    private func folderManifest(name: String, chunkSize: Int, hashes: [Digest32], contentHash: Digest32) throws -> FolderManifest {
        let rows = try db.query("SELECT path, is_folder, size, executable FROM folder_entries ORDER BY position") {
            (path: $0.text(0), isFolder: $0.int(1) != 0, size: $0.int(2), executable: $0.int(3) != 0)
        }
        do {
            return try FolderManifest(name: name, chunkSize: chunkSize, chunkHashes: hashes, contentHash: contentHash, stored: rows)
        } catch {
            throw IndexError.manifestMismatch("the index's folder manifest is invalid: \(error)")
        }
    }

    public func saveManifest(_ manifest: Manifest, now: Int64 = Clock.nowMicros()) throws {
        try db.transaction {
            try db.run(
                "INSERT INTO manifest (id, file_name, file_size, chunk_size, chunk_count, file_sha256, recorded_at, kind) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                manifest.fileName, manifest.fileSize, manifest.chunkSize, manifest.chunkCount, manifest.fileHash.bytes, now,
                manifest.folder == nil ? "file" : "folder")
            for id in manifest.chunkIDs {
                try db.run("INSERT INTO manifest_chunks (chunk_id, size, sha256) VALUES (?, ?, ?)",
                           id.rawValue, manifest.size(of: id), manifest.hash(of: id).bytes)
            }
            guard let folder = manifest.folder else { return }
            for (position, entry) in folder.tree.entries.enumerated() {
                let chunks = folder.layout.chunks(ofEntry: position)
                try db.run("INSERT INTO folder_entries (position, path, is_folder, size, executable, first_chunk) VALUES (?, ?, ?, ?, ?, ?)",
                           position, entry.path.text, entry.isFile ? 0 : 1, entry.size, entry.flags & TreeEntry.executableFlag != 0 ? 1 : 0,
                           chunks.isEmpty ? nil : chunks.lowerBound)
            }
        }
    }

    public func assembledAt() throws -> Int64? {
        try db.scalarInt("SELECT assembled_at FROM manifest WHERE id = 1")
    }

    public func clearAssembled(event: EventRecord) throws {
        try db.transaction {
            try db.run("UPDATE manifest SET assembled_at = NULL WHERE id = 1")
            try insert(event)
        }
    }

    /// The owner's source file's modification time when it was last split or checked.
    public func sourceModificationTime() throws -> Int64? {
        try db.scalarInt("SELECT source_mtime_ns FROM manifest WHERE id = 1")
    }

    public func setSourceModificationTime(_ nanoseconds: Int64) throws {
        try db.run("UPDATE manifest SET source_mtime_ns = ? WHERE id = 1", nanoseconds)
    }
}
