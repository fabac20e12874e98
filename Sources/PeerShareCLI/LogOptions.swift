import ArgumentParser
import Logging

/// How log lines are written: text for people, JSON Lines for programs.
public enum LogFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text, json
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// `--quiet`, `--log-level` and `--log-format`, shared by every command of both executables.
public struct LogOptions: ParsableArguments, Sendable {
    @Flag(help: "Log only errors, and draw no live progress line.")
    public var quiet = false

    @Option(help: ArgumentHelp("The lowest level logged (default: info).", valueName: "level"))
    public var logLevel: Logger.Level?

    @Option(help: "Log lines as text, or as json: one object per line with the fields of the index's event rows.")
    public var logFormat: LogFormat = .text

    public init() {}

    public func validate() throws {
        if quiet, let logLevel { throw ValidationError("--quiet and --log-level \(logLevel.rawValue) contradict each other; pass one") }
    }

    public var level: Logger.Level { quiet ? .error : logLevel ?? .info }

    /// The same choices for a child process (`peershare demo` starts nodes with them).
    public var childArguments: [String] {
        (quiet ? ["--quiet"] : logLevel.map { ["--log-level", $0.rawValue] } ?? []) + ["--log-format", logFormat.rawValue]
    }

    /// Routes every Logger of this process to `console` (stderr) in the chosen format and level.
    /// Call once, before the first log line.
    public func bootstrap(console: StatusConsole) {
        let format = logFormat, level = self.level
        LoggingSystem.bootstrap { label in
            ConsoleLogHandler(label: label, format: format, level: level, console: console)
        }
    }
}
