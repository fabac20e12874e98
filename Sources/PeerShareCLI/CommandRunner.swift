import ArgumentParser
import Foundation
import PeerShareCore

/// Runs a command so that every failure is one clear line on stderr and a non-zero exit,
/// never a stack trace or a page of usage text.
public enum CommandRunner {
    /// With `subcommandAnywhere`, the subcommand's name may follow its options
    /// (`peershare-inspect --db peer3.db chunks`), as users write `sqlite3 DB …` or `git -C DIR …`.
    public static func main<Command: AsyncParsableCommand>(_ type: Command.Type, programName: String,
                                                         subcommandAnywhere: Bool = false) async -> Never {
        let command: any ParsableCommand
        do {
            let arguments = Array(CommandLine.arguments.dropFirst())
            command = try subcommandAnywhere ? parseAsRoot(type, subcommandAnywhere: arguments) : type.parseAsRoot(arguments)
        } catch {
            fail(type, error, programName: programName)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
            exit(0)
        } catch {
            fail(type, error, programName: programName)
        }
    }

    /// Parses as written; if that fails and the first word is an option, parses again with the
    /// first subcommand name moved to the front, and reports that attempt's outcome (a value
    /// that happens to equal a subcommand name, as in `--db chunks`, parses as written).
    static func parseAsRoot<Command: ParsableCommand>(_ type: Command.Type, subcommandAnywhere arguments: [String]) throws -> any ParsableCommand {
        do {
            return try type.parseAsRoot(arguments)
        } catch {
            let names = Set(type.configuration.subcommands.compactMap { $0.configuration.commandName })
            guard arguments.first?.hasPrefix("-") == true,
                  let index = arguments.indices.dropFirst().first(where: { names.contains(arguments[$0]) })
            else { throw error }
            var moved = arguments
            moved.insert(moved.remove(at: index), at: 0)
            return try type.parseAsRoot(moved)
        }
    }

    private static func fail<Command: ParsableCommand>(_ type: Command.Type, _ error: any Error, programName: String) -> Never {
        let code = type.exitCode(for: error)
        // Help, --version and deliberate exits keep ArgumentParser's own output.
        if code == .success || error is CleanExit || error is ExitCode {
            type.exit(withError: error)
        }
        let message = type.message(for: error)
        let oneLine = message.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: "; ")
        FileHandle.standardError.write(Data("\(programName): error: \(oneLine)\n".utf8))
        exit(code == .success ? 1 : code.rawValue)
    }
}

extension Endpoint {
    /// For `@Option(transform:)`, so a malformed HOST:PORT is reported with its reason.
    public static func argument(_ text: String) throws -> Endpoint {
        try Endpoint(parsing: text)
    }

    /// An address to listen on: port 0 lets the OS choose.
    public static func listenArgument(_ text: String) throws -> Endpoint {
        try Endpoint(parsing: text, allowingAnyPort: true)
    }
}

/// Parses a size argument such as `8MiB`.
public struct SizeArgument: ExpressibleByArgument, Sendable {
    public let bytes: Int64
    public init?(argument: String) {
        guard let bytes = ByteSize.parse(argument) else { return nil }
        self.bytes = bytes
    }
    public init(bytes: Int64) { self.bytes = bytes }
    public var defaultValueDescription: String { ByteSize.format(bytes) }
}
