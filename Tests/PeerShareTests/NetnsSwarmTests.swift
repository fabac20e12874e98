import Foundation
import Testing

/// Whether this machine can run tools/netns-swarm: it needs root and iproute2's `ip`.
/// (The script itself reports, and exits 77, if `ip netns add` then fails.)
enum NetworkNamespaces {
    static var ipCommand: String? {
        ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }
    static var usable: Bool { geteuid() == 0 && ipCommand != nil }
    static var repository: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
}

@Suite("Real hosts: a swarm across network namespaces", .serialized)
struct NetnsSwarmTests {
    // Skipped, and said so in the test report, unless running as root with iproute2.
    @Test("tools/netns-swarm: an owner and 5 peers in their own namespaces, one link shaped, every copy identical, all torn down",
          .enabled(if: NetworkNamespaces.usable, "needs root and iproute2's ip to create network namespaces"))
    func acrossNamespaces() async throws {
        let script = NetworkNamespaces.repository + "/tools/netns-swarm"
        let result = try await runCommand(script, ["--binary", Binaries.peershare, "--size", "2097152", "--timeout", "120"], timeout: .seconds(180))
        if result.status == 77 {
            // Root, but no namespaces here (a container without CAP_SYS_ADMIN, say).
            print("NetnsSwarmTests skipped: \(result.stderr.split(separator: "\n").last ?? "")")
            return
        }
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("result: 5/5 peers complete and identical across 6 namespaces, 2097152 bytes each"), "\(result.stdout)")
        #expect(result.stdout.split(separator: "\n").filter { $0.contains("exit 0, identical to the source") }.count == 5)
        // Every namespace it made is gone.
        let tag = try #require(result.stderr.firstMatch(of: /in namespaces (psn[0-9]+)-\*/)?.1)
        let list = try await runCommand(try #require(NetworkNamespaces.ipCommand), ["netns", "list"])
        #expect(!list.stdout.contains(String(tag) + "-"), "left behind: \(list.stdout)")
    }
}
