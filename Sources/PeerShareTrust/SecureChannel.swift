import Crypto
import NIOCore
import NIOSSL
import NIOTLS

/// TLS 1.3 between nodes of a private swarm. Certificates are self-signed and trusted for
/// their key alone: the remote's node ID (the hash of that key) is what is checked, against
/// the one expected when it is known (the owner's, from the ticket), as Syncthing checks
/// device IDs. Both sides present a certificate; TLS proves each holds its private key.
public enum SecureChannel {
    /// This node's TLS context, for accepting (`server`) or opening connections.
    public static func context(for identity: NodeIdentity, server: Bool) throws -> NIOSSLContext {
        let certificate = try NIOSSLCertificate(bytes: identity.certificateDER, format: .der)
        let key = try NIOSSLPrivateKey(bytes: Array(identity.privateKey.derRepresentation), format: .der)
        var configuration = server
            ? TLSConfiguration.makeServerConfiguration(certificateChain: [.certificate(certificate)], privateKey: .privateKey(key))
            : TLSConfiguration.makeClientConfiguration()
        configuration.certificateChain = [.certificate(certificate)]
        configuration.privateKey = .privateKey(key)
        configuration.minimumTLSVersion = .tlsv13
        configuration.maximumTLSVersion = .tlsv13
        // The server asks for the client's certificate and refuses a client without one;
        // the custom verifier below replaces chain checks (there is no authority).
        configuration.certificateVerification = .noHostnameVerification
        return try NIOSSLContext(configuration: configuration)
    }

    /// Accepts any certificate whose key hashes to `expected`, or any at all when nil (the
    /// join secret, proven after the handshake, decides then).
    static func verifier(expecting expected: NodeID?) -> NIOSSLCustomVerificationCallback {
        { certificates, promise in
            guard let leaf = certificates.first, let spki = try? leaf.extractPublicKey().toSPKIBytes() else {
                promise.succeed(.failed)
                return
            }
            promise.succeed(expected == nil || expected == NodeID(spki: spki) ? .certificateVerified : .failed)
        }
    }

}

/// What a node of a private swarm holds: its identity, the join secret, and the TLS
/// contexts made from them once.
public struct PrivateSwarm: Sendable {
    public let identity: NodeIdentity
    /// The join secret, for the owner's ticket; never logged.
    public let secret: [UInt8]
    /// How long a connection may take to finish TLS and prove the secret before it is closed.
    public let joinTimeout: TimeAmount
    private let serverContext: NIOSSLContext
    private let clientContext: NIOSSLContext

    public init(identity: NodeIdentity, secret: [UInt8], joinTimeout: TimeAmount = .seconds(10)) throws {
        self.identity = identity
        self.secret = secret
        self.joinTimeout = joinTimeout
        serverContext = try SecureChannel.context(for: identity, server: true)
        clientContext = try SecureChannel.context(for: identity, server: false)
    }

    /// Adds TLS and the join proof to an accepted connection. The future gives the remote's
    /// node ID once it has proven the secret, or fails with a `JoinRefusal`.
    public func secureAccepted(_ channel: any Channel) throws -> EventLoopFuture<NodeID> {
        let promise = channel.eventLoop.makePromise(of: NodeID.self)
        let tls = NIOSSLServerHandler(context: serverContext, customVerificationCallback: SecureChannel.verifier(expecting: nil))
        try add(tls, JoinHandler(secret: secret, local: identity.nodeID, timeout: joinTimeout, promise: promise), to: channel, completing: promise)
        return promise.futureResult
    }

    /// Adds TLS and the join proof to an opened connection; `expected` pins the remote's
    /// node ID (the owner's, from the ticket).
    public func secureOpened(_ channel: any Channel, expecting expected: NodeID?) throws -> EventLoopFuture<NodeID> {
        let promise = channel.eventLoop.makePromise(of: NodeID.self)
        let tls: NIOSSLClientHandler
        do {
            tls = try NIOSSLClientHandler(context: clientContext, serverHostname: nil, customVerificationCallback: SecureChannel.verifier(expecting: expected))
        } catch {
            promise.fail(error)
            throw error
        }
        try add(tls, JoinHandler(secret: secret, local: identity.nodeID, timeout: joinTimeout, promise: promise), to: channel, completing: promise)
        return promise.futureResult
    }

    /// Adds the handlers; if the channel closed already (its pipeline refuses them), the
    /// join is failed too, so that its promise is never left uncompleted.
    private func add(_ tls: any ChannelHandler, _ join: JoinHandler, to channel: any Channel, completing promise: EventLoopPromise<NodeID>) throws {
        do {
            try channel.pipeline.syncOperations.addHandlers(tls, join)
        } catch {
            promise.fail(error)
            throw error
        }
    }
}

