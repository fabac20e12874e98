import Foundation
import PeerShareCLI
import PeerShareNode

/// The live line of `peershare peer` on a terminal: chunks held, percent, rate, ETA and a bar,
/// redrawn when the node reports a change (at most ten times a second) and twice a second
/// otherwise, so that the rate and ETA age while nothing arrives.
final class PeerProgressLine: @unchecked Sendable {
    private let label: String
    private let console: StatusConsole
    private let started = ContinuousClock.now
    // The latest snapshot, the rate meter and the last draw time are guarded by `lock`:
    // updates come from the node's task, refreshes from the ticker.
    private let lock = NSLock()
    private var latest: NodeProgress?
    private var meter = RateMeter()
    private var lastDraw: ContinuousClock.Instant?

    init(label: String, console: StatusConsole) {
        self.label = label
        self.console = console
    }

    func update(_ progress: NodeProgress) {
        let due: Bool = lock.withLock {
            latest = progress
            meter.add(seconds: seconds(since: started), bytes: progress.heldBytes)
            let now = ContinuousClock.now
            guard lastDraw.map({ now - $0 >= .milliseconds(100) }) ?? true || progress.isAssembled else { return false }
            lastDraw = now
            return true
        }
        if due { draw() }
    }

    /// Runs `body`, redrawing the line twice a second until it returns.
    func whileRefreshing(_ body: @escaping @Sendable () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await body() }
            group.addTask {
                // A display refresh, not a wait for anything: it only redraws.
                while (try? await Task.sleep(for: .milliseconds(500))) != nil { self.draw() }
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    /// Draws the final state and leaves it on screen.
    func finish() {
        draw()
        console.endStatus()
    }

    private func draw() {
        let state: ProgressState = lock.withLock {
            let progress = latest
            return ProgressState(
                label: label, heldChunks: progress?.heldChunks ?? 0, heldBytes: progress?.heldBytes ?? 0, total: progress?.total,
                bytesPerSecond: progress?.isAssembled == true ? nil : meter.bytesPerSecond,
                note: progress == nil ? "starting" : progress?.total == nil ? "waiting for the manifest" : progress!.isAssembled ? "assembled" : nil)
        }
        console.setStatus([ProgressLine.render(state, width: console.width)])
    }

    private func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = start.duration(to: .now).components
        return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
    }
}
