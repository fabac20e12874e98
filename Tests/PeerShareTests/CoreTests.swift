import Testing
@testable import PeerShareCore
@testable import PeerShareNode

@Suite("Chunk layout at the edges")
struct ChunkLayoutTests {
    @Test("0 bytes: no chunks at all")
    func empty() throws {
        let layout = try ChunkLayout(fileSize: 0, chunkSize: 102_400)
        #expect(layout.chunkCount == 0)
        #expect(layout.chunkIDs.isEmpty)
    }

    @Test("1 byte: one chunk of 1 byte")
    func oneByte() throws {
        let layout = try ChunkLayout(fileSize: 1, chunkSize: 102_400)
        #expect(layout.chunkCount == 1)
        #expect(layout.size(of: ChunkID(0)) == 1)
    }

    @Test("exactly 100 KiB: one full chunk")
    func exactlyOneChunk() throws {
        let layout = try ChunkLayout(fileSize: 102_400, chunkSize: 102_400)
        #expect(layout.chunkCount == 1)
        #expect(layout.size(of: ChunkID(0)) == 102_400)
    }

    @Test("100 KiB + 1: a full chunk and a 1-byte chunk")
    func oneChunkPlusOne() throws {
        let layout = try ChunkLayout(fileSize: 102_401, chunkSize: 102_400)
        #expect(layout.chunkCount == 2)
        #expect(layout.size(of: ChunkID(0)) == 102_400)
        #expect(layout.size(of: ChunkID(1)) == 1)
        #expect(layout.offset(of: ChunkID(1)) == 102_400)
        #expect(!layout.contains(ChunkID(2)))
    }

    @Test("an exact multiple has no short last chunk")
    func exactMultiple() throws {
        let layout = try ChunkLayout(fileSize: 102_400 * 40, chunkSize: 102_400)
        #expect(layout.chunkCount == 40)
        #expect(layout.chunkIDs.allSatisfy { layout.size(of: $0) == 102_400 })
    }

    @Test("sizes add up to the file for the end-to-end file size")
    func sizesAddUp() throws {
        let size: Int64 = 2_621_440 + 17
        let layout = try ChunkLayout(fileSize: size, chunkSize: 102_400)
        #expect(layout.chunkCount == 26)
        #expect(layout.chunkIDs.reduce(Int64(0)) { $0 + Int64(layout.size(of: $1)) } == size)
        #expect(layout.size(of: ChunkID(25)) == 61_457)
    }

    @Test("bad layouts are refused with a reason")
    func refusals() {
        #expect(throws: LayoutError.negativeFileSize(-1)) { try ChunkLayout(fileSize: -1, chunkSize: 10) }
        #expect(throws: LayoutError.chunkSizeOutOfRange(0)) { try ChunkLayout(fileSize: 1, chunkSize: 0) }
        #expect(throws: LayoutError.chunkSizeOutOfRange(2_000_000)) { try ChunkLayout(fileSize: 1, chunkSize: 2_000_000) }
    }
}

@Suite("Chunk sets and their bitfields")
struct ChunkSetTests {
    @Test("bitfield round trip, high bit first as in BEP 3")
    func roundTrip() throws {
        let set = ChunkSet(capacity: 10, [0, 7, 8, 9].map { ChunkID($0) })
        #expect(set.bitfield == [0b1000_0001, 0b1100_0000])
        let parsed = try #require(ChunkSet(capacity: 10, bitfield: set.bitfield))
        #expect(parsed == set)
        #expect(parsed.sorted == [0, 7, 8, 9].map { ChunkID($0) })
    }

    @Test("a bitfield of the wrong length or with spare bits set is refused")
    func refusals() {
        #expect(ChunkSet(capacity: 10, bitfield: [0xff]) == nil)
        #expect(ChunkSet(capacity: 10, bitfield: [0xff, 0xff, 0]) == nil)
        #expect(ChunkSet(capacity: 10, bitfield: [0x00, 0b0010_0000]) == nil)
    }

    @Test("subtracting, counting, completeness")
    func algebra() {
        var held = ChunkSet(capacity: 130)
        #expect(held.isEmpty)
        for i in stride(from: 0, to: 130, by: 2) { held.insert(ChunkID(UInt32(i))) }
        let all = ChunkSet.full(130)
        #expect(all.isComplete && all.count == 130)
        let missing = all.subtracting(held)
        #expect(missing.count == 65)
        #expect(missing.sorted.first == ChunkID(1) && missing.sorted.last == ChunkID(129))
        #expect(held.remove(ChunkID(0)) && !held.contains(ChunkID(0)))
    }

    @Test("members come in ascending order across word boundaries, and a loop can stop early",
          arguments: [[], [0], [63], [64], [0, 63, 64, 127, 128, 199], Array(0..<200)] as [[UInt32]])
    func members(ids: [UInt32]) {
        let set = ChunkSet(capacity: 200, ids.map { ChunkID($0) })
        #expect(Array(set.members) == ids.map { ChunkID($0) })
        #expect(set.sorted == ids.map { ChunkID($0) })
        #expect(Array(set.members.prefix(2)) == ids.prefix(2).map { ChunkID($0) })
        #expect(Array(ChunkSet(capacity: 0).members).isEmpty)
    }
}

@Suite("The owner's share assignment")
struct ShareAssignerTests {
    @Test("the first five peers get disjoint shares that cover the file")
    func firstFiveCover() {
        for count in [0, 1, 4, 5, 21, 26, 40, 1000] {
            var assigner = ShareAssigner(chunkCount: count, expectedPeers: 5)
            let shares = (1...5).map { assigner.share(for: "peer\($0)") }
            let all = shares.flatMap { $0 }
            #expect(all.count == count, "count \(count)")
            #expect(Set(all).count == count, "shares overlap for count \(count)")
            #expect(shares.map(\.count).max()! - shares.map(\.count).min()! <= 1)
        }
    }

    @Test("a sixth peer still gets a share: the least handed-out chunks")
    func latecomer() {
        var assigner = ShareAssigner(chunkCount: 26, expectedPeers: 5)
        for i in 1...5 { _ = assigner.share(for: "peer\(i)") }
        let sixth = assigner.share(for: "peer6")
        #expect(sixth.count == 6)
        #expect(sixth.allSatisfy { assigner.handoutCount(of: $0) == 2 })
        let seventh = assigner.share(for: "peer7")
        #expect(Set(seventh).isDisjoint(with: sixth), "the seventh should get chunks handed out once, not twice")
    }

    @Test("chunks the owner sent outside a share count as held: a late arrival gets the others")
    func fallbackCopiesCount() {
        var assigner = ShareAssigner(chunkCount: 8, expectedPeers: 2)
        let first = assigner.share(for: "a")
        // "a" fell back on the owner for chunks 4-7; chunk 4 twice counts once per copy.
        for id in [4, 5, 6, 7, 4] as [UInt32] { assigner.noteSent(ChunkID(id), to: "a") }
        // Its own share's chunks are already counted.
        for id in first { assigner.noteSent(id, to: "a") }
        #expect(assigner.share(for: "b") == [0, 1, 2, 3].map { ChunkID($0) })
        #expect(assigner.handoutCount(of: ChunkID(4)) == 2)
        #expect(assigner.handoutCount(of: ChunkID(0)) == 2)
    }

    @Test("a returning peer gets the same share, not a second slice")
    func stableForName() {
        var assigner = ShareAssigner(chunkCount: 10, expectedPeers: 2)
        let first = assigner.share(for: "peer1")
        #expect(assigner.share(for: "peer1") == first)
        #expect(assigner.share(for: "peer2") == (5..<10).map { ChunkID(UInt32($0)) })
    }

    @Test("restoring handouts after an owner restart continues the same plan")
    func restore() {
        var before = ShareAssigner(chunkCount: 20, expectedPeers: 4)
        let a = before.share(for: "a")
        let b = before.share(for: "b")
        var after = ShareAssigner(chunkCount: 20, expectedPeers: 4)
        after.restore(a, for: "a")
        after.restore(b, for: "b")
        #expect(after.share(for: "a") == a)
        #expect(after.share(for: "c") == before.share(for: "c"))
    }
}

@Suite("Command-line values")
struct ArgumentValueTests {
    @Test("HOST:PORT forms that parse")
    func good() throws {
        #expect(try Endpoint(parsing: "127.0.0.1:7000") == Endpoint(host: "127.0.0.1", port: 7000))
        #expect(try Endpoint(parsing: "localhost:1") == Endpoint(host: "localhost", port: 1))
        #expect(try Endpoint(parsing: "[::1]:65535") == Endpoint(host: "::1", port: 65535))
        #expect(Endpoint(host: "::1", port: 80).description == "[::1]:80")
    }

    @Test("malformed HOST:PORT is refused", arguments: ["7000", "host:", ":7000", "host:0", "host:70000", "host:port", "::1:80", "[::1]80", "a b:1"])
    func bad(text: String) {
        #expect(throws: EndpointError.self) { try Endpoint(parsing: text) }
    }

    @Test("sizes")
    func sizes() {
        #expect(ByteSize.parse("8MiB") == 8 << 20)
        #expect(ByteSize.parse("2.5MiB") == 2_621_440)
        #expect(ByteSize.parse("17") == 17)
        #expect(ByteSize.parse("1GiB") == 1 << 30)
        #expect(ByteSize.parse("lots") == nil)
        #expect(ByteSize.parse("-1MiB") == nil)
        #expect(ByteSize.format(2_621_440) == "2.5 MiB")
    }
}

@Suite("Manifest and file names")
struct ManifestTests {
    @Test("file names that could escape the folder are refused",
          arguments: ["", ".", "..", "../../x", "a/b", "/etc/passwd", "a\\b", "nul\0byte", "tab\there", String(repeating: "x", count: 256), ".peershare-tmp-1"])
    func badNames(name: String) {
        #expect(throws: ManifestError.self) { try FileName.validate(name) }
    }

    @Test("ordinary names pass")
    func goodNames() throws {
        for name in ["movie.mkv", "données.bin", String(repeating: "x", count: 255), ".hidden"] {
            try FileName.validate(name)
        }
    }

    @Test("verification catches wrong size and wrong bytes")
    func verify() throws {
        let data: [UInt8] = Array(repeating: 7, count: 150)
        let layout = try ChunkLayout(fileSize: 150, chunkSize: 100)
        let hashes = [Digest32.of(data[0..<100]), Digest32.of(data[100..<150])]
        let manifest = try Manifest(fileName: "f", layout: layout, chunkHashes: hashes, fileHash: Digest32.of(data))
        #expect(manifest.verify(ChunkID(1), bytes: data[100..<150], count: 50) == .verified(hashes[1]))
        #expect(manifest.verify(ChunkID(1), bytes: data[0..<100], count: 100) == .wrongSize(expected: 50, got: 100))
        var flipped = Array(data[100..<150])
        flipped[3] ^= 1
        #expect(manifest.verify(ChunkID(1), bytes: flipped, count: 50) == .wrongHash(got: Digest32.of(flipped)))
        #expect(manifest.verify(ChunkID(2), bytes: [], count: 0) == .unknownChunk)
        #expect(throws: ManifestError.hashCountMismatch(expected: 2, got: 1)) {
            try Manifest(fileName: "f", layout: layout, chunkHashes: [hashes[0]], fileHash: hashes[0])
        }
    }

    @Test("the file ID is SHA-256 of PSHR-ID2, the sizes and the chunk hashes; it changes with any of them")
    func fileID() throws {
        let layout = try ChunkLayout(fileSize: 150, chunkSize: 100)
        let hashes = [Digest32.of(Array("a".utf8)), Digest32.of(Array("b".utf8))]
        let manifest = try Manifest(fileName: "f", layout: layout, chunkHashes: hashes, fileHash: Digest32.of(Array("whole".utf8)))
        // Spelled out byte by byte, as docs/PROTOCOL.md writes it.
        let spelled: [UInt8] = Array("PSHR-ID2".utf8) + [0, 0, 0, 0, 0, 0, 0, 150] + [0, 0, 0, 100] + hashes[0].bytes + hashes[1].bytes
        #expect(manifest.fileID == Digest32.of(spelled))
        #expect(manifest.fileID != manifest.fileHash)
        // The file name and the whole-file hash are not part of it; the layout and each hash are.
        #expect(try Manifest(fileName: "g", layout: layout, chunkHashes: hashes, fileHash: hashes[0]).fileID == manifest.fileID)
        #expect(Manifest.contentID(layout: layout, chunkHashes: [hashes[1], hashes[0]]) != manifest.fileID)
        #expect(Manifest.contentID(layout: try ChunkLayout(fileSize: 151, chunkSize: 100), chunkHashes: hashes) != manifest.fileID)
        #expect(Manifest.contentID(layout: try ChunkLayout(fileSize: 150, chunkSize: 101), chunkHashes: hashes) != manifest.fileID)
        let empty = try ChunkLayout(fileSize: 0, chunkSize: 100)
        #expect(Manifest.contentID(layout: empty, chunkHashes: []) == Digest32.of(Array("PSHR-ID2".utf8) + [UInt8](repeating: 0, count: 8) + [0, 0, 0, 100]))
    }

    @Test("digest hex round trip")
    func hex() throws {
        let digest = Digest32.of(Array("abc".utf8))
        #expect(digest.hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Digest32(hex: digest.hex) == digest)
        #expect(Digest32(hex: "zz") == nil)
    }
}

@Suite("Swarm topologies for the demo and the bench")
struct SwarmTopologyTests {
    /// Every peer can be reached from every other along download links (chunks flow
    /// against them), so no chunk is stranded.
    func stronglyConnected(_ topology: SwarmTopology) -> Bool {
        func reachable(from start: Int) -> Set<Int> {
            var seen: Set<Int> = [start], stack = [start]
            while let peer = stack.popLast() {
                for next in topology.downloadFrom[peer] where seen.insert(next).inserted { stack.append(next) }
            }
            return seen
        }
        return (0..<topology.peerCount).allSatisfy { reachable(from: $0).count == topology.peerCount }
    }

    @Test("the ring: peer i downloads from peer i+1; one peer has no neighbour")
    func ring() {
        #expect(SwarmTopology.ring(peers: 3).downloadFrom == [[1], [2], [0]])
        #expect(SwarmTopology.ring(peers: 3).downloaders == [1, 1, 1])
        #expect(SwarmTopology.ring(peers: 1).downloadFrom == [[]])
    }

    @Test("a mesh: k distinct neighbours each, never itself, connected, the same for the same seed",
          arguments: [(2, 3), (5, 1), (5, 3), (20, 3), (50, 4)])
    func mesh(peers: Int, k: Int) {
        for seed: UInt64 in [1, 7, 12345] {
            let topology = SwarmTopology.mesh(peers: peers, neighbours: k, seed: seed)
            #expect(topology.peerCount == peers)
            for (peer, sources) in topology.downloadFrom.enumerated() {
                #expect(sources.count == min(k, peers - 1))
                #expect(Set(sources).count == sources.count)
                #expect(!sources.contains(peer))
            }
            #expect(stronglyConnected(topology), "seed \(seed)")
            #expect(topology.downloaders.reduce(0, +) == peers * min(k, peers - 1))
            #expect(topology == SwarmTopology.mesh(peers: peers, neighbours: k, seed: seed))
        }
        #expect(SwarmTopology.mesh(peers: 20, neighbours: 3, seed: 1) != SwarmTopology.mesh(peers: 20, neighbours: 3, seed: 2))
    }
}

@Suite("Runs of chunk IDs")
struct ChunkRunsTests {
    @Test("runs of a set and of what it lacks; the log's compact form")
    func runs() {
        let set = ChunkSet(capacity: 50, [0, 1, 2, 19, 40, 42, 43, 44, 45].map { ChunkID(UInt32($0)) })
        #expect(set.runs == [0...2, 19...19, 40...40, 42...45])
        #expect(set.complement.runs == [3...18, 20...39, 41...41, 46...49])
        #expect(ChunkSet(capacity: 0).runs.isEmpty && ChunkSet.full(3).complement.runs.isEmpty)
        #expect(describeRanges([45, 0, 1, 2, 40, 19, 42, 43, 44].map { ChunkID(UInt32($0)) }) == "0-2, 19, 40, 42-45")
    }
}
