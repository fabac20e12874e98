#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PeerShareCore

/// The machine's boot ID: a new one each time the machine starts, so a run that did not stop
/// cleanly, followed by a start under another boot ID, means the machine went down (a power
/// cut, a kernel crash) and not just the process. `PEERSHARE_BOOT_ID_FILE` names a file to
/// read instead of the kernel's: the tests simulate a power cut with it.
public enum BootID {
    public static let kernelFile = "/proc/sys/kernel/random/boot_id"

    public static func current() -> String {
        let path = getenv("PEERSHARE_BOOT_ID_FILE").map { String(cString: $0) } ?? kernelFile
        // The kernel's file reports a size of 0, so read up to a bound instead of its size.
        guard let fd = try? PosixFiles.openForReading(path) else { return "unknown" }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 256)
        let count = (try? bytes.withUnsafeMutableBytes { try PosixFiles.read(fd, into: $0, path: path) }) ?? 0
        let text = String(decoding: bytes[..<count], as: UTF8.self).filter { !$0.isWhitespace }
        return text.isEmpty ? "unknown" : text
    }
}

/// The index's half of crash consistency (docs/STORAGE.md): which layout the folder was made
/// with, commit batches, sync marks, and how the last run ended.
extension ChunkIndex {
    /// The layout recorded for this node's folder; nil for an index from before version 4
    /// (chunk files) or a new one.
    public func storageLayout() throws -> StorageLayout? {
        guard let text = try db.scalarText("SELECT storage FROM node WHERE id = 1") else { return nil }
        guard let layout = StorageLayout(rawValue: text) else { throw IndexError.manifestMismatch("unknown storage layout \(text)") }
        return layout
    }

    public func recordStorageLayout(_ layout: StorageLayout) throws {
        try db.run("UPDATE node SET storage = ? WHERE id = 1 AND storage IS NOT ?", layout.rawValue, layout.rawValue)
    }

    /// The owner's source file, recorded when it is split or indexed.
    public func recordSourcePath(_ path: String) throws {
        try db.run("UPDATE manifest SET source_path = ? WHERE id = 1 AND source_path IS NOT ?", path, path)
    }

    /// The number for the next commit batch: above every batch committed and every mark,
    /// so that a mark never covers a batch committed after it.
    public func nextBatch() throws -> Int64 {
        let rows = try db.scalarInt("SELECT coalesce(max(batch), 0) FROM chunks") ?? 0
        let marks = try db.scalarInt("SELECT coalesce(max(through_batch), 0) FROM sync_marks") ?? 0
        return max(rows, marks) + 1
    }

    /// Every batch up to `batch` is on disk: called after a sync that began once they were
    /// committed had returned.
    public func recordSyncMark(through batch: Int64, bootID: String, now: Int64 = Clock.nowMicros()) throws {
        try db.run("INSERT INTO sync_marks (at, boot_id, through_batch) VALUES (?, ?, ?)", now, bootID, batch)
    }

    /// The highest batch a sync mark covers; 0 when there is none.
    public func syncedThrough() throws -> Int64 {
        try db.scalarInt("SELECT coalesce(max(through_batch), 0) FROM sync_marks") ?? 0
    }

    /// Chunk rows committed after the last sync mark: their bytes were written but may not
    /// have reached the disk.
    public func unsyncedChunks(capacity: Int) throws -> ChunkSet {
        let mark = try syncedThrough()
        var set = ChunkSet(capacity: capacity)
        for id in try db.query("SELECT chunk_id FROM chunks WHERE batch > ?", mark, row: { $0.int(0) }) where id >= 0 && id < capacity {
            set.insert(ChunkID(UInt32(id)))
        }
        return set
    }

    /// How the run before this one ended: whether it stopped cleanly (synced everything and
    /// recorded its stop) and the boot ID it ran under. Nil for the first run.
    public func previousRun() throws -> (stoppedCleanly: Bool, bootID: String?)? {
        try db.query("SELECT stopped_at IS NOT NULL, boot_id FROM runs WHERE id < ? ORDER BY id DESC LIMIT 1", runID) {
            ($0.int(0) != 0, $0.optionalText(1))
        }.first
    }
}
