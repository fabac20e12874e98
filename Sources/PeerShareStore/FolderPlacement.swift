#if canImport(Glibc)
import Glibc
import CPosixShim
#elseif canImport(Darwin)
import Darwin
#endif
import NIOConcurrencyHelpers
import PeerShareCore

/// A shared folder in the `single-file` layout (docs/STORAGE.md, "Folders"): every file of
/// the tree is itself on disk, under `.peershare-partial/` while chunks arrive and under the
/// folder's name once all are in, and each chunk is one `pwrite` at its offset in its own
/// file. An owner's source folder is served where it is, by the names its disk spells them
/// with. Files are opened through their folders' descriptors with `O_NOFOLLOW`, so nothing is
/// read or written through a symlink; a few are kept open, the rest reopened on demand.
final class FolderPlacement: Sendable {
    let folder: FolderManifest
    /// Where the tree is: the partial folder, the assembled one, or an owner's source.
    let base: String
    /// Each entry's path under `base`: the manifest's for a peer, the disk's for an owner.
    private let paths: [String]
    private let writable: Bool

    private struct Open {
        var files: [Int: Int32] = [:]
        var order: [Int] = []
        var dirty: Set<Int> = []
        /// Evicted files written since the last sync: kept open until it makes them durable.
        var awaitingSync: [(entry: Int, fd: Int32)] = []
    }
    private let open = NIOLockedValueBox(Open())
    static let maximumOpen = 64
    static let maximumAwaitingSync = 256

    init(folder: FolderManifest, base: String, diskPaths: [String]? = nil, writable: Bool) {
        self.folder = folder
        self.base = base
        self.paths = diskPaths ?? folder.tree.entries.map(\.path.text)
        self.writable = writable
    }

    deinit {
        open.withLockedValue { state in
            for fd in state.files.values { close(fd) }
            for (_, fd) in state.awaitingSync { close(fd) }
        }
    }

    /// Makes every folder, empty file and file (at its size, allocated where the file system
    /// can) that is not there yet: a new partial tree, or one resumed.
    func create() throws {
        var opened = OpenFolders(top: try SafeFolder(opening: base))
        defer { opened.closeAll() }
        for (index, entry) in folder.tree.entries.enumerated() {
            let parent = try opened.folder(for: Array(entry.path.components.dropLast()))
            let name = entry.path.components[entry.path.components.count - 1]
            guard case .file(let size, let executable) = entry.kind else {
                close(try parent.makeFolder(name).fd)
                continue
            }
            let fd = try parent.openFile(name, writable: true, creating: executable ? 0o755 : 0o644)
            defer { close(fd) }
            try PosixFiles.allocate(fd, size: size, path: base + "/" + paths[index])
        }
    }

    /// The file and offset of chunk `id` (checked in the manifest by the caller).
    func place(of id: ChunkID) throws -> (entry: Int, offset: Int64, size: Int) {
        guard let place = folder.layout.place(of: id) else {
            throw FileSystemError(operation: "no file holds chunk \(id) in", path: base, errno: EINVAL)
        }
        return (place.span.entryIndex, place.offset, place.size)
    }

    func path(of entry: Int) -> String { base + "/" + paths[entry] }

    /// A descriptor for writing `entry`, which the caller closes: a `dup` of the one kept
    /// open, so that another thread evicting and closing that one cannot pull it from under
    /// a write (or hand its number to another file meanwhile).
    func descriptor(_ entry: Int) throws -> Int32 {
        try open.withLockedValue { state in
            if state.files[entry] == nil {
                if state.order.count >= Self.maximumOpen { try evictOldest(&state) }
                state.files[entry] = try openEntry(entry)
                state.order.append(entry)
            }
            let copy = dup(state.files[entry] ?? -1)
            guard copy >= 0 else { throw FileSystemError(operation: "cannot duplicate the descriptor of", path: path(of: entry), errno: errno) }
            return copy
        }
    }

    private func evictOldest(_ state: inout Open) throws {
        let oldest = state.order.removeFirst()
        guard let fd = state.files.removeValue(forKey: oldest) else { return }
        guard state.dirty.remove(oldest) != nil else { close(fd); return }
        state.awaitingSync.append((oldest, fd))
        guard state.awaitingSync.count > Self.maximumAwaitingSync else { return }
        // Too many files written since the last sync: these are made durable now.
        for (entry, waiting) in state.awaitingSync {
            defer { close(waiting) }
            guard fdatasync(waiting) == 0 else { throw FileSystemError(operation: "cannot sync", path: path(of: entry), errno: errno) }
        }
        state.awaitingSync = []
    }

    /// A descriptor of its own for one upload or read, read-only; the caller closes it.
    func openForReading(_ entry: Int) throws -> Int32 { try openEntry(entry, writable: false) }

    private func openEntry(_ entry: Int, writable: Bool? = nil) throws -> Int32 {
        let components = paths[entry].split(separator: "/").map(String.init)
        let top = try SafeFolder(opening: base)
        defer { close(top.fd) }
        let parent = try top.descend(Array(components.dropLast()))
        defer { if parent.fd != top.fd { close(parent.fd) } }
        return try parent.openFile(components[components.count - 1], writable: writable ?? self.writable, creating: nil)
    }

    /// Records a write to `entry`, for the next sync.
    func noteWritten(_ entry: Int) {
        open.withLockedValue { _ = $0.dirty.insert(entry) }
    }

    /// Makes every file written since the last sync durable: an fdatasync each (through a
    /// `dup`, outside the lock, so writes to other files go on meanwhile) when they are few,
    /// one syncfs when they are many (a flush per file would cost more than the data).
    func sync() throws {
        let (pending, evicted) = open.withLockedValue { state in
            let pending = state.dirty.compactMap { entry in state.files[entry].map { (entry, dup($0)) } }
            let evicted = state.awaitingSync
            state.dirty = []
            state.awaitingSync = []
            return (pending, evicted)
        }
        let all = pending + evicted
        defer { for (_, fd) in all where fd >= 0 { close(fd) } }
        var failure: FileSystemError?
        if all.count > Self.fileSyncsAtMost {
            if let (_, fd) = all.first(where: { $0.1 >= 0 }), peershare_syncfs(fd) != 0 {
                failure = FileSystemError(operation: "cannot sync the file system of", path: base, errno: errno)
            }
        } else {
            for (entry, fd) in all {
                guard fd < 0 || fdatasync(fd) != 0 else { continue }
                failure = FileSystemError(operation: "cannot sync", path: path(of: entry), errno: errno)
                break
            }
        }
        if let failure {
            // Not durable: back into the next sync's list, so nothing is lost silently.
            open.withLockedValue { state in state.dirty.formUnion(pending.map(\.0)) }
            throw failure
        }
    }

    /// Past this many files written since the last sync, one syncfs instead.
    static let fileSyncsAtMost = 8

    /// Closes every file, then makes all of them and their folders durable with one syncfs:
    /// the tree is durable before it takes its name.
    func finish() throws {
        // No per-file sync first: the syncfs below covers every write.
        open.withLockedValue { state in
            for fd in state.files.values { close(fd) }
            for (_, fd) in state.awaitingSync { close(fd) }
            state = Open()
        }
        let top = try SafeFolder(opening: base)
        defer { close(top.fd) }
        guard peershare_syncfs(top.fd) == 0 else { throw FileSystemError(operation: "cannot sync the file system of", path: base, errno: errno) }
    }

    /// Each file's size on disk (nil: missing, or not a regular file).
    func sizes() -> [Int: Int64?] {
        var sizes: [Int: Int64?] = [:]
        for (index, entry) in folder.tree.entries.enumerated() where entry.isFile {
            var info = stat()
            sizes[index] = lstat(path(of: index), &info) == 0 && info.st_mode & S_IFMT == S_IFREG ? Int64(info.st_size) : nil
        }
        return sizes
    }
}
