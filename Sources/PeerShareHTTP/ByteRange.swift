/// A request's `Range` header against a body of `size` bytes (RFC 9110, section 14): what
/// to send. One range only: BitTorrent clients ask for one at a time.
public enum ByteRangeRequest: Equatable, Sendable {
    /// No Range header, one in a unit other than bytes, or several ranges (which a server
    /// may answer with the whole body): 200 and everything.
    case whole
    /// Bytes `first...last`, both inside the body: 206.
    case range(first: Int64, last: Int64)
    /// Malformed, or entirely past the end: 416.
    case unsatisfiable

    /// Every number is bounded before arithmetic: at most 19 digits, so it fits in Int64.
    public init(header: String?, size: Int64) {
        guard let header else { self = .whole; return }
        let trimmed = Substring(header).droppingSpaces
        guard trimmed.lowercased().hasPrefix("bytes=") else { self = .whole; return }
        let spec = trimmed.dropFirst("bytes=".count)
        guard !spec.contains(",") else { self = .whole; return }
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).map(\.droppingSpaces)
        guard parts.count == 2 else { self = .unsatisfiable; return }
        func number(_ text: Substring) -> Int64? {
            guard (1...19).contains(text.count), text.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            return Int64(text)
        }
        switch (parts[0].isEmpty, parts[1].isEmpty) {
        case (true, false):
            // The last n bytes.
            guard let suffix = number(parts[1]), suffix > 0, size > 0 else { self = .unsatisfiable; return }
            self = .range(first: max(0, size - suffix), last: size - 1)
        case (false, true):
            guard let first = number(parts[0]), first < size else { self = .unsatisfiable; return }
            self = .range(first: first, last: size - 1)
        case (false, false):
            guard let first = number(parts[0]), let last = number(parts[1]), first <= last, first < size else { self = .unsatisfiable; return }
            self = .range(first: first, last: min(last, size - 1))
        case (true, true):
            self = .unsatisfiable
        }
    }
}

extension Substring {
    fileprivate var droppingSpaces: Substring { drop { $0 == " " } }
}
