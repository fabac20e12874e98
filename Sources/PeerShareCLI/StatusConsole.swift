import Foundation

/// Standard error, shared by log lines and the live status lines drawn beneath them.
///
/// A node's console (`buffered`), not on a terminal (a pipe, a log file: how swarms usually
/// run), buffers the lines logged for every chunk and writes them in batches (a milestone
/// line takes the batch out with it at once): when 64 KiB have gathered, 50 ms after the
/// first line of a batch, and whenever `flush` is called, which the node commands do before
/// they exit, so nothing is lost at exit. A node logs several lines per chunk, and one
/// `write` per line cost it a system call each. Only a SIGKILL can lose the last 50 ms of
/// lines; the same events are rows in the node's index.
/// (Unbuffered consoles write each line at once.)
///
/// On a terminal, `setStatus` keeps a block of lines (one progress line, or one per peer) at
/// the bottom: a log line erases the block, is written, and the block is drawn again under
/// it, so logs scroll and the status stays put. Not on a terminal (a pipe, CI, a log file),
/// `isLive` is false: status lines are dropped and nothing but the plain log lines is
/// written, with no control characters at all.
///
/// Terminal control is four sequences (carriage return, cursor up, erase down, and the
/// window width from TIOCGWINSZ), written by hand: vapor/console-kit's activity indicators
/// draw one indicator on stdout from a Dispatch timer and bring their own command
/// framework, and onevcat/Rainbow only colours text; neither draws a block that log lines
/// scroll above, on stderr. See docs/WATCHING.md.
public final class StatusConsole: @unchecked Sendable {
    // `status` and every write are guarded by `lock`, so that lines from different threads
    // stay whole and the block is never drawn twice.
    private let lock = NSLock()
    private let fd: Int32
    public let isLive: Bool
    /// Whether lines wait in a buffer (see above); never on a terminal.
    private let buffered: Bool
    private var status: [String] = []
    /// Lines not yet written (not live only), and whether a timed flush is on its way.
    private var pending: [UInt8] = []
    private var flushScheduled = false
    static let bufferLimit = 64 * 1024
    static let flushDelay = DispatchTimeInterval.milliseconds(50)

    /// `live: nil` decides from the descriptor: a terminal that is not `TERM=dumb`.
    public init(fd: Int32 = STDERR_FILENO, live: Bool? = nil, buffered: Bool = false) {
        self.fd = fd
        self.isLive = live ?? Self.isTerminal(fd)
        self.buffered = buffered && !isLive
    }

    public static func isTerminal(_ fd: Int32) -> Bool {
        isatty(fd) == 1 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
    }

    /// Columns of the terminal; 80 when it cannot tell.
    public var width: Int {
        var size = winsize()
        if ioctl(fd, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        if let columns = ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init), columns > 0 { return columns }
        return 80
    }

    /// Writes one log line (a newline is added) above the status block. A buffered console
    /// keeps it unless it is `urgent`, which writes it, and everything before it, at once:
    /// only the lines logged for every chunk wait, milestones never do.
    public func writeLine(_ line: String, urgent: Bool = true) {
        lock.withLock {
            guard buffered else {
                write(erasure() + line + "\n" + drawing())
                return
            }
            pending.append(contentsOf: line.utf8)
            pending.append(0x0A)
            if urgent || pending.count >= Self.bufferLimit {
                writePending()
            } else if !flushScheduled {
                flushScheduled = true
                // A bound on how late a line may appear, not a wait for anything.
                DispatchQueue.global().asyncAfter(deadline: .now() + Self.flushDelay) { self.flush() }
            }
        }
    }

    /// Bytes waiting in the buffer (tests).
    public var pendingByteCount: Int { lock.withLock { pending.count } }

    /// Writes every buffered line now.
    public func flush() {
        lock.withLock {
            flushScheduled = false
            writePending()
        }
    }

    private func writePending() {
        guard !pending.isEmpty else { return }
        writeBytes(pending)
        pending.removeAll(keepingCapacity: true)
    }

    /// Replaces the status block; nothing happens when not live. Lines must fit the width
    /// (`ProgressLine.render` makes them fit), or the terminal wraps them and the block moves.
    public func setStatus(_ lines: [String]) {
        guard isLive else { return }
        lock.withLock {
            let old = erasure()
            status = lines
            write(old + drawing())
        }
    }

    /// Leaves the current block on screen as ordinary lines; later log lines go below it.
    public func endStatus() {
        lock.withLock { status = [] }
    }

    /// Moves to the block's first line and erases to the end of the screen.
    private func erasure() -> String {
        guard isLive, !status.isEmpty else { return "" }
        return "\r\u{1B}[\(status.count)A\u{1B}[J"
    }

    private func drawing() -> String {
        guard isLive else { return "" }
        return status.map { $0 + "\n" }.joined()
    }

    private func write(_ text: String) {
        writeBytes(Array(text.utf8))
    }

    private func writeBytes(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }  // stderr gone: nothing sensible to do
            offset += written
        }
    }
}
