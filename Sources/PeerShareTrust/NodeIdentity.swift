import Crypto
import Foundation
import PeerShareCore
import SwiftASN1
import X509

/// A node's identity: the SHA-256 of its public key (as DER SubjectPublicKeyInfo), as
/// Syncthing's device IDs are. TLS proves that the remote holds the private key; the ID is
/// what logs, the index and tickets name.
public struct NodeID: Hashable, Sendable, CustomStringConvertible {
    public let digest: Digest32

    public init(digest: Digest32) {
        self.digest = digest
    }

    /// The ID of a public key given as DER SubjectPublicKeyInfo.
    public init(spki: [UInt8]) {
        digest = Digest32(SHA256.hash(data: spki))
    }

    /// The full ID, 64 hex digits.
    public var hex: String { digest.hex }
    /// Enough to tell nodes apart in a log line.
    public var description: String { digest.short }
}

/// A node's persistent key pair (`node.key` in its folder, mode 0600) and the self-signed
/// certificate it presents in TLS. The certificate is made afresh at each start: only the
/// key, and so the node ID, persists.
public struct NodeIdentity: Sendable {
    public static let keyFileName = "node.key"

    public let privateKey: P256.Signing.PrivateKey
    public let certificateDER: [UInt8]
    public let nodeID: NodeID

    public init(privateKey: P256.Signing.PrivateKey) throws {
        self.privateKey = privateKey
        let name = try DistinguishedName { CommonName("PeerShare node") }
        let now = Date()
        // Validity is not what is trusted (the key is), so it is wide enough for clock skew
        // and for a node that runs for years.
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(privateKey.publicKey),
            notValidBefore: now - 86_400, notValidAfter: now + 100 * 365 * 86_400,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: Certificate.Extensions {}, issuerPrivateKey: .init(privateKey))
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        certificateDER = serializer.serializedBytes
        nodeID = NodeID(spki: Array(privateKey.publicKey.derRepresentation))
    }

    /// The identity kept in `folder`, made (and saved, 0600) on first use.
    public static func loadOrCreate(in folder: String) throws -> NodeIdentity {
        let path = folder + "/" + keyFileName
        if let pem = try SecretFile.read(path, limit: 16_384) {
            do {
                return try NodeIdentity(privateKey: P256.Signing.PrivateKey(pemRepresentation: String(decoding: pem, as: UTF8.self)))
            } catch {
                throw SecretFile.Failure(description: "\(path) does not hold a P-256 private key in PEM: \(error)")
            }
        }
        let key = P256.Signing.PrivateKey()
        try SecretFile.write(Array(key.pemRepresentation.utf8), to: path)
        return try NodeIdentity(privateKey: key)
    }
}
