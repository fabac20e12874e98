import ArgumentParser
import Foundation
import PeerShareCore

/// Runs a command so that every failure is one clear line on stderr and a non-zero exit,
/// never a stack trace or a page of usage text.
public enum CommandRunner {
    public static func main<Command: AsyncParsableCommand>(_ type: Command.Type, programName: String) async -> Never {
        let command: any ParsableCommand
        do {
            command = try type.parseAsRoot()
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
