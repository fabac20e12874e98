import Crypto
import Logging
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareStore
import PeerShareWire

/// Who downloads from this peer, and when it may stop.
extension Node {

    func downloaderCompleted(_ peer: String) {
        guard completeDownloaders.insert(peer).inserted else { return }
        log(.neighbourComplete, source: .init(kind: .peer, name: peer), "\(peer) now holds every chunk")
        broadcast(.stateChanged)
    }

    public var completeDownloaderCount: Int { completeDownloaders.count }


    /// No downloader has connected for `patience` while this peer holds the whole file. The
    /// usual cause: a downloader finished and left while this peer was down, so the news
    /// that it was complete died with the old process. Waiting longer cannot help; a
    /// downloader that does come back later still finds its other sources and the owner.
    func stopWaitingForDownloaders(after patience: Duration) {
        guard !gaveUpOnDownloaders else { return }
        gaveUpOnDownloaders = true
        log(.disconnected, "stopped waiting for downloaders: \(completeDownloaders.count) reported complete, and none has connected for \(patience.seconds) s", level: .warning)
        broadcast(.stateChanged)
    }


    /// Remembers that the neighbour at `address` knows this peer is complete.
    func toldComplete(neighbour: String, address: Endpoint) async {
        do {
            emit(try await index.run { try $0.recordToldComplete(neighbour: neighbour, address: address.description) })
        } catch {
            logger.error("could not record in the index: \(error)")
        }
    }

    /// Records where a source was dialled, so that connection events naming only its
    /// address (retries, losses) can be put down to it (`peershare-inspect why`).
    func recordAddress(of source: ChunkIndex.Source, _ address: Endpoint) async {
        do {
            _ = try await index.run { try $0.sourceID(source, address: address.description) }
        } catch {
            logger.error("could not record in the index: \(error)")
        }
    }

    /// Whether an earlier run already told the neighbour at `address` that this peer is complete.
    func hasToldComplete(_ address: Endpoint) async -> Bool {
        guard isComplete else { return false }
        do {
            return try await index.run { try $0.addressesToldComplete() }.contains(address.description)
        } catch {
            // Not knowing means connecting once more, which is harmless; say why.
            log(.error, "could not read which neighbours were told this peer is complete: \(error)", level: .warning)
            return false
        }
    }

    func neighbourFetchFinished() {
        finishedNeighbourFetches += 1
        broadcast(.stateChanged)
    }
}
