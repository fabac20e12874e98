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
                return Bounded.difference(last, first).map(Human.duration)
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
            let chunks = max(1, node.drawnChunkCount)
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
                let y = chunkY(arrival.chunk, chunks: chunks, top: y0, height: rowHeight)
                svg += "<rect class=\"arrival\" data-chunk=\"\(arrival.chunk)\" x=\"\(n(x - 1.5))\" y=\"\(n(y))\" width=\"3\" height=\"3\" fill=\"\(layout.colour(arrival))\">"
                svg += "<title>chunk \(arrival.chunk) from \(xml(arrival.source)) at \(Timestamp.short(arrival.at))</title></rect>\n"
            }
            for rejection in node.rejections {
                let y = chunkY(rejection.chunk, chunks: chunks, top: y0, height: rowHeight)
                svg += cross(x: layout.x(rejection.at), y: y + 1.5, rejection: rejection)
            }
            svg += "</g>\n"
        }
        svg += axis(layout, y: top + Double(nodes.count) * (rowHeight + gap) - gap + 14)
        return svg + "</svg>\n"
    }

    /// At most this many cells in a node's chunk map: past it each cell stands for a run of
    /// chunks, so a manifest of millions of chunks draws megabytes of page, not gigabytes.
    static let maximumMapCells = 20_000

    private func chunkMap(_ layout: Layout) -> String {
        let largest = nodes.map(\.drawnChunkCount).max() ?? 0
        let perCell = max(1, (largest + Self.maximumMapCells - 1) / Self.maximumMapCells)
        let grid = MapGrid(cells: (largest + perCell - 1) / perCell)
        let blockHeight = Double(grid.rows) * grid.side + 10
        let height = Double(nodes.count) * blockHeight + 8
        var svg = "<svg class=\"chunk-map\" width=\"\(Layout.width)\" height=\"\(n(height))\" viewBox=\"0 0 \(Layout.width) \(n(height))\" role=\"img\">\n"
        for (row, node) in nodes.enumerated() {
            let y0 = 4 + Double(row) * blockHeight
            let count = node.drawnChunkCount
            // Per cell: its latest arrival, and how many of its chunks are held.
            var held: [Int: (arrival: Arrival, chunks: Int)] = [:]
            for arrival in node.arrivals {
                guard let id = Bounded.chunkIndex(arrival.chunk), id < count else { continue }
                held[id / perCell] = (arrival, (held[id / perCell]?.chunks ?? 0) + 1)
            }
            svg += "<g class=\"map-row\" data-node=\"\(xml(node.name))\">\n"
            svg += "<text x=\"0\" y=\"\(n(y0 + min(grid.side, 12) - 1))\">\(xml(node.name))</text>\n"
            for cell in 0..<(count + perCell - 1) / perCell {
                let first = cell * perCell
                let x = Double(Layout.left) + Double(cell % grid.columns) * grid.side
                let y = y0 + Double(cell / grid.columns) * grid.side
                svg += mapCell(first...(min(count, first + perCell) - 1), held: held[cell], x: x, y: y, side: grid.side, layout)
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
            svg += "<text x=\"0\" y=\"\(n(y0 + 28))\">peak \(xml(Human.rate(approximately: totals[row].max() ?? 0)))</text>\n"
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
                    svg += "<title>\(xml(Human.rate(approximately: part.rate))) from \(xml(part.source)) at +\(xml(Human.duration(layout.binStart(bin))))</title></rect>\n"
                }
            }
            svg += restartLines(node, layout, top: y0, height: rowHeight)
            for rejection in node.rejections { svg += cross(x: layout.x(rejection.at), y: base - 5, rejection: rejection) }
            svg += "</g>\n"
        }
        svg += "<text x=\"\(Layout.left)\" y=\"\(n(height - 4))\">all rows share one scale: full height is \(xml(Human.rate(approximately: peak)))</text>\n"
        return svg + "</svg>\n"
    }

    // MARK: Marks

    private func restartLines(_ node: Node, _ layout: Layout, top: Double, height: Double) -> String {
        node.restarts.map { at in
            let x = n(layout.x(at))
            return "<line class=\"restart\" x1=\"\(x)\" y1=\"\(n(top))\" x2=\"\(x)\" y2=\"\(n(top + height))\" stroke=\"#333\" stroke-dasharray=\"4 3\"><title>restart at \(Timestamp.short(at))</title></line>\n"
        }.joined()
    }

    /// A chunk's height in a timeline row; an ID outside the drawn range sits on the nearer edge.
    private func chunkY(_ chunk: Int64, chunks: Int, top: Double, height: Double) -> Double {
        top + 2 + (height - 7) * min(1, max(0, Double(chunk) / Double(max(1, chunks - 1))))
    }

    private func mapCell(_ chunks: ClosedRange<Int>, held: (arrival: Arrival, chunks: Int)?, x: Double, y: Double, side: Double, _ layout: Layout) -> String {
        let size = n(max(1, side - 1))
        let what = chunks.count == 1 ? "chunk \(chunks.lowerBound)" : "chunks \(chunks.lowerBound) to \(chunks.upperBound)"
        let place = "data-chunk=\"\(chunks.lowerBound)\" x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(size)\" height=\"\(size)\""
        guard let held else {
            return "<rect class=\"cell missing\" \(place) fill=\"#fff\" stroke=\"#ccc\" stroke-width=\"0.5\"><title>\(what): not held</title></rect>\n"
        }
        let source = xml(held.arrival.source)
        let title = chunks.count == 1 ? "\(what) from \(source)" : "\(what): \(held.chunks) held, the latest from \(source)"
        return "<rect class=\"cell\" \(place) fill=\"\(layout.colour(held.arrival))\"><title>\(title)</title></rect>\n"
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
            // i/ticks of the span, exactly, without multiplying the span (it may be near Int64.max).
            let (whole, part) = layout.span.quotientAndRemainder(dividingBy: Int64(ticks))
            let offset = whole * Int64(i) + part * Int64(i) / Int64(ticks)
            let x = layout.x(offset: offset)
            let anchor = i == 0 ? "start" : i == ticks ? "end" : "middle"
            let label = i == 0 ? "0" : "+" + Human.duration(offset)
            out += "<text x=\"\(n(x))\" y=\"\(n(y))\" text-anchor=\"\(anchor)\">\(xml(label))</text>\n"
        }
        return out
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

/// Cells as large as fit one row (up to 14 px), shrunk (down to 2 px, with more columns)
/// until a node's grid is at most 240 px tall: 10,000 chunks stay a block.
private struct MapGrid {
    let side: Double
    let columns: Int
    let rows: Int

    init(cells: Int) {
        var side = min(14.0, Double(Layout.plotWidth) / Double(max(1, min(cells, 100))))
        func columns(_ side: Double) -> Int { max(1, min(max(1, cells), Int(Double(Layout.plotWidth) / side))) }
        while side > 2, Double((cells + columns(side) - 1) / columns(side)) * side > 240 { side -= 0.5 }
        self.side = side
        self.columns = columns(side)
        rows = max(1, (cells + self.columns - 1) / self.columns)
    }
}

/// A coordinate with at most one decimal (held within ±10⁹, so Int() cannot trap).
private func n(_ value: Double) -> String {
    let rounded = (min(1e9, max(-1e9, value.isNaN ? 0 : value)) * 10).rounded() / 10
    return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
}
