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
import PeerShareTrust
import PeerShareWire

public enum PeerRole {
    public static func run(_ config: PeerConfiguration, logger: Logger) async throws {
        let store = try makeChunkStore(config.storage, root: config.directory)
        let node = try Node(name: config.name, role: .peer, store: store, databasePath: config.databasePath, logger: logger)
        await node.limitUploads(toBytesPerSecond: config.maxUploadRate)
        await node.setLimits(config.limits)
        await node.setSyncInterval(config.syncInterval)
        do {
            try await withHTTPListener(config.http, limits: config.httpLimits, isPrivate: config.security != nil,
                                         serveFileInPrivate: config.httpServeFile, node: node) {
                try await startAndTrade(config, node: node)
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

    /// Starts listening, then fetches, serves and reports until the peer may exit.
    private static func startAndTrade(_ config: PeerConfiguration, node: Node) async throws {
        let listener = try await start(config, node: node)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await serve(listener, node: node)
                return false
            }
            addFetchTasks(&group, config: config, node: node)
            if let report = config.onProgress {
                // Every change the node broadcasts, as a snapshot; ends when the group is cancelled.
                group.addTask {
                    let changes = await node.subscribe()
                    report(await node.progress)
                    for await _ in changes { report(await node.progress) }
                    return false
                }
            }
            addExitTasks(&group, config: config, node: node)
            for try await done in group where done {
                group.cancelAll()
                break
            }
        }
    }

    /// Readies the node (the index reconciled with the folder, the file and swarm checked)
    /// and starts listening; prints `listening on`.
    private static func start(_ config: PeerConfiguration, node: Node) async throws -> Transport.Listener {
        try await node.prepare(recheck: config.recheck)
        await node.join(withOwner: config.owner != nil, expecting: config.fileID)
        if let expected = config.fileID, let indexed = await node.manifest, indexed.fileID != expected {
            throw NodeError.failed("\(config.databasePath) holds file \(indexed.fileName) (file ID \(indexed.fileID.short)), not the \(expected.short) given with --file-id; use another --dir or --db")
        }
        await node.expectNeighbours(config.downloadFrom)
        if let security = config.security { await node.joinPrivateSwarm(security, owner: config.ownerID) }
        let listener = try await Transport.listen(host: config.host, port: config.port, security: config.security)
        let endpoint = Endpoint(host: config.host, port: listener.port)
        let advertised = config.advertise ?? (isWildcard(config.host) ? nil : endpoint)
        await node.advertise(host: advertised?.host ?? "", port: advertised?.port ?? listener.port)
        await node.findNeighbours(target: config.neighbours, advertised: advertised)
        let held = await node.heldCount
        await node.log(.started, "started (pid \(getpid())), listening on \(endpoint)\(held > 0 ? ", resuming with \(held) chunks" : "")")
        announce("listening on \(endpoint)")
        return listener
    }

    /// The tasks that fetch chunks: from the owner (or, without one, a watch for having no
    /// source left), from found neighbours, and from each pinned neighbour.
    private static func addFetchTasks(_ group: inout ThrowingTaskGroup<Bool, any Error>, config: PeerConfiguration, node: Node) {
        if let owner = config.owner {
            group.addTask {
                try await fetchFromOwner(owner, config: config, node: node)
                return false
            }
        } else {
            group.addTask {
                try await node.waitUntil { $0.failure != nil || $0.strandedWithoutOwner }
                if await node.failure != nil { return false }
                let progress = await node.progress
                let what = progress.total.map { "the \($0.chunks - progress.heldChunks) missing chunk(s)" } ?? "the manifest"
                throw NodeError.failed("every download neighbour is gone, and without --owner there is nobody else to ask for \(what)")
            }
        }
        if config.neighbours > 0 {
            group.addTask {
                try await wireFoundNeighbours(config: config, node: node)
                return false
            }
        }
        for neighbour in config.downloadFrom {
            group.addTask {
                do {
                    try await fetchFromNeighbour(neighbour, config: config, node: node)
                } catch {
                    await node.firstDialResolved(neighbour)
                    throw error
                }
                await node.firstDialResolved(neighbour)
                await node.neighbourFetchFinished()
                return false
            }
        }
    }

    /// The tasks that decide when the peer may exit: a stretch with no downloader connected,
    /// and the condition itself (complete, assembled, downloaders told); the latter returns true.
    private static func addExitTasks(_ group: inout ThrowingTaskGroup<Bool, any Error>, config: PeerConfiguration, node: Node) {
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
    }

    /// Talks to the owner whenever it is needed: for the manifest and share, and for
    /// everything missing if the neighbours were given up on. A peer that already holds its
    /// share does not need the owner to be up at all.
    private static func fetchFromOwner(_ firstAddress: Endpoint, config: PeerConfiguration, node: Node) async throws {
        var ownerEndpoint = firstAddress
        let owner = ChunkIndex.Source(kind: .owner, name: "owner")
        var budget = ReconnectBudget.owner
        while true {
            try await node.waitUntil { $0.needsOwner || $0.failure != nil }
            if await node.failure != nil { return }
            let channel: PeerChannel
            let ownerNode: NodeID?
            do {
                (channel, ownerNode, ownerEndpoint) = try await Transport.connect(toAny: [firstAddress] + config.ownerAlternatives, patience: config.connectPatience,
                                                                                  security: config.security, expecting: config.ownerID) { attempt, reason, delay in
                    let owner = config.ownerAlternatives.isEmpty ? "owner at \(firstAddress)" : "owner"
                    await node.log(.connectRetry, "\(owner) not reachable (\(reason)); retry \(attempt) in \(delay.milliseconds) ms")
                }
            } catch where !Task.isCancelled {
                // An owner that left once the swarm holds the file is no loss: the neighbours
                // carry on. Without the manifest, or with no neighbour left, it is the end.
                if await node.isComplete {
                    await node.log(.disconnected, source: owner, "the owner at \(ownerEndpoint) is gone (\(error)); nothing is missing")
                    return
                }
                guard await node.manifest != nil, await node.hasNeighbourSource else { throw error }
                await node.log(.disconnected, source: owner, "the owner at \(ownerEndpoint) is gone (\(error)); carrying on with the download neighbours", level: .warning)
                // Until they finish the file, or none is left: then the owner is tried once more.
                try await node.waitUntil { $0.failure != nil || $0.isComplete || !$0.hasNeighbourSource }
                if await node.isComplete { return }
                if await node.failure != nil { return }
                continue
            }
            await node.log(.connected, source: owner, "connected to the owner at \(ownerEndpoint)\(ownerNode.map { " (node \($0), as the ticket says)" } ?? "")")
            let connectedAt = ContinuousClock.now
            do {
                _ = try await DownloadSession(node: node, channel: channel, remote: .owner, endpoint: ownerEndpoint, window: config.window, remoteNode: ownerNode).run()
                await node.log(.disconnected, source: owner, "nothing more needed from the owner; closed the connection")
            } catch {
                let fault = SessionFault(error, asDialler: true)
                switch budget.move(after: fault, connectedFor: ContinuousClock.now - connectedAt) {
                case .stop:
                    throw error
                case .reconnect:
                    await node.log(.disconnected, "lost the owner connection: \(error); reconnecting", level: .warning)
                case .avoid:
                    let why = fault.blamesRemote ? "broke the protocol: \(error)" : "was lost \(budget.used) times in a row, the last: \(error)"
                    try await avoidOwner(at: ownerEndpoint, because: why, blaming: fault.blamesRemote, node: node)
                    return
                }
            }
        }
    }

    /// Carries on without an owner that cannot be used. Without the manifest, or with no
    /// neighbour left, there is nothing to go on with. Otherwise the neighbours carry on:
    /// a peer that serves others is not taken down by one bad connection.
    private static func avoidOwner(at endpoint: Endpoint, because why: String, blaming: Bool, node: Node) async throws {
        let owner = ChunkIndex.Source(kind: .owner, name: "owner")
        let kind: EventKind = blaming ? .protocolError : .disconnected
        let neighbours = await node.liveNeighbours
        guard await node.manifest != nil, neighbours > 0 else {
            await node.log(kind, source: owner, "the owner at \(endpoint) \(why)", level: .error)
            throw NodeError.failed("the owner at \(endpoint) \(why)")
        }
        await node.log(kind, source: owner, "the owner at \(endpoint) \(why); avoiding it, carrying on with \(neighbours) download neighbour(s)", level: .warning)
        // Until the neighbours finish the file, or turn out unable to (none left, or
        // stalled on chunks only the owner has): then the peer cannot complete.
        try await node.waitUntil { $0.failure != nil || $0.isComplete || $0.ownerServesEverything }
        if await !node.isComplete, await node.failure == nil {
            throw NodeError.failed("the owner at \(endpoint) \(why), and the download neighbours cannot supply the rest")
        }
    }

    /// Trades with one download neighbour, reconnecting when it drops. If it stays
    /// unreachable for the neighbour timeout, the owner is asked for what is missing instead.
    private static func fetchFromNeighbour(_ neighbour: Endpoint, config: PeerConfiguration, node: Node) async throws {
        // The manifest comes from the owner; a peer without one asks this neighbour for it.
        // In a private swarm a neighbour's manifest is as good as the owner's: it is signed.
        try await node.waitUntil { $0.manifest != nil || !$0.hasOwner || $0.isPrivate || $0.failure != nil }
        if await node.hasToldComplete(neighbour) {
            // It knows already, and may well have finished and gone.
            return
        }
        var budget = ReconnectBudget.neighbour
        while true {
            // Even a complete peer connects once: its chunk list tells the neighbour (which
            // serves it) that it may stop.
            let channel: PeerChannel
            let remoteNode: NodeID?
            do {
                // Even once complete from other sources, keep trying: the neighbour waits to
                // hear that this peer (its downloader) is complete before it may exit.
                let firstAttempt = ContinuousClock.now
                (channel, remoteNode) = try await Transport.connect(to: neighbour, patience: config.neighbourPatience, security: config.security) { attempt, reason, delay in
                    if ContinuousClock.now - firstAttempt >= NeighbourBook.unreachableAfter { await node.firstDialResolved(neighbour) }
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
            await node.log(.connected, "connected to download neighbour \(neighbour)\(remoteNode.map { " (node \($0))" } ?? "")")
            let connectedAt = ContinuousClock.now
            do {
                try await refuseIfBlocked(remoteNode, channel: channel, node: node)
                _ = try await DownloadSession(node: node, channel: channel, remote: .peer, endpoint: neighbour, window: config.window, remoteNode: remoteNode).run()
                return
            } catch {
                let fault = SessionFault(error, asDialler: true)
                switch budget.move(after: fault, connectedFor: ContinuousClock.now - connectedAt) {
                case .stop:
                    throw error
                case .reconnect where fault.blamesRemote:
                    await node.log(.protocolError, "download neighbour \(neighbour) broke the protocol: \(error); reconnecting", level: .warning)
                case .reconnect:
                    await node.log(.disconnected, "lost download neighbour \(neighbour): \(error); reconnecting", level: .warning)
                case .avoid:
                    // A neighbour of another swarm, one that sent a bad chunk, or one lost or
                    // broken on every reconnect: the other neighbours carry on; with none
                    // left, the owner is asked instead.
                    await node.log(.protocolError, "avoiding download neighbour \(neighbour) from now on: \(error)", level: .warning)
                    await node.neighbourGaveUp(neighbour, because: "download neighbour \(neighbour) misbehaved")
                    return
                }
            }
        }
    }

    /// Keeps up to `--neighbours` found neighbours connected: dials each peer the owner or a
    /// neighbour names, one session per neighbour, and dials the next when one ends.
    private static func wireFoundNeighbours(config: PeerConfiguration, node: Node) async throws {
        try await node.waitUntil { $0.manifest != nil || $0.failure != nil }
        try await withThrowingDiscardingTaskGroup { group in
            while true {
                try await node.waitUntil { $0.failure != nil || $0.hasNeighbourToDial }
                if await node.failure != nil { return }
                guard let next = await node.takeNeighbourToDial() else { continue }
                group.addTask {
                    await fetchFromFoundNeighbour(next, config: config, node: node)
                    await node.foundNeighbourEnded(next.endpoint)
                }
            }
        }
    }

    /// One session with a found neighbour. Unlike a pinned one, it is not retried for long:
    /// the owner or another neighbour names a replacement.
    private static func fetchFromFoundNeighbour(_ neighbour: PeerAddress, config: PeerConfiguration, node: Node) async {
        let endpoint = neighbour.endpoint
        do {
            let (channel, remoteNode) = try await Transport.connect(to: endpoint, patience: NeighbourBook.unreachableAfter, security: config.security) { _, _, _ in }
            await node.log(.connected, "connected to \(neighbour.name) at \(endpoint)\(remoteNode.map { " (node \($0))" } ?? ""), a neighbour found through the swarm")
            try await refuseIfBlocked(remoteNode, channel: channel, node: node)
            _ = try await DownloadSession(node: node, channel: channel, remote: .peer, endpoint: endpoint, window: config.window, remoteNode: remoteNode).run()
        } catch {
            let fault = SessionFault(error, asDialler: true)
            guard fault != .cancelled, !Task.isCancelled else { return }
            await node.log(fault.blamesRemote ? .protocolError : .disconnected, "found neighbour \(neighbour.name) at \(endpoint): \(error); asking for another", level: .warning)
        }
    }
}

/// Closes a connection to a blocked node (named by TLS) before a byte of the protocol.
func refuseIfBlocked(_ remote: NodeID?, channel: PeerChannel, node: Node) async throws {
    guard let remote, let reason = await node.blockReason(remote) else { return }
    try? await channel.executeThenClose { _, _ in }
    throw NodeError.misbehaving(reason)
}

/// 0.0.0.0 and ::, where a peer cannot tell others its address: the owner uses the one it sees.
func isWildcard(_ host: String) -> Bool {
    host == "0.0.0.0" || host == "::" || host == "[::]"
}
