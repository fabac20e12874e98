import Foundation
import Logging

/// One line per event on stderr: `2026-11-24T21:40:00.123Z peer2 received chunk 17 from peer3 ...`.
/// Logs go to stderr so that stdout carries only results (and the "listening on" line).
public struct ConsoleLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String

    public init(label: String, level: Logger.Level = .info) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = Self.timestamp() + " " + label
        if event.level != .info { line += " " + event.level.rawValue }
        line += " " + event.message.description
        line = line.replacingOccurrences(of: "\n", with: " ") + "\n"
        // One write per line keeps lines from different threads whole.
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var parts = tm()
        gmtime_r(&t, &parts)
        let millis = ts.tv_nsec / 1_000_000
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                      Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(millis))
    }
}
