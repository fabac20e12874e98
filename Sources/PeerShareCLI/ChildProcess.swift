import Foundation

/// A process this program started, with its exit awaited as an event.
///
/// Used by `peershare demo` and by the end-to-end tests: they signal only the processes
/// they started, through this handle.
public final class ChildProcess: @unchecked Sendable {
    // Mutable state is guarded by `lock`; Process itself is only touched in init and signal.
    private let process = Process()
    private let lock = NSLock()
    private var status: Int32?
    private var exitWaiters: [CheckedContinuation<Int32, Never>] = []
    private var lineContinuation: AsyncStream<String>.Continuation?
    public let name: String
    /// Lines the child wrote to stdout (when captured).
    public let stdoutLines: AsyncStream<String>

    /// Starts `executable`. With `captureStdout`, each stdout line is both echoed to our
    /// stderr (prefixed by nothing: the child's lines are self-describing) and delivered on
    /// `stdoutLines`; otherwise stdout goes to our stderr. The child's stderr is ours.
    public init(name: String, executable: String, arguments: [String], captureStdout: Bool, echo: Bool = true, quietStderr: Bool = false) throws {
        self.name = name
        let (stream, continuation) = AsyncStream<String>.makeStream()
        stdoutLines = stream
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if quietStderr { process.standardError = FileHandle.nullDevice }
        var pipe: Pipe?
        if captureStdout {
            let p = Pipe()
            process.standardOutput = p
            pipe = p
            lineContinuation = continuation
        } else {
            process.standardOutput = quietStderr ? FileHandle.nullDevice : FileHandle.standardError
            continuation.finish()
        }
        process.terminationHandler = { [weak self] finished in
            self?.didExit(finished.terminationReason == .uncaughtSignal ? 128 + finished.terminationStatus : finished.terminationStatus)
        }
        try process.run()
        if let pipe {
            let handle = pipe.fileHandleForReading
            let thread = Thread { [continuation] in
                var pending = Data()
                while true {
                    let data = handle.availableData
                    if data.isEmpty { break }
                    pending.append(data)
                    while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                        let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                        pending.removeSubrange(pending.startIndex...newline)
                        if echo { FileHandle.standardError.write(Data((line + "\n").utf8)) }
                        continuation.yield(line)
                    }
                }
                continuation.finish()
            }
            thread.start()
        }
    }

    public var pid: Int32 { process.processIdentifier }

    private func didExit(_ code: Int32) {
        lock.lock()
        status = code
        let waiters = exitWaiters
        exitWaiters = []
        lock.unlock()
        for waiter in waiters { waiter.resume(returning: code) }
    }

    public var exitStatus: Int32? {
        lock.lock()
        defer { lock.unlock() }
        return status
    }

    /// The exit status; 128 + N when killed by signal N.
    public func waitForExit() async -> Int32 {
        await withCheckedContinuation { continuation in
            lock.lock()
            if let status {
                lock.unlock()
                continuation.resume(returning: status)
            } else {
                exitWaiters.append(continuation)
                lock.unlock()
            }
        }
    }

    /// Waits at most `timeout`; nil if the process is still running.
    public func waitForExit(timeout: Duration) async -> Int32? {
        try? await withDeadline(timeout) { await self.waitForExit() }
    }

    /// Waits for a stdout line with the given prefix; nil if the process closed stdout first.
    public func waitForLine(prefix: String, timeout: Duration) async -> String? {
        let lines = stdoutLines
        return try? await withDeadline(timeout) {
            for await line in lines where line.hasPrefix(prefix) { return line }
            return nil
        } ?? nil
    }

    public func signal(_ signal: Int32) {
        if exitStatus == nil { kill(process.processIdentifier, signal) }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    public func stop(grace: Duration = .seconds(5)) async {
        guard exitStatus == nil else { return }
        signal(SIGTERM)
        if await waitForExit(timeout: grace) == nil {
            signal(SIGKILL)
            _ = await waitForExit()
        }
    }
}

public struct DeadlineExceeded: Error {}

/// Runs `operation`, giving up after `timeout`. The timer is a bound on waiting, not a
/// way to synchronise: the operation itself waits on events.
public func withDeadline<T: Sendable>(_ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw DeadlineExceeded() }
        return value
    }
}

/// Ports on 127.0.0.1 that were free a moment ago: bound together (so they differ),
/// read back, then released for the children to bind.
public func reserveFreePorts(_ count: Int, host: String = "127.0.0.1") throws -> [Int] {
    var sockets: [Int32] = []
    defer { sockets.forEach { close($0) } }
    var ports: [Int] = []
    for _ in 0..<count {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CocoaError(.fileReadUnknown) }
        sockets.append(fd)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr(host)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw -> Bool in
                bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
            }
        }
        guard bound else { throw CocoaError(.fileReadUnknown) }
        ports.append(Int(UInt16(bigEndian: address.sin_port)))
    }
    return ports
}

/// The absolute path of the running executable, for starting copies of it.
public func currentExecutablePath() -> String {
    if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return resolved }
    return Bundle.main.executablePath ?? CommandLine.arguments[0]
}
