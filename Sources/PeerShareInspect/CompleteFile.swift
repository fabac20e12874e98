import PeerShareCore
import PeerShareStore

/// Where a node's complete copy of its file is, as its index says: for `peershare torrent`,
/// which hashes that file into a .torrent.
public struct CompleteFile: Sendable {
    public let path: String
    public let name: String
    public let size: Int64
    /// The manifest's SHA-256 of the whole file (a folder's: of its files concatenated in
    /// manifest order): what was verified, and what is read now must still hash to.
    public let sha256: Digest32
    /// A shared folder's files in manifest order (empty folders left out), each with the
    /// path to read it from; nil for a single file.
    public var files: [File]? = nil

    public struct File: Sendable {
        /// The manifest's path components (NFC).
        public let components: [String]
        public let diskPath: String
        public let size: Int64
    }
}

extension InspectDatabase {
    /// Where each of a folder's files is read from: a peer's rebuilt tree holds the
    /// manifest's (NFC) names; an owner's source is scanned again for the names its disk
    /// spells them with, and must still list exactly the indexed entries.
    func folderFiles(at root: String, entries: [FolderManifest.StoredEntry], owner: Bool) throws -> [CompleteFile.File] {
        let tree: FileTree
        do { tree = try FileTree(stored: entries) } catch { throw InspectError("\(path): the index's folder entries are invalid: \(error)") }
        var diskPaths = tree.entries.map(\.path.text)
        if owner {
            do { diskPaths = try FolderScanner.scan(root, expecting: tree).diskPaths } catch { throw InspectError("\(root): \(error)") }
        }
        return zip(tree.entries, diskPaths).filter { $0.0.isFile }.map { entry, disk in
            CompleteFile.File(components: entry.path.components, diskPath: root + "/" + disk, size: entry.size)
        }
    }

    /// The owner's source file, or a peer's assembled copy; one clear line if there is none.
    public func completeFile() throws -> CompleteFile {
        try read { db in
            let node = try node(db)
            guard let manifest = try manifest(db) else {
                throw InspectError("\(path) has no manifest yet: the \(node.role) has not got the file's description")
            }
            guard let sha256 = Digest32(hex: manifest.sha256) else { throw InspectError("\(path) is damaged: the file's SHA-256 is not 32 bytes") }
            let file: String
            if node.role == "owner" {
                guard let source = manifest.sourcePath else { throw InspectError("\(path) does not record where the owner's file is (an index from before schema 4)") }
                file = source
            } else {
                guard manifest.assembledAt != nil, let directory = node.directory else {
                    let held = try db.scalarInt("SELECT count(*) FROM chunks") ?? 0
                    throw InspectError("\(path) holds no complete file: \(node.name) has \(held) of \(manifest.chunkCount) chunks and has not assembled \(manifest.fileName)")
                }
                file = directory + "/" + manifest.fileName
            }
            var complete = CompleteFile(path: file, name: manifest.fileName, size: manifest.fileSize, sha256: sha256)
            if manifest.isFolder {
                complete.files = try folderFiles(at: file, entries: folderEntries(db), owner: node.role == "owner")
            }
            return complete
        }
    }
}
