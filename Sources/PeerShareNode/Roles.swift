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
    /// Re-hash the source and every chunk file even if nothing seems to have changed.
    public var recheck = false
    /// Discard an earlier index and chunks in the folder and split the file afresh.
    public var newManifest = false
    public var maxUploadRate: Int?
    public var limits = SessionLimits()

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
    /// How long to keep retrying the owner before giving up.
    public var connectPatience: Duration
    /// How long a download neighbour may stay unreachable before it is given up on.
    public var neighbourPatience: Duration = .seconds(60)
    /// Re-hash every indexed chunk at start-up.
    public var recheck = false
    public var maxUploadRate: Int?
    public var limits = SessionLimits()
    /// Called with a snapshot after every change of what the peer holds (for a live progress
    /// line); nil for none.
    public var onProgress: (@Sendable (NodeProgress) -> Void)?

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

/// Once the peer holds and has assembled the whole file, a stretch of `patience` with no
/// downloader connected ends its wait for downloaders (`Node.stopWaitingForDownloaders`).
/// The stretch restarts whenever one connects. A timer by design: it bounds a wait for an
/// event that may never come.
func giveUpOnAbsentDownloaders(node: Node, patience: Duration) async throws {
    while true {
        try await node.waitUntil { $0.isComplete && $0.isAssembled && $0.openUploadConnectionCount == 0 }
        let someoneConnected = try await withThrowingTaskGroup(of: Bool.self) { race in
            race.addTask { try await node.waitUntil { $0.openUploadConnectionCount > 0 }; return true }
            race.addTask { try await Task.sleep(for: patience); return false }
            let first = try await race.next() ?? false
            race.cancelAll()
            return first
        }
        if !someoneConnected {
            await node.stopWaitingForDownloaders(after: patience)
            return
        }
    }
}

/// Accepts connections until cancelled, one child task per connection. A connection's
/// failure is logged and ends only that connection.
func serve(_ listener: Transport.Listener, node: Node) async throws {
    try await withThrowingDiscardingTaskGroup { group in
        try await listener.channel.executeThenClose { inbound in
            for try await connection in inbound {
                guard await node.admitConnection() else {
                    // Over the cap: close at once rather than queue, so a flood of
                    // connections costs us nothing but the accept.
                    await node.log(.protocolError, "refused a connection from \(connection.remote): \(await node.limits.maxConnections) connections already open", level: .warning)
                    try? await connection.channel.executeThenClose { _, _ in }
                    continue
                }
                let peer = connection.remote
                group.addTask {
                    do {
                        try await UploadSession(node: node, channel: connection.channel).run()
                    } catch where !Task.isCancelled {
                        if isMisbehaviour(error) {
                            await node.log(.protocolError, "dropped \(peer): \(error)", level: .warning)
                        } else {
                            await node.log(.disconnected, "upload connection from \(peer) ended: \(error)", level: .warning)
                        }
                    } catch {}
                    await node.connectionClosed()
                }
            }
        }
    }
}

public enum OwnerRole {
    public static func run(_ config: OwnerConfiguration, logger: Logger) async throws {
        if config.newManifest { try archivePreviousRun(config, logger: logger) }
        let directory = try ChunkDirectory(root: config.directory)
        let node = try Node(name: "owner", role: .owner, directory: directory, databasePath: config.databasePath, logger: logger)
        await node.limitUploads(toBytesPerSecond: config.maxUploadRate)
        await node.setLimits(config.limits)
        do {
            await node.log(.started, "started (pid \(getpid())) on \(config.file), chunks of \(config.chunkSize) bytes")
            let manifest = try await prepareChunks(config, node: node, directory: directory, logger: logger)
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

    /// Splits the file, or on a restart reuses what the index and folder already hold.
    /// A source whose size and modification time are unchanged is not read again; one that
    /// changed is re-hashed, and refused if its content differs from the indexed manifest.
    private static func prepareChunks(_ config: OwnerConfiguration, node: Node, directory: ChunkDirectory, logger: Logger) async throws -> Manifest {
        let stat: PosixFiles.Status
        do { stat = try PosixFiles.status(config.file) } catch { throw NodeError.failed(error.description) }
        guard stat.isRegularFile else { throw NodeError.failed("cannot share \(config.file): not a regular file") }
        let started = Clock.nowMicros()
        if let indexed = await node.manifest {
            let recordedTime = try await node.sourceModificationTime()
            let unchanged = stat.size == indexed.fileSize && stat.modificationNanoseconds != nil && recordedTime == stat.modificationNanoseconds
            if !unchanged || config.recheck {
                let fresh = try await NIOThreadPool.singleton.runIfActive {
                    try FileSplitter.hash(path: config.file, chunkSize: indexed.chunkSize)
                }
                guard fresh.fileHash == indexed.fileHash, fresh.fileSize == indexed.fileSize else {
                    throw NodeError.manifestChanged("\(config.file) changed since it was split into \(config.directory) (now \(fresh.fileSize) bytes, \(fresh.fileHash.short); indexed \(indexed.fileSize) bytes, \(indexed.fileHash.short)); pass --new-manifest to split it afresh, or use another --dir")
                }
                if let time = stat.modificationNanoseconds { try await node.setSourceModificationTime(time) }
            }
            guard config.chunkSize == indexed.chunkSize else {
                throw NodeError.manifestChanged("\(config.directory) holds chunks of \(indexed.chunkSize) bytes, not \(config.chunkSize); pass --new-manifest to split afresh")
            }
            // Chunk files that went missing or were damaged are cut again from the source.
            let repaired = try await node.repairOwnedChunks(from: config.file, recheck: config.recheck)
            let millis = Double(Clock.nowMicros() - started) / 1000
            await node.log(.split, "reusing \(indexed.chunkCount) chunks of \(indexed.fileName) from an earlier run (\(repaired) cut again from the source) in \(formatMillis(millis)) ms; source \(unchanged && !config.recheck ? "unchanged, not re-read" : "re-hashed and identical")")
            return indexed
        }
        let split = try await NIOThreadPool.singleton.runIfActive {
            try FileSplitter.split(path: config.file, chunkSize: config.chunkSize, into: directory)
        }
        let manifest = split.manifest
        try await node.saveOwnerManifest(manifest)
        if let time = stat.modificationNanoseconds { try await node.setSourceModificationTime(time) }
        let millis = Double(Clock.nowMicros() - started) / 1000
        try await node.recordOwnedChunks(split.newChunks, event: EventRecord(
            kind: .split,
            message: "split \(manifest.fileName): \(manifest.fileSize) bytes into \(manifest.chunkCount) chunks in \(formatMillis(millis)) ms, file SHA-256 \(manifest.fileHash.short)"))
        return manifest
    }

    /// --new-manifest: the old index is kept aside for its history; the old chunks go.
    private static func archivePreviousRun(_ config: OwnerConfiguration, logger: Logger) throws {
        guard PosixFiles.fileSize(config.databasePath) != nil else { return }
        let suffix = ".replaced-\(Clock.nowMicros() / 1_000_000)"
        for extra in ["", "-wal", "-shm"] where PosixFiles.fileSize(config.databasePath + extra) != nil {
            guard rename(config.databasePath + extra, config.databasePath + suffix + extra) == 0 else {
                throw FileSystemError(operation: "cannot move aside", path: config.databasePath + extra, errno: errno)
            }
        }
        let chunks = config.directory + "/chunks"
        for name in PosixFiles.listDirectory(chunks) where ChunkDirectory.chunkID(fromFileName: name) != nil || name.hasPrefix(PosixFiles.temporaryPrefix) {
            unlink(chunks + "/" + name)
        }
        logger.info("--new-manifest: the previous index is kept as \(config.databasePath + suffix); its chunk files were removed")
    }
}

public enum PeerRole {
    public static func run(_ config: PeerConfiguration, logger: Logger) async throws {
        let directory = try ChunkDirectory(root: config.directory)
        let node = try Node(name: config.name, role: .peer, directory: directory, databasePath: config.databasePath, logger: logger)
        await node.limitUploads(toBytesPerSecond: config.maxUploadRate)
        await node.setLimits(config.limits)
        do {
            try await node.prepare(recheck: config.recheck)
            await node.expectNeighbours(config.downloadFrom.count)
            let listener = try await Transport.listen(host: config.host, port: config.port)
            let endpoint = Endpoint(host: config.host, port: listener.port)
            let held = await node.heldCount
            await node.log(.started, "started (pid \(getpid())), listening on \(endpoint)\(held > 0 ? ", resuming with \(held) chunks" : "")")
            announce("listening on \(endpoint)")
            try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await serve(listener, node: node)
                    return false
                }
                group.addTask {
                    try await fetchFromOwner(config, node: node)
                    return false
                }
                if let report = config.onProgress {
                    // Every change the node broadcasts, as a snapshot; ends when the group is cancelled.
                    group.addTask {
                        let changes = await node.subscribe()
                        report(await node.progress)
                        for await _ in changes { report(await node.progress) }
                        return false
                    }
                }
                for neighbour in config.downloadFrom {
                    group.addTask {
                        try await fetchFromNeighbour(neighbour, config: config, node: node)
                        await node.neighbourFetchFinished()
                        return false
                    }
                }
                let wait = config.waitForDownloaders
                let keepServing = config.keepServing
                let neighbours = config.downloadFrom.count
                if wait > 0 && !keepServing {
                    let patience = config.neighbourPatience
                    group.addTask {
                        try await giveUpOnAbsentDownloaders(node: node, patience: patience)
                        return false
                    }
                }
                group.addTask {
                    try await node.waitUntil {
                        $0.failure != nil
                            || (!keepServing && $0.isComplete && $0.isAssembled && $0.summaryIsCurrent
                                && ($0.completeDownloaderCount >= wait || $0.gaveUpOnDownloaders)
                                && $0.finishedNeighbourFetches == neighbours)
                    }
                    return true
                }
                for try await done in group where done {
                    group.cancelAll()
                    break
                }
            }
            if let failure = await node.failure { throw NodeError.failed(failure) }
            let downloaders = config.waitForDownloaders == 0 ? "no downloader to wait for"
                : await node.gaveUpOnDownloaders ? "no downloader left to wait for" : "upload neighbour complete"
            await node.log(.stopped, "done: file assembled and \(downloaders)")
            await node.close(outcome: "complete")
        } catch {
            await node.close(outcome: Task.isCancelled ? "stopped by signal" : "failed: \(error)")
            if Task.isCancelled { return }
            throw error
        }
    }

    /// Talks to the owner whenever it is needed: for the manifest and share, and for
    /// everything missing if the neighbours were given up on. A peer that already holds its
    /// share does not need the owner to be up at all.
    private static func fetchFromOwner(_ config: PeerConfiguration, node: Node) async throws {
        let owner = ChunkIndex.Source(kind: .owner, name: "owner")
        var reconnects = 0
        while true {
            try await node.waitUntil { $0.needsOwner || $0.failure != nil }
            if await node.failure != nil { return }
            let channel: PeerChannel
            do {
                channel = try await Transport.connect(to: config.owner, patience: config.connectPatience) { attempt, reason, delay in
                    await node.log(.connectRetry, "owner at \(config.owner) not reachable (\(reason)); retry \(attempt) in \(delay.milliseconds) ms")
                }
            } catch where !Task.isCancelled {
                // An owner that left once the swarm holds the file is no loss: the neighbours
                // carry on. Without the manifest, or with no neighbour left, it is the end.
                let neighbours = await node.liveNeighbours
                guard await node.manifest != nil, neighbours > 0 else { throw error }
                await node.log(.disconnected, source: owner, "the owner at \(config.owner) is gone (\(error)); carrying on with \(neighbours) download neighbour(s)", level: .warning)
                try await node.waitUntil { $0.failure != nil || $0.isComplete || $0.liveNeighbours == 0 }
                continue
            }
            await node.log(.connected, source: owner, "connected to the owner at \(config.owner)")
            do {
                _ = try await DownloadSession(node: node, channel: channel, remote: .owner, endpoint: config.owner, window: config.window).run()
                await node.log(.disconnected, source: owner, "nothing more needed from the owner; closed the connection")
            } catch where isRecoverable(error) && !(error is WireError) && reconnects < 20 {
                // A dropped connection is retried (the owner may be restarting); malformed
                // bytes from the owner are not, since it is the one source of the manifest.
                reconnects += 1
                await node.log(.disconnected, "lost the owner connection: \(error); reconnecting", level: .warning)
            } catch where isMisbehaviour(error) && !Task.isCancelled {
                // Without the manifest, or with no neighbour left, there is nothing to go on
                // with. Otherwise the owner is avoided and the neighbours carry on: a peer
                // that serves others is not taken down by one bad connection.
                let neighbours = await node.liveNeighbours
                guard await node.manifest != nil, neighbours > 0 else {
                    await node.log(.protocolError, source: owner, "the owner at \(config.owner) broke the protocol: \(error)", level: .error)
                    throw NodeError.failed("the owner at \(config.owner) broke the protocol: \(error)")
                }
                await node.log(.protocolError, source: owner, "the owner at \(config.owner) broke the protocol: \(error); avoiding it, carrying on with \(neighbours) download neighbour(s)", level: .warning)
                // Until the neighbours finish the file, or turn out unable to (none left, or
                // stalled on chunks only the owner has): then the peer cannot complete.
                try await node.waitUntil { $0.failure != nil || $0.isComplete || $0.ownerServesEverything }
                if await !node.isComplete, await node.failure == nil {
                    throw NodeError.failed("the owner at \(config.owner) broke the protocol (\(error)), and the download neighbours cannot supply the rest")
                }
                return
            }
        }
    }

    /// Trades with one download neighbour, reconnecting when it drops. If it stays
    /// unreachable for the neighbour timeout, the owner is asked for what is missing instead.
    private static func fetchFromNeighbour(_ neighbour: Endpoint, config: PeerConfiguration, node: Node) async throws {
        try await node.waitUntil { $0.manifest != nil || $0.failure != nil }
        if await node.hasToldComplete(neighbour) {
            // It knows already, and may well have finished and gone.
            return
        }
        var reconnects = 0
        while true {
            // Even a complete peer connects once: its chunk list tells the neighbour (which
            // serves it) that it may stop.
            let channel: PeerChannel
            do {
                // Even once complete from other sources, keep trying: the neighbour waits to
                // hear that this peer (its downloader) is complete before it may exit.
                channel = try await Transport.connect(to: neighbour, patience: config.neighbourPatience) { attempt, reason, delay in
                    await node.log(.connectRetry, "download neighbour \(neighbour) not reachable (\(reason)); retry \(attempt) in \(delay.milliseconds) ms")
                }
            } catch where !Task.isCancelled {
                if await node.isComplete {
                    await node.log(.disconnected, "download neighbour \(neighbour) is gone, and nothing is missing: \(error)")
                } else {
                    await node.neighbourGaveUp(neighbour, because: "download neighbour \(neighbour) unreachable for \(config.neighbourPatience.seconds) s")
                }
                return
            }
            await node.log(.connected, "connected to download neighbour \(neighbour)")
            do {
                _ = try await DownloadSession(node: node, channel: channel, remote: .neighbour, endpoint: neighbour, window: config.window).run()
                return
            } catch where isRecoverable(error) && reconnects < 50 {
                reconnects += 1
                if isMisbehaviour(error) {
                    await node.log(.protocolError, "download neighbour \(neighbour) broke the protocol: \(error); reconnecting", level: .warning)
                } else {
                    await node.log(.disconnected, "lost download neighbour \(neighbour): \(error); reconnecting", level: .warning)
                }
            } catch where !Task.isCancelled && (isMisbehaviour(error) || !(error is NodeError)) {
                // A neighbour of another swarm, one that keeps sending bad chunks, or one that
                // broke the protocol on every reconnect: avoid it. The other neighbours carry
                // on; with none left, the owner is asked instead.
                await node.log(.protocolError, "avoiding download neighbour \(neighbour) from now on: \(error)", level: .warning)
                await node.neighbourGaveUp(neighbour, because: "download neighbour \(neighbour) misbehaved")
                return
            }
        }
    }
}

/// A lost or broken connection is worth another try; a changed file, a local failure or a
/// remote that keeps sending bad data is not.
private func isRecoverable(_ error: any Error) -> Bool {
    if Task.isCancelled { return false }
    guard let error = error as? NodeError else { return true }
    switch error {
    case .protocolViolation, .badChunk, .notHeld: return true
    case .manifestChanged, .unreachable, .failed, .notAnOwner, .misbehaving: return false
    }
}

/// Errors that are the remote's fault: bytes that break the protocol, a different swarm,
/// chunks that fail verification. They are logged as `protocol_error` events.
func isMisbehaviour(_ error: any Error) -> Bool {
    switch error {
    case is WireError: true
    case NodeError.protocolViolation, NodeError.misbehaving: true
    default: false
    }
}
