import Crypto
import PeerShareCore

/// A BitTorrent v1 metainfo (BEP 3), single-file or multi-file, whose only sources are web
/// seeds (BEP 19), optionally private (BEP 27).
public struct TorrentFile: Sendable {
    /// A multi-file torrent's file: its path under the torrent's name, and its length.
    public struct Entry: Sendable, Equatable {
        public let path: [String]
        public let length: Int64
        public init(path: [String], length: Int64) {
            self.path = path
            self.length = length
        }
    }

    public let name: String
    public let length: Int64
    /// A folder's files in order (v1 has no way to list empty folders); nil for one file.
    public var files: [Entry]? = nil
    public let pieceLength: Int
    /// The SHA-1 of every piece, 20 bytes each, in order.
    public let pieces: [UInt8]
    public let webSeeds: [String]
    public let isPrivate: Bool
    public let createdAt: Int64

    public init(name: String, length: Int64, pieceLength: Int, pieces: [UInt8], webSeeds: [String], isPrivate: Bool, createdAt: Int64) {
        self.name = name
        self.length = length
        self.pieceLength = pieceLength
        self.pieces = pieces
        self.webSeeds = webSeeds
        self.isPrivate = isPrivate
        self.createdAt = createdAt
    }

    /// Piece sizes: powers of two from 16 KiB (a BitTorrent block; Transmission stalls on
    /// pieces that are not a multiple of it) to 16 MiB.
    public static let pieceLengths = (14...24).map { 1 << $0 }

    public var info: Bencode {
        var info: [String: Bencode] = [
            "name": .string(name), "piece length": .integer(Int64(pieceLength)), "pieces": .bytes(pieces),
        ]
        if let files {
            info["files"] = .list(files.map { .dictionary(["length": .integer($0.length), "path": .list($0.path.map(Bencode.string))]) })
        } else {
            info["length"] = .integer(length)
        }
        if isPrivate { info["private"] = .integer(1) }
        return .dictionary(info)
    }

    /// What clients call the torrent by: the SHA-1 of the bencoded info dictionary.
    public var infoHash: [UInt8] { Array(Insecure.SHA1.hash(data: info.encoded)) }

    public var encoded: [UInt8] {
        Bencode.dictionary([
            "info": info,
            "url-list": .list(webSeeds.map(Bencode.string)),
            "created by": .string("PeerShare"),
            "creation date": .integer(createdAt),
        ]).encoded
    }
}

/// Reads a file once, start to end: the SHA-1 of every piece for the torrent, and the
/// SHA-256 of the whole, which must still be the manifest's.
public enum PieceHasher {
    public struct Result: Sendable {
        public let pieces: [UInt8]
        public let sha256: Digest32
        public let length: Int64
    }

    /// `read` fills the buffer from the file's current position and returns how many bytes
    /// it read (0 at the end).
    public static func hash(pieceLength: Int, read: (UnsafeMutableRawBufferPointer) throws -> Int) rethrows -> Result {
        var pieces: [UInt8] = []
        var whole = SHA256()
        var piece = Insecure.SHA1()
        var inPiece = 0
        var length: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: max(pieceLength, 1 << 20))
        while true {
            let count = try buffer.withUnsafeMutableBytes { try read($0) }
            if count == 0 { break }
            length += Int64(count)
            buffer.withUnsafeBytes { raw in
                let bytes = UnsafeRawBufferPointer(rebasing: raw[0..<count])
                whole.update(bufferPointer: bytes)
                var offset = 0
                while offset < count {
                    let take = min(pieceLength - inPiece, count - offset)
                    piece.update(bufferPointer: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + take]))
                    inPiece += take
                    offset += take
                    if inPiece == pieceLength {
                        pieces += Array(piece.finalize())
                        piece = Insecure.SHA1()
                        inPiece = 0
                    }
                }
            }
        }
        if inPiece > 0 { pieces += Array(piece.finalize()) }
        return Result(pieces: pieces, sha256: Digest32(whole.finalize()), length: length)
    }
}
