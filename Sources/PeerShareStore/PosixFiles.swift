#if canImport(Glibc)
import Glibc
import CPosixShim
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// A failed file-system call, with the path and the reason in words.
public struct FileSystemError: Error, CustomStringConvertible {
    public let operation: String
    public let path: String
    public let errno: Int32

    public init(operation: String, path: String, errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    public var description: String {
        "\(operation) \(path): \(String(cString: strerror(errno)))"
    }
}

/// Blocking file helpers. Callers run them on a thread pool, never on an event loop.
package enum PosixFiles {
    /// Every temporary file PeerShare makes starts with this; any found at start-up is stale.
    package static let temporaryPrefix = ".peershare-tmp-"

    package static func openForReading(_ path: String) throws(FileSystemError) -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError(operation: "cannot open", path: path, errno: errno) }
        return fd
    }

    /// Reads up to `count` bytes, retrying short reads; fewer only at end of file.
    package static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, path: String) throws(FileSystemError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = Glibc.read(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileSystemError(operation: "cannot read", path: path, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    package static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(FileSystemError) {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileSystemError(operation: "cannot write", path: path, errno: errno)
            }
            done += n
        }
    }

    package static func writeAll(_ fd: Int32, _ buffer: ByteBuffer, path: String) throws(FileSystemError) {
        let failedErrno: Int32? = buffer.withUnsafeReadableBytes { raw in
            do throws(FileSystemError) {
                try writeAll(fd, raw, path: path)
                return nil
            } catch {
                return error.errno
            }
        }
        if let failedErrno { throw FileSystemError(operation: "cannot write", path: path, errno: failedErrno) }
    }

    /// Starts writeback of bytes just written, without waiting (see `peershare_start_writeback`).
    /// Only a hint to the kernel: an error here changes nothing, and the fsync that follows
    /// still reports any real write failure.
    package static func startWriteback(_ fd: Int32, from offset: Int64, count: Int64) {
        guard count > 0 else { return }
        _ = peershare_start_writeback(fd, offset, count)
    }

    package static func fsync(_ fd: Int32, path: String) throws(FileSystemError) {
        guard Glibc.fsync(fd) == 0 else { throw FileSystemError(operation: "cannot fsync", path: path, errno: errno) }
    }

    /// Flushes every file of the file system holding `path` to disk: one call makes a whole
    /// batch of new chunk files durable, where an fsync each would cost a journal commit each.
    package static func syncFileSystem(containing path: String) throws(FileSystemError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError(operation: "cannot open", path: path, errno: errno) }
        defer { close(fd) }
        guard peershare_syncfs(fd) == 0 else { throw FileSystemError(operation: "cannot sync the file system of", path: path, errno: errno) }
    }

    /// Makes a rename or a new file in `directory` durable.
    package static func fsyncDirectory(_ directory: String) throws(FileSystemError) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError(operation: "cannot open directory", path: directory, errno: errno) }
        defer { close(fd) }
        try fsync(fd, path: directory)
    }

    /// Writes `bytes` to `path` so that, once this returns, the file is complete and durable
    /// under its final name: temporary file, fsync, rename, fsync of the directory.
    package static func writeDurably(_ path: String, directory: String, mode: mode_t = 0o644, write: (Int32, String) throws -> Void) throws {
        try writeAtomically(path, directory: directory, durably: true, mode: mode, write: write)
    }

    /// Writes a file that is never seen half-written (temporary file, rename), and, when
    /// `durably`, is on disk once this returns (fsync before the rename, of the folder after).
    /// `mode` holds from the file's creation: a secret is never readable by others, even
    /// for a moment.
    package static func writeAtomically(_ path: String, directory: String, durably: Bool, mode: mode_t = 0o644,
                                        write: (Int32, String) throws -> Void) throws {
        let (fd, temporary) = try createTemporary(in: directory, mode: mode)
        do {
            try write(fd, temporary)
            if durably { try fsync(fd, path: temporary) }
            close(fd)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let error = FileSystemError(operation: "cannot rename into", path: path, errno: errno)
            unlink(temporary)
            throw error
        }
        if durably { try fsyncDirectory(directory) }
    }

    /// A new, empty file in `directory` with a name start-up recognises as stale, open for
    /// writing. The caller renames it into place or unlinks it, and closes the descriptor.
    package static func createTemporary(in directory: String, tag: String = "", mode: mode_t = 0o644) throws(FileSystemError) -> (fd: Int32, path: String) {
        let path = "\(directory)/\(temporaryPrefix)\(getpid())-\(tag)\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw FileSystemError(operation: "cannot create", path: path, errno: errno) }
        return (fd, path)
    }

    /// Opens (creating if needed) a file for reading and writing at exactly `size` bytes,
    /// with its blocks allocated up front where the file system can (so writes in any order
    /// neither fragment it nor fail for space half-way); a sparse file where it cannot.
    package static func openPreallocated(_ path: String, size: Int64) throws(FileSystemError) -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSystemError(operation: "cannot open", path: path, errno: errno) }
        do { try allocate(fd, size: size, path: path) } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Sets an open file to exactly `size` bytes, its blocks allocated up front where the
    /// file system can, sparse where it cannot. The caller closes `fd` either way.
    package static func allocate(_ fd: Int32, size: Int64, path: String) throws(FileSystemError) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileSystemError(operation: "cannot examine", path: path, errno: errno) }
        if Int64(st.st_size) > size, ftruncate(fd, off_t(size)) != 0 {
            throw FileSystemError(operation: "cannot shorten", path: path, errno: errno)
        }
        if Int64(st.st_size) < size {
            let allocated = posix_fallocate(fd, 0, off_t(size))
            if allocated != 0 && (allocated != EOPNOTSUPP && allocated != EINVAL || ftruncate(fd, off_t(size)) != 0) {
                throw FileSystemError(operation: "cannot allocate \(size) bytes for", path: path, errno: allocated != EOPNOTSUPP && allocated != EINVAL ? allocated : errno)
            }
        }
    }

    /// Throws unless `path` is an existing folder.
    package static func checkDirectory(_ path: String) throws(FileSystemError) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw FileSystemError(operation: "cannot open", path: path, errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw FileSystemError(operation: "not a directory:", path: path, errno: ENOTDIR) }
    }

    package static func makeDirectory(_ path: String) throws(FileSystemError) {
        var components: [Substring] = []
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            components.append(part)
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw FileSystemError(operation: "cannot create directory", path: current, errno: errno)
            }
        }
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw FileSystemError(operation: "not a directory:", path: path, errno: ENOTDIR)
        }
    }

    package struct Status {
        package let size: Int64
        /// Nil when the time does not fit in Int64 nanoseconds (after the year 2262, which
        /// `touch -d` can set): such a file counts as changed and is re-hashed.
        package let modificationNanoseconds: Int64?
        package let isRegularFile: Bool
        package let isDirectory: Bool
    }

    /// The file's size, time and type, or the reason (with errno) it cannot be examined.
    package static func status(_ path: String) throws(FileSystemError) -> Status {
        var st = stat()
        guard stat(path, &st) == 0 else { throw FileSystemError(operation: "cannot read", path: path, errno: errno) }
        let seconds = Int64(st.st_mtim.tv_sec).multipliedReportingOverflow(by: 1_000_000_000)
        let nanoseconds = seconds.partialValue.addingReportingOverflow(Int64(st.st_mtim.tv_nsec))
        return Status(size: Int64(st.st_size),
                      modificationNanoseconds: seconds.overflow || nanoseconds.overflow ? nil : nanoseconds.partialValue,
                      isRegularFile: (st.st_mode & S_IFMT) == S_IFREG, isDirectory: (st.st_mode & S_IFMT) == S_IFDIR)
    }

    /// Reads exactly `count` bytes at `offset`, or throws.
    package static func read(path: String, offset: Int64, count: Int) throws(FileSystemError) -> ByteBuffer {
        let fd = try openForReading(path)
        defer { close(fd) }
        return try read(fd, offset: offset, count: count, path: path)
    }

    /// Reads exactly `count` bytes at `offset` of an open file, or throws.
    package static func read(_ fd: Int32, offset: Int64, count: Int, path: String) throws(FileSystemError) -> ByteBuffer {
        var buffer = ByteBuffer()
        var failure: Int32 = 0
        let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
            var done = 0
            while done < count {
                let r = pread(fd, raw.baseAddress! + done, count - done, off_t(offset) + off_t(done))
                if r < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return 0
                }
                if r == 0 { break }
                done += r
            }
            return done
        }
        if failure != 0 { throw FileSystemError(operation: "cannot read", path: path, errno: failure) }
        guard n == count else { throw FileSystemError(operation: "file is shorter than expected:", path: path, errno: EIO) }
        return buffer
    }

    /// Writes all of `buffer` at `offset`, retrying short writes.
    package static func writeAll(_ fd: Int32, _ buffer: ByteBuffer, at offset: Int64, path: String) throws(FileSystemError) {
        let failure: Int32 = buffer.withUnsafeReadableBytes { raw in
            var done = 0
            while done < raw.count {
                let n = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(offset) + off_t(done))
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                done += n
            }
            return 0
        }
        if failure != 0 { throw FileSystemError(operation: "cannot write", path: path, errno: failure) }
    }

    package static func fileSize(_ path: String) -> Int64? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int64(st.st_size)
    }

    /// The size of an open regular file.
    package static func size(of fd: Int32) -> Int? {
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int(st.st_size)
    }

    /// The canonical absolute path of an existing file or folder; the path itself if that fails.
    package static func absolutePath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    package static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
