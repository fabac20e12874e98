import Foundation

/// A process this program started, with its exit awaited as an event.
///
/// Used by `peershare demo` and by the end-to-end tests: they signal only the processes
/// they started, through this handle.
public final class ChildProcess: @unchecked Sendable {
    /// Where one of the child's output streams goes.
    public enum Output: Sendable {
        case inherit
        case discard
        /// Appended to a file.
        case file(String)
        /// Our own stderr (for a child's stdout, so that our stdout carries only results).
        case ourStderr
        /// Read line by line into `lines`, echoed to our stderr if asked, and appended to
        /// a file if one is given.
        case lines(echo: Bool, copyTo: String? = nil)
        /// Each line handed to a function as it arrives (not kept, not in `lines`).
        case forward(@Sendable (String) -> Void)
        /// An open file or device (a test's pseudo-terminal).
        case handle(FileHandle)
    }

    // Mutable state is guarded by `lock`; Process itself is only touched in init and signal.
    private let process = Process()
    private let lock = NSLock()
    private var status: Int32?
    private var exitWaiters: [Int: CheckedContinuation<Int32?, Never>] = [:]
    private var nextWaiter = 0
    public let name: String
    /// Lines the child wrote to the streams set to `.lines`; finishes once they close.
    public let lines: AsyncStream<String>
    /// The same lines for `waitForLine`, which must survive a timed-out wait (cancelling an
    /// AsyncStream's iteration would end the stream for good).
    private let mailbox = LineMailbox()

    /// `environment` replaces variables of ours for the child (the rest are inherited).
    public init(name: String, executable: String, arguments: [String], stdout: Output, stderr: Output = .inherit, environment: [String: String] = [:]) throws {
        self.name = name
        let (stream, continuation) = AsyncStream<String>.makeStream()
        lines = stream
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        var readers: [LineReader] = []
        for (output, assign) in [(stdout, { (h: Any?) in self.process.standardOutput = h }), (stderr, { (h: Any?) in self.process.standardError = h })] {
            if case .lines(let echo, let copyTo) = output {
                let pipe = Pipe()
                assign(pipe)
                readers.append(LineReader(handle: pipe.fileHandleForReading, echo: echo, copy: try copyTo.map { try Self.appendHandle($0) }, forward: nil))
            } else if case .forward(let forward) = output {
                let pipe = Pipe()
                assign(pipe)
                readers.append(LineReader(handle: pipe.fileHandleForReading, echo: false, copy: nil, forward: forward))
            } else if case .inherit = output {
                // Left unset: Foundation's Process sends a stream set to nil to /dev/null.
                continue
            } else {
                assign(try Self.handle(for: output))
            }
        }
        process.terminationHandler = { [weak self] finished in
            self?.didExit(finished.terminationReason == .uncaughtSignal ? 128 + finished.terminationStatus : finished.terminationStatus)
        }
        try process.run()
        if readers.isEmpty {
            continuation.finish()
            mailbox.finish()
        }
        let mailbox = self.mailbox
        let open = Counter(readers.count)
        for reader in readers {
            // A plain thread doing blocking reads: a pipe has no event loop of its own.
            Thread {
                var pending = Data()
                while true {
                    let data = reader.handle.availableData
                    if data.isEmpty { break }
                    reader.copy?.write(data)
                    pending.append(data)
                    while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                        let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                        pending.removeSubrange(pending.startIndex...newline)
                        if let forward = reader.forward {
                            forward(line)
                            continue
                        }
                        if reader.echo { FileHandle.standardError.write(Data((ChildProcess.echoable(line) + "\n").utf8)) }
                        continuation.yield(line)
                        mailbox.deliver(line)
                    }
                }
                if open.decrement() == 0 {
                    continuation.finish()
                    mailbox.finish()
                }
            }.start()
        }
    }

    private static func appendHandle(_ path: String) throws -> FileHandle {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw CocoaError(.fileWriteNoPermission) }
        handle.seekToEndOfFile()
        return handle
    }

    private static func handle(for output: Output) throws -> Any? {
        switch output {
        case .inherit: return nil
        case .discard: return FileHandle.nullDevice
        case .ourStderr: return FileHandle.standardError
        case .lines, .forward: return nil
        case .handle(let handle): return handle
        case .file(let path): return try appendHandle(path)
        }
    }

    public var pid: Int32 { process.processIdentifier }

    private func didExit(_ code: Int32) {
        lock.lock()
        status = code
        let waiters = exitWaiters.values
        exitWaiters = [:]
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
        while true {
            if let status = await waitForExit(timeout: .seconds(3600)) { return status }
        }
    }

    /// Waits at most `timeout`; nil if the process is still running then.
    public func waitForExit(timeout: Duration) async -> Int32? {
        let id: Int = lock.withLock {
            nextWaiter += 1
            return nextWaiter
        }
        // The timer only bounds the wait; the exit itself arrives as an event.
        let timer = Task {
            try await Task.sleep(for: timeout)
            self.resumeWaiter(id, with: nil)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            lock.lock()
            if let status {
                lock.unlock()
                continuation.resume(returning: status)
            } else {
                exitWaiters[id] = continuation
                lock.unlock()
            }
        }
    }

    private func resumeWaiter(_ id: Int, with value: Int32?) {
        lock.lock()
        let waiter = exitWaiters.removeValue(forKey: id)
        lock.unlock()
        waiter?.resume(returning: value)
    }

    /// Waits for an output line with the given prefix; nil if the output closed or time ran
    /// out first. Lines before it are consumed.
    public func waitForLine(prefix: String, timeout: Duration) async -> String? {
        await waitForLine(timeout: timeout) { $0.hasPrefix(prefix) }
    }

    public func waitForLine(timeout: Duration, where matches: @escaping @Sendable (String) -> Bool) async -> String? {
        let mailbox = self.mailbox
        return try? await withDeadline(timeout) { await mailbox.next(where: matches) } ?? nil
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
            _ = await waitForExit(timeout: .seconds(30))
        }
    }
}

/// One pipe read line by line by its own thread.
private struct LineReader: @unchecked Sendable {
    let handle: FileHandle
    let echo: Bool
    let copy: FileHandle?
    let forward: (@Sendable (String) -> Void)?
}

/// Output lines waiting to be matched, and the one wait (at most) looking for a line.
/// Lines that arrive while nobody waits are kept; a wait consumes lines up to its match.
private final class LineMailbox: @unchecked Sendable {
    private let lock = NSLock()
    private var pending: [String] = []
    private var finished = false
    private var waiter: (id: Int, matches: @Sendable (String) -> Bool, continuation: CheckedContinuation<String?, Never>)?
    private var nextID = 0

    func deliver(_ line: String) {
        lock.lock()
        if let current = waiter {
            if current.matches(line) {
                waiter = nil
                lock.unlock()
                current.continuation.resume(returning: line)
                return
            }
        } else {
            pending.append(line)
        }
        lock.unlock()
    }

    func finish() {
        lock.lock()
        finished = true
        let current = waiter
        waiter = nil
        lock.unlock()
        current?.continuation.resume(returning: nil)
    }

    /// The next line that matches, or nil once the output has closed. Ends (with nil) when
    /// the calling task is cancelled, leaving later lines for the next wait.
    func next(where matches: @escaping @Sendable (String) -> Bool) async -> String? {
        let id = lock.withLock {
            nextID += 1
            return nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
                lock.lock()
                while !pending.isEmpty {
                    let line = pending.removeFirst()
                    if matches(line) {
                        lock.unlock()
                        continuation.resume(returning: line)
                        return
                    }
                }
                if finished || Task.isCancelled {
                    lock.unlock()
                    continuation.resume(returning: nil)
                    return
                }
                precondition(waiter == nil, "one waitForLine at a time per process")
                waiter = (id, matches, continuation)
                lock.unlock()
            }
        } onCancel: {
            lock.lock()
            let current = waiter
            if current?.id == id { waiter = nil }
            lock.unlock()
            if current?.id == id { current?.continuation.resume(returning: nil) }
        }
    }
}

/// A count shared by the reader threads of one process.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int
    init(_ value: Int) { self.value = value }
    func decrement() -> Int {
        lock.withLock {
            value -= 1
            return value
        }
    }
}

public struct DeadlineExceeded: Error {}

/// Runs `operation`, giving up after `timeout`. The timer bounds the wait; it does not
/// synchronise anything. `operation` must end when cancelled.
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

/// The absolute path of the running executable, for starting copies of it.
public func currentExecutablePath() -> String {
    if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return resolved }
    return Bundle.main.executablePath ?? CommandLine.arguments[0]
}

extension ChildProcess {
    /// A child's line as it may be echoed: a private swarm's ticket holds the join secret,
    /// so the demo never repeats it on the console.
    static func echoable(_ line: String) -> String {
        line.hasPrefix("ticket: ") ? "ticket: (withheld here: it holds the join secret)" : line
    }
}
