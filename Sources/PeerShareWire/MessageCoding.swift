import NIOCore
import PeerShareCore

extension PeerMessage {
    /// Writes the message body (type byte and payload), without the length prefix.
    public func encodeBody(into out: inout ByteBuffer) {
        out.writeInteger(kind.rawValue)
        switch self {
        case .hello(let hello):
            out.writeBytes(Hello.magic)
            out.writeInteger(hello.version)
            out.writeInteger(hello.role.rawValue)
            out.writeBytes(hello.fileID.bytes)
            let name = Array(hello.name.utf8)
            out.writeInteger(UInt8(truncatingIfNeeded: name.count))
            out.writeBytes(name)
        case .manifest(let header):
            out.writeInteger(UInt64(header.fileSize))
            out.writeInteger(header.chunkSize)
            out.writeInteger(header.chunkCount)
            out.writeBytes(header.fileHash.bytes)
            let name = Array(header.fileName.utf8)
            out.writeInteger(UInt16(truncatingIfNeeded: name.count))
            out.writeBytes(name)
        case .hashes(let first, let hashes):
            out.writeInteger(first)
            for hash in hashes { out.writeBytes(hash.bytes) }
        case .share(let bitfield), .chunkList(let bitfield):
            out.writeBytes(bitfield)
        case .have(let id), .request(let id), .reject(let id):
            out.writeInteger(id.rawValue)
        case .piece(let id, let data):
            out.writeInteger(id.rawValue)  // the head as in writePieceHead
            out.writeImmutableBuffer(data)
        case .keepAlive:
            break
        }
    }

    /// The size of the body `encodeBody` writes.
    public var bodyLength: Int {
        1 + {
            switch self {
            case .hello(let h): 4 + 2 + 1 + 32 + 1 + h.name.utf8.count
            case .manifest(let m): 8 + 4 + 4 + 32 + 2 + m.fileName.utf8.count
            case .hashes(_, let hashes): 4 + 32 * hashes.count
            case .share(let b), .chunkList(let b): b.count
            case .have, .request, .reject: 4
            case .piece(_, let data): 4 + data.readableBytes
            case .keepAlive: 0
            }
        }()
    }

    /// Parses one frame body (type byte already read). Every field is checked against the
    /// limits in PROTOCOL.md; anything else throws, and the caller drops the connection.
    public static func decode(type: UInt8, payload: inout ByteBuffer) throws(WireError) -> PeerMessage {
        guard let kind = Kind(rawValue: type) else { throw .unknownType(type) }
        let message: PeerMessage
        switch kind {
        case .hello:
            guard let magic = payload.readBytes(length: 4), magic == Hello.magic else { throw .malformed(kind, "bad magic") }
            guard let version = payload.readInteger(as: UInt16.self),
                  let rawRole = payload.readInteger(as: UInt8.self),
                  let fileID = payload.readBytes(length: 32).flatMap({ Digest32(bytes: $0) }),
                  let nameLength = payload.readInteger(as: UInt8.self)
            else { throw .malformed(kind, "too short") }
            guard let role = Hello.Role(rawValue: rawRole) else { throw .malformed(kind, "unknown role \(rawRole)") }
            guard nameLength >= 1, Int(nameLength) <= Hello.maximumNameBytes else {
                throw .malformed(kind, "name length \(nameLength) is outside 1...\(Hello.maximumNameBytes)")
            }
            guard let nameBytes = payload.readBytes(length: Int(nameLength)) else { throw .malformed(kind, "name is truncated") }
            guard let name = String(validating: nameBytes, as: UTF8.self),
                  !nameBytes.contains(where: { $0 < 0x20 || $0 == 0x7f })
            else { throw .malformed(kind, "name is not printable UTF-8") }
            message = .hello(Hello(version: version, role: role, fileID: fileID, name: name))
        case .manifest:
            guard let size = payload.readInteger(as: UInt64.self),
                  let chunkSize = payload.readInteger(as: UInt32.self),
                  let chunkCount = payload.readInteger(as: UInt32.self),
                  let fileHash = payload.readBytes(length: 32).flatMap({ Digest32(bytes: $0) }),
                  let nameLength = payload.readInteger(as: UInt16.self)
            else { throw .malformed(kind, "too short") }
            guard size <= UInt64(ChunkLayout.maximumFileSize) else {
                throw .malformed(kind, "file size \(size) is over the largest possible \(ChunkLayout.maximumFileSize) bytes")
            }
            let layout: ChunkLayout
            do { layout = try ChunkLayout(fileSize: Int64(size), chunkSize: Int(chunkSize)) } catch { throw .malformed(kind, error.description) }
            guard layout.chunkCount == Int(chunkCount) else {
                throw .malformed(kind, "chunk count \(chunkCount) does not match \(size) bytes in chunks of \(chunkSize)")
            }
            guard Int(nameLength) <= FileName.maximumBytes, let nameBytes = payload.readBytes(length: Int(nameLength)) else {
                throw .malformed(kind, "file name is truncated or too long")
            }
            guard let name = String(validating: nameBytes, as: UTF8.self) else { throw .malformed(kind, "file name is not UTF-8") }
            do { try FileName.validate(name) } catch { throw .malformed(kind, error.description) }
            message = .manifest(ManifestHeader(fileSize: Int64(size), chunkSize: chunkSize, chunkCount: chunkCount, fileHash: fileHash, fileName: name))
        case .hashes:
            guard let first = payload.readInteger(as: UInt32.self) else { throw .malformed(kind, "too short") }
            let count = payload.readableBytes / 32
            guard payload.readableBytes % 32 == 0, count >= 1, count <= WireLimits.maximumHashesPerMessage else {
                throw .malformed(kind, "\(payload.readableBytes) bytes is not 1...\(WireLimits.maximumHashesPerMessage) hashes")
            }
            var hashes: [Digest32] = []
            hashes.reserveCapacity(count)
            for _ in 0..<count {
                guard let hash = payload.readBytes(length: 32).flatMap({ Digest32(bytes: $0) }) else { throw .malformed(kind, "truncated") }
                hashes.append(hash)
            }
            message = .hashes(first: first, hashes)
        case .share, .chunkList:
            guard payload.readableBytes <= WireLimits.maximumBitfieldBytes else { throw .malformed(kind, "bitfield too long") }
            let bytes = payload.readBytes(length: payload.readableBytes) ?? []
            message = kind == .share ? .share(bitfield: bytes) : .chunkList(bitfield: bytes)
        case .have, .request, .reject:
            guard let raw = payload.readInteger(as: UInt32.self) else { throw .malformed(kind, "too short") }
            let id = ChunkID(raw)
            message = switch kind {
            case .have: .have(id)
            case .request: .request(id)
            default: .reject(id)
            }
        case .piece:
            guard let raw = payload.readInteger(as: UInt32.self) else { throw .malformed(kind, "too short") }
            guard payload.readableBytes >= 1 else { throw .malformed(kind, "no chunk bytes") }
            let data = payload.readSlice(length: payload.readableBytes)!
            message = .piece(ChunkID(raw), data)
        case .keepAlive:
            message = .keepAlive
        }
        guard payload.readableBytes == 0 else {
            throw .malformed(kind, "\(payload.readableBytes) unexpected trailing bytes")
        }
        return message
    }
}
