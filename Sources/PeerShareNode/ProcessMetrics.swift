#if canImport(Glibc)
import Glibc
#endif

/// The process's own metrics, under Prometheus's standard names (as its client libraries
/// export them), read from /proc at each scrape. Absent where /proc is.
struct ProcessMetrics {
    var cpuSeconds: Double?
    var residentBytes: Int?
    var virtualBytes: Int?
    var openFileDescriptors: Int?
    var maxFileDescriptors: Int?
    var startTimeSeconds: Double?

    static func read() -> ProcessMetrics {
        var metrics = ProcessMetrics()
        #if os(Linux)
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = sysconf(Int32(_SC_PAGESIZE))
        // /proc/self/stat: fields after the command's closing parenthesis, from field 3 (state).
        if let stat = readSmallFile("/proc/self/stat"), let close = stat.lastIndex(of: ")"), ticks > 0 {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // utime 14, stime 15, starttime 22, vsize 23, rss 24 (1-based, so minus 3 here).
            if fields.count > 21, let user = Double(fields[11]), let system = Double(fields[12]) {
                metrics.cpuSeconds = (user + system) / ticks
                metrics.virtualBytes = Int(fields[20])
                metrics.residentBytes = Int(fields[21]).map { $0 * pageSize }
                if let started = Double(fields[19]), let boot = bootTime { metrics.startTimeSeconds = boot + started / ticks }
            }
        }
        metrics.openFileDescriptors = countEntries("/proc/self/fd")
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < UInt64(Int.max) { metrics.maxFileDescriptors = Int(limit.rlim_cur) }
        #endif
        return metrics
    }

    var exposition: String {
        var out = ""
        func add(_ name: String, _ type: String, _ help: String, _ value: String?) {
            guard let value else { return }
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        add("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpuSeconds.map { "\($0)" })
        add("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", residentBytes.map { "\($0)" })
        add("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", virtualBytes.map { "\($0)" })
        add("process_open_fds", "gauge", "Number of open file descriptors.", openFileDescriptors.map { "\($0)" })
        add("process_max_fds", "gauge", "Maximum number of open file descriptors.", maxFileDescriptors.map { "\($0)" })
        add("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", startTimeSeconds.map { "\($0)" })
        return out
    }

    #if os(Linux)
    /// At most 256 KiB: /proc/stat grows with the number of CPUs.
    private static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while bytes.count < 256 * 1024 {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            bytes += buffer.prefix(count)
        }
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
    }

    /// When the machine booted, from /proc/stat: read once, since it does not change.
    private static let bootTime = bootTimeSeconds()

    private static func bootTimeSeconds() -> Double? {
        guard let stat = readSmallFile("/proc/stat") else { return nil }
        for line in stat.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingPrefix(" "))
        }
        return nil
    }

    private static func countEntries(_ path: String) -> Int? {
        guard let dir = opendir(path) else { return nil }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { $0.first == UInt8(ascii: ".") }
            if !isDot { count += 1 }
        }
        // One of them is the descriptor this listing holds.
        return max(0, count - 1)
    }
    #endif
}
