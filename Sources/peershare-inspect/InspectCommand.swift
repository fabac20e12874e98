import ArgumentParser
import PeerShareCLI
import PeerShareStore

@main
struct InspectMain {
    static func main() async {
        await CommandRunner.main(InspectCommand.self, programName: "peershare-inspect")
    }
}

struct InspectCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peershare-inspect",
        abstract: "Answer questions about a peer or owner from its SQLite index (read-only).")

    @Option(help: "The index database to read.")
    var db: String

    func run() async throws {
        let report = try Overview.load(path: db)
        print(report.render())
    }
}
