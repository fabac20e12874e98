import Foundation
import ArgumentParser
import Logging
import PeerShareCLI
import PeerShareCore
import PeerShareNode
import PeerShareTrust
import PeerShareStore
import PeerShareWire
import ServiceLifecycle

@main
struct PeerShareMain {
    static func main() async {
        ProcessTuning.useOneMallocArena()
        await CommandRunner.main(PeerShareCommand.self, programName: "peershare")
    }
}

struct PeerShareCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peershare",
        abstract: "Spread a file from an owner to a swarm of peers, every chunk verified and indexed in SQLite.",
        version: "0.1.0",
        subcommands: [OwnerCommand.self, PeerCommand.self, DemoCommand.self, TorrentCommand.self]
    )
}

/// Options every node shares.
struct ListenOptions: ParsableArguments {
    @Option(help: "Address to listen on (IPv4 or IPv6, e.g. 0.0.0.0, 192.168.1.5, ::1, ::).")
    var host: String = "127.0.0.1"

    @Option(help: "TCP port to listen on (0: let the OS choose; the chosen port is printed).")
    var port: Int

    func validate() throws {
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be from 0 to 65535, not \(port)") }
    }
}

/// `--storage chunk-files|single-file` (docs/STORAGE.md, "Two layouts").
struct StorageOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "How chunks are kept on disk: chunk-files (one file per chunk under DIR/chunks, plus the assembled file: the seed's layout) or single-file (every chunk in place in one file, as BitTorrent clients do; an owner serves its source file with no copy). A folder keeps the layout it was made with.",
        valueName: "layout"))
    var storage: StorageLayout = .chunkFiles
}

extension StorageLayout: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument) }
    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}

struct UploadOptions: ParsableArguments {
    @Option(help: "Limit the total upload rate, e.g. 2MiB (bytes per second); default: no limit.")
    var maxUploadRate: SizeArgument?

    func validate() throws {
        if let rate = maxUploadRate, rate.bytes < 1024 { throw ValidationError("--max-upload-rate must be at least 1KiB per second") }
    }
}

/// Limits every connection lives under (docs/PROTOCOL.md, "Limits"). Hidden: the defaults
/// suit almost everyone, and tests shorten them to see a timeout fire quickly.
struct ConnectionOptions: ParsableArguments {
    @Option(help: .hidden) var handshakeTimeout: Double?
    @Option(help: .hidden) var requestTimeout: Double?
    @Option(help: .hidden) var idleTimeout: Double?
    @Option(help: .hidden) var stallTimeout: Double?
    @Option(help: .hidden) var maxConnections: Int?

    func validate() throws {
        for (name, value) in [("--handshake-timeout", handshakeTimeout), ("--request-timeout", requestTimeout), ("--idle-timeout", idleTimeout), ("--stall-timeout", stallTimeout)] {
            if let value, !(value > 0 && value <= 86_400) { throw ValidationError("\(name) must be between 0 and 86400 seconds") }
        }
        if let maxConnections, !(1...100_000).contains(maxConnections) { throw ValidationError("--max-connections must be from 1 to 100000") }
    }

    var limits: SessionLimits {
        var limits = SessionLimits()
        if let handshakeTimeout { limits.handshakeTimeout = .milliseconds(Int64(handshakeTimeout * 1000)) }
        if let requestTimeout { limits.requestTimeout = .milliseconds(Int64(requestTimeout * 1000)) }
        if let idleTimeout { limits.idleTimeout = .milliseconds(Int64(idleTimeout * 1000)) }
        if let stallTimeout { limits.stallTimeout = .milliseconds(Int64(stallTimeout * 1000)) }
        if let maxConnections { limits.maxConnections = maxConnections }
        return limits
    }
}

struct OwnerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "owner",
        abstract: "Split a file into chunks and serve it, with a share for each peer.")

    @Option(help: "The file, or the folder, to share.")
    var file: String

    @OptionGroup var listen: ListenOptions

    @Option(help: "Folder for the chunk files and the index (default: FILE.peershare next to the file).")
    var dir: String?

    @Option(help: "Index database (default: DIR/owner.db).")
    var db: String?

    @Option(help: "Peers the file is divided among: the first this many get disjoint shares.")
    var peers: Int = 5

    @Option(help: "Chunk size in bytes.")
    var chunkSize: Int = ChunkLayout.defaultChunkSize

    @Option(help: "Chunks sent at once, at most; further requests wait their turn, none is dropped.")
    var uploadSlots: Int = 8

    @Flag(help: "Re-hash the source and every chunk file at start-up, even if nothing seems changed.")
    var recheck = false

    @Flag(help: "If DIR holds chunks of an earlier version of the file, set them aside and split afresh.")
    var newManifest = false

    @Flag(name: .customLong("private"), help: "A private swarm: TLS 1.3 on every connection, and only holders of the ticket this prints (and writes to DIR/ticket, mode 0600) can connect.")
    var isPrivate = false

    @OptionGroup var storage: StorageOptions
    @OptionGroup var upload: UploadOptions
    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var http: HTTPOptions
    @OptionGroup var logging: LogOptions

    func validate() throws {
        // Shares are ⌈count / peers⌉ chunks: more peers than chunks only makes them empty.
        guard (1...ChunkID.maximumCount).contains(peers) else { throw ValidationError("--peers must be from 1 to \(ChunkID.maximumCount)") }
        guard (1...ChunkLayout.maximumChunkSize).contains(chunkSize) else {
            throw ValidationError("--chunk-size must be from 1 to \(ChunkLayout.maximumChunkSize) bytes")
        }
        guard (1...1024).contains(uploadSlots) else { throw ValidationError("--upload-slots must be from 1 to 1024") }
        let name = String(file.split(separator: "/").last ?? "")
        do { try FileName.validate(name) } catch { throw ValidationError("--file: \(error)") }
    }

    func run() async throws {
        let directory = dir ?? file + ".peershare"
        var config = OwnerConfiguration(
            file: file, host: listen.host, port: listen.port, directory: directory,
            databasePath: db ?? directory + "/owner.db", expectedPeers: peers, chunkSize: chunkSize)
        config.recheck = recheck
        config.newManifest = newManifest
        config.storage = storage.storage
        config.maxUploadRate = upload.maxUploadRate.map { Int($0.bytes) }
        config.uploadSlots = uploadSlots
        config.limits = connections.limits
        config.http = http.address
        config.httpLimits = http.limits
        config.httpServeFile = http.serveFile
        config.isPrivate = isPrivate
        let console = StatusConsole(buffered: true)
        defer { console.flush() }
        let logger = logging.makeLogger(label: "owner", console: console)
        // On a terminal, a split or hash that takes over a second shows a live line.
        guard console.isLive && !logging.quiet else {
            let settings = config
            try await runAsService(logger: logger) { try await OwnerRole.run(settings, logger: logger) }
            return
        }
        let line = PeerProgressLine(label: "owner", console: console, doneNote: "ready", delay: .seconds(1))
        config.onProgress = { progress in
            line.update(progress)
            if progress.isAssembled { line.finish() }
        }
        let settings = config
        try await runAsService(logger: logger) {
            try await line.whileRefreshing { try await OwnerRole.run(settings, logger: logger) }
        }
    }
}

struct PeerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Fetch a share from the owner, trade chunks with neighbours, and assemble the file.")

    @Option(help: "The owner, as HOST:PORT. Without it, the peer joins through its --download-from neighbours, which send it the manifest.", transform: Endpoint.argument)
    var owner: Endpoint?

    @Option(help: "The ticket of a private swarm (the owner prints it as `ticket: …`): it names the owner, the file and the join secret. Prefer --ticket-file: a command line is visible to other users.")
    var ticket: String?

    @Option(help: "A file holding the ticket of a private swarm (mode 0600, as the owner writes DIR/ticket).")
    var ticketFile: String?

    @Option(name: .customLong("file-id"), help: "The file ID (64 hex digits, in the owner's log) the swarm must serve; a manifest with any other is refused.", transform: fileIDArgument)
    var fileID: Digest32?

    @OptionGroup var listen: ListenOptions

    @Option(name: .customLong("download-from"), help: "A download neighbour, as HOST:PORT ([ADDRESS]:PORT for IPv6); repeat for several.", transform: Endpoint.argument)
    var downloadFrom: [Endpoint] = []

    @Option(help: "Neighbours to find through the owner and other peers (default: 4, or 0 with --download-from).")
    var neighbours: Int?

    @Option(help: "The address other peers should dial, as HOST:PORT (default: the listen address; on 0.0.0.0 or ::, the address the owner sees).", transform: Endpoint.argument)
    var advertise: Endpoint?

    @Option(help: "Folder for this peer's chunk files, summary file and assembled file.")
    var dir: String

    @Option(help: "Index database (default: DIR/peer.db).")
    var db: String?

    @Option(help: "Name in logs and in other nodes' indexes (default: peer-PORT).")
    var name: String?

    @Option(help: "Chunk requests kept outstanding per connection.")
    var window: Int = 8

    @Flag(help: "Stay up after assembling, serving anyone who asks, until stopped.")
    var keepServing = false

    @Option(help: "Downloaders that must hold the whole file before this peer exits.")
    var waitForDownloaders: Int = 1

    @Option(help: "Seconds to keep retrying the owner before giving up.")
    var connectTimeout: Double = 30

    @Option(help: "Seconds a download neighbour may stay unreachable before it is given up on (with none left, the owner is asked for what is missing).")
    var neighbourTimeout: Double = 60

    @Flag(help: "Re-hash every indexed chunk at start-up, not just check sizes.")
    var recheck = false

    /// Seconds written chunks may wait for a background sync; tests stretch it.
    @Option(help: .hidden) var syncInterval: Double = 1

    @OptionGroup var storage: StorageOptions
    @OptionGroup var upload: UploadOptions
    @OptionGroup var connections: ConnectionOptions
    @OptionGroup var http: HTTPOptions
    @OptionGroup var logging: LogOptions

    func validate() throws {
        guard (1...1024).contains(window) else { throw ValidationError("--window must be from 1 to 1024") }
        guard waitForDownloaders >= 0 else { throw ValidationError("--wait-for-downloaders must not be negative") }
        guard ticket == nil || ticketFile == nil else { throw ValidationError("give --ticket or --ticket-file, not both") }
        if ticket != nil || ticketFile != nil {
            guard owner == nil, fileID == nil else { throw ValidationError("a ticket names the owner and the file: drop --owner and --file-id") }
        } else {
            guard owner != nil || !downloadFrom.isEmpty else {
                throw ValidationError("give the owner (--owner HOST:PORT), or a peer of the swarm to join through (--download-from HOST:PORT)")
            }
        }
        if let neighbours {
            guard (0...PeerAddress.maximumPerMessage).contains(neighbours) else { throw ValidationError("--neighbours must be from 0 to \(PeerAddress.maximumPerMessage)") }
        }
        if let advertise, !PeerAddress.isValidHost(advertise.host) {
            throw ValidationError("--advertise: \(advertise.host) is not a name or an address")
        }
        // Bounded before they become Durations: `inf` or 1e16 s would overflow the milliseconds.
        guard connectTimeout > 0, connectTimeout <= 86_400 else { throw ValidationError("--connect-timeout must be between 0 and 86400 seconds") }
        guard neighbourTimeout > 0, neighbourTimeout <= 86_400 else { throw ValidationError("--neighbour-timeout must be between 0 and 86400 seconds") }
        guard syncInterval > 0, syncInterval <= 86_400 else { throw ValidationError("--sync-interval must be between 0 and 86400 seconds") }
        if let name {
            guard (1...64).contains(name.utf8.count), !name.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) else {
                throw ValidationError("--name must be 1 to 64 printable bytes")
            }
        }
    }

    func run() async throws {
        let name = self.name ?? "peer-\(listen.port)"
        var config = PeerConfiguration(
            name: name, owner: owner, host: listen.host, port: listen.port, downloadFrom: downloadFrom,
            directory: dir, databasePath: db ?? dir + "/peer.db", window: window, keepServing: keepServing,
            waitForDownloaders: waitForDownloaders, connectPatience: .milliseconds(Int64(connectTimeout * 1000)))
        config.neighbourPatience = .milliseconds(Int64(neighbourTimeout * 1000))
        config.neighbours = neighbours ?? (downloadFrom.isEmpty ? 4 : 0)
        config.advertise = advertise
        config.fileID = fileID
        if let ticket = try readTicket() {
            // The key lives beside the chunks; the folder may not exist yet.
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            config.owner = ticket.ownerAddresses[0]
            config.ownerAlternatives = Array(ticket.ownerAddresses.dropFirst())
            config.fileID = ticket.fileID
            config.ownerID = ticket.ownerID
            config.security = try PrivateSwarm(identity: NodeIdentity.loadOrCreate(in: dir), secret: ticket.secret)
        }
        config.recheck = recheck
        config.storage = storage.storage
        config.syncInterval = .milliseconds(Int64(syncInterval * 1000))
        config.maxUploadRate = upload.maxUploadRate.map { Int($0.bytes) }
        config.limits = connections.limits
        config.http = http.address
        config.httpLimits = http.limits
        config.httpServeFile = http.serveFile
        let console = StatusConsole(buffered: true)
        defer { console.flush() }
        let logger = logging.makeLogger(label: name, console: console)
        // The live line only on a terminal, and not under --quiet.
        guard console.isLive && !logging.quiet else {
            let settings = config
            try await runAsService(logger: logger) { try await PeerRole.run(settings, logger: logger) }
            return
        }
        let line = PeerProgressLine(label: name, console: console)
        config.onProgress = { line.update($0) }
        let settings = config
        defer { line.finish() }
        try await runAsService(logger: logger) {
            try await line.whileRefreshing { try await PeerRole.run(settings, logger: logger) }
        }
    }
}

extension LogOptions {
    /// Sets up logging for this process and returns the logger of the node or tool `label`.
    func makeLogger(label: String, console: StatusConsole) -> Logger {
        bootstrap(console: console)
        return Logger(label: label)
    }
}

/// Runs a node under swift-service-lifecycle: SIGTERM and SIGINT cancel it gracefully, so it
/// finishes or abandons the chunk in flight and closes its index before exiting 0.
func runAsService(logger: Logger, _ body: @escaping @Sendable () async throws -> Void) async throws {
    var lifecycleLogger = logger
    lifecycleLogger.logLevel = max(.warning, logger.logLevel)
    let service = NodeService(body: body)
    let group = ServiceGroup(configuration: .init(
        services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)],
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: lifecycleLogger))
    try await group.run()
}

struct NodeService: Service {
    let body: @Sendable () async throws -> Void

    func run() async throws {
        try await cancelWhenGracefulShutdown { try await body() }
    }
}

extension PeerCommand {
    /// The ticket from --ticket or --ticket-file, if either was given.
    func readTicket() throws -> Ticket? {
        do {
            if let ticket { return try Ticket(line: ticket) }
            guard let ticketFile else { return nil }
            guard let bytes = try SecretFile.read(ticketFile, limit: Ticket.maximumLength + 1) else {
                throw ValidationError("--ticket-file: \(ticketFile) does not exist")
            }
            return try Ticket(line: String(decoding: bytes, as: UTF8.self))
        } catch let error as Ticket.Invalid {
            throw ValidationError("the ticket is not valid: \(error)")
        }
    }
}

/// `--file-id`: a SHA-256 in hex, as the owner logs it.
func fileIDArgument(_ text: String) throws -> Digest32 {
    guard let id = Digest32(hex: text.lowercased()) else { throw ValidationError("--file-id must be 64 hex digits, as the owner logs it") }
    return id
}
