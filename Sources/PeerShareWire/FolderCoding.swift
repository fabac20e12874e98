import NIOCore
import PeerShareCore

/// FOLDER's fixed part: a shared folder's counterpart of MANIFEST (docs/PROTOCOL.md,
/// "Folders"). The entries follow in FILES messages, then the chunk hashes in HASHES.
public struct FolderHeader: Equatable, Sendable {
    public let totalSize: Int64
    public let chunkSize: UInt32
    public let chunkCount: UInt32
    public let entryCount: UInt32
    /// SHA-256 of the files' bytes concatenated in manifest order.
    public let contentHash: Digest32
    public let name: String

    public init(totalSize: Int64, chunkSize: UInt32, chunkCount: UInt32, entryCount: UInt32, contentHash: Digest32, name: String) {
        self.totalSize = totalSize
        self.chunkSize = chunkSize
        self.chunkCount = chunkCount
        self.entryCount = entryCount
        self.contentHash = contentHash
        self.name = name
    }
}

/// The bytes of FOLDER and FILES, and their checks on the way in. Each entry's path is
/// checked alone here (`TreePath`); its order against the others is the receiver's
/// `FileTree`, which sees every batch.
enum FolderCoding {
    static let executableFlag = TreeEntry.executableFlag
    static let emptyFolderFlag = TreeEntry.emptyFolderFlag
    /// An entry's bytes before its path: flags, size, path length.
    static let entryHeadBytes = 1 + 8 + 2

    static func encode(_ header: FolderHeader, into out: inout ByteBuffer) {
        out.writeInteger(UInt64(header.totalSize))
        out.writeInteger(header.chunkSize)
        out.writeInteger(header.chunkCount)
        out.writeInteger(header.entryCount)
        out.writeBytes(header.contentHash.bytes)
        let name = Array(header.name.utf8)
        out.writeInteger(UInt16(truncatingIfNeeded: name.count))
        out.writeBytes(name)
    }

    /// Each entry as the folder ID spells it (`FolderManifest.entryBytes`).
    static func encode(first: UInt32, _ entries: [TreeEntry], into out: inout ByteBuffer) {
        out.writeInteger(first)
        for entry in entries { out.writeBytes(FolderManifest.entryBytes(entry)) }
    }

    static func entryLength(_ entry: TreeEntry) -> Int { entryHeadBytes + entry.path.text.utf8.count }

    static func decodeHeader(_ payload: inout ByteBuffer) throws(WireError) -> FolderHeader {
        let kind = PeerMessage.Kind.folder
        guard let size = payload.readInteger(as: UInt64.self),
              let chunkSize = payload.readInteger(as: UInt32.self),
              let chunkCount = payload.readInteger(as: UInt32.self),
              let entryCount = payload.readInteger(as: UInt32.self),
              let hash = payload.readBytes(length: 32).flatMap({ Digest32(bytes: $0) }),
              let nameLength = payload.readInteger(as: UInt16.self)
        else { throw .malformed(kind, "too short") }
        guard size <= UInt64(ChunkLayout.maximumFileSize) else {
            throw .malformed(kind, "total size \(size) is over the largest possible \(ChunkLayout.maximumFileSize) bytes")
        }
        guard chunkSize >= 1, chunkSize <= UInt32(ChunkLayout.maximumChunkSize) else {
            throw .malformed(kind, "chunk size \(chunkSize) is outside 1...\(ChunkLayout.maximumChunkSize)")
        }
        guard chunkCount <= UInt32(ChunkID.maximumCount) else {
            throw .malformed(kind, "chunk count \(chunkCount) is over \(ChunkID.maximumCount)")
        }
        do { try FileTree.checkCount(Int(entryCount)) } catch { throw .malformed(kind, error.description) }
        guard Int(nameLength) <= FileName.maximumBytes, let nameBytes = payload.readBytes(length: Int(nameLength)) else {
            throw .malformed(kind, "folder name is truncated or too long")
        }
        guard let name = String(validating: nameBytes, as: UTF8.self) else { throw .malformed(kind, "folder name is not UTF-8") }
        do { try FileName.validate(name) } catch { throw .malformed(kind, error.description) }
        guard TreePath.isNFC(name) else { throw .malformed(kind, "folder name \(name.debugDescription) is not in Unicode NFC") }
        return FolderHeader(totalSize: Int64(size), chunkSize: chunkSize, chunkCount: chunkCount, entryCount: entryCount,
                            contentHash: hash, name: name)
    }

    static func decodeEntries(_ payload: inout ByteBuffer) throws(WireError) -> (first: UInt32, [TreeEntry]) {
        let kind = PeerMessage.Kind.files
        guard let first = payload.readInteger(as: UInt32.self) else { throw .malformed(kind, "too short") }
        guard payload.readableBytes > 0 else { throw .malformed(kind, "no entries") }
        var entries: [TreeEntry] = []
        while payload.readableBytes > 0 {
            let number = Int(first) + entries.count
            guard let flags = payload.readInteger(as: UInt8.self), let size = payload.readInteger(as: UInt64.self),
                  let length = payload.readInteger(as: UInt16.self)
            else { throw .malformed(kind, "entry \(number) is truncated") }
            guard flags & ~(executableFlag | emptyFolderFlag) == 0, flags != executableFlag | emptyFolderFlag else {
                throw .malformed(kind, "entry \(number) has unknown flags \(flags)")
            }
            guard size <= UInt64(ChunkLayout.maximumFileSize) else { throw .malformed(kind, "entry \(number)'s size \(size) is over the bound") }
            guard flags & emptyFolderFlag == 0 || size == 0 else { throw .malformed(kind, "entry \(number) is an empty folder of \(size) bytes") }
            guard Int(length) <= TreePath.maximumBytes else {
                throw .malformed(kind, "entry \(number)'s path is \(length) bytes, over \(TreePath.maximumBytes)")
            }
            guard let bytes = payload.readBytes(length: Int(length)) else { throw .malformed(kind, "entry \(number)'s path is truncated") }
            guard let text = String(validating: bytes, as: UTF8.self) else { throw .malformed(kind, "entry \(number)'s path is not UTF-8") }
            let path: TreePath
            do { path = try TreePath(validating: text) } catch { throw .malformed(kind, error.description) }
            let entryKind: TreeEntry.Kind = flags & emptyFolderFlag != 0 ? .emptyFolder : .file(size: Int64(size), executable: flags & executableFlag != 0)
            entries.append(TreeEntry(path: path, kind: entryKind))
        }
        return (first, entries)
    }
}
