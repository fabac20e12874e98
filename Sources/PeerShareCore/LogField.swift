/// The metadata keys a node attaches to the log line of an event, named like the columns of
/// the index's `events` rows (and `peershare-inspect events --format json`). The node sets
/// them from the same `EventRecord` it stores; the JSON log handler writes them out.
public enum LogField {
    /// When the event happened: integer microseconds since the Unix epoch, as stored.
    public static let at = "at"
    /// The `EventKind` name, e.g. `chunk_received`.
    public static let kind = "kind"
    public static let chunkID = "chunk_id"
    /// `file`, `owner` or `peer`.
    public static let sourceKind = "source_kind"
    /// The sender or receiver's name, e.g. `peer2`.
    public static let source = "source"
}
