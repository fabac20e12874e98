import Foundation
import PeerShareCore

/// The page of a `SwarmReport`: well-formed XML (XHTML-style, so an XML parser can check
/// it), inline SVG, inline CSS, no scripts and no references to anything outside the file.
extension SwarmReport {
    public func html(title: String = "PeerShare swarm") -> String {
        let layout = Layout(self)
        var page = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8"/>
            <title>\(xml(title))</title>
            <style>
            body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
            h1 { font-size: 20px; margin: 0 0 4px; }
            h2 { font-size: 16px; margin: 28px 0 4px; }
            p.note { color: #555; margin: 0 0 8px; max-width: 960px; }
            table { border-collapse: collapse; margin: 8px 0; }
            td, th { padding: 2px 10px 2px 0; text-align: left; font-variant-numeric: tabular-nums; }
            th { border-bottom: 1px solid #ccc; }
            .legend span { display: inline-block; margin-right: 14px; }
            .legend i { display: inline-block; width: 11px; height: 11px; margin-right: 4px; vertical-align: -1px; }
            svg { display: block; margin: 6px 0; }
            svg text { font: 11px system-ui, sans-serif; fill: #333; }
            svg text.axis { fill: #888; font-size: 10px; }
            </style>
            </head>
            <body>

            """
        page += "<h1>\(xml(title))</h1>\n"
        page += "<p class=\"note\">\(xml(layout.summary))</p>\n"
        page += summaryTable(layout)
        page += legend(layout)
        page += "<h2>Timeline: when each chunk arrived, and from whom</h2>\n"
        page += "<p class=\"note\">One row per node; across, time since the first start; down, the chunk ID (0 at the top). Each mark is a chunk held, coloured by its source. Dashed lines are restarts; red crosses are rejected chunks.</p>\n"
        page += timeline(layout)
        page += "<h2>Chunk map: who sent each chunk</h2>\n"
        page += "<p class=\"note\">One grid per node, chunk 0 at the top left, row by row. Empty cells are chunks not held.</p>\n"
        page += chunkMap(layout)
        page += "<h2>Throughput: chunk bytes received per second</h2>\n"
        page += "<p class=\"note\">Per node, over the same time axis as the timeline, in \(layout.bins) slices of \(xml(Human.duration(layout.binMicros))). Dashed lines are restarts; red crosses are rejected chunks.</p>\n"
        page += throughput(layout)
        page += "</body>\n</html>\n"
        return page
    }

    // MARK: Sections

    private func summaryTable(_ layout: Layout) -> String {
        var out = "<table class=\"summary\">\n<tr><th>node</th><th>chunks held</th><th>from</th><th>restarts</th><th>rejected</th><th>complete after</th></tr>\n"
        for node in nodes {
            let total = node.chunkCount.map { "/\($0)" } ?? "/?"
            var counts: [String: Int] = [:]
            for arrival in node.arrivals { counts[arrival.source, default: 0] += 1 }
            let from = layout.sources.filter { counts[$0.name] != nil }.map { "\($0.name) \(counts[$0.name]!)" }.joined(separator: ", ")
            let complete = node.chunkCount.flatMap { count -> String? in
                guard count > 0, node.arrivals.count >= count, let first = node.runStarts.first, let last = node.arrivals.map(\.at).max() else { return nil }
                return Human.duration(last - first)
            } ?? "-"
            out += "<tr><td>\(xml(node.name))</td><td>\(node.arrivals.count)\(total)</td><td>\(xml(from))</td><td>\(node.restarts.count)</td><td>\(node.rejections.count)</td><td>\(xml(complete))</td></tr>\n"
        }
        return out + "</table>\n"
    }

    private func legend(_ layout: Layout) -> String {
        var out = "<p class=\"legend\">"
        for source in layout.sources {
            out += "<span><i style=\"background:\(source.colour)\"></i>\(xml(source.name))</span>"
        }
        out += "<span><b style=\"color:#d62728\">\u{2715}</b> rejected</span></p>\n"
        return out
    }

    private func timeline(_ layout: Layout) -> String {
        let rowHeight = 80.0, gap = 14.0, top = 8.0
        let height = top + Double(nodes.count) * (rowHeight + gap) + 24
        var svg = "<svg class=\"timeline\" width=\"\(Layout.width)\" height=\"\(n(height))\" viewBox=\"0 0 \(Layout.width) \(n(height))\" role=\"img\">\n"
        for (row, node) in nodes.enumerated() {
            let y0 = top + Double(row) * (rowHeight + gap)
            let chunks = max(1, node.chunkCount ?? (node.arrivals.map(\.chunk).max().map { $0 + 1 } ?? 1))
            svg += "<g class=\"peer-row\" data-node=\"\(xml(node.name))\">\n"
            svg += "<text x=\"0\" y=\"\(n(y0 + 14))\">\(xml(node.name))</text>\n"
            svg += "<text x=\"0\" y=\"\(n(y0 + 28))\">\(node.arrivals.count) chunks</text>\n"
            svg += "<rect x=\"\(Layout.left)\" y=\"\(n(y0))\" width=\"\(Layout.plotWidth)\" height=\"\(n(rowHeight))\" fill=\"#f7f7f7\" stroke=\"#ddd\"/>\n"
            // The chunk-ID axis: first and last chunk at the plot's left edge.
            svg += "<text class=\"axis\" x=\"\(Layout.left - 4)\" y=\"\(n(y0 + 9))\" text-anchor=\"end\">0</text>\n"
            svg += "<text class=\"axis\" x=\"\(Layout.left - 4)\" y=\"\(n(y0 + rowHeight - 1))\" text-anchor=\"end\">\(chunks - 1)</text>\n"
            svg += restartLines(node, layout, top: y0, height: rowHeight)
            for arrival in node.arrivals {
                let x = layout.x(arrival.at)
                let y = y0 + 2 + (rowHeight - 7) * Double(arrival.chunk) / Double(max(1, chunks - 1))
                svg += "<rect class=\"arrival\" data-chunk=\"\(arrival.chunk)\" x=\"\(n(x - 1.5))\" y=\"\(n(y))\" width=\"3\" height=\"3\" fill=\"\(layout.colour(arrival))\">"
                svg += "<title>chunk \(arrival.chunk) from \(xml(arrival.source)) at \(Timestamp.short(arrival.at))</title></rect>\n"
            }
            for rejection in node.rejections {
                let y = y0 + 2 + (rowHeight - 7) * Double(rejection.chunk) / Double(max(1, chunks - 1))
                svg += cross(x: layout.x(rejection.at), y: y + 1.5, rejection: rejection)
            }
            svg += "</g>\n"
        }
        svg += axis(layout, y: top + Double(nodes.count) * (rowHeight + gap) - gap + 14)
        return svg + "</svg>\n"
    }

    private func chunkMap(_ layout: Layout) -> String {
        let largest = Int(nodes.compactMap(\.chunkCount).max() ?? 0)
        // Cells as large as fit one row (up to 14 px), shrunk (down to 2 px, with more
        // columns) until a node's grid is at most 240 px tall: 10,000 chunks stay a block.
        var cell = min(14.0, Double(Layout.plotWidth) / Double(max(1, min(largest, 100))))
        func columns(_ cell: Double) -> Int { max(1, min(max(1, largest), Int(Double(Layout.plotWidth) / cell))) }
        while cell > 2, Double((largest + columns(cell) - 1) / columns(cell)) * cell > 240 { cell -= 0.5 }
        let columns = columns(cell)
        let gridRows = max(1, (largest + columns - 1) / columns)
        let blockHeight = Double(gridRows) * cell + 10
        let height = Double(nodes.count) * blockHeight + 8
        var svg = "<svg class=\"chunk-map\" width=\"\(Layout.width)\" height=\"\(n(height))\" viewBox=\"0 0 \(Layout.width) \(n(height))\" role=\"img\">\n"
        for (row, node) in nodes.enumerated() {
            let y0 = 4 + Double(row) * blockHeight
            let source = Dictionary(node.arrivals.map { ($0.chunk, $0) }, uniquingKeysWith: { $1 })
            svg += "<g class=\"map-row\" data-node=\"\(xml(node.name))\">\n"
            svg += "<text x=\"0\" y=\"\(n(y0 + min(cell, 12) - 1))\">\(xml(node.name))</text>\n"
            let count = Int(node.chunkCount ?? Int64(node.arrivals.map(\.chunk).max().map { $0 + 1 } ?? 0))
            for id in 0..<count {
                let x = Double(Layout.left) + Double(id % columns) * cell
                let y = y0 + Double(id / columns) * cell
                let size = n(max(1, cell - 1))
                if let arrival = source[Int64(id)] {
                    svg += "<rect class=\"cell\" data-chunk=\"\(id)\" x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(size)\" height=\"\(size)\" fill=\"\(layout.colour(arrival))\"><title>chunk \(id) from \(xml(arrival.source))</title></rect>\n"
                } else {
                    svg += "<rect class=\"cell missing\" data-chunk=\"\(id)\" x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(size)\" height=\"\(size)\" fill=\"#fff\" stroke=\"#ccc\" stroke-width=\"0.5\"><title>chunk \(id): not held</title></rect>\n"
                }
            }
            svg += "</g>\n"
        }
        return svg + "</svg>\n"
    }

    private func throughput(_ layout: Layout) -> String {
        let rowHeight = 60.0, gap = 14.0, top = 8.0
        let series = nodes.map { layout.bytesPerSecond($0) }
        let totals = series.map { bins in bins.map { $0.reduce(0) { $0 + $1.rate } } }
        let peak = max(1, totals.flatMap { $0 }.max() ?? 1)
        let height = top + Double(nodes.count) * (rowHeight + gap) + 24
        var svg = "<svg class=\"throughput\" width=\"\(Layout.width)\" height=\"\(n(height))\" viewBox=\"0 0 \(Layout.width) \(n(height))\" role=\"img\">\n"
        for (row, node) in nodes.enumerated() {
            let y0 = top + Double(row) * (rowHeight + gap)
            let base = y0 + rowHeight
            svg += "<g class=\"rate-row\" data-node=\"\(xml(node.name))\">\n"
            svg += "<text x=\"0\" y=\"\(n(y0 + 14))\">\(xml(node.name))</text>\n"
            svg += "<text x=\"0\" y=\"\(n(y0 + 28))\">peak \(xml(Human.rate(Int64((totals[row].max() ?? 0).rounded()))))</text>\n"
            svg += "<rect x=\"\(Layout.left)\" y=\"\(n(y0))\" width=\"\(Layout.plotWidth)\" height=\"\(n(rowHeight))\" fill=\"#f7f7f7\" stroke=\"#ddd\"/>\n"
            // One bar per time slice, stacked by source in the sources' colours, so the
            // rate reads with the same colours as the timeline above.
            for (bin, parts) in series[row].enumerated() {
                var y = base
                let x = layout.binX(bin), width = max(0.5, layout.binX(bin + 1) - x - 0.5)
                for part in parts where part.rate > 0 {
                    let h = (rowHeight - 4) * part.rate / peak
                    y -= h
                    svg += "<rect class=\"rate\" x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(width))\" height=\"\(n(max(0.5, h)))\" fill=\"\(part.colour)\">"
                    svg += "<title>\(xml(Human.rate(Int64(part.rate.rounded())))) from \(xml(part.source)) at +\(xml(Human.duration(Int64(bin) * layout.binMicros)))</title></rect>\n"
                }
            }
            svg += restartLines(node, layout, top: y0, height: rowHeight)
            for rejection in node.rejections { svg += cross(x: layout.x(rejection.at), y: base - 5, rejection: rejection) }
            svg += "</g>\n"
        }
        svg += "<text x=\"\(Layout.left)\" y=\"\(n(height - 4))\">all rows share one scale: full height is \(xml(Human.rate(Int64(peak.rounded()))))</text>\n"
        return svg + "</svg>\n"
    }

    // MARK: Marks

    private func restartLines(_ node: Node, _ layout: Layout, top: Double, height: Double) -> String {
        node.restarts.map { at in
            let x = n(layout.x(at))
            return "<line class=\"restart\" x1=\"\(x)\" y1=\"\(n(top))\" x2=\"\(x)\" y2=\"\(n(top + height))\" stroke=\"#333\" stroke-dasharray=\"4 3\"><title>restart at \(Timestamp.short(at))</title></line>\n"
        }.joined()
    }

    private func cross(x: Double, y: Double, rejection: Rejection) -> String {
        let d = 3.5
        return "<path class=\"rejection\" data-chunk=\"\(rejection.chunk)\" d=\"M\(n(x - d)) \(n(y - d))L\(n(x + d)) \(n(y + d))M\(n(x - d)) \(n(y + d))L\(n(x + d)) \(n(y - d))\" stroke=\"#d62728\" stroke-width=\"1.5\">"
            + "<title>rejected chunk \(rejection.chunk) from \(xml(rejection.source)) at \(Timestamp.short(rejection.at))\(xml(rejection.detail.map { ": " + $0 } ?? ""))</title></path>\n"
    }

    private func axis(_ layout: Layout, y: Double) -> String {
        var out = ""
        let ticks = 6
        for i in 0...ticks {
            let at = layout.start + (layout.end - layout.start) * Int64(i) / Int64(ticks)
            let x = layout.x(at)
            let anchor = i == 0 ? "start" : i == ticks ? "end" : "middle"
            let label = i == 0 ? "0" : "+" + Human.duration(at - layout.start)
            out += "<text x=\"\(n(x))\" y=\"\(n(y))\" text-anchor=\"\(anchor)\">\(xml(label))</text>\n"
        }
        return out
    }
}

/// Scales and colours shared by the sections.
struct Layout {
    static let width = 980
    static let left = 110
    static var plotWidth: Int { width - left - 10 }

    let start: Int64
    let end: Int64
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
        let last = max(start + 1, times.max() ?? 0)
        end = last + max(1, (last - start) / 50)
        bins = 60
        binMicros = max(1, (end - start + Int64(bins) - 1) / Int64(bins))

        // Every name that is a node or a source gets one colour everywhere: peer2's chunks
        // are peer2's colour in every row, and peer2's own rate line too.
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
        var listed: [(String, String, String)] = []
        for (name, kind) in ordered {
            let colour: String
            switch kind {
            case "owner": colour = "#222"
            case "file": colour = "#bbb"
            default:
                colour = Self.palette[next % Self.palette.count]
                next += 1
            }
            colours[name] = colour
            if nodes.contains(where: { $0.arrivals.contains { $0.source == name } }) { listed.append((name, kind, colour)) }
        }
        self.colours = colours
        sources = listed
        let file = nodes.first { $0.fileName != nil }
        summary = [
            file.map { "\($0.fileName!), \(ByteSize.format($0.fileSize ?? 0)), \($0.chunkCount ?? 0) chunks" },
            "\(nodes.count) node\(nodes.count == 1 ? "" : "s")",
            "from \(Timestamp.short(start)) UTC, \(Human.duration(end - start))",
        ].compactMap { $0 }.joined(separator: "; ")
    }

    func colour(_ arrival: SwarmReport.Arrival) -> String { colours[arrival.source] ?? "#bbb" }

    func x(_ at: Int64) -> Double {
        Double(Self.left) + Double(Self.plotWidth) * Double(at - start) / Double(end - start)
    }

    func binX(_ bin: Int) -> Double { x(min(end, start + Int64(bin) * binMicros)) }

    /// Per time slice, bytes of held chunks received per second from each source, in the
    /// legend's order.
    func bytesPerSecond(_ node: SwarmReport.Node) -> [[(source: String, colour: String, rate: Double)]] {
        var bytes = [[String: Int64]](repeating: [:], count: bins)
        for arrival in node.arrivals where arrival.sourceKind != "file" {
            bytes[min(bins - 1, max(0, Int((arrival.at - start) / binMicros)))][arrival.source, default: 0] += arrival.bytes
        }
        return bytes.map { slice in
            sources.compactMap { source in
                slice[source.name].map { (source.name, source.colour, Double($0) * 1_000_000 / Double(binMicros)) }
            }
        }
    }
}

/// Text for XML content and attribute values.
func xml(_ text: String) -> String {
    var out = ""
    for c in text.unicodeScalars {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        // XML 1.0 allows no other control characters, even escaped.
        case _ where c.value < 0x20 && c != "\n" && c != "\t": out += "\u{FFFD}"
        default: out.unicodeScalars.append(c)
        }
    }
    return out
}

/// A coordinate with at most one decimal.
private func n(_ value: Double) -> String {
    let rounded = (value * 10).rounded() / 10
    return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
}
