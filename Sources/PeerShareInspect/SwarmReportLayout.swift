import PeerShareCore

/// Scales and colours shared by the sections of the swarm report's page.
///
/// Every time comes from an index, so any may be Int64.min or Int64.max. The time axis is
/// therefore kept as offsets from `start`: an offset is taken through UInt64 (the exact
/// difference of two Int64s fits one) and saturated, the span is a saturating sum, and
/// positions are Doubles. No drawing arithmetic can trap.
struct Layout {
    static let width = 980
    static let left = 110
    static var plotWidth: Int { width - left - 10 }

    let start: Int64
    /// Microseconds from `start` to the right edge of the plot: at least 1.
    let span: Int64
    let bins: Int
    let binMicros: Int64
    let sources: [(name: String, kind: String, colour: String)]
    let summary: String
    private let colours: [String: String]

    /// Colour-blind-friendly categorical colours (Tableau 10, without its grey and red:
    /// those mean "found on disk" and "rejected").
    static let palette = ["#4e79a7", "#f28e2b", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#86bcb6", "#a0cbe8"]

    init(_ report: SwarmReport) {
        let nodes = report.nodes
        let times = nodes.flatMap { $0.runStarts + $0.arrivals.map(\.at) + $0.rejections.map(\.at) }
        start = times.min() ?? 0
        // A little room after the last event, so its mark is not drawn on the frame.
        let last = max(1, Self.offset(of: times.max() ?? start, from: start))
        span = last.saturatingAdd(max(1, last / 50))
        bins = 60
        binMicros = max(1, span / Int64(bins) + (span % Int64(bins) == 0 ? 0 : 1))
        (colours, sources) = Self.colours(nodes)
        let file = nodes.first { $0.fileName != nil }
        summary = [
            file.map { "\($0.fileName!), \(ByteSize.format($0.fileSize ?? 0)), \($0.chunkCount ?? 0) chunks" },
            "\(nodes.count) node\(nodes.count == 1 ? "" : "s")",
            "from \(Timestamp.short(start)) UTC, \(Human.duration(span))",
        ].compactMap { $0 }.joined(separator: "; ")
    }

    /// Every name that is a node or a source gets one colour everywhere: peer2's chunks
    /// are peer2's colour in every row, and peer2's own rate line too.
    private static func colours(_ nodes: [SwarmReport.Node]) -> ([String: String], [(name: String, kind: String, colour: String)]) {
        var names: [String: String] = [:]
        for node in nodes where node.role == "peer" { names[node.name] = "peer" }
        for node in nodes { for arrival in node.arrivals where names[arrival.source] == nil { names[arrival.source] = arrival.sourceKind } }
        let rank = ["file": 0, "owner": 1, "peer": 2]
        let ordered = names.sorted { a, b in
            let (ra, rb) = (rank[a.value] ?? 3, rank[b.value] ?? 3)
            if ra != rb { return ra < rb }
            return a.key.count != b.key.count ? a.key.count < b.key.count : a.key < b.key  // peer2 before peer10
        }
        var colours: [String: String] = [:]
        var next = 0
        var listed: [(name: String, kind: String, colour: String)] = []
        for (name, kind) in ordered {
            let colour: String
            switch kind {
            case "owner": colour = "#222"
            case "file": colour = "#bbb"
            default:
                colour = palette[next % palette.count]
                next += 1
            }
            colours[name] = colour
            if nodes.contains(where: { $0.arrivals.contains { $0.source == name } }) { listed.append((name, kind, colour)) }
        }
        return (colours, listed)
    }

    func colour(_ arrival: SwarmReport.Arrival) -> String { colours[arrival.source] ?? "#bbb" }

    /// Microseconds from `start` to `at`: 0 before it, Int64.max at most.
    static func offset(of at: Int64, from start: Int64) -> Int64 {
        at <= start ? 0 : Int64(clamping: UInt64(bitPattern: at &- start))
    }

    func x(_ at: Int64) -> Double { x(offset: Self.offset(of: at, from: start)) }

    func x(offset: Int64) -> Double {
        Double(Self.left) + Double(Self.plotWidth) * Double(min(offset, span)) / Double(span)
    }

    /// Where time slice `bin` begins, as an offset from `start` (Int64.max if past it).
    func binStart(_ bin: Int) -> Int64 {
        let (offset, overflow) = Int64(bin).multipliedReportingOverflow(by: binMicros)
        return overflow ? .max : offset
    }

    func binX(_ bin: Int) -> Double { x(offset: min(span, binStart(bin))) }

    /// Per time slice, bytes of held chunks received per second from each source, in the
    /// legend's order. Sizes come from rows, so a slice's sum saturates.
    func bytesPerSecond(_ node: SwarmReport.Node) -> [[(source: String, colour: String, rate: Double)]] {
        var bytes = [[String: Int64]](repeating: [:], count: bins)
        for arrival in node.arrivals where arrival.sourceKind != "file" {
            let bin = Int(min(Int64(bins - 1), Self.offset(of: arrival.at, from: start) / binMicros))
            bytes[bin][arrival.source] = (bytes[bin][arrival.source] ?? 0).saturatingAdd(arrival.bytes)
        }
        return bytes.map { slice in
            sources.compactMap { source in
                slice[source.name].map { (source.name, source.colour, Double($0) * 1_000_000 / Double(binMicros)) }
            }
        }
    }
}
