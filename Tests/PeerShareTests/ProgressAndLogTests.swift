import Foundation
import Logging
@testable import PeerShareCLI
import PeerShareNode
import Testing
@testable import PeerShareCore
@testable import PeerShareStore

/// The progress line as a pure function of its state, at the edges.
@Suite struct ProgressLineTests {
    let mib: Int64 = 1 << 20

    func state(_ held: Int, of total: Int?, rate: Double? = nil, label: String = "peer1", note: String? = nil) -> ProgressState {
        ProgressState(label: label, heldChunks: held, heldBytes: Int64(held) * 102_400,
                      total: total.map { ($0, Int64($0) * 102_400) }, bytesPerSecond: rate, note: note)
    }

    @Test func midwayShowsCountsPercentRateEtaAndBar() {
        let line = ProgressLine.render(state(41, of: 82, rate: 1_024_000), width: 120)
        #expect(line == "peer1 [####################....................] 41/82 chunks  50% 1000.0 KiB/s ETA 0:05")
        #expect(line.count <= 119)
    }

    @Test func noChunksHeldYet() {
        let line = ProgressLine.render(state(0, of: 82), width: 80)
        #expect(line.contains(" 0/82 chunks   0%"))
        #expect(line.contains("[" + String(repeating: ".", count: 5)))
        #expect(!line.contains("#"))
        #expect(line.contains("ETA --"))  // no rate measured: no guess
    }

    @Test func allChunksHeld() {
        let line = ProgressLine.render(state(82, of: 82, rate: 5e6, note: "assembled"), width: 80)
        #expect(line.contains("82/82 chunks 100%"))
        #expect(line.contains("done"))
        #expect(!line.contains("ETA"))
        let bar = line.drop(while: { $0 != "[" }).prefix(while: { $0 != "]" })
        #expect(bar.count > 5 && !bar.contains("."), "a full bar has no empty cells")
        #expect(line.hasSuffix("assembled"))
    }

    @Test func anEmptyFileIsComplete() {
        let line = ProgressLine.render(state(0, of: 0), width: 80)
        #expect(line.contains("0/0 chunks 100%"))
        #expect(line.contains("done"))
    }

    @Test func unknownTotalHasNoBarPercentOrEta() {
        let line = ProgressLine.render(state(3, of: nil, note: "waiting for the manifest"), width: 80)
        #expect(line == "peer1 3/? chunks waiting for the manifest")
    }

    @Test func veryWideTerminalCapsTheBar() {
        let line = ProgressLine.render(state(10, of: 40, rate: 1e6), width: 1000)
        let bar = line.drop(while: { $0 != "[" }).prefix(while: { $0 != "]" })
        #expect(bar.count - 1 == ProgressLine.maximumBarWidth)
        #expect(line.count < 120)
    }

    @Test(arguments: [40, 30, 20, 12, 5, 2, 1, 0])
    func narrowTerminalsNeverWrap(width: Int) {
        let line = ProgressLine.render(state(41, of: 82, rate: 1e6, note: "assembled"), width: width)
        #expect(line.count <= max(0, width - 1))
        if width >= 20 { #expect(line.contains("41/82"), "the counts are the last thing dropped") }
    }

    @Test func linesOfOneSwarmLineUp() {
        // The demo draws one line per peer: whatever their rates, the bars end in one column.
        let lines = [state(3, of: 164, rate: 512), state(100, of: 164, rate: 25e6), state(164, of: 164, note: "exit 0")]
            .map { ProgressLine.render($0, width: 72) }
        let columns = lines.map { line in line.distance(from: line.startIndex, to: line.firstIndex(of: "]")!) }
        #expect(Set(columns).count == 1, "\(lines.joined(separator: "\n"))")
        #expect(Set(lines.map { $0.distance(from: $0.startIndex, to: $0.range(of: "chunks")!.lowerBound) }).count == 1)
    }

    @Test func narrowDropsTheBarBeforeTheFigures() {
        let line = ProgressLine.render(state(41, of: 82, rate: 1e6), width: 50)
        #expect(!line.contains("["))
        #expect(line.contains("41/82 chunks  50%"))
    }

    @Test func etaClock() {
        #expect(ProgressLine.clock(0) == "0:00")
        #expect(ProgressLine.clock(7.2) == "0:08")
        #expect(ProgressLine.clock(3723) == "1:02:03")
        #expect(ProgressLine.clock(1e9) == ">99h")
    }

    @Test func rateMeterMeasuresTheRecentWindow() {
        var meter = RateMeter(window: 5)
        meter.add(seconds: 0, bytes: 0)
        #expect(meter.bytesPerSecond == nil)
        meter.add(seconds: 1, bytes: 1000)
        #expect(meter.bytesPerSecond == 1000)
        // Long after: only the last few seconds count.
        meter.add(seconds: 20, bytes: 1000)
        meter.add(seconds: 22, bytes: 5000)
        #expect(meter.bytesPerSecond == 2000)
        // A drop (chunks forgotten at start-up) starts afresh rather than showing a negative rate.
        meter.add(seconds: 23, bytes: 100)
        #expect(meter.bytesPerSecond == nil)
    }
}

/// Log lines: the JSON fields come from the event record, and the console writes no control
/// characters unless it is live.
@Suite struct LogLineTests {
    @Test func jsonLineCarriesTheEventRowsFields() throws {
        let event = EventRecord(at: 1_764_079_200_123_456, kind: .chunkReceived, chunk: ChunkID(17),
                                source: .init(kind: .peer, name: "peer3"), message: "received chunk 17 from peer3 \"quoted\"\nsecond line")
        let line = ConsoleLogHandler.line(level: .info, message: event.message, metadata: event.logMetadata, label: "peer2", format: .json, now: 0)
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["at"] as? String == "2025-11-25T14:00:00.123456Z")
        #expect(object["level"] as? String == "info")
        #expect(object["node"] as? String == "peer2")
        #expect(object["kind"] as? String == "chunk_received")
        #expect(object["chunk_id"] as? Int == 17)
        #expect(object["source_kind"] as? String == "peer")
        #expect(object["source"] as? String == "peer3")
        #expect(object["message"] as? String == event.message)
        // Field order is stable, like inspect's JSON.
        #expect(line.hasPrefix("{\"at\":"))
    }

    @Test func jsonLineWithoutAnEventHasNulls() throws {
        let line = ConsoleLogHandler.line(level: .warning, message: "tab\there", metadata: [:], label: "demo", format: .json, now: 1_000_000)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["at"] as? String == "1970-01-01T00:00:01.000000Z")
        #expect(object["kind"] is NSNull)
        #expect(object["chunk_id"] is NSNull)
        #expect(object["message"] as? String == "tab\there")
    }

    @Test func textLineIsOneLineWithTheEventTime() {
        let event = EventRecord(at: 1_764_079_200_123_456, kind: .assembled, message: "assembled\nmovie.bin")
        let line = ConsoleLogHandler.line(level: .info, message: event.message, metadata: event.logMetadata, label: "peer1", format: .text, now: 0)
        #expect(line == "2025-11-25T14:00:00.123Z peer1 assembled movie.bin")
        let warning = ConsoleLogHandler.line(level: .warning, message: "slow", metadata: [:], label: "peer1", format: .text, now: 0)
        #expect(warning == "1970-01-01T00:00:00.000Z peer1 warning slow")
    }

    /// Writes through a console into a pipe and returns what came out.
    func captured(live: Bool, buffered: Bool = false, _ body: (StatusConsole) -> Void) throws -> String {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let console = StatusConsole(fd: fds[1], live: live, buffered: buffered)
        body(console)
        close(fds[1])
        let data = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true).readDataToEndOfFile()
        return String(decoding: data, as: UTF8.self)
    }

    @Test func notLiveWritesOnlyPlainLines() throws {
        #expect(!StatusConsole(fd: -1).isLive, "a closed descriptor is not a terminal")
        let out = try captured(live: false) { console in
            console.writeLine("first")
            console.setStatus(["peer1 [###...] 1/2 chunks"])
            console.writeLine("second")
            console.endStatus()
        }
        #expect(out == "first\nsecond\n")
    }

    @Test func bufferedLinesWaitForAFlushOr64KiB() throws {
        let early = try captured(live: false, buffered: true) { console in
            console.writeLine("first", urgent: false)
            console.writeLine("second", urgent: false)
            #expect(console.pendingByteCount == 13, "nothing is written before a flush, the 50 ms timer or 64 KiB")
            console.flush()
        }
        #expect(early == "first\nsecond\n")
        let milestone = try captured(live: false, buffered: true) { console in
            console.writeLine("first", urgent: false)
            console.writeLine("assembled")
            #expect(console.pendingByteCount == 0, "a milestone line takes the batch out at once")
        }
        #expect(milestone == "first\nassembled\n")
        // A pipe holds 64 KiB with no reader, so the threshold is seen from the buffer's side.
        let line = String(repeating: "x", count: 1023)
        let console = StatusConsole(fd: -1, live: false, buffered: true)
        for _ in 0..<63 { console.writeLine(line, urgent: false) }
        #expect(console.pendingByteCount == 63 * 1024)
        console.writeLine(line, urgent: false)
        #expect(console.pendingByteCount == 0, "64 KiB go out at once")
        console.writeLine(line, urgent: false)
        #expect(console.pendingByteCount == 1024, "the next line waits")
        console.flush()
        let terminal = try captured(live: true, buffered: true) { console in console.writeLine("now") }
        #expect(terminal == "now\n", "a terminal is never buffered")
    }

    @Test func liveKeepsTheStatusBelowTheLogLines() throws {
        let out = try captured(live: true) { console in
            console.setStatus(["a", "b"])
            console.writeLine("log")
            console.setStatus(["c", "d"])
            console.endStatus()
            console.writeLine("after")
        }
        let up2 = "\r\u{1B}[2A\u{1B}[J"
        #expect(out == "a\nb\n" + up2 + "log\na\nb\n" + up2 + "c\nd\n" + "after\n")
    }
}
