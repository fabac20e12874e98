import Foundation
import PeerShareCLI
import Testing

/// Users put the database first, as with `sqlite3 DB …` or `git -C DIR …`, and the design
/// card writes `peershare-inspect --db peer3.db`: a subcommand's options work before its name.
@Suite("peershare-inspect: options before or after the subcommand")
struct InspectArgumentOrderTests {
    func inspect(_ arguments: [String]) async throws -> CommandResult {
        try await runCommand(Binaries.inspect, arguments, timeout: .seconds(60))
    }

    @Test("the same bytes either way", arguments: [
        ["chunks", "--format", "json"],
        ["chunks", "--from", "owner", "--format", "csv"],
        ["sources", "--format", "json"],
        ["events", "--kind", "chunk_received", "--limit", "5", "--format", "json"],
        ["chunk", "3", "--format", "json"],
        ["verify"],
    ])
    func sameOutput(command: [String]) async throws {
        let f = try InspectFixture.completePeer(command.joined(separator: "_"))
        let after = try await inspect(command + ["--db", f.db])
        #expect(after.status == 0, "\(after.stderr)")
        #expect(!after.stdout.isEmpty)
        // The database first, then the subcommand, then the rest; and every option first.
        let options = Array(command.drop { !$0.hasPrefix("-") })
        let positionals = Array(command.prefix { !$0.hasPrefix("-") })
        for arguments in [["--db", f.db] + command, ["--db", f.db] + options + positionals] {
            let before = try await inspect(arguments)
            #expect(before.status == 0, "\(arguments): \(before.stderr)")
            #expect(before.stdout == after.stdout, "\(arguments)")
        }
    }

    @Test("a mistake after a moved subcommand names the mistake, in one line")
    func mistakeNamed() async throws {
        let f = try InspectFixture.completePeer("mistake")
        let result = try await inspect(["--db", f.db, "chunks", "--bogus"])
        #expect(result.status != 0)
        #expect(result.stderr.hasPrefix("peershare-inspect: error: ") && result.stderr.contains("--bogus"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    }

    @Test("an index file named like a subcommand is still an index file")
    func valueNamedLikeSubcommand() async throws {
        let f = try InspectFixture.completePeer("named")
        let dir = temporaryDirectory()
        let named = dir + "/chunks"
        try FileManager.default.copyItem(atPath: f.db, toPath: named)
        let overview = try await inspect(["--db", named])
        #expect(overview.status == 0, "\(overview.stderr)")
        #expect(overview.stdout == (try await inspect(["overview", "--db", named])).stdout)
    }
}
