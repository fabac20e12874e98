import PeerShareCore

/// `GET /status` as JSON (docs/WATCHING.md "Status"): snake_case keys, times in
/// milliseconds, chunk sets as inclusive [first, last] ranges.
extension NodeStatus {
    /// Ranges listed at most, per set: a fragmented set of a large file stays a small answer.
    static let rangeLimit = 1_000

    public var json: String {
        var out = "{"
        field("node", string: node, &out)
        field("role", string: role, &out)
        field("phase", string: phase.rawValue, &out)
        field("private", isPrivate ? "true" : "false", &out)
        if let file {
            var f = "{"
            field("name", string: file.name, &f)
            field("size", "\(file.size)", &f)
            field("chunk_size", "\(file.chunkSize)", &f)
            field("chunks", "\(file.chunkCount)", &f)
            field("file_id", string: file.fileID, &f)
            field("file", f + "}", &out)
        } else {
            field("file", "null", &out)
        }
        field("held", Self.chunkSet(held, complement: false), &out)
        field("missing", Self.chunkSet(held, complement: true), &out)
        field("in_flight", "[" + inFlight.map { request in
            var r = "{"
            field("chunk", "\(request.chunk.rawValue)", &r)
            field("source", string: request.source, &r)
            field("age_ms", "\(request.ageMicros / 1000)", &r)
            return r + "}"
        }.joined(separator: ",") + "]", &out)
        field("neighbours", "[" + neighbours.map { neighbour in
            var n = "{"
            field("name", string: neighbour.name, &n)
            field("address", string: neighbour.address, &n)
            field("offers", "\(neighbour.offered)", &n)
            field("offers_missing", "\(neighbour.useful)", &n)
            field("bytes_per_second", "\(neighbour.bytesPerSecond)", &n)
            return n + "}"
        }.joined(separator: ",") + "]", &out)
        field("owner_fallback", ownerFallback == nil ? "false" : "true", &out)
        field("owner_fallback_reason", ownerFallback.map(JSONString.quoted) ?? "null", &out)
        field("connections", "{\"in\":\(connectionsIn),\"out\":\(connectionsOut)}", &out)
        field("upload_slots", uploadSlots.map { "{\"in_use\":\($0.inUse),\"capacity\":\($0.capacity),\"waiting\":\($0.waiting)}" } ?? "null", &out)
        field("sync", "{\"committed_through_batch\":\(sync.committedThrough),\"synced_through_batch\":\(sync.syncedThrough),"
              + "\"unsynced_bytes\":\(sync.unsyncedBytes),\"lag_ms\":\(sync.lagMicros / 1000)}", &out)
        field("failure", failure.map(JSONString.quoted) ?? "null", &out)
        return out + "}\n"
    }

    private func field(_ key: String, _ rawValue: String, _ out: inout String) {
        if out.utf8.last != UInt8(ascii: "{") { out += "," }
        JSONString.append(key, to: &out)
        out += ":" + rawValue
    }

    private func field(_ key: String, string value: String, _ out: inout String) {
        field(key, JSONString.quoted(value), &out)
    }

    /// `{"count": N, "ranges": [[a, b], …], "ranges_truncated": bool}`, of the set or of what it lacks.
    static func chunkSet(_ set: ChunkSet, complement: Bool) -> String {
        let chosen = complement ? set.complement : set
        let runs = chosen.runs
        let list = runs.prefix(rangeLimit).map { "[\($0.lowerBound),\($0.upperBound)]" }.joined(separator: ",")
        return "{\"count\":\(chosen.count),\"ranges\":[\(list)],\"ranges_truncated\":\(runs.count > rangeLimit)}"
    }
}
