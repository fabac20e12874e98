#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import NIOCore
import PeerShareCore

/// The owner's pass over a scanned folder: every chunk's SHA-256 and the content hash, each
/// file read once, in manifest order. Blocking; callers run it off the cooperative pool.
public enum FolderHasher {
    /// `each` hears every chunk as it is read (its bytes, hash and when reading began): the
    /// chunk-files layout writes it out there.
    public static func manifest(of scanned: ScannedFolder, root: String, name: String, chunkSize: Int,
                                each: ((ChunkID, ByteBuffer, Digest32, Int64) throws -> Void)? = nil) throws -> FolderManifest {
        var hashes: [Digest32] = []
        var content = SHA256()
        var buffer = ByteBuffer()
        buffer.reserveCapacity(chunkSize)
        for (entry, diskPath) in zip(scanned.tree.entries, scanned.diskPaths) where entry.isFile {
            let path = root + "/" + diskPath
            let fd = try openUnchanged(path, diskPath: diskPath, size: entry.size)
            defer { close(fd) }
            var remaining = entry.size
            while remaining > 0 {
                let want = Int(min(Int64(chunkSize), remaining))
                let started = Clock.nowMicros()
                buffer.clear()
                var failure: FileSystemError?
                let got = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { raw in
                    do throws(FileSystemError) {
                        return try PosixFiles.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: raw[..<want]), path: path)
                    } catch {
                        failure = error
                        return 0
                    }
                }
                if let failure { throw failure }
                guard got == want else { throw FolderScanError.refused("\(diskPath.debugDescription) shrank while it was being read; share the folder again") }
                let digest = buffer.withUnsafeReadableBytes { bytes in
                    content.update(bufferPointer: bytes)
                    return Digest32(SHA256.hash(data: bytes))
                }
                try each?(ChunkID(UInt32(hashes.count)), buffer, digest, started)
                hashes.append(digest)
                remaining -= Int64(want)
            }
        }
        do {
            return try FolderManifest(name: name, tree: scanned.tree, chunkSize: chunkSize, chunkHashes: hashes,
                                      contentHash: Digest32(content.finalize()))
        } catch {
            throw FolderScanError.refused(error.description)
        }
    }

    /// Opens a scanned file without following a symlink at its last step, and checks it is
    /// still the regular file of the size the scan saw.
    static func openUnchanged(_ path: String, diskPath: String, size: Int64) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError(operation: "cannot open", path: path, errno: errno) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, Int64(info.st_size) == size else {
            close(fd)
            throw FolderScanError.refused("\(diskPath.debugDescription) changed while it was being read; share the folder again")
        }
        return fd
    }
}

/// Where an owner's chunks come from: its source file, or the files of its source folder
/// (by the names the disk spells them with, from the owner's scan).
public struct OwnerSource: Sendable {
    public let path: String
    /// Each folder entry's path on disk, relative to `path`; nil for a single file.
    public let diskPaths: [String]?
    /// What the folder holds that is not shared: symlinks and special files.
    public let skipped: [String]

    public init(file path: String) {
        self.path = path
        self.diskPaths = nil
        self.skipped = []
    }

    public init(folder path: String, scanned: ScannedFolder) {
        self.path = path
        self.diskPaths = scanned.diskPaths
        self.skipped = scanned.skipped
    }

    /// The file and offset holding chunk `id`, which the caller has checked is in `manifest`.
    public func location(of id: ChunkID, in manifest: Manifest) -> (path: String, offset: Int64)? {
        guard let folder = manifest.folder else { return (path, manifest.layout.offset(of: id)) }
        guard let place = folder.layout.place(of: id), let diskPaths, place.span.entryIndex < diskPaths.count else { return nil }
        return (path + "/" + diskPaths[place.span.entryIndex], place.offset)
    }
}
