import Foundation
import PeerShareCLI
import Synchronization
import Testing
@testable import PeerShareCore
@testable import PeerShareNode
@testable import PeerShareStore

@Suite("The owner's upload slots")
struct UploadSlotsTests {
    @Test("beyond the cap, sessions wait in the order they asked; a cancelled one leaves the queue")
    func fifo() async throws {
        let slots = UploadSlots(capacity: 1)
        try await slots.acquire()
        let (order, record) = AsyncStream.makeStream(of: Int.self)
        var waiters: [Task<Void, any Error>] = []
        for i in 1...3 {
            waiters.append(Task {
                try await slots.acquire()
                record.yield(i)
                slots.release()
            })
            // Each joins the queue before the next starts, so the queue's order is 1, 2, 3.
            #expect(await eventually { slots.waitingCount == i }, "waiter \(i) never queued")
        }
        waiters[1].cancel()
        await #expect(throws: CancellationError.self) { try await waiters[1].value }
        #expect(slots.waitingCount == 2)
        slots.release()
        var iterator = order.makeAsyncIterator()
        #expect(await iterator.next() == 1)
        #expect(await iterator.next() == 3)
        try await waiters[0].value
        try await waiters[2].value
        #expect(slots.inUse == 0)
    }

    @Test("an owner with one upload slot serves four peers at once, dropping none")
    func oneSlot() async throws {
        let swarm = try await Swarm.start(fileSize: 2_097_152, peers: 4, ownerOptions: ["--upload-slots", "1"], launchPeers: false)
        var peers: [ChildProcess] = []
        defer { for process in peers { process.signal(SIGKILL) } }
        for i in 1...4 {
            peers.append(try startPeer("star\(i)", storage: .chunkFiles, dir: swarm.dir, owner: "127.0.0.1:\(swarm.ownerPort)",
                                       options: ["--neighbours", "0", "--wait-for-downloaders", "0"]))
        }
        var statuses: [Int32?] = []
        for process in peers { statuses.append(await process.waitForExit(timeout: .seconds(60))) }
        await swarm.owner.stop()
        #expect(statuses == [0, 0, 0, 0], "\(tail(swarm.dir + "/star1.log"))")
        for i in 1...4 { #expect(fileDigest(swarm.dir + "/star\(i)/source.bin") == fileDigest(swarm.source)) }
    }
}

/// Yields until `condition` holds, at most `limit` times: for state another task changes
/// without telling anyone (a queue's length), bounded so that a test cannot hang.
func eventually(limit: Int = 1_000_000, _ condition: () -> Bool) async -> Bool {
    for _ in 0..<limit {
        if condition() { return true }
        await Task.yield()
    }
    return condition()
}
