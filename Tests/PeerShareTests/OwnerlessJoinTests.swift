import Foundation
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareStore

/// Joining a swarm whose owner has left (issue 15): a peer started with only the address of
/// one surviving peer gets the manifest from it and finds the others by peer exchange.
@Suite("Joining through a peer after the owner has left", .serialized)
struct OwnerlessJoinTests {
    /// `peer` arguments without `--owner`.
    private func joiner(_ name: String, dir: String, through neighbour: Int, options: [String]) throws -> ChildProcess {
        let arguments = ["peer", "--name", name, "--port", "0", "--dir", dir + "/" + name, "--download-from", "127.0.0.1:\(neighbour)"]
        return try ChildProcess(name: name, executable: Binaries.peershare, arguments: arguments + options,
                                stdout: .lines(echo: false), stderr: .lines(echo: false, copyTo: dir + "/" + name + ".log"))
    }

    @Test("the owner leaves once every chunk is in the swarm; a new peer that knows one surviving peer completes, finding another through it",
          arguments: StorageLayout.allCases)
    func joinThroughSurvivor(storage: StorageLayout) async throws {
        let swarm = try await Swarm.start(fileSize: 4 * 1_048_576, peers: 2, launchPeers: false, storage: storage)
        var processes: [ChildProcess] = []
        defer { for process in processes { process.signal(SIGKILL) } }
        let owner = "127.0.0.1:\(swarm.ownerPort)"
        let ports = try reserveFreePorts(2)
        // The survivor the joiner knows serves slowly; the other serves at full speed, and
        // only peer exchange through the first can lead the joiner to it. At 100 KiB/s the
        // known one alone would take 40 s: at 200 KiB/s a loaded CI run once finished the
        // whole file from it before peer exchange had named the other.
        let known = try startPeer("known", storage: storage, dir: swarm.dir, owner: owner, port: ports[0],
                                  options: ["--keep-serving", "--max-upload-rate", "100KiB"])
        let other = try startPeer("other", storage: storage, dir: swarm.dir, owner: owner, port: ports[1], options: ["--keep-serving"])
        processes += [known, other]
        #expect(await waitForAssembly(known, timeout: .seconds(60)))
        #expect(await waitForAssembly(other, timeout: .seconds(60)))
        let fileID = try #require(try ownerFileID(swarm.dir + "/owner.log"))
        await swarm.owner.stop()
        #expect(swarm.owner.exitStatus != nil)

        let late = try joiner("late", dir: swarm.dir, through: ports[0], options: [
            "--neighbours", "2", "--wait-for-downloaders", "0", "--file-id", fileID, "--storage", storage.rawValue,
        ])
        processes.append(late)
        let status = await late.waitForExit(timeout: .seconds(90))
        for process in processes { await process.stop() }
        #expect(status == 0, "\(tail(swarm.dir + "/late.log"))")
        #expect(fileDigest(swarm.dir + "/late/source.bin") == fileDigest(swarm.source))
        let sources = try chunkSources(swarm.dir + "/late/peer.db")
        #expect(sources["owner"] == nil)
        #expect(sources["other"] != nil, "the joiner never found the other survivor: \(sources.mapValues(\.count))")
        let manifests = try eventMessages(swarm.dir + "/late/peer.db", kind: "manifest_received")
        #expect(manifests.contains { $0.contains("manifest from known") && $0.contains(fileID) }, "\(manifests)")
    }

    @Test("without --owner, two neighbours of different swarms: the peer completes one file and avoids the other neighbour")
    func twoSwarms() async throws {
        let first = try await Swarm.start(fileSize: 500 * 1024, peers: 1, launchPeers: false, label: "twoSwarmsA")
        let second = try await Swarm.start(fileSize: 700 * 1024, peers: 1, launchPeers: false, label: "twoSwarmsB")
        var processes: [ChildProcess] = [first.owner, second.owner]
        defer { for process in processes { process.signal(SIGKILL) } }
        let ports = try reserveFreePorts(2)
        let seedA = try startPeer("seed", storage: .chunkFiles, dir: first.dir, owner: "127.0.0.1:\(first.ownerPort)", port: ports[0], options: ["--keep-serving"])
        let seedB = try startPeer("seed", storage: .chunkFiles, dir: second.dir, owner: "127.0.0.1:\(second.ownerPort)", port: ports[1], options: ["--keep-serving"])
        processes += [seedA, seedB]
        #expect(await waitForAssembly(seedA, timeout: .seconds(60)))
        #expect(await waitForAssembly(seedB, timeout: .seconds(60)))
        let arguments = ["peer", "--name", "both", "--port", "0", "--dir", first.dir + "/both", "--wait-for-downloaders", "0",
                         "--download-from", "127.0.0.1:\(ports[0])", "--download-from", "127.0.0.1:\(ports[1])"]
        let result = try await runCommand(Binaries.peershare, arguments, timeout: .seconds(90))
        for process in processes { await process.stop() }
        #expect(result.status == 0, "\(result.stderr)")
        let copy = fileDigest(first.dir + "/both/source.bin")
        #expect(copy != nil && (copy == fileDigest(first.source) || copy == fileDigest(second.source)))
        #expect(result.stderr.contains("avoiding download neighbour") && result.stderr.contains("not the one this peer joined")
                || result.stderr.contains("is in the swarm of file"), "\(result.stderr)")
        // Avoided at once: the other swarm's peer says which file it serves before it hangs up.
        #expect(result.stderr.components(separatedBy: "reconnecting").count <= 3, "\(result.stderr)")
    }

    @Test("without --owner: a wrong --file-id, a dead neighbour, and missing or malformed options each end with a clear line")
    func refusals() async throws {
        let swarm = try await Swarm.start(fileSize: 300 * 1024, peers: 1, launchPeers: false)
        var processes: [ChildProcess] = []
        defer { for process in processes { process.signal(SIGKILL) } }
        let port = try reserveFreePorts(1)[0]
        let seed = try startPeer("seed", storage: .chunkFiles, dir: swarm.dir, owner: "127.0.0.1:\(swarm.ownerPort)", port: port,
                                 options: ["--keep-serving"])
        processes.append(seed)
        #expect(await waitForAssembly(seed, timeout: .seconds(60)))

        let wrongID = String(repeating: "ab", count: 32)
        let wrong = try joiner("wrong", dir: swarm.dir, through: port, options: ["--file-id", wrongID, "--wait-for-downloaders", "0", "--neighbour-timeout", "3"])
        processes.append(wrong)
        let wrongStatus = await wrong.waitForExit(timeout: .seconds(60))
        #expect(wrongStatus != nil && wrongStatus != 0, "\(tail(swarm.dir + "/wrong.log"))")
        let wrongLog = tail(swarm.dir + "/wrong.log")
        #expect(wrongLog.contains("not the \(wrongID.prefix(12)) this peer was told to fetch"), "\(wrongLog)")
        #expect(wrongLog.contains("without --owner there is nobody else to ask for the manifest"), "\(wrongLog)")
        #expect(!FileManager.default.fileExists(atPath: swarm.dir + "/wrong/source.bin"))

        let deadPort = try reserveFreePorts(1)[0]
        let dead = try joiner("dead", dir: swarm.dir, through: deadPort, options: ["--wait-for-downloaders", "0", "--neighbour-timeout", "2"])
        processes.append(dead)
        let deadStatus = await dead.waitForExit(timeout: .seconds(60))
        #expect(deadStatus != nil && deadStatus != 0, "\(tail(swarm.dir + "/dead.log"))")
        #expect(tail(swarm.dir + "/dead.log").contains("without --owner there is nobody else to ask for the manifest"))

        // The owner is not a neighbour: told so, instead of 50 reconnects on unexpected messages.
        let viaOwner = try joiner("via-owner", dir: swarm.dir, through: swarm.ownerPort, options: ["--wait-for-downloaders", "0"])
        processes.append(viaOwner)
        let viaOwnerStatus = await viaOwner.waitForExit(timeout: .seconds(60))
        #expect(viaOwnerStatus != nil && viaOwnerStatus != 0, "\(tail(swarm.dir + "/via-owner.log"))")
        #expect(tail(swarm.dir + "/via-owner.log").contains("is the owner; give its address with --owner, not --download-from"))

        let neither = try await runCommand(Binaries.peershare, ["peer", "--port", "0", "--dir", swarm.dir + "/neither"], timeout: .seconds(30))
        #expect(neither.status != 0)
        #expect(neither.stderr.contains("give the owner (--owner HOST:PORT), or a peer of the swarm to join through"), "\(neither.stderr)")
        let badID = try await runCommand(Binaries.peershare, ["peer", "--port", "0", "--dir", swarm.dir + "/bad", "--download-from", "127.0.0.1:\(port)", "--file-id", "xyz"], timeout: .seconds(30))
        #expect(badID.status != 0)
        #expect(badID.stderr.contains("--file-id must be 64 hex digits"), "\(badID.stderr)")
        for process in processes { await process.stop() }
        await swarm.owner.stop()
        // A folder that holds another file than --file-id names is refused before any dial.
        let other = try await runCommand(Binaries.peershare, ["peer", "--port", "0", "--dir", swarm.dir + "/seed", "--download-from", "127.0.0.1:\(port)",
                                                              "--file-id", wrongID], timeout: .seconds(30))
        #expect(other.status != 0)
        #expect(other.stderr.contains("holds file source.bin (file ID") && other.stderr.contains("not the \(wrongID.prefix(12)) given with --file-id"), "\(other.stderr)")
    }
}

/// The file ID the owner logs when it starts listening, as a user would copy it.
private func ownerFileID(_ log: String) throws -> String? {
    let text = try String(contentsOfFile: log, encoding: .utf8)
    guard let range = text.range(of: "file ID ") else { return nil }
    return String(text[range.upperBound...].prefix(64))
}
