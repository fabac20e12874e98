#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import PeerShareCore

/// The owner's pass over a scanned folder: every chunk's SHA-256 and the content hash, each
/// file read once, in manifest order. Blocking; callers run it off the cooperative pool.
public enum FolderHasher {
    public static func manifest(of scanned: ScannedFolder, root: String, name: String, chunkSize: Int) throws -> FolderManifest {
        var hashes: [Digest32] = []
        var content = SHA256()
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        for (entry, diskPath) in zip(scanned.tree.entries, scanned.diskPaths) where entry.isFile {
            let path = root + "/" + diskPath
            // No symlink is followed at the last step, and the file must still be what the scan saw.
            let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw FileSystemError(operation: "cannot open", path: path, errno: errno) }
            defer { close(fd) }
            var info = stat()
            guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, Int64(info.st_size) == entry.size else {
                throw FolderScanError.refused("\(diskPath.debugDescription) changed while it was being read; share the folder again")
            }
            var remaining = entry.size
            while remaining > 0 {
                let want = Int(min(Int64(chunkSize), remaining))
                let got = try buffer.withUnsafeMutableBytes { try PosixFiles.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[..<want]), path: path) }
                guard got == want else {
                    throw FolderScanError.refused("\(diskPath.debugDescription) shrank while it was being read; share the folder again")
                }
                buffer.withUnsafeBytes { bytes in
                    let chunk = UnsafeRawBufferPointer(rebasing: bytes[..<want])
                    content.update(bufferPointer: chunk)
                    hashes.append(Digest32(SHA256.hash(data: chunk)))
                }
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
}
