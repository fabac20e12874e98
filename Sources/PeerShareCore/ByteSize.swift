/// Parses sizes such as `8MiB`, `2.5MiB`, `100KiB`, `17` (bytes) for the command line.
public enum ByteSize {
    public static func parse(_ text: String) -> Int64? {
        let trimmed = text.trimmingSpaces
        let units: [(String, Double)] = [
            ("GiB", 1_073_741_824), ("MiB", 1_048_576), ("KiB", 1024),
            ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("G", 1_073_741_824), ("M", 1_048_576), ("K", 1024), ("B", 1),
        ]
        for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
            guard let number = Double(trimmed.dropLast(suffix.count).trimmingSpaces), number >= 0 else { return nil }
            let value = number * factor
            guard value < 1e18 else { return nil }
            return Int64(value.rounded())
        }
        // A plain number of bytes: never negative.
        guard let bytes = Int64(trimmed), bytes >= 0 else { return nil }
        return bytes
    }

    /// A human-readable size: `2.5 MiB`, `17 B`.
    public static func format(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(bytes) B" }
        let rounded = (value * 10).rounded() / 10
        return "\(rounded) \(units[unit])"
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        String(self.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
