import Foundation

/// Ports handed out by `reserveFreePorts` in the last two minutes, by any process of this
/// user: a small file under the temporary folder, read and rewritten under an exclusive
/// `flock`. Tests run in parallel and each hands ports to children that bind them seconds
/// later; without the ledger two reservations could pick the same free port in that window.
///
/// The ledger only narrows the choice: if it cannot be opened, ports are reserved without it.
struct RecentPortLedger {
    /// How long a handed-out port stays excluded: far longer than a child takes to bind it.
    static let memory: Double = 120
    let path = NSTemporaryDirectory() + "/peershare-reserved-ports-\(getuid())"

    /// Runs `reserve` with the ports handed out recently, then records what it returned.
    func excluding(_ reserve: (Set<UInt16>) throws -> [Int]) throws -> [Int] {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return try reserve([]) }
        defer { close(fd) }
        guard flock(fd, LOCK_EX) == 0 else { return try reserve([]) }
        defer { flock(fd, LOCK_UN) }
        let now = Date().timeIntervalSince1970
        var entries = Self.parse(Self.readAll(fd)).filter { now - $0.value < Self.memory && $0.value <= now }
        let ports = try reserve(Set(entries.keys))
        for port in ports { if let port = UInt16(exactly: port) { entries[port] = now } }
        let text = entries.map { "\($0.key) \($0.value)\n" }.joined()
        if ftruncate(fd, 0) == 0, lseek(fd, 0, SEEK_SET) == 0 {
            _ = text.withCString { write(fd, $0, strlen($0)) }
        }
        return ports
    }

    /// "PORT SECONDS" lines; anything else (a damaged ledger) is ignored. At most 64 KiB read.
    static func parse(_ text: String) -> [UInt16: Double] {
        var entries: [UInt16: Double] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count == 2, let port = UInt16(fields[0]), let when = Double(fields[1]), when.isFinite else { continue }
            entries[port] = when
        }
        return entries
    }

    private static func readAll(_ fd: Int32) -> String {
        var bytes = [UInt8](repeating: 0, count: 64 * 1024)
        let count = pread(fd, &bytes, bytes.count, 0)
        return count > 0 ? String(decoding: bytes[0..<count], as: UTF8.self) : ""
    }
}
