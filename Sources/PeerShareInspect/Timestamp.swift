import Foundation
import PeerShareCore

/// Times in the index are integer microseconds since the Unix epoch, UTC. Everything here
/// is printed and parsed in UTC, without the locale or time-zone database.
public enum Timestamp {
    /// `2026-11-25 14:02:07.123` (UTC, milliseconds): table output.
    public static func short(_ micros: Int64) -> String {
        let (date, seconds, fraction) = split(micros)
        return "\(date) \(clock(seconds)).\(digits(fraction / 1000, 3))"
    }

    /// `2026-11-25T14:02:07.123456Z`: JSON and CSV output.
    public static func iso(_ micros: Int64) -> String {
        let (date, seconds, fraction) = split(micros)
        return "\(date)T\(clock(seconds)).\(digits(fraction, 6))Z"
    }

    static let day: Int64 = 86_400_000_000

    /// The UTC midnight (in microseconds) of the day `micros` falls on; nil for the first
    /// partial day of Int64, whose midnight is before Int64.min (a damaged index's time).
    public static func startOfDay(_ micros: Int64) -> Int64? {
        let (midnight, overflow) = micros.subtractingReportingOverflow(timeOfDay(micros))
        return overflow ? nil : midnight
    }

    /// Microseconds after UTC midnight: `micros` modulo a day, never negative. Unlike
    /// `micros - floorDiv(micros, day) * day`, it cannot overflow near Int64.min.
    static func timeOfDay(_ micros: Int64) -> Int64 {
        let rest = micros % day
        return rest < 0 ? rest + day : rest
    }

    /// Microseconds since the epoch of a UTC calendar date and time of day.
    public static func micros(year: Int64, month: Int64, day: Int64, secondOfDay: Int64 = 0) -> Int64 {
        (days(year: year, month: month, day: day) * 86_400 + secondOfDay) * 1_000_000
    }

    private static func split(_ micros: Int64) -> (date: String, seconds: Int64, fraction: Int64) {
        let days = floorDiv(micros, day)
        let rest = timeOfDay(micros)
        let (y, m, d) = civil(days: days)
        return ("\(digits(y, 4))-\(digits(m, 2))-\(digits(d, 2))", rest / 1_000_000, rest % 1_000_000)
    }

    static func clock(_ seconds: Int64) -> String {
        "\(digits(seconds / 3600, 2)):\(digits(seconds / 60 % 60, 2)):\(digits(seconds % 60, 2))"
    }

    static func digits(_ value: Int64, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    // Howard Hinnant's civil-calendar algorithms (proleptic Gregorian).
    static func civil(days z0: Int64) -> (Int64, Int64, Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}

/// A `--since` or `--until` value.
public enum TimeArgument: Equatable, Sendable {
    /// An absolute time, in microseconds since the epoch.
    case absolute(Int64)
    /// A time of day (microseconds after UTC midnight) on the day of the index's latest event.
    case timeOfDay(Int64)

    /// Accepts `2026-11-25T14:02:07.5Z`, `2026-11-25 14:02` (UTC unless an offset such as
    /// `+01:00` is given), `2026-11-25`, `14:02[:07[.5]]` and `@MICROSECONDS`.
    public init?(parsing text: String) {
        var s = Substring(text.trimmingCharacters(in: .whitespaces))
        if s.first == "@" {
            guard let value = Int64(s.dropFirst()) else { return nil }
            self = .absolute(value)
            return
        }
        if let date = Self.date(&s) {
            var micros = date
            if s.first == "T" || s.first == "t" || s.first == " " {
                s = s.dropFirst()
                guard let time = Self.timeOfDay(&s) else { return nil }
                micros += time
                guard let offset = Self.offset(&s) else { return nil }
                micros -= offset
            }
            guard s.isEmpty else { return nil }
            self = .absolute(micros)
            return
        }
        guard let time = Self.timeOfDay(&s), s.isEmpty else { return nil }
        self = .timeOfDay(time)
    }

    /// The absolute time, given the latest event's time for a bare time of day; nil when
    /// that time of day on the latest event's day is not an Int64 (the latest time is then
    /// within a day of Int64.min or Int64.max: a damaged index).
    public func resolve(latest: Int64?) -> Int64? {
        switch self {
        case .absolute(let micros): return micros
        case .timeOfDay(let offset):
            guard let midnight = Timestamp.startOfDay(latest ?? 0) else { return nil }
            let (micros, overflow) = midnight.addingReportingOverflow(offset)
            return overflow ? nil : micros
        }
    }

    /// As the user could have typed it: `@MICROSECONDS` or `HH:MM:SS[.ffffff]`.
    public var text: String {
        switch self {
        case .absolute(let micros): return "@\(micros)"
        case .timeOfDay(let offset):
            let fraction = offset % 1_000_000
            return Timestamp.clock(offset / 1_000_000) + (fraction == 0 ? "" : "." + Timestamp.digits(fraction, 6))
        }
    }

    private static func number(_ s: inout Substring, digits count: Int) -> Int64? {
        let prefix = s.prefix(count)
        guard prefix.count == count, prefix.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int64(prefix) else { return nil }
        s = s.dropFirst(count)
        return value
    }

    private static func expect(_ s: inout Substring, _ c: Character) -> Bool {
        guard s.first == c else { return false }
        s = s.dropFirst()
        return true
    }

    /// `YYYY-MM-DD` as microseconds at UTC midnight; leaves `s` untouched if it is not one.
    private static func date(_ s: inout Substring) -> Int64? {
        var t = s
        guard let y = number(&t, digits: 4), expect(&t, "-"), let m = number(&t, digits: 2), expect(&t, "-"),
              let d = number(&t, digits: 2), (1...12).contains(m), (1...31).contains(d)
        else { return nil }
        s = t
        return Timestamp.micros(year: y, month: m, day: d)
    }

    /// `HH:MM[:SS[.fraction]]` as microseconds after midnight.
    private static func timeOfDay(_ s: inout Substring) -> Int64? {
        guard let h = number(&s, digits: 2), expect(&s, ":"), let m = number(&s, digits: 2), h < 24, m < 60 else { return nil }
        var micros = (h * 3600 + m * 60) * 1_000_000
        if expect(&s, ":") {
            guard let sec = number(&s, digits: 2), sec < 60 else { return nil }
            micros += sec * 1_000_000
            if expect(&s, ".") {
                let fraction = s.prefix(while: { $0.isASCII && $0.isNumber })
                guard !fraction.isEmpty, fraction.count <= 9 else { return nil }
                s = s.dropFirst(fraction.count)
                let padded = (fraction + String(repeating: "0", count: 6)).prefix(6)
                micros += Int64(padded) ?? 0
            }
        }
        return micros
    }

    /// Nothing or `Z` (UTC), or `+HH:MM`, `-HH:MM`, `+HHMM`: the offset from UTC in microseconds.
    private static func offset(_ s: inout Substring) -> Int64? {
        if s.isEmpty { return 0 }
        if expect(&s, "Z") || expect(&s, "z") { return 0 }
        guard let sign: Int64 = expect(&s, "+") ? 1 : expect(&s, "-") ? -1 : nil,
              let h = number(&s, digits: 2) else { return nil }
        _ = expect(&s, ":")
        guard let m = number(&s, digits: 2), h < 24, m < 60 else { return nil }
        return sign * (h * 3600 + m * 60) * 1_000_000
    }
}

/// Human renderings of durations, sizes and rates.
enum Human {
    static func duration(_ micros: Int64) -> String {
        if micros < 1000 { return "\(micros) µs" }
        if micros < 1_000_000 { return "\(oneDecimal(Double(micros) / 1000)) ms" }
        if micros < 60_000_000 { return "\(twoDecimals(Double(micros) / 1_000_000)) s" }
        let seconds = micros / 1_000_000
        if seconds < 3600 { return "\(seconds / 60) min \(Timestamp.digits(seconds % 60, 2)) s" }
        if seconds < 86_400 { return "\(seconds / 3600) h \(Timestamp.digits(seconds / 60 % 60, 2)) min" }
        return "\(seconds / 86_400) d \(Timestamp.digits(seconds / 3600 % 24, 2)) h"
    }

    static func bytes(_ count: Int64) -> String { ByteSize.format(count) }

    /// `2.5 MiB (2621457 B)`, or just `450 B`.
    static func exactBytes(_ count: Int64) -> String {
        count < 1024 ? "\(count) B" : "\(ByteSize.format(count)) (\(count) B)"
    }

    static func rate(_ bytesPerSecond: Int64?) -> String {
        bytesPerSecond.map { ByteSize.format($0) + "/s" } ?? "-"
    }

    /// A computed rate: "-" when it is not finite or not an Int64.
    static func rate(approximately bytesPerSecond: Double) -> String {
        rate(Bounded.int64(bytesPerSecond))
    }

    static func time(_ micros: Int64?) -> String { micros.map(Timestamp.short) ?? "-" }

    /// Lower-case hex of a blob (a SHA-256 column).
    static func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }

    /// The first 12 hex digits, as the node's own log lines show hashes.
    static func shortHash(_ hex: String) -> String { String(hex.prefix(12)) }

    static func oneDecimal(_ value: Double) -> String { String((value * 10).rounded() / 10) }

    static func twoDecimals(_ value: Double) -> String {
        let hundredths = Int64((value * 100).rounded())
        return "\(hundredths / 100).\(Timestamp.digits(hundredths % 100, 2))"
    }

    /// Bytes per second over a busy time in microseconds; nil when no time was measured, or
    /// when the rate is no Int64 (10 TB in 1 µs from a damaged index: shown as "-").
    static func bytesPerSecond(bytes: Int64, micros: Int64) -> Int64? {
        micros > 0 ? Bounded.int64(Double(bytes) * 1_000_000 / Double(micros)) : nil
    }
}
