import NIOCore
import PeerShareCore

/// Every message of the PeerShare protocol. docs/PROTOCOL.md is the byte-level reference;
/// the type codes and limits here must match it.
public enum PeerMessage: Equatable, Sendable {
    case hello(Hello)
    case manifest(ManifestHeader)
    case hashes(first: UInt32, [Digest32])
    case share(bitfield: [UInt8])
    case chunkList(bitfield: [UInt8])
    case have(ChunkID)
    case request(ChunkID)
    case piece(ChunkID, ByteBuffer)
    case reject(ChunkID)
    case keepAlive
    case getPeers(wanted: UInt8)
    case peers([PeerAddress])
    /// A private swarm's manifest, signed by the owner: its public key (DER SPKI) and an
    /// ECDSA P-256 signature (docs/PROTOCOL.md, "Private swarms").
    case manifestSignature(signerKey: [UInt8], signature: [UInt8])
    /// A shared folder's manifest header, in MANIFEST's place (docs/PROTOCOL.md, "Folders").
    case folder(FolderHeader)
    /// A batch of a folder's entries, numbered from `first`.
    case files(first: UInt32, [TreeEntry])

    /// Bounds on MANIFEST-SIGNATURE's fields: a P-256 SPKI is 91 bytes, a signature 64.
    public static let maximumSignerKeyBytes = 200
    public static let maximumSignatureBytes = 128

    /// One-byte type codes (PROTOCOL.md, "Messages").
    public enum Kind: UInt8, Sendable, CaseIterable {
        case hello = 0x01
        case manifest = 0x02
        case hashes = 0x03
        case share = 0x04
        case chunkList = 0x05
        case have = 0x06
        case request = 0x07
        case piece = 0x08
        case reject = 0x09
        case keepAlive = 0x0A
        case getPeers = 0x0B
        case peers = 0x0C
        case manifestSignature = 0x0E
        case folder = 0x0F
        case files = 0x10

        /// The message's name as docs/PROTOCOL.md writes it, for log lines and errors.
        public var name: String {
            switch self {
            case .hello: "HELLO"
            case .manifest: "MANIFEST"
            case .hashes: "HASHES"
            case .share: "SHARE"
            case .chunkList: "CHUNK-LIST"
            case .have: "HAVE"
            case .request: "REQUEST"
            case .piece: "PIECE"
            case .reject: "REJECT"
            case .keepAlive: "KEEPALIVE"
            case .getPeers: "GET-PEERS"
            case .peers: "PEERS"
            case .manifestSignature: "MANIFEST-SIGNATURE"
            case .folder: "FOLDER"
            case .files: "FILES"
            }
        }
    }

    public var kind: Kind {
        switch self {
        case .hello: .hello
        case .manifest: .manifest
        case .hashes: .hashes
        case .share: .share
        case .chunkList: .chunkList
        case .have: .have
        case .request: .request
        case .piece: .piece
        case .reject: .reject
        case .keepAlive: .keepAlive
        case .getPeers: .getPeers
        case .peers: .peers
        case .manifestSignature: .manifestSignature
        case .folder: .folder
        case .files: .files
        }
    }
}

/// The first message on every connection, in both directions (PROTOCOL.md, "HELLO").
public struct Hello: Equatable, Sendable {
    public enum Role: UInt8, Sendable { case peer = 0, owner = 1 }

    public static let magic: [UInt8] = Array("PSHR".utf8)
    /// 2: the file ID is the hash of the layout and the chunk hashes (docs/PROTOCOL.md).
    /// 3: HELLO carries the address others should dial; GET-PEERS and PEERS.
    public static let currentVersion: UInt16 = 3
    public static let maximumNameBytes = 64
    static let findsNeighboursFlag: UInt8 = 0x01
    /// Sent by a peer that has no manifest yet and asks the owner for one.
    public static let unknownFileID = Digest32(bytes: [UInt8](repeating: 0, count: 32))!

    public let version: UInt16
    public let role: Role
    public let fileID: Digest32
    public let name: String
    /// The port others should dial this node on; 0 if it takes no connections to pass on.
    public let listenPort: UInt16
    /// The host others should dial; empty for "the address you see me connect from".
    public let advertisedHost: String
    /// Set by a peer that finds its neighbours through the owner (GET-PEERS) rather than
    /// only through `--download-from`: once every chunk is in the swarm, the owner gives such
    /// a peer no share, since its neighbours have the file to give.
    public let findsNeighbours: Bool

    public init(version: UInt16 = Hello.currentVersion, role: Role, fileID: Digest32, name: String,
                listenPort: UInt16 = 0, advertisedHost: String = "", findsNeighbours: Bool = false) {
        self.version = version
        self.role = role
        self.fileID = fileID
        self.name = name
        self.listenPort = listenPort
        self.advertisedHost = advertisedHost
        self.findsNeighbours = findsNeighbours
    }
}

/// A peer another node may dial, as GET-PEERS answers it (PROTOCOL.md, "PEERS").
public struct PeerAddress: Equatable, Hashable, Sendable {
    public let name: String
    public let endpoint: Endpoint

    public init(name: String, endpoint: Endpoint) {
        self.name = name
        self.endpoint = endpoint
    }

    /// Peers per PEERS message, and the most a GET-PEERS may ask for.
    public static let maximumPerMessage = 32
    /// A DNS name's longest form; IP literals are shorter.
    public static let maximumHostBytes = 253

    /// Whether `host` is something a node may dial: an IP literal or a DNS name, in ASCII
    /// letters, digits and `.-:%_`, 1…253 bytes, not starting with `-`.
    public static func isValidHost(_ host: String) -> Bool {
        let bytes = Array(host.utf8)
        guard (1...maximumHostBytes).contains(bytes.count), bytes.first != UInt8(ascii: "-") else { return false }
        return bytes.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
            case UInt8(ascii: "."), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "%"), UInt8(ascii: "_"): true
            default: false
            }
        }
    }
}

/// The manifest's fixed part; the chunk hashes follow in HASHES messages.
public struct ManifestHeader: Equatable, Sendable {
    public let fileSize: Int64
    public let chunkSize: UInt32
    public let chunkCount: UInt32
    public let fileHash: Digest32
    public let fileName: String

    public init(fileSize: Int64, chunkSize: UInt32, chunkCount: UInt32, fileHash: Digest32, fileName: String) {
        self.fileSize = fileSize
        self.chunkSize = chunkSize
        self.chunkCount = chunkCount
        self.fileHash = fileHash
        self.fileName = fileName
    }

    public init(_ manifest: Manifest) {
        self.init(fileSize: manifest.fileSize, chunkSize: UInt32(manifest.chunkSize), chunkCount: UInt32(manifest.chunkCount),
                  fileHash: manifest.fileHash, fileName: manifest.fileName)
    }
}

public enum WireLimits {
    /// Bytes of the length prefix.
    public static let lengthFieldBytes = 4
    /// The largest frame body (type byte + payload): a PIECE of the largest chunk.
    public static let maximumFrameLength = 1 + 4 + ChunkLayout.maximumChunkSize
    /// Hashes per HASHES message: 16,384 × 32 bytes = 512 KiB.
    public static let maximumHashesPerMessage = 16_384
    /// A bitfield of the largest chunk count.
    public static let maximumBitfieldBytes = ChunkSet.bitfieldByteCount(capacity: ChunkID.maximumCount)
}

public enum WireError: Error, Equatable, CustomStringConvertible {
    case frameTooLarge(UInt32)
    case emptyFrame
    case unknownType(UInt8)
    case malformed(PeerMessage.Kind, String)
    /// A well-formed type that is not valid where the conversation is (ConversationGate).
    case notAllowed(PeerMessage.Kind, String)
    case truncatedAtEOF(bufferedBytes: Int)

    public var description: String {
        switch self {
        case .frameTooLarge(let n): "frame of \(n) bytes exceeds the \(WireLimits.maximumFrameLength)-byte limit"
        case .emptyFrame: "frame of 0 bytes has no message type"
        case .unknownType(let t): "unknown message type 0x\(String(t, radix: 16))"
        case .malformed(let kind, let reason): "malformed \(kind.name): \(reason)"
        case .notAllowed(let kind, let when): "\(kind.name) is not allowed \(when)"
        case .truncatedAtEOF(let n): "connection closed inside a frame (\(n) bytes buffered)"
        }
    }
}
