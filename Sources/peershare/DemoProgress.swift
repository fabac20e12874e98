import Foundation
import PeerShareCLI
import PeerShareInspect

/// The demo's live lines, one per peer, on a terminal.
///
/// Progress comes from polling each peer's index read-only (`InspectDatabase`, the same
/// access `peershare-inspect` uses), four times a second. The index is the truth: a row
/// is a durable, verified chunk, and the manifest gives the total. Reading the peers' log
/// lines instead would tie the display to a log format and level (a `--quiet` or
/// `--log-level warning` run logs no chunks), and would mean counting events to rebuild
/// state the index already holds.
enum DemoProgress {
    static func watch(_ peers: [ChildProcess], root: String, console: StatusConsole) async {
        var databases: [InspectDatabase?] = Array(repeating: nil, count: peers.count)
        var meters = Array(repeating: RateMeter(), count: peers.count)
        let started = ContinuousClock.now
        let nameWidth = "peer\(peers.count)".count
        var cancelled = false
        while true {
            let seconds = Double(started.duration(to: .now).components.seconds) + Double(started.duration(to: .now).components.attoseconds) / 1e18
            var lines: [String] = []
            for (i, peer) in peers.enumerated() {
                let label = "peer\(i + 1)".padding(toLength: nameWidth, withPad: " ", startingAt: 0)
                // A peer that has not created its index yet is simply "starting".
                if databases[i] == nil { databases[i] = try? InspectDatabase(path: root + "/peer\(i + 1)/peer.db") }
                let progress = try? databases[i]?.progress()
                if let progress { meters[i].add(seconds: seconds, bytes: progress.heldBytes) }
                let status = peer.exitStatus
                let note: String? = status.map { "exit \($0)" } ?? (progress == nil ? "starting" : progress!.isAssembled ? "assembled" : nil)
                let state = ProgressState(
                    label: label, heldChunks: progress?.heldChunks ?? 0, heldBytes: progress?.heldBytes ?? 0,
                    total: progress?.totalChunks.map { ($0, progress?.totalBytes ?? 0) },
                    bytesPerSecond: status == nil && progress?.isAssembled != true ? meters[i].bytesPerSecond : nil, note: note)
                lines.append(ProgressLine.render(state, width: console.width))
            }
            console.setStatus(lines)
            // Once cancelled, the lines above were the final ones.
            if cancelled { break }
            // A display refresh; the demo waits for the peers' exits as events elsewhere.
            if (try? await Task.sleep(for: .milliseconds(250))) == nil { cancelled = true }
        }
        console.endStatus()
    }
}
