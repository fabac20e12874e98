import Crypto
import PeerShareCore

/// The owner's signature over a private swarm's manifest (docs/PROTOCOL.md, "Private
/// swarms"). The file ID already commits to the layout and every chunk hash; the signature
/// adds the file's name, size and whole-file hash, and proves the owner made it, so that
/// a member cannot pass off a manifest of its own.
public enum ManifestSigning {
    private static let label = Array("peershare manifest v1".utf8)

    /// What is signed: the label, the file ID, the file hash, the file size (8 bytes) and
    /// chunk size (4 bytes, big-endian), then the file name in UTF-8.
    static func content(of manifest: Manifest) -> [UInt8] {
        var bytes = label + manifest.fileID.bytes + manifest.fileHash.bytes
        bytes += withUnsafeBytes(of: UInt64(manifest.fileSize).bigEndian, Array.init)
        bytes += withUnsafeBytes(of: UInt32(manifest.chunkSize).bigEndian, Array.init)
        return bytes + Array(manifest.fileName.utf8)
    }

    /// The owner's public key (DER SPKI) and its signature (64 bytes, raw r‖s).
    public static func sign(_ manifest: Manifest, with identity: NodeIdentity) throws -> (signerKey: [UInt8], signature: [UInt8]) {
        let signature = try identity.privateKey.signature(for: content(of: manifest))
        return (Array(identity.privateKey.publicKey.derRepresentation), Array(signature.rawRepresentation))
    }

    public struct Refusal: Error, CustomStringConvertible {
        public let description: String
    }

    /// Checks that `signerKey` is the key of `owner` (the node ID in the ticket) and that
    /// it signed this manifest.
    public static func verify(_ manifest: Manifest, signerKey: [UInt8], signature: [UInt8], owner: NodeID) throws {
        guard NodeID(spki: signerKey) == owner else {
            throw Refusal(description: "the manifest is signed by node \(NodeID(spki: signerKey)), not by the ticket's owner \(owner)")
        }
        guard let key = try? P256.Signing.PublicKey(derRepresentation: signerKey),
              let parsed = try? P256.Signing.ECDSASignature(rawRepresentation: signature),
              key.isValidSignature(parsed, for: content(of: manifest))
        else { throw Refusal(description: "the manifest's signature does not verify against the owner's key") }
    }
}
