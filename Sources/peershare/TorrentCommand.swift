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
        let torrent = TorrentFile(name: file.name, length: file.size, pieceLength: pieceLength, pieces: hashed.pieces,
                                  webSeeds: webSeeds, isPrivate: isPrivate, createdAt: Int64(Date().timeIntervalSince1970))
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
        print("wrote \(out): \(file.name), \(file.size) bytes in \(hashed.pieces.count / 20) pieces of \(pieceLength), info hash \(infoHash), \(webSeeds.count) web seed(s)")
    }

    /// Reads the file once; refuses one whose size or content is no longer what was verified.
    private func hash(_ file: CompleteFile, pieceLength: Int) throws -> PieceHasher.Result {
        let fd: CInt
        do { fd = try PosixFiles.openForReading(file.path) } catch { throw ValidationError("cannot read \(file.path): \(error)") }
        defer { close(fd) }
        let result: PieceHasher.Result
        do {
            result = try PieceHasher.hash(pieceLength: pieceLength) { try PosixFiles.read(fd, into: $0, path: file.path) }
        } catch {
            throw ValidationError("cannot read \(file.path): \(error)")
        }
        guard result.length == file.size, result.sha256 == file.sha256 else {
            throw ValidationError("\(file.path) is no longer the file the index verified (\(result.length) bytes, SHA-256 \(result.sha256.short); expected \(file.size) bytes, \(file.sha256.short))")
        }
        return result
    }
}
