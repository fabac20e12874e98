import Crypto
import Foundation
import PeerShareCLI
import Testing
@testable import PeerShareCore
@testable import PeerShareStore
@testable import PeerShareTorrent

/// An owner and one complete peer, each serving --http: two web seeds of one file.
struct SeededSwarm {
    let dir: String
    let owner: ChildProcess
    let peer: ChildProcess
    let ownerHTTP: Int
    let peerHTTP: Int

    static func start(fileSize: Int, peerStorage: StorageLayout = .chunkFiles, label: String = #function) async throws -> SeededSwarm {
        let dir = temporaryDirectory(label)
        let (owner, wire, ownerHTTP) = try await startObservedOwner(dir: dir, fileSize: fileSize, peers: 1)
        do {
            let peer = try startPeer("peer1", storage: peerStorage, dir: dir, owner: "127.0.0.1:\(wire)",
                                     options: ["--http", "127.0.0.1:0", "--keep-serving", "--wait-for-downloaders", "0"])
            let peerHTTP = try await httpPort(of: peer)
            guard await waitForAssembly(peer, timeout: .seconds(90)) else { throw SwarmError("peer1 did not assemble:\n" + tail(dir + "/peer1.log")) }
            return SeededSwarm(dir: dir, owner: owner, peer: peer, ownerHTTP: ownerHTTP, peerHTTP: peerHTTP)
        } catch {
            owner.signal(SIGKILL)
            throw error
        }
    }

    func stop() {
        for process in [peer, owner] { process.signal(SIGKILL) }
    }

    var source: String { dir + "/source.bin" }

    /// A .torrent from the owner's index, with these nodes' /files/ as its web seeds.
    func torrent(seeds: [Int], extra: [String] = [], name: String = "source.torrent") async throws -> String {
        let out = dir + "/" + name
        var arguments = ["torrent", "--db", dir + "/owner/owner.db", "--out", out] + extra
        for port in seeds { arguments += ["--web-seed", "http://127.0.0.1:\(port)/files/"] }
        let result = try await runCommand(Binaries.peershare, arguments)
        guard result.status == 0 else { throw SwarmError("peershare torrent failed: \(result.stderr)") }
        return out
    }
}

/// Debian's python3 with python3-libtorrent, if installed.
enum Libtorrent {
    static let python = "/usr/bin/python3"
    /// Debian installs the module as /usr/lib/python3/dist-packages/libtorrent.cpython-*.so.
    static let available: Bool = FileManager.default.isExecutableFile(atPath: python)
        && ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/python3/dist-packages")) ?? []).contains { $0.hasPrefix("libtorrent") }

    /// Downloads with web seeds only: DHT, local service discovery, UPnP, NAT-PMP and
    /// peer exchange off (no default plugins), listening on 127.0.0.1 only.
    static let script = #"""
    import sys, time
    import libtorrent as lt
    torrent, save, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
    until_hash_failure = len(sys.argv) > 4 and sys.argv[4] == "until-hash-failure"
    settings = {"listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                "enable_upnp": False, "enable_natpmp": False,
                "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification}
    ses = lt.session(settings, 0)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = save
    params.flags = lt.torrent_flags.disable_pex | lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
    handle = ses.add_torrent(params)
    failed = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.hash_failed_alert):
                failed += 1
        if until_hash_failure and failed > 0:
            print("refused; hash failures: %d" % failed, flush=True)
            sys.exit(0)
        if handle.status().is_finished:
            print("finished; hash failures: %d" % failed, flush=True)
            sys.exit(0)
        ses.wait_for_alert(200)
    print("not finished: %s" % handle.status().state, flush=True)
    sys.exit(1)
    """#
}

@Suite("BitTorrent clients fetch from PeerShare web seeds", .serialized)
struct TorrentTests {
    static let size = 1_500_000

    @Test("peershare torrent writes a bencoded v1 .torrent: SHA-1 pieces of the file, url-list, the private flag")
    func writesTorrent() async throws {
        let swarm = try await SeededSwarm.start(fileSize: Self.size)
        defer { swarm.stop() }
        let path = try await swarm.torrent(seeds: [swarm.ownerHTTP, swarm.peerHTTP], extra: ["--piece-size", "64KiB", "--private"])
        let torrent = try BencodeDecoder.decode(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        let info = try #require(torrent["info"])
        #expect(info["name"] == .string("source.bin") && info["length"] == .integer(Int64(Self.size)))
        #expect(info["piece length"] == .integer(65_536) && info["private"] == .integer(1))
        #expect(torrent["url-list"] == .list([.string("http://127.0.0.1:\(swarm.ownerHTTP)/files/"), .string("http://127.0.0.1:\(swarm.peerHTTP)/files/")]))
        guard case .bytes(let pieces)? = info["pieces"] else { Issue.record("no pieces"); return }
        let file = Array(try Data(contentsOf: URL(fileURLWithPath: swarm.source)))
        let expected = stride(from: 0, to: file.count, by: 65_536).flatMap { Array(Insecure.SHA1.hash(data: file[$0..<min($0 + 65_536, file.count)])) }
        #expect(pieces == expected)
    }

    @Test("peershare torrent refuses, with one line, an index without a complete file and a bad piece size or URL")
    func refusals() async throws {
        let dir = temporaryDirectory()
        let (owner, wire, _) = try await startObservedOwner(dir: dir, fileSize: 2_000_000, peers: 1, options: ["--max-upload-rate", "100KiB"])
        defer { owner.signal(SIGKILL) }
        let peer = try startPeer("peer1", storage: .chunkFiles, dir: dir, owner: "127.0.0.1:\(wire)", options: ["--wait-for-downloaders", "0"])
        defer { peer.signal(SIGKILL) }
        #expect(await peer.waitForLine(timeout: .seconds(30)) { receivedChunk($0, from: "owner") } != nil)
        let seed = ["--web-seed", "http://127.0.0.1:1/files/"]
        let cases: [([String], String)] = [
            (["--db", dir + "/peer1/peer.db", "--out", dir + "/t"] + seed, "holds no complete file"),
            (["--db", dir + "/owner/owner.db", "--out", dir + "/t", "--piece-size", "100KiB"] + seed, "power of two"),
            (["--db", dir + "/owner/owner.db", "--out", dir + "/t", "--piece-size", "8KiB"] + seed, "power of two"),
            (["--db", dir + "/owner/owner.db", "--out", dir + "/t", "--piece-size", "32MiB"] + seed, "power of two"),
            (["--db", dir + "/owner/owner.db", "--out", dir + "/t"], "--web-seed"),
            (["--db", dir + "/owner/owner.db", "--out", dir + "/t", "--web-seed", "ftp://x/"], "http://"),
            (["--db", dir + "/nope.db", "--out", dir + "/t"] + seed, "no such file"),
        ]
        for (arguments, reason) in cases {
            let result = try await runCommand(Binaries.peershare, ["torrent"] + arguments)
            #expect(result.status != 0 && result.stderr.contains(reason), "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/t"))
    }

    @Test("aria2c downloads the file through the .torrent from two PeerShare web seeds, byte for byte",
          .enabled(if: SystemTool.path("aria2c") != nil, "aria2c is not installed (Debian's aria2 package)"))
    func aria2() async throws {
        let swarm = try await SeededSwarm.start(fileSize: Self.size)
        defer { swarm.stop() }
        let torrent = try await swarm.torrent(seeds: [swarm.ownerHTTP, swarm.peerHTTP])
        let out = try await Self.aria2c(torrent, into: swarm.dir + "/aria2")
        #expect(fileDigest(out) == fileDigest(swarm.source))
    }

    @Test("python3-libtorrent downloads the file through the .torrent from two PeerShare web seeds, byte for byte",
          .enabled(if: Libtorrent.available, "python3-libtorrent is not installed"))
    func libtorrent() async throws {
        let swarm = try await SeededSwarm.start(fileSize: Self.size)
        defer { swarm.stop() }
        let torrent = try await swarm.torrent(seeds: [swarm.ownerHTTP, swarm.peerHTTP])
        let (out, _) = try await Self.libtorrentGet(torrent, into: swarm.dir + "/lt")
        #expect(fileDigest(out) == fileDigest(swarm.source))
    }

    @Test("a web seed that serves corrupted bytes: aria2c and libtorrent take them, detect the bad pieces and finish from the honest seed")
    func lyingSeed() async throws {
        let swarm = try await SeededSwarm.start(fileSize: Self.size, peerStorage: .singleFile)
        defer { swarm.stop() }
        // Damage the peer's copy behind its back (as a failing disk would), one byte in every
        // 16 KiB block: whatever a client takes from it fails its piece's hash. The peer serves
        // what is there.
        let copy = swarm.dir + "/peer1/source.bin"
        let handle = try #require(FileHandle(forUpdatingAtPath: copy))
        for offset in stride(from: 1_000, to: Self.size, by: 16_384) {
            try handle.seek(toOffset: UInt64(offset))
            let byte = try #require(try handle.read(upToCount: 1)?.first)
            try handle.seek(toOffset: UInt64(offset))
            try handle.write(contentsOf: [byte ^ 0xFF])
        }
        try handle.close()
        // First the liar alone: each client takes its bytes and refuses them (deterministic,
        // where with both seeds listed a client may never pick the liar). Then, in the same
        // folder, the liar and the honest owner: the client finishes, byte for byte.
        let liarOnly = try await swarm.torrent(seeds: [swarm.peerHTTP], name: "liar.torrent")
        let both = try await swarm.torrent(seeds: [swarm.peerHTTP, swarm.ownerHTTP], name: "both.torrent")
        if SystemTool.path("aria2c") != nil {
            let folder = swarm.dir + "/aria2"
            #expect(try await Self.aria2cRefuses(liarOnly, into: folder), "aria2c did not report a bad piece from the lying seed")
            let out = try await Self.aria2c(both, into: folder)
            #expect(fileDigest(out) == fileDigest(swarm.source), "aria2c kept a bad piece")
        }
        if Libtorrent.available {
            let folder = swarm.dir + "/lt"
            let (_, refused) = try await Self.libtorrentGet(liarOnly, into: folder, untilHashFailure: true)
            #expect(refused.contains("hash failures: ") && !refused.contains("hash failures: 0"), "\(refused)")
            let (out, _) = try await Self.libtorrentGet(both, into: folder)
            #expect(fileDigest(out) == fileDigest(swarm.source), "libtorrent kept a bad piece")
        }
    }

    /// Runs aria2c on a torrent whose only seed lies, until it reports the bad piece ("Invalid
    /// checksum"), then stops it: it would otherwise wait for a seed that never comes.
    static func aria2cRefuses(_ torrent: String, into folder: String) async throws -> Bool {
        let aria2 = try ChildProcess(name: "aria2c", executable: try #require(SystemTool.path("aria2c")), arguments: aria2Arguments(torrent, into: folder),
                                     stdout: .lines(echo: false), stderr: .lines(echo: false))
        defer { aria2.signal(SIGKILL) }
        let refused = await aria2.waitForLine(timeout: .seconds(60)) { $0.contains("Invalid checksum") } != nil
        aria2.signal(SIGKILL)
        _ = await aria2.waitForExit(timeout: .seconds(10))
        return refused
    }

    /// aria2c with DHT, LPD and peer exchange off, listening only where told; returns the copy's path.
    static func aria2c(_ torrent: String, into folder: String) async throws -> String {
        let result = try await runCommand(try #require(SystemTool.path("aria2c")), try aria2Arguments(torrent, into: folder), timeout: .seconds(120))
        #expect(result.status == 0, "aria2c: \(result.stdout.suffix(800)) \(result.stderr.suffix(800))")
        return folder + "/source.bin"
    }

    /// The copy's path, and the script's report ("finished; hash failures: N").
    static func aria2Arguments(_ torrent: String, into folder: String) throws -> [String] {
        let ports = try reserveFreePorts(2)
        return ["--dir", folder, "--seed-time=0", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                "--enable-peer-exchange=false", "--listen-port=\(ports[0])", "--dht-listen-port=\(ports[1])", "--file-allocation=none",
                "--summary-interval=0", "--console-log-level=warn", "--bt-stop-timeout=60", torrent]
    }

    static func libtorrentGet(_ torrent: String, into folder: String, untilHashFailure: Bool = false) async throws -> (String, String) {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let script = folder + "/get.py"
        try Libtorrent.script.write(toFile: script, atomically: true, encoding: .utf8)
        let result = try await runCommand(Libtorrent.python, [script, torrent, folder, "90"] + (untilHashFailure ? ["until-hash-failure"] : []),
                                          timeout: .seconds(120))
        #expect(result.status == 0, "libtorrent: \(result.stdout) \(result.stderr.suffix(800))")
        return (folder + "/source.bin", result.stdout)
    }
}
