import Crypto
import Foundation
import PeerShareCore

/// What a peer needs to join a private swarm, as one line (`peershare-ticket-1:` and
/// base64url): where the owner listens, who it is (its node ID), which file, and the join
/// secret. The secret is never printed by `description`; only the ticket's own line and
/// file (mode 0600) carry it.
public struct Ticket: Sendable, Equatable, CustomStringConvertible {
    public static let prefix = "peershare-ticket-1:"
    public static let maximumAddresses = 8
    /// A ticket line is at most this long: a remote or a file cannot make us decode more.
    public static let maximumLength = 4096

    public let ownerAddresses: [Endpoint]
    public let ownerID: NodeID
    public let fileID: Digest32
    public let secret: [UInt8]

    public init(ownerAddresses: [Endpoint], ownerID: NodeID, fileID: Digest32, secret: [UInt8]) {
        self.ownerAddresses = ownerAddresses
        self.ownerID = ownerID
        self.fileID = fileID
        self.secret = secret
    }

    /// A fresh 32-byte join secret from the system's random generator.
    public static func newSecret() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    public var description: String {
        "ticket for file \(fileID.short) from owner \(ownerID) at \(ownerAddresses.map(\.description).joined(separator: ", ")) (secret withheld)"
    }

    /// The one line a user copies.
    public var line: String {
        var bytes: [UInt8] = [1]
        bytes += ownerID.digest.bytes + fileID.bytes + secret
        bytes.append(UInt8(ownerAddresses.count))
        for address in ownerAddresses {
            let text = Array(address.description.utf8)
            bytes.append(UInt8(text.count))
            bytes += text
        }
        return Self.prefix + Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    /// Reads a ticket line; every field is checked, and the error says which is wrong
    /// without repeating the line (it holds the secret).
    public init(line raw: String) throws {
        let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        guard line.utf8.count <= Self.maximumLength else { throw Invalid(description: "the ticket is \(line.utf8.count) bytes long, over \(Self.maximumLength)") }
        guard line.hasPrefix(Self.prefix) else { throw Invalid(description: "a ticket starts with \(Self.prefix)") }
        var text = String(line.dropFirst(Self.prefix.count)).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while text.utf8.count % 4 != 0 { text += "=" }
        guard let data = Data(base64Encoded: text) else { throw Invalid(description: "the ticket is not base64url after its prefix") }
        var reader = TicketReader(bytes: Array(data))
        guard try reader.byte("the version") == 1 else { throw Invalid(description: "the ticket is of a version this PeerShare does not know") }
        ownerID = NodeID(digest: Digest32(bytes: try reader.bytes(32, "the owner's ID"))!)
        fileID = Digest32(bytes: try reader.bytes(32, "the file ID"))!
        secret = try reader.bytes(32, "the join secret")
        let count = Int(try reader.byte("the address count"))
        guard (1...Self.maximumAddresses).contains(count) else { throw Invalid(description: "the ticket names \(count) owner addresses; 1 to \(Self.maximumAddresses) are allowed") }
        var addresses: [Endpoint] = []
        for index in 0..<count {
            let length = Int(try reader.byte("address \(index)'s length"))
            let bytes = try reader.bytes(length, "address \(index)")
            guard let text = String(validating: bytes, as: UTF8.self), let endpoint = try? Endpoint(parsing: text) else {
                throw Invalid(description: "owner address \(index) in the ticket is not HOST:PORT")
            }
            addresses.append(endpoint)
        }
        guard reader.isAtEnd else { throw Invalid(description: "the ticket has bytes after its last address") }
        ownerAddresses = addresses
    }
}

private struct TicketReader {
    let bytes: [UInt8]
    var offset = 0

    var isAtEnd: Bool { offset == bytes.count }

    mutating func byte(_ what: String) throws -> UInt8 {
        try bytes(1, what)[0]
    }

    mutating func bytes(_ count: Int, _ what: String) throws -> [UInt8] {
        guard count <= bytes.count - offset else { throw Ticket.Invalid(description: "the ticket ends before \(what)") }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }
}
