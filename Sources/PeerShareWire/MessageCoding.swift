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
            writeShortString(hello.name, into: &out)
            if hello.version >= 3 {
                out.writeInteger(hello.listenPort)
                out.writeInteger(hello.findsNeighbours ? Hello.findsNeighboursFlag : 0)
                writeShortString(hello.advertisedHost, into: &out)
            }
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
        case .getPeers(let wanted):
            out.writeInteger(wanted)
        case .peers(let peers):
            out.writeInteger(UInt8(truncatingIfNeeded: peers.count))
            for peer in peers {
                writeShortString(peer.name, into: &out)
                writeShortString(peer.endpoint.host, into: &out)
                out.writeInteger(UInt16(truncatingIfNeeded: peer.endpoint.port))
            }
        case .manifestSignature(let key, let signature):
            out.writeInteger(UInt8(truncatingIfNeeded: key.count))
            out.writeBytes(key)
            out.writeInteger(UInt8(truncatingIfNeeded: signature.count))
            out.writeBytes(signature)
        case .folder(let header):
            FolderCoding.encode(header, into: &out)
        case .files(let first, let entries):
            FolderCoding.encode(first: first, entries, into: &out)
        }
    }

    /// A length byte and UTF-8 bytes (names and hosts, all under 256 bytes by their limits).
    private func writeShortString(_ text: String, into out: inout ByteBuffer) {
        let bytes = Array(text.utf8)
        out.writeInteger(UInt8(truncatingIfNeeded: bytes.count))
        out.writeBytes(bytes)
    }

    /// The size of the body `encodeBody` writes.
    public var bodyLength: Int {
        1 + {
            switch self {
            case .hello(let h): 4 + 2 + 1 + 32 + 1 + h.name.utf8.count + (h.version >= 3 ? 2 + 1 + 1 + h.advertisedHost.utf8.count : 0)
            case .manifest(let m): 8 + 4 + 4 + 32 + 2 + m.fileName.utf8.count
            case .hashes(_, let hashes): 4 + 32 * hashes.count
            case .share(let b), .chunkList(let b): b.count
            case .have, .request, .reject: 4
            case .piece(_, let data): 4 + data.readableBytes
            case .keepAlive: 0
            case .getPeers: 1
            case .peers(let peers): 1 + peers.reduce(0) { $0 + 1 + $1.name.utf8.count + 1 + $1.endpoint.host.utf8.count + 2 }
            case .manifestSignature(let key, let signature): 1 + key.count + 1 + signature.count
            case .folder(let header): 8 + 4 + 4 + 4 + 32 + 2 + header.name.utf8.count
            case .files(_, let entries): 4 + entries.reduce(0) { $0 + FolderCoding.entryLength($1) }
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
            let name = try readName(length: nameLength, from: &payload, kind: kind)
            // An older version's HELLO ends here; it decodes, so that the session can refuse
            // it for its version with a clear reason.
            guard version >= 3 else {
                message = .hello(Hello(version: version, role: role, fileID: fileID, name: name))
                break
            }
            guard let port = payload.readInteger(as: UInt16.self), let flags = payload.readInteger(as: UInt8.self),
                  let hostLength = payload.readInteger(as: UInt8.self), let hostBytes = payload.readBytes(length: Int(hostLength))
            else { throw .malformed(kind, "the advertised address is truncated") }
            guard flags & ~Hello.findsNeighboursFlag == 0 else { throw .malformed(kind, "unknown flags \(flags)") }
            let host = String(decoding: hostBytes, as: UTF8.self)
            guard hostBytes.isEmpty || PeerAddress.isValidHost(host) else { throw .malformed(kind, "the advertised host is not a name or an address") }
            message = .hello(Hello(version: version, role: role, fileID: fileID, name: name, listenPort: port, advertisedHost: host,
                                   findsNeighbours: flags & Hello.findsNeighboursFlag != 0))
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
        case .getPeers:
            guard let wanted = payload.readInteger(as: UInt8.self) else { throw .malformed(kind, "too short") }
            guard (1...PeerAddress.maximumPerMessage).contains(Int(wanted)) else {
                throw .malformed(kind, "asks for \(wanted) peers, outside 1...\(PeerAddress.maximumPerMessage)")
            }
            message = .getPeers(wanted: wanted)
        case .peers:
            message = .peers(try readPeers(from: &payload))
        case .manifestSignature:
            guard let keyLength = payload.readInteger(as: UInt8.self), (1...maximumSignerKeyBytes).contains(Int(keyLength)) else {
                throw .malformed(kind, "the signer's key must be 1...\(maximumSignerKeyBytes) bytes")
            }
            guard let key = payload.readBytes(length: Int(keyLength)) else { throw .malformed(kind, "the signer's key is truncated") }
            guard let signatureLength = payload.readInteger(as: UInt8.self), (1...maximumSignatureBytes).contains(Int(signatureLength)) else {
                throw .malformed(kind, "the signature must be 1...\(maximumSignatureBytes) bytes")
            }
            guard let signature = payload.readBytes(length: Int(signatureLength)) else { throw .malformed(kind, "the signature is truncated") }
            message = .manifestSignature(signerKey: key, signature: signature)
        case .folder:
            message = .folder(try FolderCoding.decodeHeader(&payload))
        case .files:
            let (first, entries) = try FolderCoding.decodeEntries(&payload)
            message = .files(first: first, entries)
        }
        guard payload.readableBytes == 0 else {
            throw .malformed(kind, "\(payload.readableBytes) unexpected trailing bytes")
        }
        return message
    }

    /// A node name: 1…64 bytes of printable UTF-8.
    private static func readName(length: UInt8, from payload: inout ByteBuffer, kind: Kind) throws(WireError) -> String {
        guard length >= 1, Int(length) <= Hello.maximumNameBytes else {
            throw .malformed(kind, "name length \(length) is outside 1...\(Hello.maximumNameBytes)")
        }
        guard let bytes = payload.readBytes(length: Int(length)) else { throw .malformed(kind, "name is truncated") }
        guard let name = String(validating: bytes, as: UTF8.self), !bytes.contains(where: { $0 < 0x20 || $0 == 0x7f }) else {
            throw .malformed(kind, "name is not printable UTF-8")
        }
        return name
    }

    /// PEERS: a count (at most 32), then each peer's name, host and port, every one checked.
    private static func readPeers(from payload: inout ByteBuffer) throws(WireError) -> [PeerAddress] {
        guard let count = payload.readInteger(as: UInt8.self) else { throw .malformed(.peers, "too short") }
        guard Int(count) <= PeerAddress.maximumPerMessage else {
            throw .malformed(.peers, "\(count) peers, over the \(PeerAddress.maximumPerMessage) a message may hold")
        }
        var peers: [PeerAddress] = []
        for index in 0..<Int(count) {
            guard let nameLength = payload.readInteger(as: UInt8.self) else { throw .malformed(.peers, "peer \(index) is truncated") }
            let name = try readName(length: nameLength, from: &payload, kind: .peers)
            guard let hostLength = payload.readInteger(as: UInt8.self), let hostBytes = payload.readBytes(length: Int(hostLength)),
                  let port = payload.readInteger(as: UInt16.self)
            else { throw .malformed(.peers, "peer \(index) is truncated") }
            let host = String(decoding: hostBytes, as: UTF8.self)
            guard PeerAddress.isValidHost(host) else { throw .malformed(.peers, "peer \(index)'s host is not a name or an address") }
            guard port > 0 else { throw .malformed(.peers, "peer \(index)'s port is 0") }
            peers.append(PeerAddress(name: name, endpoint: Endpoint(host: host, port: Int(port))))
        }
        return peers
    }
}
