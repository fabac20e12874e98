#if canImport(Glibc)
import Glibc
import CPosixShim
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import PeerShareCore

/// Rebuilds a shared folder from its chunks under `root` (docs/STORAGE.md, "Folders").
///
/// The tree is made in a hidden staging folder (the temporary prefix, so start-up removes a
/// stale one) and takes its name with one rename once every file is written, made durable
/// (one syncfs) and the content hash checked: nobody sees a half-built tree under the folder's name. Every
/// folder and file is created relative to its parent's descriptor, each folder opened with
/// `O_NOFOLLOW` and each file created with `O_EXCL | O_NOFOLLOW`: a symlink planted anywhere
/// in the staging tree makes the build fail rather than write through it.
public struct FolderBuilder {
    let root: String
    let folder: FolderManifest

    public init(root: String, folder: FolderManifest) {
        self.root = root
        self.folder = folder
    }

    public var finalPath: String { root + "/" + folder.name }

    /// Writes every file from `chunk(id)`'s bytes, in manifest order, and returns the content
    /// hash of what was written; renames the tree into place only if it equals `expected`.
    public func build(expected: Digest32, chunkPath: (ChunkID) -> String) throws -> Digest32 {
        let staging = root + "/" + PosixFiles.temporaryPrefix + "folder-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        guard mkdir(staging, 0o755) == 0 else { throw FileSystemError(operation: "cannot create", path: staging, errno: errno) }
        do {
            let digest = try fill(staging, chunkPath: chunkPath)
            guard digest == expected else {
                try? StagedTree.remove(staging)
                return digest
            }
            try StagedTree.install(staging, at: finalPath, in: root)
            return digest
        } catch {
            try? StagedTree.remove(staging)
            throw error
        }
    }

    private func fill(_ staging: String, chunkPath: (ChunkID) -> String) throws -> Digest32 {
        let top = try SafeFolder(opening: staging)
        var content = SHA256()
        var buffer = [UInt8](repeating: 0, count: folder.layout.chunkSize)
        var opened = OpenFolders(top: top)
        defer { opened.closeAll() }
        for (index, entry) in folder.tree.entries.enumerated() {
            let parent = try opened.folder(for: Array(entry.path.components.dropLast()))
            let name = entry.path.components[entry.path.components.count - 1]
            guard case .file(_, let executable) = entry.kind else {
                close(try parent.makeFolder(name).fd)
                continue
            }
            let fd = try parent.openFile(name, writable: true, creating: executable ? 0o755 : 0o644, exclusive: true)
            defer { close(fd) }
            for chunk in folder.layout.chunks(ofEntry: index) {
                let id = ChunkID(UInt32(chunk))
                let count = folder.layout.place(of: id)?.size ?? 0
                let path = chunkPath(id)
                let source = try PosixFiles.openForReading(path)
                defer { close(source) }
                let got = try buffer.withUnsafeMutableBytes { try PosixFiles.read(source, into: UnsafeMutableRawBufferPointer(rebasing: $0[..<count]), path: path) }
                guard got == count else { throw FileSystemError(operation: "chunk file is short:", path: path, errno: EIO) }
                try buffer.withUnsafeBytes { bytes in
                    let slice = UnsafeRawBufferPointer(rebasing: bytes[..<count])
                    content.update(bufferPointer: slice)
                    try PosixFiles.writeAll(fd, slice, path: staging + "/" + entry.path.text)
                }
            }
        }
        opened.leaveAll()
        // One syncfs makes every file and folder written above durable: an fsync each costs
        // a disk flush per file (10,000 files took a peer 37 s to build; tools/bench --tree).
        guard peershare_syncfs(top.fd) == 0 else { throw FileSystemError(operation: "cannot sync the file system of", path: staging, errno: errno) }
        return Digest32(content.finalize())
    }

    /// Whether `finalPath` holds every entry at its size (start-up's check that an assembled
    /// folder is still there; the bytes themselves are `peershare-inspect verify`'s job).
    public func looksComplete() -> Bool {
        folder.tree.entries.allSatisfy { entry in
            var info = stat()
            guard lstat(finalPath + "/" + entry.path.text, &info) == 0 else { return false }
            return entry.isFile ? info.st_mode & S_IFMT == S_IFREG && Int64(info.st_size) == entry.size : info.st_mode & S_IFMT == S_IFDIR
        }
    }
}

/// The open folders along the current entry's path: entries come in canonical order, so
/// neighbours share their parents, each folder is made and opened once, and a folder left
/// behind is complete and closed. At most one descriptor per level is open.
struct OpenFolders {
    let top: SafeFolder
    var stack: [(name: String, folder: SafeFolder)] = []

    init(top: SafeFolder) { self.top = top }

    mutating func folder(for components: [String]) throws -> SafeFolder {
        var depth = 0
        while depth < stack.count, depth < components.count, stack[depth].name.utf8.elementsEqual(components[depth].utf8) { depth += 1 }
        leave(downTo: depth)
        for name in components[depth...] {
            let child = try (stack.last?.folder ?? top).makeFolder(name)
            stack.append((name, child))
        }
        return stack.last?.folder ?? top
    }

    private mutating func leave(downTo depth: Int) {
        while stack.count > depth { close(stack.removeLast().folder.fd) }
    }

    mutating func leaveAll() {
        while let last = stack.popLast() { close(last.folder.fd) }
    }

    func closeAll() {
        for (_, folder) in stack { close(folder.fd) }
        close(top.fd)
    }
}

/// A folder this process made, held open by descriptor.
struct SafeFolder {
    let fd: Int32
    let path: String

    init(opening path: String) throws {
        fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError(operation: "cannot open folder", path: path, errno: errno) }
        self.path = path
    }

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Makes (or finds) the folder `name` here and opens it, never through a symlink.
    func makeFolder(_ name: String) throws -> SafeFolder {
        let child = path + "/" + name
        guard mkdirat(fd, name, 0o755) == 0 || errno == EEXIST else { throw FileSystemError(operation: "cannot create", path: child, errno: errno) }
        let opened = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard opened >= 0 else { throw FileSystemError(operation: "cannot open folder", path: child, errno: errno) }
        return SafeFolder(fd: opened, path: child)
    }

    /// The folder `components` below this one (this one itself when empty: the caller then
    /// must not close it twice), each step opened with `O_NOFOLLOW`.
    func descend(_ components: [String]) throws -> SafeFolder {
        var current = self
        for name in components {
            let opened = openat(current.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard opened >= 0 else { throw FileSystemError(operation: "cannot open folder", path: current.path + "/" + name, errno: errno) }
            if current.fd != fd { close(current.fd) }
            current = SafeFolder(fd: opened, path: current.path + "/" + name)
        }
        return current
    }

    /// Opens the file `name` here, never through a symlink. With `creating`, makes it if it
    /// is not there (with `exclusive`, it must not be, as anything), and gives it exactly
    /// that mode, whatever the umask: the executable bit is part of the manifest.
    func openFile(_ name: String, writable: Bool, creating mode: mode_t?, exclusive: Bool = false) throws -> Int32 {
        var flags = (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC
        if mode != nil { flags |= O_CREAT }
        if exclusive { flags |= O_EXCL }
        let file = openat(fd, name, flags, mode ?? 0)
        guard file >= 0 else { throw FileSystemError(operation: "cannot open", path: path + "/" + name, errno: errno) }
        var info = stat()
        guard fstat(file, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(file)
            throw FileSystemError(operation: "not a regular file:", path: path + "/" + name, errno: EINVAL)
        }
        if let mode, info.st_mode & 0o777 != mode, fchmod(file, mode) != 0 {
            close(file)
            throw FileSystemError(operation: "cannot set the mode of", path: path + "/" + name, errno: errno)
        }
        return file
    }
}

/// Puts finished trees in place and removes the ones PeerShare made, never following a
/// symlink in them.
public enum StagedTree {
    /// Renames the finished tree `staging` to `path` (both in `folder`), then fsyncs
    /// `folder`. A tree already at `path` (an assembly whose row a crash lost) is moved aside
    /// first and removed after.
    static func install(_ staging: String, at path: String, in folder: String) throws {
        var aside: String?
        if access(path, F_OK) == 0 {
            let old = folder + "/" + PosixFiles.temporaryPrefix + "replaced-\(UInt64.random(in: 0...UInt64.max))"
            guard rename(path, old) == 0 else { throw FileSystemError(operation: "cannot move aside", path: path, errno: errno) }
            aside = old
        }
        guard rename(staging, path) == 0 else { throw FileSystemError(operation: "cannot rename into", path: path, errno: errno) }
        try PosixFiles.fsyncDirectory(folder)
        if let aside { try? remove(aside) }
    }

    /// Removes a tree PeerShare made (a stale staging folder) without following any symlink in it.
    public static func remove(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOTDIR || errno == ELOOP { unlink(path); return }
            throw FileSystemError(operation: "cannot open folder", path: path, errno: errno)
        }
        try empty(fd, path: path)
        guard rmdir(path) == 0 else { throw FileSystemError(operation: "cannot remove", path: path, errno: errno) }
    }

    /// Removes everything in the open folder `fd` (closed here), depth first.
    private static func empty(_ fd: Int32, path: String) throws {
        guard let handle = fdopendir(fd) else { close(fd); throw FileSystemError(operation: "cannot list", path: path, errno: errno) }
        defer { closedir(handle) }
        var names: [[CChar]] = []
        while let item = readdir(handle) {
            let name = withUnsafeBytes(of: item.pointee.d_name) { Array($0.prefix { $0 != 0 }).map { CChar(bitPattern: $0) } }
            if name == [0x2e] || name == [0x2e, 0x2e] { continue }
            names.append(name + [0])
        }
        for name in names {
            var info = stat()
            guard fstatat(dirfd(handle), name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if info.st_mode & S_IFMT == S_IFDIR {
                let child = openat(dirfd(handle), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { throw FileSystemError(operation: "cannot open folder in", path: path, errno: errno) }
                try empty(child, path: path + "/" + String(cString: name))
                guard unlinkat(dirfd(handle), name, AT_REMOVEDIR) == 0 else { throw FileSystemError(operation: "cannot remove a folder in", path: path, errno: errno) }
            } else {
                guard unlinkat(dirfd(handle), name, 0) == 0 else { throw FileSystemError(operation: "cannot remove a file in", path: path, errno: errno) }
            }
        }
    }
}
