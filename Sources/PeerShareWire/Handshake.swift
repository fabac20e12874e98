import PeerShareCore

/// The HELLO exchange, judged in one place for both directions (docs/PROTOCOL.md, "HELLO"
/// and "Conversations"). Given what this node knows and the remote's HELLO, it says what
/// the conversation does next, or why it cannot go on. It does no I/O: a session sends
/// and reads the HELLOs, then asks here.
public enum Handshake {
    /// Whom a downloader dialled: the owner (`--owner`, a ticket) or a peer.
    public enum Dialled: Sendable, Equatable {
        case owner
        case peer
    }

    /// What follows the HELLOs on a connection, seen from either side.
    public enum Next: Sendable, Equatable {
        /// The owner's MANIFEST, HASHES (and signature), then SHARE.
        case manifestAndShare
        /// A peer's MANIFEST and HASHES, for a downloader that joined through it.
        case manifest
        /// Straight to trading chunk lists and chunks.
        case trade
    }

    /// A downloader's judgement of the HELLO that answered its own.
    /// - knownFileID: the file of the manifest this node holds, if any.
    /// - expectedFileID: the file this node was told to fetch (`--file-id`, a ticket).
    public static func judge(answer remote: Hello, dialled: Dialled, knownFileID: Digest32?,
                             expectedFileID: Digest32?) throws(HandshakeError) -> Next {
        try checkVersion(remote)
        switch (dialled, remote.role) {
        case (.owner, .peer): throw .notTheOwner
        case (.peer, .owner): throw .ownerAsNeighbour
        case (.owner, .owner), (.peer, .peer): break
        }
        // Judged on the HELLO, before a byte of a manifest of the wrong file is taken in.
        if let expectedFileID, remote.fileID != expectedFileID {
            throw .notTheExpectedFile(theirs: remote.fileID, expected: expectedFileID)
        }
        if dialled == .owner { return .manifestAndShare }
        guard let knownFileID else { return .manifest }
        guard remote.fileID == knownFileID else { throw .otherFile(theirs: remote.fileID, ours: knownFileID) }
        return .trade
    }

    /// What an uploader can judge of a downloader's HELLO before it knows the file itself
    /// (a peer whose manifest is still on its way): the version and the role.
    public static func vet(opening remote: Hello) throws(HandshakeError) {
        try checkVersion(remote)
        guard remote.role == .peer else { throw .ownerDownloading }
    }

    /// An uploader's judgement of the HELLO a downloader opened with.
    public static func judge(opening remote: Hello, isOwner: Bool, fileID: Digest32) throws(HandshakeError) -> Next {
        try vet(opening: remote)
        // The zero file ID asks for the manifest: the owner's, or a peer's once the owner has left.
        if remote.fileID == Hello.unknownFileID || isOwner {
            guard remote.fileID == Hello.unknownFileID || remote.fileID == fileID else {
                throw .otherFile(theirs: remote.fileID, ours: fileID)
            }
            return isOwner ? .manifestAndShare : .manifest
        }
        guard remote.fileID == fileID else { throw .otherFile(theirs: remote.fileID, ours: fileID) }
        return .trade
    }

    private static func checkVersion(_ remote: Hello) throws(HandshakeError) {
        guard remote.version == Hello.currentVersion else { throw .version(remote.version) }
    }
}

/// Why a HELLO ends the connection. Each says what the remote is, so a log line reads
/// "peer2 at 10.0.0.2:7001 " followed by it. None of them changes on a reconnect.
public enum HandshakeError: Error, Equatable, Sendable, CustomStringConvertible {
    case version(UInt16)
    /// A downloader dialled the owner and a peer answered.
    case notTheOwner
    /// A downloader dialled a neighbour and the owner answered.
    case ownerAsNeighbour
    /// A connection someone opened to us claims the owner's role; the owner never downloads.
    case ownerDownloading
    case otherFile(theirs: Digest32, ours: Digest32)
    case notTheExpectedFile(theirs: Digest32, expected: Digest32)

    public var description: String {
        switch self {
        case .version(let version): "speaks protocol version \(version); this node speaks \(Hello.currentVersion)"
        case .notTheOwner: "is a peer, not the owner"
        case .ownerAsNeighbour: "is the owner; give its address with --owner, not --download-from"
        case .ownerDownloading: "claims the owner's role on a connection it opened: the owner never downloads"
        case .otherFile(let theirs, let ours): "is in the swarm of file \(theirs.short), not \(ours.short)"
        case .notTheExpectedFile(let theirs, let expected): "serves file ID \(theirs.short), not the \(expected.short) this peer was told to fetch (--file-id, or its ticket)"
        }
    }
}
