#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareStore
import PeerShareWire

public struct OwnerConfiguration: Sendable {
    public var file: String
    public var host: String
    public var port: Int
    public var directory: String
    public var databasePath: String
    public var expectedPeers: Int
    public var chunkSize: Int

    public init(file: String, host: String, port: Int, directory: String, databasePath: String, expectedPeers: Int, chunkSize: Int) {
        self.file = file
        self.host = host
        self.port = port
        self.directory = directory
        self.databasePath = databasePath
        self.expectedPeers = expectedPeers
        self.chunkSize = chunkSize
    }
}

public struct PeerConfiguration: Sendable {
    public var name: String
    public var owner: Endpoint
    public var host: String
    public var port: Int
    public var downloadFrom: [Endpoint]
    public var directory: String
    public var databasePath: String
    /// Requests kept outstanding per connection.
    public var window: Int
    /// Stay up after completing, serving anyone, until stopped.
    public var keepServing: Bool
    /// Downloaders that must hold the whole file before this peer may exit.
    public var waitForDownloaders: Int
    /// How long to keep retrying a connection before giving up.
    public var connectPatience: Duration

    public init(name: String, owner: Endpoint, host: String, port: Int, downloadFrom: [Endpoint], directory: String, databasePath: String,
                window: Int, keepServing: Bool, waitForDownloaders: Int, connectPatience: Duration) {
        self.name = name
        self.owner = owner
        self.host = host
        self.port = port
        self.downloadFrom = downloadFrom
        self.directory = directory
        self.databasePath = databasePath
        self.window = window
        self.keepServing = keepServing
        self.waitForDownloaders = waitForDownloaders
        self.connectPatience = connectPatience
    }
}

/// Prints the "listening on" line that scripts and the demo wait for, on stdout.
func announce(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(1, $0, strlen($0)) }
}

/// Accepts connections until cancelled, one child task per connection. A connection's
/// failure is logged and ends only that connection.
func serve(_ listener: Transport.Listener, node: Node) async throws {
    try await withThrowingDiscardingTaskGroup { group in
        try await listener.channel.executeThenClose { inbound in
            for try await connection in inbound {
                group.addTask {
                    do {
                        try await UploadSession(node: node, channel: connection).run()
                    } catch where !Task.isCancelled {
                        await node.log(.disconnected, "upload connection ended: \(error)", level: .warning)
                    } catch {}
                }
            }
        }
    }
}

public enum OwnerRole {
    public static func run(_ config: OwnerConfiguration, logger: Logger) async throws {
        let directory = try ChunkDirectory(root: config.directory)
        let node = try Node(name: "owner", role: .owner, directory: directory, databasePath: config.databasePath, logger: logger)
        do {
            await node.log(.started, "started (pid \(getpid())); splitting \(config.file) into chunks of \(config.chunkSize) bytes")
            let indexed = try await node.ownedChunkHashes()
            let started = Clock.nowMicros()
            let split = try await NIOThreadPool.singleton.runIfActive {
                try FileSplitter.split(path: config.file, chunkSize: config.chunkSize, into: directory, indexed: indexed)
            }
            try await node.saveOwnerManifest(split.manifest)
            let seconds = Double(Clock.nowMicros() - started) / 1e6
            let manifest = split.manifest
            try await node.recordOwnedChunks(split.newChunks, event: EventRecord(
                kind: .split,
                message: "split \(manifest.fileName): \(manifest.fileSize) bytes into \(manifest.chunkCount) chunks (\(split.newChunks.count) written, \(split.reused) reused) in \(formatMillis(seconds * 1000)) ms, file SHA-256 \(manifest.fileHash.short)"))
            logger.info("split \(manifest.fileName): \(manifest.fileSize) bytes into \(manifest.chunkCount) chunks (\(split.newChunks.count) written, \(split.reused) reused), file SHA-256 \(manifest.fileHash.short)")
            try await node.adoptOwnedManifest(manifest, expectedPeers: config.expectedPeers)
            let listener = try await Transport.listen(host: config.host, port: config.port)
            let endpoint = Endpoint(host: config.host, port: listener.port)
            await node.log(.started, "owner listening on \(endpoint), serving \(manifest.fileName) to any number of peers")
            announce("listening on \(endpoint)")
            try await serve(listener, node: node)
            await node.close(outcome: "stopped")
        } catch {
            await node.close(outcome: Task.isCancelled ? "stopped by signal" : "failed: \(error)")
            if Task.isCancelled { return }
            throw error
        }
    }
}

public enum PeerRole {
    public static func run(_ config: PeerConfiguration, logger: Logger) async throws {
        let directory = try ChunkDirectory(root: config.directory)
        let node = try Node(name: config.name, role: .peer, directory: directory, databasePath: config.databasePath, logger: logger)
        do {
            let listener = try await Transport.listen(host: config.host, port: config.port)
            let endpoint = Endpoint(host: config.host, port: listener.port)
            let held = await node.heldCount
            await node.log(.started, "started (pid \(getpid())), listening on \(endpoint)\(held > 0 ? ", resuming with \(held) chunks" : "")")
            announce("listening on \(endpoint)")
            await node.assembleIfComplete()
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await serve(listener, node: node)
                    return false
                }
                group.addTask {
                    try await fetchFromOwner(config, node: node)
                    return false
                }
                for neighbour in config.downloadFrom {
                    group.addTask {
                        try await fetchFromNeighbour(neighbour, config: config, node: node)
                        return false
                    }
                }
                let wait = config.waitForDownloaders
                let keepServing = config.keepServing
                group.addTask {
                    try await node.waitUntil {
                        $0.failure != nil
                            || (!keepServing && $0.isAssembled && $0.summaryIsCurrent && $0.completeDownloaderCount >= wait)
                    }
                    return true
                }
                for try await done in group where done {
                    group.cancelAll()
                    break
                }
            }
            if let failure = await node.failure { throw NodeError.failed(failure) }
            await node.log(.stopped, "done: file assembled and \(config.waitForDownloaders == 0 ? "no downloader to wait for" : "upload neighbour complete")")
            await node.close(outcome: "complete")
        } catch {
            await node.close(outcome: Task.isCancelled ? "stopped by signal" : "failed: \(error)")
            if Task.isCancelled { return }
            throw error
        }
    }

    private static func fetchFromOwner(_ config: PeerConfiguration, node: Node) async throws {
        var reconnects = 0
        while true {
            if await node.isComplete { return }
            let channel = try await Transport.connect(to: config.owner, patience: config.connectPatience) { attempt, reason, delay in
                await node.log(.connectRetry, "owner at \(config.owner) not reachable (\(reason)); retry \(attempt) in \(delay.milliseconds) ms")
            }
            await node.log(.connected, source: .init(kind: .owner, name: "owner"), "connected to the owner at \(config.owner)")
            do {
                _ = try await DownloadSession(node: node, channel: channel, remote: .owner, endpoint: config.owner, window: config.window).run()
                await node.log(.disconnected, source: .init(kind: .owner, name: "owner"), "holds its whole share; closed the owner connection")
                return
            } catch where isRecoverable(error) && reconnects < 20 {
                reconnects += 1
                await node.log(.disconnected, "lost the owner connection: \(error); reconnecting", level: .warning)
            }
        }
    }

    private static func fetchFromNeighbour(_ neighbour: Endpoint, config: PeerConfiguration, node: Node) async throws {
        try await node.waitUntil { $0.manifest != nil || $0.failure != nil }
        var reconnects = 0
        while true {
            // Even a complete peer connects once: its chunk list tells the neighbour (which
            // serves it) that it may stop.
            let channel: PeerChannel
            do {
                channel = try await Transport.connect(to: neighbour, patience: config.connectPatience) { attempt, reason, delay in
                    await node.log(.connectRetry, "download neighbour \(neighbour) not reachable (\(reason)); retry \(attempt) in \(delay.milliseconds) ms")
                }
            } catch {
                guard await node.isComplete else { throw error }
                await node.log(.disconnected, "download neighbour \(neighbour) is gone, and nothing is missing: \(error)")
                return
            }
            await node.log(.connected, "connected to download neighbour \(neighbour)")
            do {
                _ = try await DownloadSession(node: node, channel: channel, remote: .neighbour, endpoint: neighbour, window: config.window).run()
                return
            } catch where isRecoverable(error) && reconnects < 20 {
                reconnects += 1
                await node.log(.disconnected, "lost download neighbour \(neighbour): \(error); reconnecting", level: .warning)
            }
        }
    }
}

/// A lost or broken connection is worth another try; a changed file or a local failure is not.
private func isRecoverable(_ error: any Error) -> Bool {
    if Task.isCancelled { return false }
    guard let error = error as? NodeError else { return true }
    switch error {
    case .protocolViolation, .badChunk, .notHeld: return true
    case .manifestChanged, .unreachable, .failed, .notAnOwner: return false
    }
}

extension Duration {
    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
