import Foundation
import NIOCore
import NIOPosix
import Testing
import PeerShareCLI

/// The ports tests and the demo hand to child processes, which may be killed and relaunched
/// on the same port while other processes open connections.
@Suite("Reserved ports: distinct, bindable, and clear of the ports outgoing connections take")
struct PortReservationTests {
    @Test("IPv4 and IPv6: distinct ports, each of which a child can bind afterwards")
    func distinctAndBindable() async throws {
        for host in ["127.0.0.1", "::1"] {
            guard let ports = try? reserveFreePorts(6, host: host) else { continue }  // no IPv6 here
            #expect(Set(ports).count == 6, "\(host): \(ports)")
            for port in ports {
                let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: host, port: port).get()
                try await listener.close()
            }
        }
    }

    @Test("below the kernel's ephemeral range where it is known")
    func belowEphemeralRange() throws {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
              let lowest = text.split(whereSeparator: \.isWhitespace).first.flatMap({ Int($0) }), lowest > 11_000
        else { return }
        let ports = try reserveFreePorts(8)
        #expect(ports.allSatisfy { $0 >= 10_000 && $0 < lowest }, "\(ports), ephemeral range from \(lowest)")
    }

    @Test("a host that is not an address is refused in one line")
    func notAnAddress() {
        #expect(throws: PortReservationError.self) { try reserveFreePorts(1, host: "not-an-address") }
    }
}
