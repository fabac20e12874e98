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

    /// Adds TLS to an accepted connection, and a handler that reports the remote's node ID
    /// once the handshake is done.
    public static func secureAccepted(_ channel: any Channel, context: NIOSSLContext) throws -> EventLoopFuture<NodeID> {
        let waiter = HandshakeWaiter(promise: channel.eventLoop.makePromise())
        try channel.pipeline.syncOperations.addHandlers(NIOSSLServerHandler(context: context, customVerificationCallback: verifier(expecting: nil)), waiter)
        return waiter.promise.futureResult
    }

    /// Adds TLS to an opened connection; `expected` pins the remote's node ID.
    public static func secureOpened(_ channel: any Channel, context: NIOSSLContext, expecting expected: NodeID?) throws -> EventLoopFuture<NodeID> {
        let waiter = HandshakeWaiter(promise: channel.eventLoop.makePromise())
        let tls = try NIOSSLClientHandler(context: context, serverHostname: nil, customVerificationCallback: verifier(expecting: expected))
        try channel.pipeline.syncOperations.addHandlers(tls, waiter)
        return waiter.promise.futureResult
    }
}

/// Completes with the remote's node ID when the TLS handshake completes, or fails with the
/// handshake's error (or the connection closing first).
final class HandshakeWaiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let promise: EventLoopPromise<NodeID>
    private var done = false

    init(promise: EventLoopPromise<NodeID>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event, !done {
            done = true
            do {
                let tls = try context.pipeline.syncOperations.handler(type: NIOSSLHandler.self)
                guard let certificate = tls.peerCertificate, let spki = try? certificate.extractPublicKey().toSPKIBytes() else {
                    throw SecureChannelError.noCertificate
                }
                promise.succeed(NodeID(spki: spki))
            } catch {
                promise.fail(error)
            }
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done {
            done = true
            promise.fail(error)
        }
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            done = true
            promise.fail(SecureChannelError.closedDuringHandshake)
        }
        context.fireChannelInactive()
    }
}

public enum SecureChannelError: Error, CustomStringConvertible {
    case noCertificate
    case closedDuringHandshake

    public var description: String {
        switch self {
        case .noCertificate: "the remote presented no certificate"
        case .closedDuringHandshake: "the connection closed during the TLS handshake"
        }
    }
}
