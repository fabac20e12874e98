#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import PeerShareCore

/// A shared folder in the single-file layout: each file in place (`FolderPlacement`).
extension SingleFileStore {
    /// Where the tree is now: the owner's source, the partial folder, or the assembled one.
    func folderBase(_ manifest: Manifest) -> String {
        if let source { return source }
        return isAssembled ? assembledPath(for: manifest) : partialPath
    }

    func prepareFolder(_ folder: FolderManifest, of manifest: Manifest, assembled: Bool) throws {
        if let source {
            // The owner serves its folder in place, by the names its disk uses, and only if
            // it still holds exactly the indexed entries: scanned once (a restart prepares
            // through its repair and again before serving).
            if currentPlacement?.folder == folder { return }
            let scanned = try FolderScanner.scan(source, expecting: folder.tree)
            setPlacement(FolderPlacement(folder: folder, base: source, diskPaths: scanned.diskPaths, writable: false))
            return
        }
        noteAssembled(assembled)
        let complete = assembledPath(for: manifest)
        if assembled {
            setPlacement(FolderPlacement(folder: folder, base: complete, writable: false))
            return
        }
        if access(partialPath, F_OK) != 0, access(complete, F_OK) == 0, rename(complete, partialPath) != 0 {
            throw FileSystemError(operation: "cannot move back to \(partialPath):", path: complete, errno: errno)
        }
        if mkdir(partialPath, 0o755) != 0, errno != EEXIST { throw FileSystemError(operation: "cannot create", path: partialPath, errno: errno) }
        let placement = FolderPlacement(folder: folder, base: partialPath, writable: true)
        try placement.create()
        setPlacement(placement)
    }

    func folderPlacement(_ manifest: Manifest) throws -> FolderPlacement {
        if let placement = currentPlacement { return placement }
        // A reader (peershare-inspect) that never prepared: the tree where the index says.
        guard let folder = manifest.folder else { throw FileSystemError(operation: "not a folder:", path: root, errno: EINVAL) }
        return FolderPlacement(folder: folder, base: folderBase(manifest), writable: false)
    }

    func writeFolderChunk(_ id: ChunkID, bytes: ByteBuffer, of manifest: Manifest) throws {
        let placement = try folderPlacement(manifest)
        let (entry, offset, _) = try placement.place(of: id)
        let fd = try placement.descriptor(entry)
        defer { close(fd) }
        try PosixFiles.writeAll(fd, bytes, at: offset, path: placement.path(of: entry))
        placement.noteWritten(entry)
    }

    func openFolderChunk(_ id: ChunkID, of manifest: Manifest) throws -> FileSlice {
        let placement = try folderPlacement(manifest)
        let (entry, offset, count) = try placement.place(of: id)
        let fd = try placement.openForReading(entry)
        guard let size = PosixFiles.size(of: fd), Int64(size) >= offset + Int64(count) else {
            close(fd)
            throw FileSystemError(operation: "file ends before chunk \(id):", path: placement.path(of: entry), errno: EIO)
        }
        return FileSlice(descriptor: fd, offset: offset, count: count)
    }

    func readFolderChunk(_ id: ChunkID, of manifest: Manifest) throws -> ByteBuffer {
        let slice = try openFolderChunk(id, of: manifest)
        defer { close(slice.descriptor) }
        return try PosixFiles.read(slice.descriptor, offset: slice.offset, count: slice.count, path: folderLocation(of: id, in: manifest).path)
    }

    func folderLocation(of id: ChunkID, in manifest: Manifest) -> (path: String, offset: Int64) {
        guard let placement = try? folderPlacement(manifest), let (entry, offset, _) = try? placement.place(of: id) else {
            return (folderBase(manifest), 0)
        }
        return (placement.path(of: entry), offset)
    }

    /// Every file durable, then the partial folder takes the folder's name in one rename.
    func finishFolder(of manifest: Manifest) throws {
        guard source == nil, let placement = currentPlacement, !isAssembled else { return }
        try placement.finish()
        let path = assembledPath(for: manifest)
        try StagedTree.install(partialPath, at: path, in: root)
        noteAssembled(true)
        if let folder = manifest.folder { setPlacement(FolderPlacement(folder: folder, base: path, writable: false)) }
    }

    /// Start-up for a folder: each file must be there at its size; a file that is not loses
    /// the rows of its own chunks only (each chunk lies in one file). Chunks in `rehash` are
    /// hashed again in place.
    func reconcileFolder(_ folder: FolderManifest, _ manifest: Manifest, indexed: ChunkSet, rehash: ChunkSet, assembled: Bool, result: inout StartupCheck) {
        let complete = assembledPath(for: manifest)
        if source == nil, !assembled, access(partialPath, F_OK) != 0, access(complete, F_OK) == 0 {
            _ = rename(complete, partialPath)
        }
        let placement = FolderPlacement(folder: folder, base: folderBase(manifest), writable: false)
        let sizes = placement.sizes()
        var lost = false
        for id in indexed.members {
            guard let (entry, offset, _) = try? placement.place(of: id) else { continue }
            let want = folder.tree.entries[entry].size
            guard case .some(.some(let size)) = sizes[entry], size == want else {
                let reason = "\(placement.path(of: entry)) is missing or not \(want) bytes"
                result.droppedRows.append((id, reason))
                lost = true
                continue
            }
            if rehash.contains(id) {
                result.rehash(id, path: placement.path(of: entry), offset: offset, of: manifest, deleteIfWrong: false)
            }
        }
        result.assembledFileLost = assembled && lost
    }
}
