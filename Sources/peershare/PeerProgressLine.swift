import Foundation
import PeerShareCLI
import PeerShareNode

/// The live line of `peershare peer` on a terminal: chunks held, percent, rate, ETA and a bar,
/// redrawn when the node reports a change (at most ten times a second) and twice a second
/// otherwise, so that the rate and ETA age while nothing arrives. The owner draws one while it
/// splits or hashes its file, from its second second on (a quick start shows nothing).
final class PeerProgressLine: @unchecked Sendable {
    private let label: String
    private let console: StatusConsole
    /// The word once done: "assembled" (a peer), "ready" (an owner).
    private let doneNote: String
    /// Nothing is drawn before this much time has passed.
    private let delay: Duration
    private let started = ContinuousClock.now
    // The latest snapshot, the rate meter and the last draw time are guarded by `lock`:
    // updates come from the node's task, refreshes from the ticker.
    private let lock = NSLock()
    private var latest: NodeProgress?
    private var meter = RateMeter()
    private var lastDraw: ContinuousClock.Instant?
    /// Set by `finish`: the line stays as it is, and later refreshes draw nothing.
    private var finished = false

    init(label: String, console: StatusConsole, doneNote: String = "assembled", delay: Duration = .zero) {
        self.label = label
        self.console = console
        self.doneNote = doneNote
        self.delay = delay
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

    /// Draws the final state and leaves it on screen (unless nothing was ever drawn).
    func finish() {
        let drawn = started.duration(to: .now) >= delay
        if drawn { draw() }
        lock.withLock { finished = true }
        if drawn { console.endStatus() }
    }

    private func draw() {
        guard started.duration(to: .now) >= delay else { return }
        let state: ProgressState? = lock.withLock {
            guard !finished else { return nil }
            let progress = latest
            return ProgressState(
                label: label, heldChunks: progress?.heldChunks ?? 0, heldBytes: progress?.heldBytes ?? 0, total: progress?.total,
                bytesPerSecond: progress?.isAssembled == true ? nil : meter.bytesPerSecond,
                note: progress == nil ? "starting" : progress?.total == nil ? "waiting for the manifest" : progress!.isAssembled ? doneNote : nil)
        }
        guard let state else { return }
        console.setStatus([ProgressLine.render(state, width: console.width)])
    }

    private func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = start.duration(to: .now).components
        return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
    }
}
