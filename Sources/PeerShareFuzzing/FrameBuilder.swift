import PeerShareCore
import PeerShareWire

/// What a generated conversation has said so far, so that later fields can agree with
/// earlier ones (a chunk count that matches the size, HASHES that continue where the last
/// batch ended) often enough to get past the first check and into the next.
struct ConversationFacts {
    var fileID: [UInt8] = Array(repeating: 0x5a, count: 32)
    var fileSize: UInt64 = 250_000
    var chunkSize: UInt64 = 102_400
    var chunkCount: UInt64 = 3
    var hashesSent: UInt64 = 0

    /// ⌈size / chunk size⌉ without overflow, as the protocol defines it.
    var consistentCount: UInt64 {
        guard chunkSize > 0 else { return 0 }
        return fileSize / chunkSize + (fileSize % chunkSize > 0 ? 1 : 0)
    }
}

/// Writes frames byte by byte as docs/PROTOCOL.md lays them out, with field values the
/// fuzzer picks, valid or not. (PeerShareWire's encoder cannot write most invalid values:
/// its MANIFEST takes the file size as an Int64, for one.)
struct FrameBuilder {
    private(set) var bytes: [UInt8] = []
    var facts = ConversationFacts()
    /// Generated frames stop growing past this, to keep executions fast: room for one frame
    /// of the largest size (a PIECE of 1 MiB, a bitfield of 8,000,000 chunks) and more.
    static let budget = 1_200_000

    var isFull: Bool { bytes.count >= Self.budget }

    /// One frame: the length prefix is usually right, sometimes a boundary value.
    mutating func frame(type: UInt8, payload: [UInt8], _ input: inout FuzzInput) {
        let length = UInt64(1 + payload.count)
        let prefix = input.byte() < 240 ? length : input.field(width: 4, near: [length, UInt64(WireLimits.maximumFrameLength)])
        append(prefix, width: 4)
        bytes.append(type)
        bytes += payload
    }

    mutating func append(_ value: UInt64, width: Int) {
        for shift in stride(from: (width - 1) * 8, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }

    mutating func message(_ kind: PeerMessage.Kind, _ input: inout FuzzInput) {
        var payload = Payload()
        switch kind {
        case .hello: payload.hello(&input, facts: facts)
        case .manifest: payload.manifest(&input, facts: &facts)
        case .folder: payload.folder(&input)
        case .files: payload.files(&input)
        case .hashes: payload.hashes(&input, facts: &facts)
        case .share, .chunkList: payload.bitfield(&input, facts: facts)
        case .have, .request, .reject: payload.chunkID(&input, facts: facts)
        case .piece: payload.piece(&input, facts: facts)
        case .keepAlive: break
        case .getPeers: payload.field(input.field(width: 1, near: [1, UInt64(PeerAddress.maximumPerMessage)]), width: 1)
        case .peers: payload.peers(&input)
        case .manifestSignature:
            for limit in [PeerMessage.maximumSignerKeyBytes, PeerMessage.maximumSignatureBytes] {
                let length = input.field(width: 1, near: [0, 1, 64, 91, UInt64(limit)])
                payload.field(length, width: 1)
                payload.bytes += input.raw(Int(length))
            }
        }
        frame(type: kind.rawValue, payload: payload.bytes, &input)
    }

    /// Any frame at all: each known type, or an unknown type byte.
    mutating func anyMessage(_ input: inout FuzzInput) {
        let choice = input.index(below: PeerMessage.Kind.allCases.count + 1)
        if choice < PeerMessage.Kind.allCases.count {
            message(PeerMessage.Kind.allCases[choice], &input)
        } else {
            frame(type: input.byte(), payload: input.raw(input.index(below: 16)), &input)
        }
    }
}

/// The payload of one frame, field by field.
private struct Payload {
    var bytes: [UInt8] = []

    mutating func field(_ value: UInt64, width: Int) {
        for shift in stride(from: (width - 1) * 8, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }

    mutating func name(_ input: inout FuzzInput, lengthWidth: Int, limit: UInt64) {
        let length = input.field(width: lengthWidth, near: [limit])
        let names: [[UInt8]] = [Array("peer1".utf8), Array("..".utf8), Array("a/b".utf8), Array(".peershare-x".utf8), [0xff, 0xfe], [0x41, 0x00]]
        field(length, width: lengthWidth)
        // The name itself: a known pattern repeated to the declared length, cut at 300 bytes.
        let pattern = input.pick(names)
        let count = Int(min(length, 300))
        bytes += (0..<count).map { pattern[$0 % pattern.count] }
    }

    mutating func hello(_ input: inout FuzzInput, facts: ConversationFacts) {
        bytes += input.byte() < 240 ? Hello.magic : input.raw(4)
        field(input.field(width: 2, near: [UInt64(Hello.currentVersion)]), width: 2)
        bytes.append(input.pick([0, 1, 2, 255]))
        bytes += input.pick([facts.fileID, Array(repeating: 0, count: 32), Array(repeating: 0xff, count: 32)])
        name(&input, lengthWidth: 1, limit: UInt64(Hello.maximumNameBytes))
        field(input.field(width: 2, near: [0, 1, 65_535]), width: 2)
        bytes.append(input.pick([0, 1, 2, 255]))
        host(&input)
    }

    /// A host: a plausible address, or any bytes of any length.
    mutating func host(_ input: inout FuzzInput) {
        if input.bool() {
            let text = Array(input.pick(["127.0.0.1", "::1", "example.org", "", "-x", "a/b"]).utf8)
            bytes.append(UInt8(text.count))
            bytes += text
        } else {
            let length = input.index(below: 256)
            bytes.append(UInt8(length))
            bytes += input.raw(length)
        }
    }

    mutating func peers(_ input: inout FuzzInput) {
        let count = input.field(width: 1, near: [0, 1, UInt64(PeerAddress.maximumPerMessage)])
        field(count, width: 1)
        for _ in 0..<min(count, 40) {
            name(&input, lengthWidth: 1, limit: UInt64(Hello.maximumNameBytes))
            host(&input)
            field(input.field(width: 2, near: [0, 1, 65_535]), width: 2)
        }
    }

    mutating func manifest(_ input: inout FuzzInput, facts: inout ConversationFacts) {
        facts.fileSize = input.field(width: 8)
        facts.chunkSize = input.field(width: 4, near: [102_400, UInt64(ChunkLayout.maximumChunkSize)])
        facts.chunkCount = input.bool() ? facts.consistentCount & 0xffff_ffff : input.field(width: 4, near: [facts.consistentCount])
        facts.hashesSent = 0
        field(facts.fileSize, width: 8)
        field(facts.chunkSize, width: 4)
        field(facts.chunkCount, width: 4)
        bytes += facts.fileID
        name(&input, lengthWidth: 2, limit: UInt64(FileName.maximumBytes))
    }

    mutating func folder(_ input: inout FuzzInput) {
        field(input.field(width: 8), width: 8)
        field(input.field(width: 4, near: [102_400, UInt64(ChunkLayout.maximumChunkSize)]), width: 4)
        field(input.field(width: 4, near: [UInt64(ChunkID.maximumCount)]), width: 4)
        field(input.field(width: 4, near: [0, 1, UInt64(FileTree.maximumEntries), 10_000_000]), width: 4)
        bytes += input.raw(32)
        name(&input, lengthWidth: 2, limit: UInt64(FileName.maximumBytes))
    }

    /// FILES: a first index, then entries whose paths are the attacks a folder invites.
    mutating func files(_ input: inout FuzzInput) {
        field(input.field(width: 4, near: [0, 1]), width: 4)
        let paths = ["a", "a/b", "a/../../x", "/etc/x", "a//b", "a/", "é", "e\u{301}", "a\u{0}b", ".peershare-x/y", "..", "x\\y"]
        for _ in 0..<input.index(below: 4) {
            bytes.append(input.pick([0, 1, 2, 3, 0xff]))
            field(input.field(width: 8, near: [0, 1]), width: 8)
            let path = Array(input.pick(paths).utf8)
            let length = input.bool() ? UInt64(path.count) : input.field(width: 2, near: [UInt64(TreePath.maximumBytes)])
            field(length, width: 2)
            bytes += (0..<Int(min(length, 5_000))).map { path[$0 % path.count] }
        }
    }

    mutating func hashes(_ input: inout FuzzInput, facts: inout ConversationFacts) {
        let remaining = facts.chunkCount &- facts.hashesSent
        let first = input.byte() < 200 ? facts.hashesSent : input.field(width: 4, near: [facts.chunkCount])
        let batch = min(remaining, UInt64(WireLimits.maximumHashesPerMessage))
        let count = Int(min(input.byte() < 200 ? batch : input.field(width: 2, near: [batch, 16_384]), 16_385))
        field(first, width: 4)
        bytes += [UInt8](repeating: 0x11, count: 32 * count)
        facts.hashesSent = first &+ UInt64(count)
    }

    mutating func bitfield(_ input: inout FuzzInput, facts: ConversationFacts) {
        let exact = (facts.chunkCount + 7) / 8
        let length = Int(min(input.byte() < 200 ? exact : input.field(width: 4, near: [exact]), 1_000_001))
        // Zeros with the edges chosen: the first chunk, the last byte's spare bits. A bitfield
        // full of ones would only make each execution slow, not reach new code.
        var field = [UInt8](repeating: 0, count: length)
        if length > 0 {
            field[0] = input.pick([0x00, 0x80, 0xff] as [UInt8])
            field[length - 1] |= input.pick([0x00, 0x01, 0x80, 0xff] as [UInt8])
        }
        bytes += field
    }

    mutating func chunkID(_ input: inout FuzzInput, facts: ConversationFacts) {
        field(input.field(width: 4, near: [facts.chunkCount]), width: 4)
    }

    mutating func piece(_ input: inout FuzzInput, facts: ConversationFacts) {
        let id = input.field(width: 4, near: [facts.chunkCount])
        field(id, width: 4)
        // The size the manifest gives this chunk, or a boundary length.
        let offset = id.multipliedReportingOverflow(by: facts.chunkSize)
        let due = offset.overflow || offset.partialValue >= facts.fileSize ? 0 : min(facts.chunkSize, facts.fileSize - offset.partialValue)
        let length = Int(min(input.byte() < 200 ? due : input.field(width: 4, near: [due, facts.chunkSize]), UInt64(ChunkLayout.maximumChunkSize + 1)))
        bytes += [UInt8](repeating: 0x61, count: length)
    }
}
