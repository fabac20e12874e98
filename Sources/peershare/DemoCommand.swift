import ArgumentParser
import Crypto
import Foundation
import Logging
import PeerShareCLI
import PeerShareCore
import PeerShareInspect
import PeerShareStore

/// `peershare demo`: one owner and N peers as real processes on 127.0.0.1 (or --host), wired as a ring
/// (peer i downloads from peer i+1) or a mesh (k random neighbours each), run until every
/// peer has assembled the file.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a local swarm: an owner and N peers in a ring or a mesh, then check every copy.")

    @Option(help: "File to share (default: a generated sample of --size bytes).")
    var file: String?

    @Option(help: "Size of the generated sample file, e.g. 8MiB, 2.5MiB, 1000.")
    var size: SizeArgument = SizeArgument(bytes: 8 << 20)

    @Option(help: "Number of peers.")
    var peers: Int = 5

    @Option(help: "ring: peer i downloads from peer i+1. mesh: each peer downloads from --neighbours random others. auto: each peer gets only --owner and finds --neighbours through it.")
    var topology: TopologyKind = .ring

    @Option(help: "Download neighbours per peer in a mesh.")
    var neighbours: Int = 3

    @Option(help: "Seed that chooses a mesh's neighbours (default: random; printed either way).")
    var seed: UInt64?

    @Option(help: "Loopback address every node listens on and dials: 127.0.0.1, or ::1 for IPv6.")
    var host: String = "127.0.0.1"

    @Option(help: "Folder for the run: the owner's and each peer's folders go inside.")
    var dir: String = "peershare-demo"

    @Option(help: "Chunk size in bytes.")
    var chunkSize: Int = ChunkLayout.defaultChunkSize

    @Option(help: "Seconds to wait for every peer before giving up.")
    var timeout: Double = 600

    @OptionGroup var storage: StorageOptions

    @Flag(name: .customLong("private"), help: "Run a private swarm: TLS on every connection, peers admitted by the owner's ticket.")
    var isPrivate = false

    @Flag(help: "Write an HTML picture of the run (who sent which chunk when) to DIR/swarm.html and print its path.")
    var report = false

    @Flag(help: "Once every copy is checked, keep the owner and the peers serving (peers restart with --keep-serving) until stopped with Ctrl-C: for BitTorrent clients and watching.")
    var keepServing = false

    @Option(name: .customLong("http-port"), help: "Serve each node's /metrics and /status over HTTP on --host: the owner on this port, peer i on this port + i.")
    var httpPort: Int?

    /// --quiet hides the nodes' logs and the live lines; --log-level and --log-format are
    /// passed on to every node.
    @OptionGroup var logging: LogOptions

    func validate() throws {
        guard (1...200).contains(peers) else { throw ValidationError("--peers must be from 1 to 200") }
        guard neighbours >= 1 else { throw ValidationError("--neighbours must be at least 1") }
        if let httpPort, !(1...(65_535 - peers)).contains(httpPort) { throw ValidationError("--http-port must be from 1 to \(65_535 - peers) (peer i gets the port + i)") }
        guard timeout > 0, timeout <= 86_400 else { throw ValidationError("--timeout must be between 0 and 86400 seconds") }
        if let file, !FileManager.default.isReadableFile(atPath: file) { throw ValidationError("--file: cannot read \(file)") }
    }

    func run() async throws {
        let console = StatusConsole()
        let logger = logging.makeLogger(label: "demo", console: console)
        let quiet = logging.quiet
        // One live line per peer only on a terminal; otherwise the plain log lines alone.
        let live = console.isLive && !quiet
        let root = URL(fileURLWithPath: dir).standardizedFileURL.path
        try prepareFolder(root)
        let source = try file.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? generateSample(in: root)
        let sourceHash = try sha256(ofFileAt: source)
        let sourceSize = try FileManager.default.attributesOfItem(atPath: source)[.size] as? Int64 ?? 0
        let fileName = URL(fileURLWithPath: source).lastPathComponent
        let ports = try reserveFreePorts(peers + 1, host: host)
        let address = { (port: Int) in Endpoint(host: host, port: port).description }
        let executable = currentExecutablePath()
        let meshSeed = seed ?? UInt64.random(in: 0...999_999)
        let wiring = topology == .ring
            ? SwarmTopology.ring(peers: peers)
            : SwarmTopology.mesh(peers: peers, neighbours: neighbours, seed: meshSeed)
        let shape = switch topology {
        case .ring: "in a ring"
        case .mesh: "in a mesh, \(neighbourCount(wiring.downloadFrom[0].count)) each, seed \(meshSeed)"
        case .auto: "wiring themselves through the owner, \(neighbourCount(neighbours)) each"
        }
        logger.info("\(fileName): \(ByteSize.format(sourceSize)), SHA-256 \(sourceHash.short); owner on \(address(ports[0])), \(peers) peers \(shape)\(isPrivate ? ", a private swarm (TLS 1.3, admitted by the ticket)" : ""), folder \(root)")
        if topology == .mesh {
            for (i, sources) in wiring.downloadFrom.enumerated() {
                logger.info("peer\(i + 1) downloads from \(sources.map { "peer\($0 + 1)" }.joined(separator: ", "))")
            }
        }

        // The nodes' logs reach our stderr directly, or, under live lines, through the
        // console, so that they scroll above the lines instead of through them.
        let nodeLogs: ChildProcess.Output = quiet ? .discard : live ? .forward { console.writeLine($0) } : .inherit
        // The nodes' "listening on" results are echoed as log lines, except into JSON logs,
        // which stay one object per line (their `started` events say the same).
        let echoResults = !quiet && logging.logFormat == .text
        let owner = try ChildProcess(
            name: "owner", executable: executable,
            arguments: ["owner", "--file", source, "--host", host, "--port", "\(ports[0])", "--dir", root + "/owner", "--peers", "\(peers)", "--chunk-size", "\(chunkSize)",
                        "--storage", storage.storage.rawValue] + (isPrivate ? ["--private"] : []) + httpArguments(0) + logging.childArguments,
            stdout: .lines(echo: echoResults), stderr: nodeLogs)
        var started: [ChildProcess] = [owner]
        do {
            guard await owner.waitForLine(prefix: "listening on", timeout: .seconds(timeout)) != nil else {
                throw DemoError("the owner did not start (exit status \(owner.exitStatus.map(String.init) ?? "none"))")
            }
            // Peers read the ticket from the owner's file, not from their command lines,
            // which other users of the machine can see.
            let ownerArguments: [String]
            if isPrivate {
                guard await owner.waitForLine(prefix: "ticket: ", timeout: .seconds(timeout)) != nil else {
                    throw DemoError("the owner printed no ticket (exit status \(owner.exitStatus.map(String.init) ?? "none"))")
                }
                ownerArguments = ["--ticket-file", root + "/owner/ticket"]
            } else {
                ownerArguments = ["--owner", address(ports[0])]
            }
            let clock = ContinuousClock()
            let start = clock.now
            let startMicros = Clock.nowMicros()
            var peerProcesses: [ChildProcess] = []
            var peerArguments: [[String]] = []
            for i in 1...peers {
                var arguments = ["peer", "--name", "peer\(i)"] + ownerArguments + ["--host", host, "--port", "\(ports[i])",
                                 "--dir", root + "/peer\(i)", "--wait-for-downloaders", "\(topology == .auto ? 1 : wiring.downloaders[i - 1])",
                                 "--storage", storage.storage.rawValue] + httpArguments(i) + logging.childArguments
                if topology == .auto {
                    // No one is pinned as anyone's downloader: a peer that nobody dialled
                    // stops waiting for downloaders after 5 s with none connected.
                    arguments += ["--neighbours", "\(neighbours)", "--neighbour-timeout", "5"]
                } else {
                    for source in wiring.downloadFrom[i - 1] {
                        arguments += ["--download-from", address(ports[source + 1])]
                    }
                }
                let peer = try ChildProcess(name: "peer\(i)", executable: executable, arguments: arguments,
                                            stdout: !echoResults ? .discard : live ? nodeLogs : .ourStderr, stderr: nodeLogs)
                peerProcesses.append(peer)
                peerArguments.append(arguments)
                started.append(peer)
            }
            let launched = peerProcesses
            let watcher = live ? Task { await DemoProgress.watch(launched, root: root, console: console) } : nil
            // Wait for every peer to exit, noting when each did.
            let deadline = Duration.milliseconds(Int64(timeout * 1000))
            let finishTimes: [(Int, Int32, Duration)]
            do {
                finishTimes = try await withDeadline(deadline) {
                    try await withThrowingTaskGroup(of: (Int, Int32, Duration).self) { group in
                        for (i, peer) in launched.enumerated() {
                            group.addTask {
                                // Ends when the process exits, or when the deadline cancels the wait.
                                let status = await peer.waitForExit(timeout: deadline) ?? -1
                                return (i, status, start.duration(to: clock.now))
                            }
                        }
                        var results: [(Int, Int32, Duration)] = []
                        for try await result in group { results.append(result) }
                        return results.sorted { $0.0 < $1.0 }
                    }
                }
            } catch {
                watcher?.cancel()
                await watcher?.value
                throw error
            }
            watcher?.cancel()
            await watcher?.value
            let elapsed = start.duration(to: clock.now)
            var complete = 0
            print("PeerShare demo: \(fileName), \(ByteSize.format(sourceSize)), \(peers) peers \(shape)\(storage.storage == .chunkFiles ? "" : ", stored as a single file")")
            for (i, status, time) in finishTimes {
                let copy = root + "/peer\(i + 1)/" + fileName
                let verdict: String
                do {
                    let identical = try sha256(ofFileAt: copy) == sourceHash
                    if status == 0 && identical { complete += 1 }
                    verdict = identical ? "identical to the source" : "DIFFERS from the source"
                } catch {
                    // Missing, or unreadable: say which, rather than calling it different.
                    verdict = FileManager.default.fileExists(atPath: copy) ? "unreadable (\(error.localizedDescription))" : "missing"
                }
                let completed = completionTime(ofPeerIn: root + "/peer\(i + 1)", since: startMicros).map { "complete after \(format($0)) s, " } ?? ""
                print("  peer\(i + 1): exit \(status), \(verdict), \(completed)done after \(format(time)) s")
            }
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            let megabytes = Double(sourceSize) * Double(peers) / 1e6
            print("result: \(complete)/\(peers) peers complete and identical, \(sourceSize) bytes each, \(format(elapsed)) s, \(String(format: "%.1f", seconds > 0 ? megabytes / seconds : 0)) MB/s delivered in total")
            if report { try writeReport(root: root) }
            guard complete == peers else {
                await owner.stop()
                throw ExitCode(1)
            }
            if keepServing {
                // The peers come back complete (they resume from their indexes) and stay up.
                for (i, arguments) in peerArguments.enumerated() {
                    started.append(try ChildProcess(name: "peer\(i + 1)", executable: executable, arguments: arguments + ["--keep-serving"],
                                                    stdout: .discard, stderr: nodeLogs))
                }
                printServing(fileName: fileName)
                // Out now, not at exit: a script waits for these lines while the swarm serves.
                fflush(nil)
                _ = await owner.waitForExit()
            }
            await owner.stop()
        } catch {
            for process in started { await process.stop(grace: .seconds(2)) }
            if error is DeadlineExceeded { throw DemoError("not every peer finished within \(Int(timeout)) s") }
            throw error
        }
    }

    /// The HTML picture of the run, from the peers' indexes (read-only), beside them.
    private func writeReport(root: String) throws {
        let path = root + "/swarm.html"
        let databases = try SwarmReport.databases(inDemoFolder: root)
        try SwarmReport.load(databases).html().write(toFile: path, atomically: true, encoding: .utf8)
        print("report: \(path)")
    }

    private func neighbourCount(_ k: Int) -> String { k == 1 ? "1 neighbour" : "\(k) neighbours" }

    /// When the peer assembled the file, from its index (a peer in a mesh exits only once
    /// its downloaders are complete too, so its exit is later).
    private func completionTime(ofPeerIn folder: String, since start: Int64) -> Duration? {
        guard let db = try? SQLiteConnection(path: folder + "/peer.db", mode: .readOnly),
              let assembled = try? db.scalarInt("SELECT assembled_at FROM manifest WHERE id = 1")
        else { return nil }
        let elapsed = assembled.subtractingReportingOverflow(start)
        return elapsed.overflow ? nil : .microseconds(max(0, elapsed.partialValue))
    }

    /// Creates the run folder, or clears the node folders of an earlier demo run in it.
    /// A non-empty folder that a demo did not make is left alone.
    private func prepareFolder(_ root: String) throws {
        let fm = FileManager.default
        let marker = root + "/.peershare-demo"
        // Only a folder that does not exist yet may go unlisted; any other failure is the answer.
        var contents: [String] = []
        if fm.fileExists(atPath: root) {
            do { contents = try fm.contentsOfDirectory(atPath: root) } catch { throw DemoError("cannot use \(root): \(error.localizedDescription)") }
        }
        if !contents.isEmpty {
            guard fm.fileExists(atPath: marker) else {
                throw DemoError("\(root) is not empty and was not made by peershare demo; choose another --dir")
            }
            for entry in contents where entry == "owner" || entry.hasPrefix("peer") {
                try fm.removeItem(atPath: root + "/" + entry)
            }
        }
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        _ = fm.createFile(atPath: marker, contents: Data("made by peershare demo; its node folders are replaced on each run\n".utf8))
    }

    /// A deterministic sample file: the same size always gives the same bytes.
    private func generateSample(in root: String) throws -> String {
        let path = root + "/sample-\(size.bytes).bin"
        if let existing = try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64, existing == size.bytes {
            return path
        }
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: path) else { throw DemoError("cannot create \(path)") }
        defer { try? handle.close() }
        var generator = SeededGenerator(seed: 0x5045_4552_5348_4152)  // "PEERSHAR"
        var remaining = size.bytes
        var block = [UInt8](repeating: 0, count: 1 << 20)
        while remaining > 0 {
            let count = Int(min(Int64(block.count), remaining))
            block.withUnsafeMutableBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for i in 0..<(count + 7) / 8 { words[i] = generator.next() }
            }
            try handle.write(contentsOf: block[0..<count])
            remaining -= Int64(count)
        }
        return path
    }

    private func format(_ duration: Duration) -> String {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return String(format: "%.2f", seconds)
    }
}

func sha256(ofFileAt path: String) throws -> Digest32 {
    guard let handle = FileHandle(forReadingAtPath: path) else { throw DemoError("cannot read \(path)") }
    defer { try? handle.close() }
    var hasher = SHA256()
    while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty {
        hasher.update(data: data)
    }
    return Digest32(hasher.finalize())
}

enum TopologyKind: String, ExpressibleByArgument, CaseIterable {
    case ring, mesh, auto
}

struct DemoError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension DemoCommand {
    /// Node `i`'s `--http` (0: the owner), when --http-port is given.
    func httpArguments(_ i: Int) -> [String] {
        guard let httpPort else { return [] }
        return ["--http", "\(Endpoint(host: host, port: httpPort + i))"]
    }
}

extension DemoCommand {
    /// Where the swarm can be reached while it keeps serving.
    func printServing(fileName: String) {
        print("serving: the owner and \(peers) peers stay up until stopped (Ctrl-C)")
        guard let httpPort else { return }
        let name = fileName.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? fileName
        for i in 0...peers {
            let base = "http://\(Endpoint(host: host, port: httpPort + i))"
            print("  \(i == 0 ? "owner" : "peer\(i)"): \(base)/files/\(name)  \(base)/metrics  \(base)/status")
        }
    }
}
