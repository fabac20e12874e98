import Foundation
import Logging
import PeerShareCore

/// Writes each log line to stderr (through a `StatusConsole`, so that lines scroll above a live
/// progress line instead of through it). Results go to stdout; logs never do.
///
/// text: `2026-11-24T21:40:00.123Z peer2 received chunk 17 from peer3 ...` (the level only when not info).
/// json: `{"at":"2026-11-24T21:40:00.123456Z","level":"info","node":"peer2","kind":"chunk_received",
/// "chunk_id":17,"source_kind":"peer","source":"peer3","message":"received chunk 17 ..."}`:
/// the fields of the index's `events` rows, taken from the metadata the node attaches from
/// the same `EventRecord` it stores (`LogField`); null for lines that are not events.
public struct ConsoleLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let format: LogFormat
    private let console: StatusConsole

    public init(label: String, format: LogFormat = .text, level: Logger.Level = .info, console: StatusConsole) {
        self.label = label
        self.format = format
        self.logLevel = level
        self.console = console
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The event kinds logged for every chunk (several per chunk): the lines a buffered
    /// console may hold back a moment. Everything else is a milestone and goes out at once.
    static let perChunkKinds: Set<String> = ["chunk_requested", "chunk_received", "request_handled", "chunk_sent"]

    public func log(event: LogEvent) {
        let kind = event.metadata?[LogField.kind]?.description
        let urgent = event.level > .info || !(kind.map(Self.perChunkKinds.contains) ?? false)
        let line = Self.line(level: event.level, message: event.message.description,
                             // A node logs several lines per chunk and its handler's own metadata is
                             // usually empty: merge only when there is something to merge.
                             metadata: metadata.isEmpty ? (event.metadata ?? [:]) : metadata.merging(event.metadata ?? [:]) { $1 },
                             label: label, format: format, now: Self.nowMicros())
        console.writeLine(line, urgent: urgent)
    }

    /// One log line, without its newline. Pure, for the tests.
    public static func line(level: Logger.Level, message: String, metadata: Logger.Metadata, label: String, format: LogFormat, now: Int64) -> String {
        let at = metadata[LogField.at].flatMap { Int64($0.description) } ?? now
        switch format {
        case .text:
            var line = UTCTime.iso(at, fractionDigits: 3) + " " + label
            if level != .info { line += " " + level.rawValue }
            line += " " + message
            // One event, one line, whatever the message holds.
            guard line.utf8.contains(where: { $0 == 0x0A || $0 == 0x0D }) else { return line }
            return line.replacingOccurrences(of: "\n", with: " ").replacingOccurrences(of: "\r", with: " ")
        case .json:
            var object = JSONLine()
            object.add("at", .string(UTCTime.iso(at, fractionDigits: 6)))
            object.add("level", .string(level.rawValue))
            object.add("node", .string(label))
            object.add("kind", metadata[LogField.kind].map { .string($0.description) } ?? .null)
            object.add("chunk_id", metadata[LogField.chunkID].flatMap { Int64($0.description) }.map { .int($0) } ?? .null)
            object.add("source_kind", metadata[LogField.sourceKind].map { .string($0.description) } ?? .null)
            object.add("source", metadata[LogField.source].map { .string($0.description) } ?? .null)
            object.add("message", .string(message))
            return object.text
        }
    }

    static func nowMicros() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }
}

/// A flat JSON object written in the order its fields were added (stable for readers who
/// grep), on one line.
struct JSONLine {
    enum Value { case string(String), int(Int64), null }
    private var fields: [String] = []

    mutating func add(_ key: String, _ value: Value) {
        let encoded: String
        switch value {
        case .string(let s): encoded = JSONString.quoted(s)
        case .int(let n): encoded = String(n)
        case .null: encoded = "null"
        }
        fields.append(JSONString.quoted(key) + ":" + encoded)
    }

    var text: String { "{" + fields.joined(separator: ",") + "}" }
}

/// UTC timestamps for log lines.
public enum UTCTime {
    /// `2026-11-24T21:40:00.123Z` (3 digits) or `...00.123456Z` (6), from microseconds since the epoch.
    public static func iso(_ micros: Int64, fractionDigits: Int) -> String {
        var seconds = time_t(micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000)
        let fraction = micros - Int64(seconds) * 1_000_000
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let scaled = fractionDigits == 3 ? fraction / 1000 : fraction
        // Built by hand, not with String(format:): a peer logs several lines per chunk, and
        // Foundation's formatter showed up in its profile.
        var text = ""
        text.reserveCapacity(27)
        func append(_ value: Int64, width: Int) {
            let digits = String(value)
            if digits.count < width { text += String(repeating: "0", count: width - digits.count) }
            text += digits
        }
        append(Int64(parts.tm_year) + 1900, width: 4); text += "-"
        append(Int64(parts.tm_mon) + 1, width: 2); text += "-"
        append(Int64(parts.tm_mday), width: 2); text += "T"
        append(Int64(parts.tm_hour), width: 2); text += ":"
        append(Int64(parts.tm_min), width: 2); text += ":"
        append(Int64(parts.tm_sec), width: 2); text += "."
        append(scaled, width: fractionDigits); text += "Z"
        return text
    }
}
