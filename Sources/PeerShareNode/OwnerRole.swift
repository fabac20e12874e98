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

public enum OwnerRole {
    public static func run(_ config: OwnerConfiguration, logger: Logger) async throws {
        if config.newManifest { try archivePreviousRun(config, logger: logger) }
        let store = try makeChunkStore(config.storage, root: config.directory, source: config.file)
        let node = try Node(name: "owner", role: .owner, store: store, databasePath: config.databasePath, logger: logger)
        await node.limitUploads(toBytesPerSecond: config.maxUploadRate)
        await node.limitUploadSlots(to: config.uploadSlots)
        await node.setLimits(config.limits)
        do {
            let access = config.isPrivate ? "a private swarm: only holders of its ticket can connect"
                : "a public swarm: anyone who can reach its port can download the file (--private admits only holders of a ticket)"
            await node.log(.started, "started (pid \(getpid())) on \(config.file), chunks of \(config.chunkSize) bytes; \(access)")
            try await withHTTPListener(config.http, limits: config.httpLimits, isPrivate: config.isPrivate,
                                         serveFileInPrivate: config.httpServeFile, node: node) {
                try await prepareAndServe(config, node: node, store: store, logger: logger)
            }
            await node.close(outcome: "stopped")
        } catch {
            await node.close(outcome: Task.isCancelled ? "stopped by signal" : "failed: \(error)")
            if Task.isCancelled { return }
            throw error
        }
    }

    /// Readies the chunks and the manifest, starts listening (printing the ticket of a
    /// private swarm), and serves peers until cancelled.
    private static func prepareAndServe(_ config: OwnerConfiguration, node: Node, store: any ChunkStore, logger: Logger) async throws {
        let manifest = try await prepareChunks(config, node: node, store: store as? ChunkFilesStore, logger: logger)
        if manifest.folder != nil, !(store is ChunkFilesStore) {
            // Single-file: the folder is served in place, by the names its disk spells them with.
            try await NIOThreadPool.singleton.runIfActive { try store.prepare(for: manifest, assembled: true) }
        }
        try await node.recordSourcePath(config.file)
        try await node.adoptOwnedManifest(manifest, expectedPeers: config.expectedPeers)
        let security = config.isPrivate ? try privateSwarm(config, manifest: manifest) : nil
        if let security {
            await node.joinPrivateSwarm(security, owner: security.identity.nodeID)
            let signed = try ManifestSigning.sign(manifest, with: security.identity)
            await node.useManifestSignature(signerKey: signed.signerKey, signature: signed.signature)
        }
        let listener = try await Transport.listen(host: config.host, port: config.port, security: security)
        let endpoint = Endpoint(host: config.host, port: listener.port)
        await node.log(.started, "owner listening on \(endpoint), serving \(manifest.fileName) to any number of peers; file ID \(manifest.fileID.hex)")
        announce("listening on \(endpoint)")
        if let security {
            let ticket = Ticket(ownerAddresses: ticketAddresses(host: config.host, port: listener.port), ownerID: security.identity.nodeID,
                                fileID: manifest.fileID, secret: security.secret)
            let path = config.directory + "/" + ticketFileName
            try SecretFile.write(Array((ticket.line + "\n").utf8), to: path)
            await node.log(.started, "private swarm: owner node \(ticket.ownerID.hex); only holders of the ticket (in \(path), mode 0600) can connect")
            announce("ticket: \(ticket.line)")
        }
        try await serve(listener, node: node)
    }

    /// Splits the file, or on a restart reuses what the index and folder already hold.
    /// A source whose size and modification time are unchanged is not read again; one that
    /// changed is re-hashed, and refused if its content differs from the indexed manifest.
    /// A single file (`chunkFiles` nil) is only hashed: the source is served where it is.
    private static func prepareChunks(_ config: OwnerConfiguration, node: Node, store chunkFiles: ChunkFilesStore?, logger: Logger) async throws -> Manifest {
        let stat: PosixFiles.Status
        do { stat = try PosixFiles.status(config.file) } catch { throw NodeError.failed(error.description) }
        if stat.isDirectory { return try await prepareFolder(config, node: node, store: chunkFiles) }
        guard stat.isRegularFile else { throw NodeError.failed("cannot share \(config.file): not a regular file or a folder") }
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
            let repaired = try await node.repairOwnedChunks(from: OwnerSource(file: config.file), recheck: config.recheck)
            let millis = Double(Clock.nowMicros() - started) / 1000
            await node.log(.split, "reusing \(indexed.chunkCount) chunks of \(indexed.fileName) from an earlier run (\(repaired) cut again from the source) in \(formatMillis(millis)) ms; source \(unchanged && !config.recheck ? "unchanged, not re-read" : "re-hashed and identical")")
            return indexed
        }
        // For the progress line only; the split itself refuses a size no layout can hold.
        let (whole, rest) = stat.size.quotientAndRemainder(dividingBy: Int64(config.chunkSize))
        let total = (chunks: Int(clamping: whole + (rest > 0 ? 1 : 0)), bytes: stat.size)
        let report = config.onProgress
        let split = try await FileSplitter.split(path: config.file, chunkSize: config.chunkSize, into: chunkFiles) { done in
            report?(NodeProgress(heldChunks: Int(done / Int64(config.chunkSize)), heldBytes: done, total: total, isAssembled: false))
        }
        report?(NodeProgress(heldChunks: total.chunks, heldBytes: total.bytes, total: total, isAssembled: true))
        let manifest = split.manifest
        try await node.saveOwnerManifest(manifest)
        if let time = stat.modificationNanoseconds { try await node.setSourceModificationTime(time) }
        let millis = Double(Clock.nowMicros() - started) / 1000
        try await node.recordOwnedChunks(split.newChunks, event: EventRecord(
            kind: .split,
            message: "\(chunkFiles == nil ? "indexed" : "split") \(manifest.fileName): \(manifest.fileSize) bytes into \(manifest.chunkCount) chunks in \(formatMillis(millis)) ms, file SHA-256 \(manifest.fileHash.short)\(chunkFiles == nil ? "; served in place" : "")"))
        return manifest
    }

    /// A folder (docs/PROTOCOL.md, "Folders"): scanned, hashed and cut into chunk files (or,
    /// single-file, served in place). A restart scans and hashes it again and goes on only if
    /// the folder ID is unchanged.
    private static func prepareFolder(_ config: OwnerConfiguration, node: Node, store chunkFiles: ChunkFilesStore?) async throws -> Manifest {
        // chunkFiles is nil in the single-file layout: the folder is then served where it is.
        let started = Clock.nowMicros()
        let indexed = await node.manifest
        if let indexed, config.chunkSize != indexed.chunkSize {
            throw NodeError.manifestChanged("\(config.directory) holds chunks of \(indexed.chunkSize) bytes, not \(config.chunkSize); pass --new-manifest to split afresh")
        }
        let (split, source) = try await FileSplitter.splitFolder(path: config.file, chunkSize: config.chunkSize, into: indexed == nil ? chunkFiles : nil)
        let manifest = split.manifest
        for skipped in source.skipped.prefix(10) {
            await node.log(.split, "not shared: \(skipped) is a symlink or a special file", level: .warning)
        }
        let millis = Double(Clock.nowMicros() - started) / 1000
        if let indexed {
            guard indexed.fileID == manifest.fileID else {
                throw NodeError.manifestChanged("\(config.file) changed since it was shared from \(config.directory) (folder ID now \(manifest.fileID.short), indexed \(indexed.fileID.short)); pass --new-manifest to split it afresh, or use another --dir")
            }
            let repaired = try await node.repairOwnedChunks(from: source, recheck: config.recheck)
            await node.log(.split, "reusing \(indexed.chunkCount) chunks of the folder \(indexed.fileName) from an earlier run (\(repaired) cut again) after re-reading it in \(formatMillis(millis)) ms")
            return indexed
        }
        try await node.saveOwnerManifest(manifest)
        let files = manifest.folder?.tree.files.count ?? 0
        try await node.recordOwnedChunks(split.newChunks, event: EventRecord(
            kind: .split,
            message: "split the folder \(manifest.fileName): \(files) files, \(manifest.fileSize) bytes into \(manifest.chunkCount) chunks in \(formatMillis(millis)) ms, content SHA-256 \(manifest.fileHash.short)"))
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
        for name in PosixFiles.listDirectory(chunks) where ChunkFilesStore.chunkID(fromFileName: name) != nil || name.hasPrefix(PosixFiles.temporaryPrefix) {
            unlink(chunks + "/" + name)
        }
        logger.info("--new-manifest: the previous index is kept as \(config.databasePath + suffix); its chunk files were removed")
    }
}

/// Where the owner of a private swarm keeps its ticket (mode 0600), so that a restarted
/// owner gives out the same join secret.
public let ticketFileName = "ticket"

extension OwnerRole {
    /// The owner's key (made on first use) and the join secret: the one in the ticket it
    /// wrote before, if that ticket is for this key and file; a new one otherwise.
    static func privateSwarm(_ config: OwnerConfiguration, manifest: Manifest) throws -> PrivateSwarm {
        let identity = try NodeIdentity.loadOrCreate(in: config.directory)
        var secret = Ticket.newSecret()
        if let bytes = try SecretFile.read(config.directory + "/" + ticketFileName, limit: Ticket.maximumLength + 1),
           let previous = try? Ticket(line: String(decoding: bytes, as: UTF8.self)),
           previous.ownerID == identity.nodeID, previous.fileID == manifest.fileID {
            secret = previous.secret
        }
        return try PrivateSwarm(identity: identity, secret: secret)
    }

    /// The addresses a ticket names: the listen address, or on a wildcard every address of
    /// this machine's interfaces (loopback last), at most `Ticket.maximumAddresses`.
    static func ticketAddresses(host: String, port: Int) -> [Endpoint] {
        guard isWildcard(host) else { return [Endpoint(host: host, port: port)] }
        let devices = (try? System.enumerateDevices()) ?? []
        var addresses: [(loopback: Bool, endpoint: Endpoint)] = []
        for device in devices {
            guard let ip = device.address?.ipAddress, !ip.hasPrefix("fe80"), !ip.contains("%") else { continue }
            if host == "0.0.0.0", ip.contains(":") { continue }
            let endpoint = Endpoint(host: ip, port: port)
            if !addresses.contains(where: { $0.endpoint == endpoint }) {
                addresses.append((ip == "127.0.0.1" || ip == "::1", endpoint))
            }
        }
        let ordered = addresses.filter { !$0.loopback } + addresses.filter(\.loopback)
        let chosen = ordered.prefix(Ticket.maximumAddresses).map(\.endpoint)
        return chosen.isEmpty ? [Endpoint(host: "127.0.0.1", port: port)] : chosen
    }
}
