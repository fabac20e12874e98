import NIOCore
import Testing
@testable import PeerShareCore
@testable import PeerShareWire

/// Protocol version 3's addresses: HELLO's advertised address, GET-PEERS and PEERS. Every
/// field a remote names is checked before anything uses it.
@Suite("Wire protocol 3: advertised addresses, GET-PEERS and PEERS")
struct PeerExchangeWireTests {
    /// Decodes one frame body given as its type byte and payload bytes.
    func decode(_ type: PeerMessage.Kind, _ payload: [UInt8]) throws(WireError) -> PeerMessage {
        var buffer = ByteBuffer(bytes: payload)
        return try PeerMessage.decode(type: type.rawValue, payload: &buffer)
    }

    func peerEntry(name: String = "p", host: String, port: UInt16) -> [UInt8] {
        [UInt8(name.utf8.count)] + Array(name.utf8) + [UInt8(host.utf8.count)] + Array(host.utf8) + [UInt8(port >> 8), UInt8(port & 0xff)]
    }

    @Test("hosts a node may dial, and names that are not hosts", arguments: [
        ("127.0.0.1", true), ("::1", true), ("fe80::1%eth0", true), ("node-3.example.org", true), ("a_b", true),
        ("", false), ("-x", false), ("a/b", false), ("a b", false), ("ünï", false), ("x\u{0}", false),
        (String(repeating: "a", count: 253), true), (String(repeating: "a", count: 254), false),
    ])
    func hosts(host: String, valid: Bool) {
        #expect(PeerAddress.isValidHost(host) == valid, "\(host.debugDescription)")
    }

    @Test("PEERS naming garbage is refused with the reason", arguments: [
        ([40], "40 peers, over the 32 a message may hold"),
        ([1] + [1, 0x70, 9] + Array("127.0.0.1".utf8), "peer 0 is truncated"),
        ([1] + [1, 0x70, 3] + Array("a/b".utf8) + [0x1b, 0x58], "peer 0's host is not a name or an address"),
        ([1] + [1, 0x70, 9] + Array("127.0.0.1".utf8) + [0, 0], "peer 0's port is 0"),
        ([1] + [0, 9] + Array("127.0.0.1".utf8) + [0x1b, 0x58], "name length 0 is outside 1...64"),
        ([1] + [1, 0x07, 9] + Array("127.0.0.1".utf8) + [0x1b, 0x58], "name is not printable UTF-8"),
        ([0, 0], "1 unexpected trailing bytes"),
    ] as [([UInt8], String)])
    func garbagePeers(payload: [UInt8], reason: String) {
        #expect { try decode(.peers, payload) } throws: { error in
            (error as? WireError)?.description.contains(reason) == true
        }
    }

    @Test("GET-PEERS asks for 1 to 32 peers")
    func getPeersBounds() throws {
        #expect(try decode(.getPeers, [1]) == .getPeers(wanted: 1))
        #expect(try decode(.getPeers, [32]) == .getPeers(wanted: 32))
        for wanted: UInt8 in [0, 33, 255] {
            #expect(throws: WireError.self) { try decode(.getPeers, [wanted]) }
        }
    }

    @Test("a version 2 HELLO still decodes, so that the session can refuse it for its version")
    func oldHello() throws {
        let old = PeerMessage.hello(Hello(version: 2, role: .peer, fileID: Hello.unknownFileID, name: "old"))
        var frame = old.frame
        var decoder = PeerMessageDecoder()
        guard case .hello(let hello)? = try decoder.decodeOne(&frame) else { Issue.record("not a HELLO"); return }
        #expect(hello.version == 2 && hello.listenPort == 0 && hello.advertisedHost.isEmpty)
    }

    @Test("a version 3 HELLO with a bad advertised host or unknown flags is refused")
    func badHello() {
        func hello(flags: UInt8, host: String) -> [UInt8] {
            Hello.magic + [0, 3, 0] + [UInt8](repeating: 0, count: 32) + [1, 0x70] + [0x1b, 0x58, flags, UInt8(host.utf8.count)] + Array(host.utf8)
        }
        #expect(throws: Never.self) { try decode(.hello, hello(flags: 1, host: "")) }
        #expect { try decode(.hello, hello(flags: 0, host: "a b")) } throws: { ($0 as? WireError)?.description.contains("not a name or an address") == true }
        #expect { try decode(.hello, hello(flags: 2, host: "")) } throws: { ($0 as? WireError)?.description.contains("unknown flags 2") == true }
        #expect { try decode(.hello, Array(hello(flags: 0, host: "").dropLast(2))) } throws: { ($0 as? WireError)?.description.contains("truncated") == true }
    }
}
