import Foundation
import PeerShareCore

/// What one progress line shows: a node's chunks held out of the manifest's, and how fast
/// they are arriving. A value, so that rendering is a pure function tested at its edges.
public struct ProgressState: Sendable, Equatable {
    public var label: String
    public var heldChunks: Int
    public var heldBytes: Int64
    /// The manifest's chunk and byte counts; nil until the manifest is known.
    public var total: (chunks: Int, bytes: Int64)?
    /// Recent arrival rate; nil until measured.
    public var bytesPerSecond: Double?
    /// A word after the figures: "assembled", "exit 0", "waiting for the owner".
    public var note: String?

    public init(label: String, heldChunks: Int, heldBytes: Int64, total: (chunks: Int, bytes: Int64)?, bytesPerSecond: Double? = nil, note: String? = nil) {
        self.label = label
        self.heldChunks = heldChunks
        self.heldBytes = heldBytes
        self.total = total
        self.bytesPerSecond = bytesPerSecond
        self.note = note
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.label == b.label && a.heldChunks == b.heldChunks && a.heldBytes == b.heldBytes && a.total?.chunks == b.total?.chunks
            && a.total?.bytes == b.total?.bytes && a.bytesPerSecond == b.bytesPerSecond && a.note == b.note
    }

    /// 0...1, or nil with no manifest yet. An empty file is complete.
    public var fraction: Double? {
        guard let total else { return nil }
        guard total.chunks > 0 else { return 1 }
        return min(1, max(0, Double(heldChunks) / Double(total.chunks)))
    }

    public var isComplete: Bool { total.map { heldChunks >= $0.chunks } ?? false }

    /// Seconds left at the current rate; nil when unknown (no total, no rate, or a stalled rate).
    public var secondsLeft: Double? {
        guard let total, let rate = bytesPerSecond, rate > 0 else { return nil }
        // In Double: the byte counts come from an index, and their difference could overflow.
        return max(0, Double(total.bytes) - Double(heldBytes)) / rate
    }
}

/// Renders a `ProgressState` as one line of at most `width - 1` characters (the last column
/// stays empty, so a terminal never wraps the line), e.g.
/// `peer3 [##########..........] 41/82 chunks  50%  3.1 MiB/s  ETA 0:02`.
/// The bar takes the room left over, up to 40 columns; on narrow terminals the bar, then
/// the note, the rate, the ETA and the label are dropped, and whatever remains is cut.
public enum ProgressLine {
    public static let maximumBarWidth = 40
    static let minimumBarWidth = 5
    /// Room kept for a short note ("assembled", "exit 0") when sizing the bar.
    static let reservedForNote = 10

    public static func render(_ state: ProgressState, width: Int) -> String {
        let room = width - 1
        guard room > 0 else { return "" }
        var label: String? = state.label.isEmpty ? nil : state.label
        // With a total, every field has a fixed width: the line does not jitter as the rate
        // changes, and the bars of the demo's lines (one per peer) line up.
        let known = state.total != nil
        let counts = state.total.map { pad(String(state.heldChunks), to: String($0.chunks).count) + "/\($0.chunks) chunks" } ?? "\(state.heldChunks)/? chunks"
        let percent = state.fraction.map { String(format: "%3d%%", Int(($0 * 100).rounded(.down))) }
        var rate: String? = known ? pad(state.bytesPerSecond.map { ByteSize.format(Int64(exactly: $0.rounded()) ?? .max) + "/s" } ?? "", to: 12) : nil
        var eta: String? = known ? (state.isComplete ? "done" : "ETA " + (state.secondsLeft.map(clock) ?? "--")).padding(toLength: 11, withPad: " ", startingAt: 0) : nil
        var note = state.note

        func line(bar: Int?) -> String {
            var parts: [String] = []
            if let label { parts.append(label) }
            if let bar, let fraction = state.fraction {
                let filled = Int((fraction * Double(bar)).rounded(.down))
                parts.append("[" + String(repeating: "#", count: filled) + String(repeating: ".", count: bar - filled) + "]")
            }
            parts.append(counts)
            if let percent { parts.append(percent) }
            if let rate { parts.append(rate) }
            if let eta { parts.append(eta) }
            if let note { parts.append(note) }
            return parts.joined(separator: " ")
        }
        // Fields are padded for alignment; the padding is measured but not written at the end.
        func trimmed(_ text: String) -> String {
            String(text.reversed().drop(while: { $0 == " " }).reversed())
        }

        // Without a total there is nothing to fill a bar with. The bar's width does not
        // depend on the note (which is dropped if it does not fit), so bars line up.
        if state.fraction != nil {
            let kept = note
            note = nil
            let spare = room - line(bar: nil).count - 3 - reservedForNote  // brackets and a space
            note = kept
            if spare >= minimumBarWidth {
                let bar = min(spare, maximumBarWidth)
                if line(bar: bar).count <= room { return trimmed(line(bar: bar)) }
                note = nil
                return trimmed(line(bar: bar))
            }
        }
        var text = trimmed(line(bar: nil))
        for drop in [{ note = nil }, { rate = nil }, { eta = nil }, { label = nil }] where text.count > room {
            drop()
            text = trimmed(line(bar: nil))
        }
        return String(text.prefix(room))
    }

    private static func pad(_ text: String, to width: Int) -> String {
        String(repeating: " ", count: max(0, width - text.count)) + text
    }

    /// `0:07`, `12:34`, `1:02:03`; `>99h` beyond that.
    static func clock(_ seconds: Double) -> String {
        // Compared before converting: a near-zero rate gives an ETA no Int can hold (or NaN).
        guard seconds < 100 * 3600 else { return seconds.isNaN ? "--:--" : ">99h" }
        let total = Int(max(0, seconds).rounded(.up))
        let (h, m, s) = (total / 3600, total / 60 % 60, total % 60)
        return h > 0 ? String(format: "%d:%02d:%02d", h, m, s) : String(format: "%d:%02d", m, s)
    }
}

/// The arrival rate over the last few seconds, from (time, bytes held) samples.
public struct RateMeter: Sendable {
    public let window: Double
    private var samples: [(seconds: Double, bytes: Int64)] = []

    public init(window: Double = 5) { self.window = window }

    public mutating func add(seconds: Double, bytes: Int64) {
        // Bytes held can fall (a damaged chunk dropped at start-up): start the window afresh.
        if let last = samples.last, bytes < last.bytes { samples.removeAll() }
        samples.append((seconds, bytes))
        while let first = samples.first, seconds - first.seconds > window, samples.count > 2 { samples.removeFirst() }
    }

    /// Bytes per second across the window; nil until two samples span a quarter second.
    public var bytesPerSecond: Double? {
        guard let first = samples.first, let last = samples.last, last.seconds - first.seconds >= 0.25 else { return nil }
        return (Double(last.bytes) - Double(first.bytes)) / (last.seconds - first.seconds)
    }
}
