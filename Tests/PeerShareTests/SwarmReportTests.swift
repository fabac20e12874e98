import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import PeerShareInspect

/// Counts what a person would see in the report: rows, marks, and anything that would reach
/// outside the file.
final class ReportScan: NSObject, XMLParserDelegate {
    var classes: [String: Int] = [:]
    /// class → data-node of the enclosing row group → count.
    var perNode: [String: [String: Int]] = [:]
    var elements: Set<String> = []
    var externalReferences: [String] = []
    var svgCount = 0
    private var node: [String?] = []

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        elements.insert(name)
        if name == "svg" { svgCount += 1 }
        for (key, value) in attributes where ["src", "href", "xlink:href", "action", "srcset"].contains(key.lowercased()) || value.contains("url(") {
            externalReferences.append("\(name) \(key)=\(value)")
        }
        node.append(attributes["data-node"] ?? node.last ?? nil)
        for cls in (attributes["class"] ?? "").split(separator: " ").map(String.init) {
            classes[cls, default: 0] += 1
            if let owner = node.last ?? nil { perNode[cls, default: [:]][owner, default: 0] += 1 }
        }
    }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        node.removeLast()
    }
}

@Suite struct SwarmReportTests {
    func report() throws -> (SwarmReport, String) {
        let fixtures = [try InspectFixture.completePeer(), try InspectFixture.partialPeer(), try InspectFixture.rejectingPeer()]
        let report = try SwarmReport.load(fixtures.map { try InspectDatabase(path: $0.db) })
        return (report, report.html())
    }

    func scan(_ html: String) throws -> ReportScan {
        let parser = XMLParser(data: Data(html.utf8))
        let scan = ReportScan()
        parser.delegate = scan
        let parsed = parser.parse()
        #expect(parsed, "the page is well-formed XML: \(parser.parserError.map { "\($0)" } ?? "") at line \(parser.lineNumber)")
        return scan
    }

    @Test func pageIsWellFormedWithThreeDrawings() throws {
        let (_, html) = try report()
        let scan = try scan(html)
        #expect(scan.svgCount == 3)
        #expect(scan.classes["timeline"] == 1 && scan.classes["chunk-map"] == 1 && scan.classes["throughput"] == 1)
    }

    @Test func oneRowPerPeerInEveryDrawing() throws {
        let (_, html) = try report()
        let scan = try scan(html)
        for row in ["peer-row", "map-row", "rate-row"] {
            #expect(scan.perNode[row] == ["peer1": 1, "peer2": 1, "peer3": 1], "\(row)")
        }
    }

    @Test func oneMarkPerReceivedChunk() throws {
        let (report, html) = try report()
        let scan = try scan(html)
        // peer1 holds all 5 chunks, peer2 chunks 0 and 2, peer3 chunks 1 and 4 (fixtures).
        #expect(report.nodes.map(\.arrivals.count) == [5, 2, 2])
        #expect(scan.perNode["arrival"] == ["peer1": 5, "peer2": 2, "peer3": 2])
        // The chunk map has a cell for every chunk, held or not.
        #expect(scan.perNode["cell"] == ["peer1": 5, "peer2": 5, "peer3": 5])
        #expect(scan.perNode["missing"] == ["peer2": 3, "peer3": 3])
        // Each arrival mark says which chunk it is.
        #expect(report.nodes[1].arrivals.map(\.chunk).sorted() == [0, 2])
        #expect(html.contains("data-chunk=\"0\""))
    }

    @Test func restartsAndRejectionsAreMarked() throws {
        let (report, html) = try report()
        let scan = try scan(html)
        #expect(report.nodes[0].restarts.count == 2)
        // Each restart in the timeline and in the throughput drawing.
        #expect(scan.perNode["restart"] == ["peer1": 4])
        // peer3's two rejected attempts at chunk 1, in both drawings.
        #expect(report.nodes[2].rejections.map(\.chunk) == [1, 1])
        #expect(scan.perNode["rejection"] == ["peer3": 4])
    }

    @Test func sourcesKeepOneColourEverywhere() throws {
        let (_, html) = try report()
        // The owner's chunks are one colour in every row, peer2's another.
        let ownerMarks = html.components(separatedBy: "from owner at").count - 1
        #expect(ownerMarks > 0)
        #expect(html.contains("<span><i style=\"background:#222\"></i>owner</span>"))
    }

    @Test func fetchesNothing() throws {
        let (_, html) = try report()
        let scan = try scan(html)
        #expect(scan.externalReferences.isEmpty, "\(scan.externalReferences)")
        #expect(!scan.elements.contains("script") && !scan.elements.contains("link") && !scan.elements.contains("img") && !scan.elements.contains("iframe"))
        #expect(!html.contains("http://") && !html.contains("https://") && !html.contains("@import") && !html.contains("//"))
    }

    @Test func hostileNamesAreEscaped() throws {
        var report = try report().0
        report.nodes[0].name = "<script>alert(1)</script> & \"peer\""
        report.nodes[0].arrivals[0].source = "</svg><img src=x>"
        let html = report.html(title: "a < b")
        let scan = try scan(html)
        #expect(!scan.elements.contains("script") && !scan.elements.contains("img"))
        #expect(scan.perNode["peer-row"]?["<script>alert(1)</script> & \"peer\""] == 1)
    }

    @Test func emptyIndexStillDraws() throws {
        let node = SwarmReport.Node(name: "fresh", role: "peer", database: "x.db", fileName: nil, fileSize: nil, chunkCount: nil,
                                    arrivals: [], rejections: [], runStarts: [], assembledAt: nil)
        let scan = try scan(SwarmReport(nodes: [node]).html())
        #expect(scan.perNode["peer-row"] == ["fresh": 1])
        #expect(scan.classes["arrival"] == nil)
    }
}
