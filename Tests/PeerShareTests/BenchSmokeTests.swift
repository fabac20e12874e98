import Foundation
import Testing

/// The benchmark harness still works: `tools/bench --smoke` runs a tiny swarm of the
/// freshly built (debug) `peershare` and checks every copy. It asserts nothing about time.
@Suite("tools/bench smoke run", .serialized)
struct BenchSmokeTests {
    /// The repository's root: this file is Tests/PeerShareTests/BenchSmokeTests.swift.
    static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test("tools/bench --smoke: exits 0, and its table lists peershare with every copy verified")
    func smoke() async throws {
        let bench = Self.repository + "/tools/bench"
        #expect(FileManager.default.isExecutableFile(atPath: bench), "\(bench) is missing or not executable")
        let workdir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: workdir) }
        let result = try await runCommand(bench, ["--smoke", "--binary", Binaries.peershare, "--workdir", workdir],
                                          timeout: .seconds(180))
        #expect(result.status == 0, "tools/bench --smoke failed:\n\(result.stdout)\n\(result.stderr)")
        let rows = result.stdout.split(separator: "\n").map(String.init)
        let peershare = rows.first { $0.hasPrefix("| peershare ") }
        #expect(peershare != nil, "no peershare row in the table:\n\(result.stdout)")
        if let peershare {
            #expect(peershare.contains("5/5 verified"), "peershare row: \(peershare)")
            #expect(!peershare.contains("FAILED"), "peershare row: \(peershare)")
        }
        // The harness removes its temporary folder: nothing is left in the work folder.
        #expect((try? FileManager.default.contentsOfDirectory(atPath: workdir))?.isEmpty ?? true)
    }
}
