import PeerShareCore
import PeerShareStore

/// Where a node's complete copy of its file is, as its index says: for `peershare torrent`,
/// which hashes that file into a .torrent.
public struct CompleteFile: Sendable {
    public let path: String
    public let name: String
    public let size: Int64
    /// The manifest's SHA-256 of the whole file: what was verified, and what the file read
    /// now must still hash to.
    public let sha256: Digest32
}

extension InspectDatabase {
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
            return CompleteFile(path: file, name: manifest.fileName, size: manifest.fileSize, sha256: sha256)
        }
    }
}
