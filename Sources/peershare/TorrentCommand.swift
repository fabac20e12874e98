#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import PeerShareCLI
import PeerShareCore
import PeerShareInspect
import PeerShareStore
import PeerShareTorrent

/// `peershare torrent`: a .torrent for the file a node holds, naming PeerShare nodes as its
/// web seeds, so that aria2, qBittorrent, Transmission or libtorrent can fetch it from the
/// swarm (README, "Downloading with a BitTorrent client").
struct TorrentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torrent",
        abstract: "Write a BitTorrent .torrent (BEP 3) for a node's file, with PeerShare nodes (--http) as its web seeds (BEP 19).")

    @Option(help: "The index of a node that holds the whole file (an owner's, or a peer's that has assembled it).")
    var db: String

    @Option(name: .customLong("web-seed"),
            help: ArgumentHelp("A node's file URL: http://HOST:PORT/files/ (the client adds the file name) or the file's own URL; repeat for several.", valueName: "url"))
    var webSeeds: [String] = []

    @Option(help: "Piece size: a power of two from 16KiB to 16MiB.")
    var pieceSize = SizeArgument(bytes: 256 * 1024)

    @Flag(name: .customLong("private"), help: "Mark the torrent private (BEP 27): clients use only its web seeds and trackers, no DHT or peer exchange.")
    var isPrivate = false

    @Option(help: "Where to write the .torrent.")
    var out: String

    func validate() throws {
        guard !webSeeds.isEmpty else { throw ValidationError("give at least one --web-seed URL (a node started with --http serves its file at http://HOST:PORT/files/)") }
        for url in webSeeds {
            guard url.hasPrefix("http://"), url.utf8.count > 7, url.utf8.count <= 2_048,
                  !url.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) else {
                throw ValidationError("--web-seed \(url.prefix(80)): expected an http:// URL of at most 2048 bytes with no spaces")
            }
        }
        guard TorrentFile.pieceLengths.contains(Int(clamping: pieceSize.bytes)) else {
            throw ValidationError("--piece-size must be a power of two from 16KiB to 16MiB (BitTorrent clients fetch 16 KiB blocks)")
        }
    }

    func run() throws {
        let file: CompleteFile
        do {
            file = try InspectDatabase(path: db).completeFile()
        } catch let error as InspectError {
            throw ValidationError(error.description)
        }
        let pieceLength = Int(pieceSize.bytes)
        let hashed = try hash(file, pieceLength: pieceLength)
        var torrent = TorrentFile(name: file.name, length: file.size, pieceLength: pieceLength, pieces: hashed.pieces,
                                  webSeeds: webSeeds, isPrivate: isPrivate, createdAt: Int64(Date().timeIntervalSince1970))
        torrent.files = file.files?.map { TorrentFile.Entry(path: $0.components, length: $0.size) }
        do {
            let bytes = torrent.encoded
            let folder = (out as NSString).deletingLastPathComponent
            try PosixFiles.writeDurably(out, directory: folder.isEmpty ? "." : folder) { fd, path in
                try bytes.withUnsafeBytes { try PosixFiles.writeAll(fd, $0, path: path) }
            }
        } catch {
            throw ValidationError("cannot write \(out): \(error)")
        }
        let infoHash = Hex.encode(torrent.infoHash)
        let what = file.files.map { "the folder \(file.name) (\($0.count) files)" } ?? file.name
        print("wrote \(out): \(what), \(file.size) bytes in \(hashed.pieces.count / 20) pieces of \(pieceLength), info hash \(infoHash), \(webSeeds.count) web seed(s)")
    }

    /// Reads the file (a folder's files, in order) once; refuses what is no longer the size
    /// or content the index verified.
    private func hash(_ file: CompleteFile, pieceLength: Int) throws -> PieceHasher.Result {
        let parts = file.files?.map { ($0.diskPath, $0.size) } ?? [(file.path, file.size)]
        var reader = ConcatenatedReader(parts: parts)
        defer { reader.close() }
        let result: PieceHasher.Result
        do {
            result = try PieceHasher.hash(pieceLength: pieceLength) { try reader.read(into: $0) }
        } catch {
            throw ValidationError("cannot read \(reader.current ?? file.path): \(error)")
        }
        guard result.length == file.size, result.sha256 == file.sha256 else {
            throw ValidationError("\(file.path) is no longer what the index verified (\(result.length) bytes, SHA-256 \(result.sha256.short); expected \(file.size) bytes, \(file.sha256.short))")
        }
        return result
    }
}

/// Files read one after another as one stream, each no further than its indexed size.
struct ConcatenatedReader {
    var parts: [(path: String, size: Int64)]
    private var index = 0
    private var fd: CInt = -1
    private var left: Int64 = 0

    init(parts: [(path: String, size: Int64)]) { self.parts = parts }

    var current: String? { index < parts.count ? parts[index].path : nil }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while index < parts.count {
            if fd < 0 {
                fd = try PosixFiles.openForReading(parts[index].path)
                left = parts[index].size
            }
            let want = Int(min(Int64(buffer.count), left))
            let got = want > 0 ? try PosixFiles.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<want]), path: parts[index].path) : 0
            if got > 0 {
                left -= Int64(got)
                return got
            }
            // This file is done (or ended early: the length check then refuses it).
            Glibc.close(fd)
            fd = -1
            index += 1
        }
        return 0
    }

    mutating func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}
