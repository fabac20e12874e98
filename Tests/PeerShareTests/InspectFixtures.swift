import Foundation
import NIOCore
import PeerShareNode
@testable import PeerShareCore
@testable import PeerShareStore

/// Indexes for the peershare-inspect tests, built by the real store code (ChunkIndex) and,
/// for the chunk files, the node's own ChunkDirectory, with fixed times so outputs are exact.
struct InspectFixture {
    /// 2025-11-25T14:00:00Z.
    static let t0: Int64 = 1_764_079_200_000_000

    let dir: String
    let manifest: Manifest
    let data: [UInt8]
    let dbName: String

    var db: String { dir + "/" + dbName }
    func chunkPath(_ id: Int) -> String { dir + "/chunks/" + String(format: "%06d.chunk", id) }
    func bytes(of id: Int) -> [UInt8] {
        let layout = manifest.layout
        let start = Int(layout.offset(of: ChunkID(UInt32(id))))
        return Array(data[start..<start + layout.size(of: ChunkID(UInt32(id)))])
    }

    static let owner = ChunkIndex.Source(kind: .owner, name: "owner")
    static func peer(_ name: String) -> ChunkIndex.Source { .init(kind: .peer, name: name) }

    private static func start(_ label: String, dbName: String) throws -> InspectFixture {
        let dir = temporaryDirectory(label)
        // 5 chunks: 4 of 100 bytes and one of 50.
        let (manifest, data) = try sampleManifest(size: 450, chunkSize: 100, name: "movie.bin")
        return InspectFixture(dir: dir, manifest: manifest, data: data, dbName: dbName)
    }

    /// Writes chunk files the way a node does (temporary file, fsync, rename).
    func writeChunkFiles(_ ids: [Int]) throws {
        let folder = try ChunkFilesStore(root: dir)
        for id in ids { try folder.write(ChunkID(UInt32(id)), bytes: ByteBuffer(bytes: bytes(of: id))) }
    }

    /// Records a verified chunk the way Node.accept does: the file is already durable, then
    /// one transaction with the chunks row, its transfer and its event.
    func receive(_ index: ChunkIndex, _ id: Int, from source: ChunkIndex.Source, requestedAt: Int64, receivedAt: Int64) throws {
        let chunk = ChunkID(UInt32(id))
        try index.record(EventRecord(at: requestedAt, kind: .chunkRequested, chunk: chunk, source: source, message: "requested chunk \(id) from \(source.name)"))
        try index.commitChunks(
            [.init(id: chunk, size: manifest.size(of: chunk), sha256: manifest.hash(of: chunk), source: source, startedAt: requestedAt, finishedAt: receivedAt)],
            events: [EventRecord(at: receivedAt, kind: .chunkReceived, chunk: chunk, source: source, message: "received chunk \(id) from \(source.name)")])
    }

    /// Records an upload the way Node.recordUpload does.
    func send(_ index: ChunkIndex, _ id: Int, to peer: ChunkIndex.Source, startedAt: Int64, finishedAt: Int64) throws {
        let chunk = ChunkID(UInt32(id))
        try index.recordTransfer(chunk: chunk, direction: "out", peer: peer, startedAt: startedAt, finishedAt: finishedAt, bytes: manifest.size(of: chunk), outcome: .sent)
        try index.record(EventRecord(at: finishedAt, kind: .chunkSent, chunk: chunk, source: peer, message: "sent chunk \(id) to \(peer.name) (\(manifest.size(of: chunk)) B)"))
    }

    func receiveManifest(_ index: ChunkIndex, share: [Int], at t: Int64) throws {
        try index.saveManifest(manifest, now: t)
        try index.record(EventRecord(at: t, kind: .manifestReceived, message: "manifest: movie.bin, 450 bytes, 5 chunks of 100"))
        try index.saveShare(share.map { ChunkID(UInt32($0)) })
        try index.record(EventRecord(at: t, kind: .shareReceived, source: Self.owner, message: "share from the owner: \(share.count) chunks"))
    }

    /// peer1, complete and assembled over three runs (two restarts): chunks 0 and 1 (its
    /// share) from the owner, 2 to 4 from peer2; chunk 0 later sent to peer3.
    static func completePeer(_ label: String = #function) throws -> InspectFixture {
        let f = try start(label, dbName: "peer.db")
        let t = t0
        try f.writeChunkFiles([0, 1, 2, 3, 4])
        do {
            let index = try ChunkIndex(path: f.db, role: .peer, nodeName: "peer1", now: t)
            try index.recordDirectory(f.dir)
            try index.record(EventRecord(at: t, kind: .started, message: "started"))
            try f.receiveManifest(index, share: [0, 1], at: t + 1_000)
            try f.receive(index, 0, from: owner, requestedAt: t + 10_000, receivedAt: t + 12_000)
            try f.receive(index, 1, from: owner, requestedAt: t + 12_000, receivedAt: t + 16_000)
            index.close(outcome: "stopped by signal", now: t + 100_000)
        }
        do {
            let index = try ChunkIndex(path: f.db, role: .peer, nodeName: "peer1", now: t + 1_000_000)
            try index.record(EventRecord(at: t + 1_000_000, kind: .started, message: "started, resuming with 2 chunks"))
            try f.receive(index, 2, from: peer("peer2"), requestedAt: t + 1_010_000, receivedAt: t + 1_011_000)
            try f.receive(index, 3, from: peer("peer2"), requestedAt: t + 1_011_000, receivedAt: t + 1_013_000)
            try f.send(index, 0, to: peer("peer3"), startedAt: t + 1_020_000, finishedAt: t + 1_021_000)
            index.close(outcome: "stopped by signal", now: t + 1_100_000)
        }
        do {
            let index = try ChunkIndex(path: f.db, role: .peer, nodeName: "peer1", now: t + 2_000_000)
            try index.record(EventRecord(at: t + 2_000_000, kind: .started, message: "started, resuming with 4 chunks"))
            try f.receive(index, 4, from: peer("peer2"), requestedAt: t + 2_010_000, receivedAt: t + 2_010_500)
            try index.markAssembled(event: EventRecord(at: t + 2_020_000, kind: .assembled, message: "assembled movie.bin: 450 bytes"))
            try index.record(EventRecord(at: t + 2_030_000, kind: .stopped, message: "stopped: complete"))
            index.close(outcome: "complete", now: t + 2_030_000)
        }
        return f
    }

    /// peer2, partial and killed (its run never recorded a stop): chunk 2 of its share [2, 3]
    /// from the owner, chunk 0 from peer3; 1, 3 and 4 missing.
    static func partialPeer(_ label: String = #function) throws -> InspectFixture {
        let f = try start(label, dbName: "peer.db")
        let t = t0
        try f.writeChunkFiles([0, 2])
        let index = try ChunkIndex(path: f.db, role: .peer, nodeName: "peer2", now: t)
        try index.recordDirectory(f.dir)
        try f.receiveManifest(index, share: [2, 3], at: t + 1_000)
        try f.receive(index, 2, from: owner, requestedAt: t + 10_000, receivedAt: t + 20_000)
        try f.receive(index, 0, from: peer("peer3"), requestedAt: t + 20_000, receivedAt: t + 25_000)
        return f
    }

    /// The owner: every chunk split from the file, shares handed out to three peers, each
    /// share chunk sent once.
    static func owner(_ label: String = #function) throws -> InspectFixture {
        let f = try start(label, dbName: "owner.db")
        let t = t0
        try f.writeChunkFiles([0, 1, 2, 3, 4])
        let index = try ChunkIndex(path: f.db, role: .owner, nodeName: "owner", now: t)
        try index.recordDirectory(f.dir)
        try index.saveManifest(f.manifest, now: t + 1_000)
        let split = f.manifest.layout.chunkIDs.map {
            ChunkIndex.ReceivedChunk(id: $0, size: f.manifest.size(of: $0), sha256: f.manifest.hash(of: $0), source: .splitFromFile, startedAt: t + 1_000, finishedAt: t + 2_000)
        }
        try index.commitChunks(split, events: [EventRecord(at: t + 2_000, kind: .split, message: "split movie.bin into 5 chunks")])
        for (name, share, start) in [("peer1", [0, 1], t + 100_000), ("peer2", [2, 3], t + 200_000), ("peer3", [4], t + 300_000)] {
            try index.recordHandout(to: peer(name), chunks: share.map { ChunkID(UInt32($0)) })
            try index.record(EventRecord(at: start, kind: .shareAssigned, source: peer(name), message: "sent manifest and a share of \(share.count) chunks to \(name)"))
            for (i, id) in share.enumerated() {
                try f.send(index, id, to: peer(name), startedAt: start + Int64(i) * 1_000, finishedAt: start + Int64(i) * 1_000 + 500)
            }
        }
        index.close(outcome: "stopped by signal", now: t + 400_000)
        return f
    }

    /// peer3, with rejected chunks: chunk 1 twice failed verification from peer4, then came
    /// verified from the owner; chunk 4 (its share) from the owner.
    static func rejectingPeer(_ label: String = #function) throws -> InspectFixture {
        let f = try start(label, dbName: "peer.db")
        let t = t0
        try f.writeChunkFiles([1, 4])
        let index = try ChunkIndex(path: f.db, role: .peer, nodeName: "peer3", now: t)
        try index.recordDirectory(f.dir)
        try f.receiveManifest(index, share: [4], at: t + 1_000)
        try f.receive(index, 4, from: owner, requestedAt: t + 10_000, receivedAt: t + 11_000)
        for attempt in 0..<2 {
            let start = t + 20_000 + Int64(attempt) * 10_000
            let reason = "SHA-256 00000000000\(attempt) does not match the manifest's \(f.manifest.hash(of: ChunkID(1)).short)"
            try index.recordTransfer(chunk: ChunkID(1), direction: "in", peer: peer("peer4"), startedAt: start, finishedAt: start + 3_000, bytes: 100, outcome: .rejected, detail: reason)
            try index.record(EventRecord(at: start + 3_000, kind: .chunkRejected, chunk: ChunkID(1), source: peer("peer4"), message: "rejected chunk 1 from peer4: \(reason)"))
        }
        try f.receive(index, 1, from: owner, requestedAt: t + 50_000, receivedAt: t + 54_000)
        index.close(outcome: "stopped by signal", now: t + 60_000)
        return f
    }

    /// A long-lived peer's index: `chunkCount` chunks (5% missing), `eventCount` events, a
    /// verified transfer per held chunk, two uploads per held chunk, 3% rejected attempts,
    /// and the chunk files (written plainly: fsyncing thousands of files would only slow the test).
    /// `large`, built on a thread of its own: it takes seconds, and on the cooperative pool
    /// (two threads here) it would hold up every other test's waits meanwhile.
    static func largeOffThePool(chunkSize: Int = 1024) async throws -> InspectFixture {
        let box: UncheckedBox<InspectFixture> = try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { UncheckedBox(try large(chunkSize: chunkSize)) }) }.start()
        }
        return box.value
    }

    static func large(chunkCount: Int = 10_000, eventCount: Int = 100_000, chunkSize: Int = 1024, label: String = #function) throws -> InspectFixture {
        let dir = temporaryDirectory(label)
        let size = Int64(chunkCount) * Int64(chunkSize) - Int64(chunkSize / 2)
        let layout = try ChunkLayout(fileSize: size, chunkSize: chunkSize)
        var data = [UInt8](repeating: 0, count: Int(size))
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in data.indices {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            data[i] = UInt8(truncatingIfNeeded: state >> 56)
        }
        let hashes = layout.chunkIDs.map { id in
            Digest32.of(data[Int(layout.offset(of: id))..<Int(layout.offset(of: id)) + layout.size(of: id)])
        }
        let manifest = try Manifest(fileName: "big.bin", layout: layout, chunkHashes: hashes, fileHash: Digest32.of(data))
        let f = InspectFixture(dir: dir, manifest: manifest, data: data, dbName: "peer.db")
        try FileManager.default.createDirectory(atPath: dir + "/chunks", withIntermediateDirectories: true)

        let t = t0
        let index = try ChunkIndex(path: f.db, role: .peer, nodeName: "peer1", now: t)
        try index.recordDirectory(dir)
        try index.saveManifest(manifest, now: t)
        let shareCount = chunkCount / 5
        try index.saveShare((0..<shareCount).map { ChunkID(UInt32($0)) })
        let neighbours = ["peer2", "peer3", "peer4", "peer5"].map(peer)
        let held = (0..<chunkCount).filter { $0 % 20 != 19 }  // every 20th chunk missing
        var events = 0
        // About an hour of activity, 0.3 s per held chunk.
        func at(_ i: Int) -> Int64 { t + 1_000_000 + Int64(i) * 300_000 }
        for batch in stride(from: 0, to: held.count, by: 500) {
            var chunks: [ChunkIndex.ReceivedChunk] = []
            var records: [EventRecord] = []
            for (i, id) in held[batch..<min(batch + 500, held.count)].enumerated() {
                let n = batch + i
                let chunk = ChunkID(UInt32(id))
                let source = id < shareCount ? owner : neighbours[id % neighbours.count]
                let received = at(n) + 2_000 + Int64(id % 7) * 1_000
                chunks.append(.init(id: chunk, size: manifest.size(of: chunk), sha256: manifest.hash(of: chunk), source: source, startedAt: at(n), finishedAt: received))
                records.append(EventRecord(at: at(n), kind: .chunkRequested, chunk: chunk, source: source, message: "requested chunk \(id) from \(source.name)"))
                records.append(EventRecord(at: received, kind: .chunkReceived, chunk: chunk, source: source, message: "received chunk \(id) from \(source.name) (\(manifest.size(of: chunk)) B)"))
                try Data(f.bytes(of: id)).write(to: URL(fileURLWithPath: f.chunkPath(id)))
            }
            try index.commitChunks(chunks, events: records)
            events += records.count
        }
        try index.db.transaction {
            for (n, id) in held.enumerated() {
                let chunk = ChunkID(UInt32(id))
                for (k, receiver) in ["peer6", "peer7"].enumerated() {
                    let start = at(n) + 100_000 + Int64(k) * 50_000
                    try index.recordTransfer(chunk: chunk, direction: "out", peer: peer(receiver), startedAt: start, finishedAt: start + 800, bytes: manifest.size(of: chunk), outcome: .sent)
                    try index.record(EventRecord(at: start, kind: .requestHandled, chunk: chunk, source: peer(receiver), message: "handling request from \(receiver) for chunk \(id)"))
                    try index.record(EventRecord(at: start + 800, kind: .chunkSent, chunk: chunk, source: peer(receiver), message: "sent chunk \(id) to \(receiver)"))
                    events += 2
                }
                if n % 33 == 0 {
                    let source = neighbours[(id + 1) % neighbours.count]
                    try index.recordTransfer(chunk: chunk, direction: "in", peer: source, startedAt: at(n) - 50_000, finishedAt: at(n) - 40_000, bytes: manifest.size(of: chunk), outcome: .rejected, detail: "SHA-256 does not match")
                    try index.record(EventRecord(at: at(n) - 40_000, kind: .chunkRejected, chunk: chunk, source: source, message: "rejected chunk \(id) from \(source.name)"))
                    events += 1
                }
            }
            // The rest: chunk-ID lists and connection chatter, spread over the same hour.
            let kinds: [EventKind] = [.listReceived, .listSent, .connectRetry, .connected, .disconnected]
            var i = 0
            while events < eventCount {
                let kind = kinds[i % kinds.count]
                let source = neighbours[i % neighbours.count]
                try index.record(EventRecord(at: at(i % held.count) + 7_000, kind: kind, source: kind == .connectRetry ? nil : source, message: "\(kind.rawValue) \(i)"))
                events += 1
                i += 1
            }
        }
        index.close(outcome: "stopped by signal", now: at(held.count) + 1_000_000)
        return f
    }
}

/// Hands a value from the thread that made it to the task that waits for it.
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
