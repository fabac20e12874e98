#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import PeerShareCore

/// An owner's folder, read for sharing: its entries in canonical order, where each lies on
/// disk, and what was left out.
public struct ScannedFolder: Sendable {
    public let tree: FileTree
    /// Each entry's path under the root as the disk spells it (names may be NFD there).
    public let diskPaths: [String]
    /// Symlinks and special files, which are never shared (docs/PROTOCOL.md, "Folders").
    public let skipped: [String]
}

/// Walks an owner's folder without following a symlink anywhere below the root: each
/// folder is opened relative to its parent's descriptor with `O_NOFOLLOW`, and each name is
/// judged by `fstatat(AT_SYMLINK_NOFOLLOW)`. A symlink, FIFO, socket or device is skipped
/// and reported, as rsync does without `--links`: a manifest has no entry for them, and a
/// link's target may lie outside the folder. Names are normalised to NFC; two names one
/// folder holds that normalise alike, a name that is not UTF-8 or not a valid file name,
/// and a folder over the bounds are refused with one line.
public enum FolderScanner {
    public static func scan(_ root: String) throws(FolderScanError) -> ScannedFolder {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .cannotRead(root, String(cString: strerror(errno))) }
        var walk = Walk()
        try walk.folder(fd, disk: [], shared: [])
        guard !walk.found.isEmpty else { throw .refused("it is empty: there is nothing to share") }
        let order = walk.found.indices.sorted { walk.found[$0].path < walk.found[$1].path }
        do {
            let tree = try FileTree(order.map { walk.found[$0] })
            return ScannedFolder(tree: tree, diskPaths: order.map { walk.diskPaths[$0] }, skipped: walk.skipped)
        } catch {
            throw .refused(error.description)
        }
    }

    /// Scans `root` again and refuses it unless it holds exactly `tree` (an owner serving or
    /// exporting the folder it indexed earlier, by the names its disk spells them with).
    public static func scan(_ root: String, expecting tree: FileTree) throws(FolderScanError) -> ScannedFolder {
        let scanned = try scan(root)
        guard scanned.tree == tree else { throw .refused("its files or sizes changed since it was indexed") }
        return scanned
    }

    private struct Walk {
        var found: [TreeEntry] = []
        var diskPaths: [String] = []
        var skipped: [String] = []

        /// Lists one folder (`fd`, closed here) and descends into its folders.
        mutating func folder(_ fd: Int32, disk: [String], shared: [String]) throws(FolderScanError) {
            guard let handle = fdopendir(fd) else {
                close(fd)
                throw .cannotRead(disk.joined(separator: "/"), String(cString: strerror(errno)))
            }
            defer { closedir(handle) }
            var seen: [[UInt8]: String] = [:]
            while let item = readdir(handle) {
                let raw = withUnsafeBytes(of: item.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
                if raw == [0x2e] || raw == [0x2e, 0x2e] { continue }
                let diskName = try Self.name(raw, under: disk)
                let sharedName = TreePath.nfc(diskName)
                let diskPath = (disk + [diskName]).joined(separator: "/")
                if let other = seen.updateValue(diskName, forKey: Array(sharedName.utf8)) {
                    throw .refused("\(diskPath.debugDescription) and \(other.debugDescription) are the same name once normalised to NFC")
                }
                var info = stat()
                guard fstatat(dirfd(handle), raw.map { CChar(bitPattern: $0) } + [0], &info, AT_SYMLINK_NOFOLLOW) == 0 else {
                    throw .cannotRead(diskPath, String(cString: strerror(errno)))
                }
                let path: TreePath
                do { path = try TreePath(validating: (shared + [sharedName]).joined(separator: "/")) } catch { throw .refused(error.description) }
                switch info.st_mode & S_IFMT {
                case S_IFREG:
                    try add(TreeEntry(path: path, kind: .file(size: Int64(info.st_size), executable: info.st_mode & S_IXUSR != 0)), disk: diskPath)
                case S_IFDIR:
                    let child = openat(dirfd(handle), raw.map { CChar(bitPattern: $0) } + [0], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                    guard child >= 0 else { throw .cannotRead(diskPath, String(cString: strerror(errno))) }
                    let before = found.count
                    try folder(child, disk: disk + [diskName], shared: shared + [sharedName])
                    if found.count == before { try add(TreeEntry(path: path, kind: .emptyFolder), disk: diskPath) }
                default:
                    skipped.append(diskPath)
                }
            }
        }

        mutating func add(_ entry: TreeEntry, disk: String) throws(FolderScanError) {
            guard found.count < FileTree.maximumEntries else { throw .refused("it holds more than \(FileTree.maximumEntries) entries") }
            found.append(entry)
            diskPaths.append(disk)
        }

        static func name(_ raw: [UInt8], under disk: [String]) throws(FolderScanError) -> String {
            guard let name = String(validating: raw, as: UTF8.self) else {
                let lossy = (disk + [String(decoding: raw, as: UTF8.self)]).joined(separator: "/")
                throw .refused("\(lossy.debugDescription) is not named in UTF-8")
            }
            return name
        }
    }
}

public enum FolderScanError: Error, Equatable, CustomStringConvertible {
    case cannotRead(String, String)
    case refused(String)

    public var description: String {
        switch self {
        case .cannotRead(let path, let reason): "cannot read \(path.isEmpty ? "the folder" : path.debugDescription): \(reason)"
        case .refused(let reason): "the folder cannot be shared: \(reason)"
        }
    }
}
