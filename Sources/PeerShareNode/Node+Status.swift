import PeerShareCore
import PeerShareStore
import PeerShareWire

/// What a node reports about itself (`GET /status`, `GET /metrics`): one snapshot, taken in
/// one visit to the actor.
extension Node {
    public func status() -> NodeStatus {
        let now = Clock.nowMicros()
        let file = manifest.map {
            NodeStatus.File(name: $0.fileName, size: $0.fileSize, chunkSize: $0.chunkSize, chunkCount: $0.chunkCount, fileID: $0.fileID.hex)
        }
        let neighbours = live.neighbours.sorted { $0.key < $1.key }.map { id, address in
            let offered = neighbourOffers[id] ?? ChunkSet(capacity: held.capacity)
            return NodeStatus.Neighbour(name: address.name, address: "\(address.endpoint)", offered: offered.count,
                                        useful: offered.subtracting(held).count,
                                        bytesPerSecond: live.receiveRates.bytesPerSecond(of: address.name, nowMicros: now))
        }
        let fallback = ownerFallback ?? (ownerIsLastResort ? "no download neighbour is reachable" : nil)
        let slots = uploadSlots.map { NodeStatus.Slots(inUse: $0.inUse, capacity: $0.capacity, waiting: $0.waitingCount) }
        let sync = NodeStatus.Sync(committedThrough: committedThrough, syncedThrough: syncedThrough, unsyncedBytes: unsyncedBytes,
                                   lagMicros: live.oldestUnsyncedCommit.map { max(0, now - $0) } ?? 0)
        return NodeStatus(node: name, role: role.rawValue, phase: phase, isPrivate: isPrivate, file: file, held: held,
                          inFlight: live.requestsInFlight(nowMicros: now), neighbours: neighbours, ownerFallback: fallback,
                          connectionsIn: openUploadConnections, connectionsOut: live.openDownloadConnections,
                          uploadSlots: slots, sync: sync, failure: failure)
    }

    var phase: NodeStatus.Phase {
        if failure != nil || isClosing { return .stopping }
        guard manifest != nil else { return role == .owner ? .starting : .joining }
        if role == .owner { return .seeding }
        if !isComplete { return .downloading }
        return isAssembled ? .seeding : .assembling
    }

    func downloadConnectionOpened() {
        live.openDownloadConnections += 1
        metrics.connectionOpened(.outbound)
    }

    func downloadConnectionClosed() {
        live.openDownloadConnections -= 1
    }
}
