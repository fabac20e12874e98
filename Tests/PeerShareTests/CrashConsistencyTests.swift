import Foundation
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareStore

// docs/STORAGE.md, "Crash consistency": rows are committed once their bytes are written,
// and made durable by background syncs that leave sync marks. A power cut is simulated
// with PEERSHARE_BOOT_ID_FILE (another boot ID) and by destroying the bytes of the rows the
// last sync mark does not cover, as a machine that went down before writing them back would.

/// Damages the bytes of `id` where the layout keeps them: zeroed in place, or (chunk files,
/// when `truncate`) cut short.
func destroyBytes(of id: Int64, in folder: String, storage: StorageLayout, chunkSize: Int, fileName: String, truncate: Bool) throws {
    let path = storage == .chunkFiles ? folder + "/chunks/" + String(format: "%06d.chunk", id) : folder + "/" + SingleFileStore.partialName
    let handle = try #require(FileHandle(forWritingAtPath: path), "no bytes at \(path)")
    defer { try? handle.close() }
    if storage == .chunkFiles && truncate {
        try handle.truncate(atOffset: 10)
    } else {
        try handle.seek(toOffset: storage == .chunkFiles ? 0 : UInt64(id) * UInt64(chunkSize))
        try handle.write(contentsOf: Data(count: min(chunkSize, 4096)))
    }
}

@Suite("Crash consistency: sync marks and the boot ID", .serialized)
struct CrashConsistencyTests {
    @Test("a simulated power cut: exactly the rows after the last sync mark are re-hashed, the lost ones fetched again, none before the mark",
          arguments: StorageLayout.allCases)
    func powerCut(storage: StorageLayout) async throws {
        // At 512 KiB/s the 60 chunks take twelve seconds: room for two short runs, even on a
        // loaded machine (at 1 MiB/s, a full suite once answered the first run's sixth chunk
        // only after the file was complete).
        var swarm = try await Swarm.start(fileSize: 60 * 102_400 + 5, peers: 1, ownerOptions: ["--max-upload-rate", "512KiB"],
                                          launchPeers: false, storage: storage, label: "powercut-\(storage)")
        defer { Task { [swarm] in await swarm.stopAll() } }
        let bootA = swarm.dir + "/boot-a", bootB = swarm.dir + "/boot-b"
        try "11111111-aaaa\n".write(toFile: bootA, atomically: true, encoding: .utf8)
        try "22222222-bbbb\n".write(toFile: bootB, atomically: true, encoding: .utf8)

        // Run 1 stops cleanly: everything it indexed is synced and covered by a mark.
        let first = try swarm.launch(1, lines: true, environment: ["PEERSHARE_BOOT_ID_FILE": bootA])
        #expect(await first.waitForLine(timeout: .seconds(30)) { $0.contains(" received chunk 5 ") } != nil, "\(swarm.log(of: 1))")
        first.signal(SIGTERM)
        #expect(await first.waitForExit(timeout: .seconds(30)) == 0)
        // Run 2 never syncs, and is killed: its rows are after the mark.
        let second = try swarm.launch(1, extra: ["--sync-interval", "3600"], lines: true, environment: ["PEERSHARE_BOOT_ID_FILE": bootA])
        var received = 0
        for await line in second.lines where line.contains(" received chunk ") {
            received += 1
            if received == 6 { second.signal(SIGKILL) }
        }
        #expect(await second.waitForExit(timeout: .seconds(30)) == 128 + SIGKILL)

        let db = try SQLiteConnection(path: swarm.database(of: 1), mode: .readOnly)
        let mark = try db.scalarInt("SELECT max(through_batch) FROM sync_marks") ?? 0
        let before = Set(try db.query("SELECT chunk_id FROM chunks WHERE batch <= ?", mark) { $0.int(0) })
        let after = Set(try db.query("SELECT chunk_id FROM chunks WHERE batch > ?", mark) { $0.int(0) })
        let firstNewEvent = (try db.scalarInt("SELECT max(id) FROM events") ?? 0) + 1
        db.close()
        try #require(before.count >= 6 && after.count >= 3, "before the mark: \(before.sorted()), after: \(after.sorted())")

        // The machine went down: what the kernel had not written back is gone.
        for (n, id) in after.sorted().enumerated() {
            try destroyBytes(of: id, in: swarm.dir + "/peer1", storage: storage, chunkSize: 102_400, fileName: "source.bin", truncate: n % 2 == 1)
        }
        let third = try swarm.launch(1, environment: ["PEERSHARE_BOOT_ID_FILE": bootB])
        swarm.peers = [third]
        #expect(await third.waitForExit(timeout: .seconds(60)) == 0, "\(swarm.log(of: 1))")
        await swarm.stopAll()
        #expect(fileDigest(swarm.dir + "/peer1/source.bin") == fileDigest(swarm.source))

        let check = try SQLiteConnection(path: swarm.database(of: 1), mode: .readOnly)
        let looked = Set(try check.query("SELECT chunk_id FROM events WHERE id >= ? AND kind IN ('chunk_rehashed', 'chunk_dropped')", firstNewEvent) { $0.int(0) })
        #expect(looked == after, "re-hashed or dropped \(looked.sorted()), expected exactly \(after.sorted())")
        #expect(looked.isDisjoint(with: before), "a row before the mark was re-hashed")
        let refetched = Set(try check.query("""
            SELECT chunk_id FROM transfers WHERE direction = 'in' AND outcome = 'verified' GROUP BY chunk_id HAVING count(*) > 1
            """) { $0.int(0) })
        #expect(refetched == after, "fetched twice: \(refetched.sorted()), expected \(after.sorted())")
        #expect(try check.scalarInt("SELECT count(*) FROM events WHERE message LIKE 'the machine went down during the last run%'") == 1)
    }

    @Test("after kill -9 on the same boot, nothing is re-hashed or fetched twice, even with no sync at all", arguments: StorageLayout.allCases)
    func killWithoutPowerCut(storage: StorageLayout) async throws {
        var swarm = try await Swarm.start(fileSize: 20 * 102_400, peers: 1, ownerOptions: ["--max-upload-rate", "1MiB"],
                                          launchPeers: false, storage: storage, label: "kill-\(storage)")
        defer { Task { [swarm] in await swarm.stopAll() } }
        let first = try swarm.launch(1, extra: ["--sync-interval", "3600"], lines: true)
        var received = 0
        for await line in first.lines where line.contains(" received chunk ") {
            received += 1
            if received == 6 { first.signal(SIGKILL) }
        }
        #expect(await first.waitForExit(timeout: .seconds(30)) == 128 + SIGKILL)
        let again = try swarm.launch(1)
        swarm.peers = [again]
        #expect(await again.waitForExit(timeout: .seconds(60)) == 0, "\(swarm.log(of: 1))")
        await swarm.stopAll()
        try expectSoundIndexes(swarm, sourceDigest: fileDigest(swarm.source))
        let db = try SQLiteConnection(path: swarm.database(of: 1), mode: .readOnly)
        #expect(try db.scalarInt("SELECT count(*) FROM events WHERE kind IN ('chunk_rehashed', 'chunk_dropped')") == 0)
    }

    @Test("single file: a flipped byte is caught by --recheck, a file cut short at any start; each is fetched again")
    func singleFileDamage() async throws {
        let swarm = try await Swarm.start(fileSize: 12 * 102_400 + 9, peers: 2, storage: .singleFile, label: "single-damage")
        #expect(await swarm.waitForPeers() == [0, 0])
        let file = swarm.dir + "/peer1/source.bin"
        let original = try Data(contentsOf: URL(fileURLWithPath: file))
        var flipped = original
        flipped[7 * 102_400 + 33] ^= 0xff
        try flipped.write(to: URL(fileURLWithPath: file))
        let options = ["--neighbour-timeout", "0.5", "--wait-for-downloaders", "0"]
        let plain = try swarm.launch(1, extra: options)
        #expect(await plain.waitForExit(timeout: .seconds(60)) == 0, "\(swarm.log(of: 1))")
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == flipped, "a plain restart does not re-hash")

        let recheck = try swarm.launch(1, extra: options + ["--recheck"])
        #expect(await recheck.waitForExit(timeout: .seconds(60)) == 0, "\(swarm.log(of: 1))")
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == original)

        try FileHandle(forWritingAtPath: file)!.truncate(atOffset: 300_000)
        let cut = try swarm.launch(1, extra: options)
        #expect(await cut.waitForExit(timeout: .seconds(60)) == 0, "\(swarm.log(of: 1))")
        await swarm.stopAll()
        #expect(try Data(contentsOf: URL(fileURLWithPath: file)) == original)
        let db = try SQLiteConnection(path: swarm.database(of: 1), mode: .readOnly)
        let dropped = try db.query("SELECT chunk_id FROM events WHERE kind = 'chunk_dropped' ORDER BY id") { $0.int(0) }
        #expect(dropped == [7] + (0..<13).map(Int64.init), "\(dropped)")
    }
}
