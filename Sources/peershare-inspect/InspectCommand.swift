import ArgumentParser
import Foundation
import Logging
import PeerShareCLI
import PeerShareInspect

@main
struct InspectMain {
    static func main() async {
        await CommandRunner.main(InspectCommand.self, programName: "peershare-inspect", subcommandAnywhere: true)
    }
}

/// The executable is only argument parsing and printing; the queries and reports live in
/// the PeerShareInspect library (Sources/PeerShareInspect), where the tests call them.
struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peershare-inspect",
        abstract: "Answer questions about a peer or owner from its SQLite index. Read-only: it never changes the index or the chunk files.",
        discussion: "Without a subcommand it prints the overview. Times are UTC. See the README for the JSON and CSV field names.",
        subcommands: [OverviewCommand.self, ChunksCommand.self, FilesCommand.self, ChunkCommand.self, SourcesCommand.self, EventsCommand.self, VerifyCommand.self, ReportCommand.self, WhyCommand.self],
        defaultSubcommand: OverviewCommand.self)
}

enum FormatArgument: String, ExpressibleByArgument, CaseIterable {
    case table, json, csv
    var format: OutputFormat { OutputFormat(rawValue: rawValue) ?? .table }
}

struct CommonOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The index to read: a node's DIR/peer.db or DIR/owner.db.", valueName: "path"))
    var db: String

    @Option(help: "Output: table (for people), json or csv (stable field names, in the README).")
    var format: FormatArgument = .table

    func validate() throws {
        guard !db.isEmpty else { throw ValidationError("--db must name an index file") }
    }

    @Flag(help: .hidden)
    var explain = false

    @OptionGroup var logging: LogOptions

    func open() throws -> InspectDatabase {
        let logger = logging.makeLogger()
        let database = try InspectDatabase(path: db)
        logger.debug("opened \(db) read-only, schema version \(database.schemaVersion)")
        if explain { database.plans = QueryPlans() }
        return database
    }

    /// With the hidden --explain: the query plan of every statement run, on stderr.
    func printPlans(_ database: InspectDatabase) {
        guard let plans = database.plans else { return }
        FileHandle.standardError.write(Data(plans.render().utf8))
    }
}

extension LogOptions {
    /// Sets up logging (stderr, in the chosen format and level) for this run.
    func makeLogger() -> Logger {
        bootstrap(console: StatusConsole())
        return Logger(label: "peershare-inspect")
    }
}

/// Everything goes out in one write; stdout is unbuffered here.
func emit(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

struct OverviewCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overview",
        abstract: "The file, chunks held, where they came from, arrival times, restarts and rejected chunks (the default).")

    @OptionGroup var options: CommonOptions

    func run() async throws {
        let database = try options.open()
        defer { options.printPlans(database) }
        emit(try Overview.load(database).render(options.format.format))
    }
}

struct ChunksCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chunks",
        abstract: "One row per chunk: id, size, hash, state, source, time received.")

    @OptionGroup var options: CommonOptions

    @Flag(help: "Only the chunks not held yet.")
    var missing = false

    @Option(help: ArgumentHelp("Only chunks received from this source: a name (owner, peer2, …) or a kind (file, owner, peer).", valueName: "source"))
    var from: String?

    func validate() throws {
        if missing && from != nil { throw ValidationError("--missing and --from cannot be combined: a missing chunk has no source") }
        if let from, from.isEmpty { throw ValidationError("--from needs a source name") }
    }

    func run() async throws {
        let filter: ChunkList.Filter = missing ? .missing : from.map { .from($0) } ?? .all
        let database = try options.open()
        defer { options.printPlans(database) }
        emit(try ChunkList.load(database, filter: filter).render(options.format.format))
    }
}

struct FilesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "files",
        abstract: "One row per file (a shared folder's files and empty folders; a single file is one row): size, chunks held, state, sources.")

    @OptionGroup var options: CommonOptions

    func run() async throws {
        let database = try options.open()
        defer { options.printPlans(database) }
        emit(try FileReport.load(database).render(options.format.format))
    }
}

struct ChunkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chunk",
        abstract: "One chunk's story: every attempt, who sent it, verification, and who it was sent to since.")

    @OptionGroup var options: CommonOptions

    @Argument(help: "The chunk ID (from 0).")
    var id: Int64

    func validate() throws {
        guard id >= 0 else { throw ValidationError("a chunk ID is 0 or more, not \(id)") }
    }

    func run() async throws {
        let database = try options.open()
        defer { options.printPlans(database) }
        emit(try ChunkStory.load(database, chunk: id).render(options.format.format))
    }
}

struct SourcesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sources",
        abstract: "Per neighbour, owner or local file: chunks and bytes received and sent, throughput, failures.")

    @OptionGroup var options: CommonOptions

    func run() async throws {
        let database = try options.open()
        defer { options.printPlans(database) }
        emit(try SourceReport.load(database).render(options.format.format))
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "The event timeline, filtered; --follow tails a running node's events.",
        discussion: """
            Times (UTC): 2026-11-25T14:02:00Z, '2026-11-25 14:02:00.5', 2026-11-25, +01:00-style offsets, \
            a bare 14:02 (that time on the day of the latest event), or @MICROSECONDS. --since is inclusive, \
            --until exclusive. --limit N keeps the first N events after --since, or else the latest N.
            """)

    @OptionGroup var options: CommonOptions

    @Option(help: ArgumentHelp("Only events of this kind (repeatable, or comma-separated), e.g. chunk_received.", valueName: "kind"))
    var kind: [String] = []

    @Option(help: ArgumentHelp("Only events about this chunk.", valueName: "id"))
    var chunk: Int64?

    @Option(help: ArgumentHelp("Only events at or after this time.", valueName: "time"))
    var since: String?

    @Option(help: ArgumentHelp("Only events before this time.", valueName: "time"))
    var until: String?

    @Option(help: "At most this many events.")
    var limit: Int?

    @Flag(help: "After the matching history, print new events as the node commits them, until interrupted (exit 0).")
    var follow = false

    @Flag(help: "With --follow: stop once the node's latest run records its stop (a clean exit).")
    var untilStopped = false

    @Option(help: ArgumentHelp("With --follow: how often to poll the index, in seconds.", valueName: "seconds"))
    var interval: Double = 0.2

    @Option(help: .hidden)
    var followFor: Double?

    /// A year: far past any test or script, far below where seconds × 1000 leaves Int64.
    static let maximumFollowFor: Double = 31_536_000

    var kinds: [String] {
        kind.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    static func time(_ text: String?, option: String) throws -> TimeArgument? {
        guard let text else { return nil }
        guard let value = TimeArgument(parsing: text) else {
            throw ValidationError("\(option) '\(text)' is not a time: use 2026-11-25T14:02:00Z, '2026-11-25 14:02', 14:02 or @MICROSECONDS (UTC)")
        }
        return value
    }

    func validate() throws {
        let known = Set(EventLog.knownKinds)
        for k in kinds where !known.contains(k) {
            throw ValidationError("--kind \(k) is not an event kind; known: \(EventLog.knownKinds.joined(separator: ", "))")
        }
        if let chunk, chunk < 0 { throw ValidationError("--chunk must be 0 or more") }
        if let limit, limit <= 0 { throw ValidationError("--limit must be 1 or more") }
        let since = try Self.time(since, option: "--since")
        let until = try Self.time(until, option: "--until")
        if case .absolute(let from)? = since, case .absolute(let to)? = until, from >= to {
            throw ValidationError("--since must be before --until")
        }
        if follow && until != nil { throw ValidationError("--follow cannot be combined with --until: new events are later still") }
        if !follow && (untilStopped || followFor != nil) { throw ValidationError("--until-stopped and --follow-for need --follow") }
        guard interval > 0, interval <= 3600 else { throw ValidationError("--interval must be more than 0 and at most 3600 seconds") }
        // Bounded (and NaN refused: it fails both tests) before run() turns it into milliseconds.
        if let followFor, !(followFor > 0 && followFor <= Self.maximumFollowFor) {
            throw ValidationError("--follow-for must be more than 0 and at most \(Int(Self.maximumFollowFor)) seconds")
        }
    }

    func run() async throws {
        let filter = EventLog.Filter(kinds: kinds, chunk: chunk, since: try Self.time(since, option: "--since"),
                                     until: try Self.time(until, option: "--until"), limit: limit)
        let database = try options.open()
        defer { options.printPlans(database) }
        guard follow else {
            emit(try EventLog.load(database, filter: filter).render(options.format.format))
            return
        }
        // Interrupting a follow is how it normally ends: exit 0. The handler is in place
        // before the first line is written (a dispatch signal source registers later, on its
        // own queue, and a signal in between was lost). Lines go out with write(2), unbuffered,
        // so nothing written is left behind.
        for number in [SIGINT, SIGTERM] {
            signal(number) { _ in _exit(0) }
        }
        let limits = EventLog.FollowLimits(untilStopped: untilStopped, duration: followFor.map { .milliseconds(Int64($0 * 1000)) },
                                           interval: .milliseconds(Int64(interval * 1000)))
        try await EventLog.follow(database, filter: filter, format: options.format.format, limits: limits, write: emit)
    }
}

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Re-hash the chunk files against the index; list mismatches, missing and unindexed files. Exits 1 if any. Changes nothing.")

    @OptionGroup var options: CommonOptions

    @Option(help: ArgumentHelp("The node's folder (holding chunks/); by default the folder the node recorded, else the index's folder.", valueName: "dir"))
    var dir: String?

    func run() async throws {
        let database = try options.open()
        defer { options.printPlans(database) }
        let report = try await VerifyReport.run(database, directory: dir)
        emit(report.render(options.format.format))
        if !report.isClean { throw ExitCode(1) }
    }
}

struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write one self-contained HTML page of a swarm: per node, a timeline of chunk arrivals, a chunk map and throughput, coloured by source.",
        discussion: "Give the nodes' indexes with --db (repeatable), or a peershare demo folder with --dir (its peerN/peer.db). The page has inline SVG and CSS only: no scripts, nothing fetched.")

    @Option(name: .customLong("db"), help: ArgumentHelp("A node's index (repeatable; one row per index, in this order).", valueName: "path"))
    var databases: [String] = []

    @Option(help: ArgumentHelp("A peershare demo folder: its peer1/peer.db, peer2/peer.db, …", valueName: "dir"))
    var dir: String?

    @Option(help: ArgumentHelp("The HTML file to write.", valueName: "path"))
    var out: String = "swarm.html"

    @Option(help: "The page's title.")
    var title: String = "PeerShare swarm"

    @OptionGroup var logging: LogOptions

    func validate() throws {
        guard databases.isEmpty != (dir == nil) else { throw ValidationError("give the indexes with --db, or a demo folder with --dir (one of the two)") }
        guard !out.isEmpty else { throw ValidationError("--out must name a file") }
    }

    func run() async throws {
        let logger = logging.makeLogger()
        let opened = try dir.map { try SwarmReport.databases(inDemoFolder: $0) } ?? databases.map { try InspectDatabase(path: $0) }
        let report = try SwarmReport.load(opened)
        for node in report.nodes {
            logger.info("\(node.name): \(node.arrivals.count) of \(node.chunkCount.map(String.init) ?? "?") chunks, \(node.restarts.count) restarts, \(node.rejections.count) rejected (\(node.database))")
        }
        let folder = URL(fileURLWithPath: out).deletingLastPathComponent().path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder), isFolder.boolValue else {
            throw InspectError("cannot write \(out): no folder \(folder)")
        }
        do {
            try report.html(title: title).write(toFile: out, atomically: true, encoding: .utf8)
        } catch {
            throw InspectError("cannot write \(out): \((error as NSError).localizedDescription)")
        }
        emit("\(out)\n")
    }
}

struct WhyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "why",
        abstract: "Why a peer is stuck or slow: missing chunks and who last offered them, outstanding and abandoned requests, slow or failing sources, time lost, and the swarm's efficiency against its lower bound.",
        discussion: "Works on a live or a stopped peer. See docs/WATCHING.md, \"Why is it stuck?\", for the definitions.")

    @OptionGroup var options: CommonOptions

    @Option(help: ArgumentHelp("The number of peers N for the efficiency bound; by default chunk count / this peer's share size.", valueName: "n"))
    var peers: Int64?

    @Option(help: ArgumentHelp("A peer missing chunks is stuck after this long without progress.", valueName: "seconds"))
    var stalledAfter: Double = 10

    func validate() throws {
        if options.format == .csv { throw ValidationError("why prints a table or JSON (--format table|json), not csv") }
        if let peers, !(1...1_000_000).contains(peers) { throw ValidationError("--peers must be between 1 and 1000000") }
        guard stalledAfter >= 0, stalledAfter <= 86_400 else { throw ValidationError("--stalled-after must be between 0 and 86400 seconds") }
    }

    func run() async throws {
        let database = try options.open()
        defer { options.printPlans(database) }
        let report = try WhyReport.load(database, peers: peers, stalledAfter: Int64(stalledAfter * 1_000_000))
        emit(report.render(options.format.format))
    }
}
