import Foundation
import PeerShareCore

/// How a report is printed: aligned tables for people, JSON or CSV for programs.
public enum OutputFormat: String, CaseIterable, Sendable {
    case table, json, csv
}

/// A value in machine output. Field names and their order are part of the documented,
/// stable output (README: "peershare-inspect").
public enum FieldValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case string(String)
    case array([FieldValue])
    case record(Record)

    static func optional(_ value: Int64?) -> FieldValue { value.map { .int($0) } ?? .null }
    static func optional(_ value: String?) -> FieldValue { value.map { .string($0) } ?? .null }
    /// A time as an ISO 8601 UTC string with microseconds, or null.
    static func time(_ micros: Int64?) -> FieldValue { micros.map { .string(Timestamp.iso($0)) } ?? .null }

    /// The text of a scalar in a CSV cell: empty for null.
    var csvText: String {
        switch self {
        case .null: ""
        case .bool(let b): b ? "true" : "false"
        case .int(let i): String(i)
        case .string(let s): s
        case .array(let items): items.map(\.csvText).joined(separator: " ")
        case .record: ""
        }
    }

    var isContainer: Bool {
        switch self {
        case .array, .record: true
        default: false
        }
    }
}

/// An ordered set of named fields: one JSON object, or one CSV row.
public struct Record: Sendable, Equatable {
    public struct Field: Sendable, Equatable {
        public let name: String
        public let value: FieldValue
    }

    public var fields: [Field]

    public init(_ pairs: KeyValuePairs<String, FieldValue>) {
        fields = pairs.map { Field(name: $0.key, value: $0.value) }
    }

    public subscript(name: String) -> FieldValue? {
        fields.first { $0.name == name }?.value
    }

    /// The scalar fields, in order: a CSV header and row.
    var scalarNames: [String] { fields.filter { !$0.value.isContainer }.map(\.name) }
    var scalarValues: [FieldValue] { fields.filter { !$0.value.isContainer }.map(\.value) }
}

/// A small, deterministic JSON writer: fields keep their declared order. A container with no
/// nested container is written on one line, so a list of rows reads one row per line.
public enum JSON {
    public static func encode(_ value: FieldValue) -> String {
        var out = ""
        write(value, indent: 0, into: &out)
        return out
    }

    /// One compact line, for JSON Lines (`events --follow --format json`).
    public static func line(_ value: FieldValue) -> String {
        var out = ""
        writeCompact(value, into: &out)
        return out
    }

    private static func isFlat(_ value: FieldValue) -> Bool {
        switch value {
        case .array(let items): !items.contains(where: \.isContainer)
        case .record(let record): !record.fields.contains(where: \.value.isContainer)
        default: true
        }
    }

    private static func write(_ value: FieldValue, indent: Int, into out: inout String) {
        if isFlat(value) {
            writeCompact(value, into: &out)
            return
        }
        let inner = String(repeating: "  ", count: indent + 1)
        let closing = String(repeating: "  ", count: indent)
        switch value {
        case .array(let items):
            out += "[\n"
            for (i, item) in items.enumerated() {
                out += inner
                write(item, indent: indent + 1, into: &out)
                out += i == items.count - 1 ? "\n" : ",\n"
            }
            out += closing + "]"
        case .record(let record):
            out += "{\n"
            for (i, field) in record.fields.enumerated() {
                out += inner
                JSONString.append(field.name, to: &out)
                out += ": "
                write(field.value, indent: indent + 1, into: &out)
                out += i == record.fields.count - 1 ? "\n" : ",\n"
            }
            out += closing + "}"
        default:
            writeCompact(value, into: &out)
        }
    }

    private static func writeCompact(_ value: FieldValue, into out: inout String) {
        switch value {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .string(let s): JSONString.append(s, to: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += ", " }
                writeCompact(item, into: &out)
            }
            out += "]"
        case .record(let record):
            out += "{"
            for (i, field) in record.fields.enumerated() {
                if i > 0 { out += ", " }
                JSONString.append(field.name, to: &out)
                out += ": "
                writeCompact(field.value, into: &out)
            }
            out += "}"
        }
    }
}

/// RFC 4180 CSV: a header row of field names, then one row per record; cells holding a
/// comma, a quote or a line break are quoted.
public enum CSV {
    public static func line(_ cells: [String]) -> String {
        cells.map(quote).joined(separator: ",")
    }

    public static func quote(_ cell: String) -> String {
        let special: (UInt8) -> Bool = { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }
        guard cell.utf8.contains(where: special) else { return cell }
        return "\"" + cell.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// A header (from the first record, or `header` when there are none) and the rows.
    public static func table(_ records: [Record], header: [String]) -> String {
        var out = line(records.first?.scalarNames ?? header) + "\n"
        for record in records {
            var first = true
            for field in record.fields where !field.value.isContainer {
                if !first { out += "," }
                first = false
                out += quote(field.value.csvText)
            }
            out += "\n"
        }
        return out
    }
}

/// An aligned text table for people: a header, then rows; numbers right-aligned.
public struct TextTable: Sendable {
    public enum Alignment: Sendable { case left, right }
    public struct Column: Sendable {
        public let title: String
        public let alignment: Alignment
        public init(_ title: String, _ alignment: Alignment = .left) {
            self.title = title
            self.alignment = alignment
        }
    }

    public let columns: [Column]
    public private(set) var rows: [[String]] = []

    public init(_ columns: [Column]) { self.columns = columns }

    public mutating func append(_ row: [String]) {
        precondition(row.count == columns.count, "a row of \(row.count) cells in a table of \(columns.count) columns")
        rows.append(row)
    }

    /// Characters on screen; counted by bytes when the text is ASCII, as it nearly always is.
    static func width(_ text: String) -> Int {
        text.utf8.allSatisfy { $0 < 0x80 } ? text.utf8.count : text.count
    }

    public func render() -> String {
        var widths = columns.map { Self.width($0.title) }
        for row in rows {
            for (i, cell) in row.enumerated() {
                let w = Self.width(cell)
                if w > widths[i] { widths[i] = w }
            }
        }
        var out = ""
        func emit(_ cells: [String]) {
            var line = ""
            for (i, cell) in cells.enumerated() {
                if i > 0 { line += "  " }
                let pad = String(repeating: " ", count: widths[i] - Self.width(cell))
                let last = i == cells.count - 1
                switch columns[i].alignment {
                case .left: line += last ? cell : cell + pad
                case .right: line += pad + cell
                }
            }
            while line.last == " " { line.removeLast() }
            out += line + "\n"
        }
        emit(columns.map(\.title))
        for row in rows { emit(row) }
        return out
    }
}

extension String {
    /// Pads on the right to `width` characters (for `key:  value` blocks).
    func padded(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

extension OutputFormat {
    /// A list report: a JSON array of its records, CSV with the header row, or its table.
    func render(records: [Record], header: [String], table: () -> String) -> String {
        switch self {
        case .json: JSON.encode(.array(records.map { .record($0) })) + "\n"
        case .csv: CSV.table(records, header: header)
        case .table: table()
        }
    }
}
