#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PeerShareStore

/// Files that hold secrets (a node's private key, a ticket): written with mode 0600 from the
/// moment they exist, and refused when read if anyone but their owner could read them, as
/// ssh refuses a private key others can read.
public enum SecretFile {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Writes `bytes` to `path` atomically and durably, in a temporary file created 0600.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        try PosixFiles.writeDurably(path, directory: directory.isEmpty ? "/" : directory, mode: 0o600) { fd, temporary in
            try bytes.withUnsafeBytes { try PosixFiles.writeAll(fd, $0, path: temporary) }
        }
    }

    /// Reads a secret file of at most `limit` bytes; nil if it does not exist. Refuses one
    /// that is not a regular file, is not owned by this user, or that group or others may
    /// read or write.
    public static func read(_ path: String, limit: Int) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw Failure(description: "cannot open \(path): \(errorText())")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw Failure(description: "cannot stat \(path): \(errorText())") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw Failure(description: "\(path) is not a regular file") }
        guard info.st_uid == getuid() else { throw Failure(description: "\(path) belongs to another user; refusing to use a secret it could have changed") }
        guard info.st_mode & 0o077 == 0 else {
            throw Failure(description: "\(path) can be read by others (mode \(String(info.st_mode & 0o777, radix: 8))); run chmod 600 \(path)")
        }
        guard info.st_size <= limit else { throw Failure(description: "\(path) is \(info.st_size) bytes, over the \(limit) a secret file may be") }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var total = 0
        while total < bytes.count {
            let result = bytes[total...].withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard result > 0 else { throw Failure(description: "cannot read \(path): \(result == 0 ? "it shrank while being read" : errorText())") }
            total += result
        }
        return bytes
    }

    private static func errorText() -> String {
        String(cString: strerror(errno))
    }
}
