import Crypto
import NIOCore
import NIOSSL
import NIOTLS
import PeerShareCore

/// Proof that a node holds the swarm's join secret (docs/PROTOCOL.md, "Private swarms"):
/// HMAC-SHA256 keyed with the secret over a label and both ends' node IDs, prover first.
/// Binding both IDs, which TLS has proven, makes a proof useless anywhere else: relayed by a
/// man in the middle it names the wrong verifier, and replaying it needs the prover's key.
public enum JoinProof {
    public static let size = 32
    private static let label = Array("peershare join v1".utf8)

    public static func make(secret: [UInt8], prover: NodeID, verifier: NodeID) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: label + prover.digest.bytes + verifier.digest.bytes, using: SymmetricKey(data: secret)))
    }

    /// Compared in constant time.
    public static func check(_ proof: [UInt8], secret: [UInt8], prover: NodeID, verifier: NodeID) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(proof, authenticating: label + prover.digest.bytes + verifier.digest.bytes, using: SymmetricKey(data: secret))
    }

    /// The JOIN frame: the usual 4-byte length and type byte (0x0D), then the proof.
    public static let frameType: UInt8 = 0x0D
    public static let frameLength = 4 + 1 + size
}

/// Why a private connection was refused, for the log line and the index (never the secret).
public enum JoinRefusal: Error, CustomStringConvertible {
    case tls(String)
    case noProof
    case badProof(NodeID)
    case closed
    case timedOut(TimeAmount)

    public var description: String {
        switch self {
        case .tls(let reason): "TLS handshake failed: \(reason)"
        case .noProof: "the first message after TLS was not a JOIN"
        case .badProof(let node): "node \(node) does not hold this swarm's join secret"
        case .closed: "the connection closed before the join was proven"
        case .timedOut(let limit): "no join proof within \(limit.nanoseconds / 1_000_000_000) s"
        }
    }
}

/// After TLS: sends this node's JOIN, waits for the remote's, and checks it. Until then it
/// passes nothing on, so no byte of the conversation (HELLO, manifest) reaches a stranger
/// or comes from one. Then it removes itself, handing on whatever followed the proof.
public final class JoinHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private let secret: [UInt8]
    private let local: NodeID
    private let promise: EventLoopPromise<NodeID>
    private var remote: NodeID?
    private var received = ByteBuffer()
    private let limit: TimeAmount
    private var timeout: Scheduled<Void>?
    private var finished = false

    /// `promise` gets the remote's node ID once its proof checks out.
    public init(secret: [UInt8], local: NodeID, timeout limit: TimeAmount = .seconds(10), promise: EventLoopPromise<NodeID>) {
        self.secret = secret
        self.local = local
        self.limit = limit
        self.promise = promise
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        timeout = context.eventLoop.scheduleTask(in: limit) {
            bound.value.handler.refuse(context: bound.value.context, .timedOut(bound.value.handler.limit))
        }
    }

    /// The pipeline is torn down (the channel closed, even one that never became active, as
    /// when a connect fails): a join that never finished is refused, so that no one waits
    /// on it forever (and NIO does not trap on a promise never completed).
    public func handlerRemoved(context: ChannelHandlerContext) {
        guard !finished else { return }
        finished = true
        timeout?.cancel()
        promise.fail(JoinRefusal.closed)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            do {
                let tls = try context.pipeline.syncOperations.handler(type: NIOSSLHandler.self)
                guard let certificate = tls.peerCertificate, let spki = try? certificate.extractPublicKey().toSPKIBytes() else {
                    return refuse(context: context, .tls("the remote presented no certificate"))
                }
                let remote = NodeID(spki: spki)
                self.remote = remote
                var frame = context.channel.allocator.buffer(capacity: JoinProof.frameLength)
                frame.writeInteger(UInt32(1 + JoinProof.size))
                frame.writeInteger(JoinProof.frameType)
                frame.writeBytes(JoinProof.make(secret: secret, prover: local, verifier: remote))
                context.writeAndFlush(NIOAny(frame), promise: nil)
                checkProof(context: context)
            } catch {
                refuse(context: context, .tls("\(error)"))
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        received.writeBuffer(&bytes)
        checkProof(context: context)
    }

    private func checkProof(context: ChannelHandlerContext) {
        guard !finished, let remote, received.readableBytes >= JoinProof.frameLength else { return }
        guard received.readInteger(as: UInt32.self) == UInt32(1 + JoinProof.size), received.readInteger(as: UInt8.self) == JoinProof.frameType,
              let proof = received.readBytes(length: JoinProof.size)
        else { return refuse(context: context, .noProof) }
        guard JoinProof.check(proof, secret: secret, prover: remote, verifier: local) else { return refuse(context: context, .badProof(remote)) }
        finished = true
        timeout?.cancel()
        promise.succeed(remote)
        let rest = received
        received = ByteBuffer()
        if rest.readableBytes > 0 { context.fireChannelRead(NIOAny(rest)) }
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        refuse(context: context, .tls(Self.describe(error)))
    }

    /// BoringSSL's reason in words, without its source paths: "not TLS", "no certificate".
    static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        let known = [
            ("WRONG_VERSION_NUMBER", "the remote does not speak TLS (a public-swarm node, or a stranger)"),
            ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "the remote presented no certificate"),
            ("CERTIFICATE_VERIFY_FAILED", "the remote's node ID is not the one expected"),
            ("UNSUPPORTED_PROTOCOL", "the remote offers no TLS 1.3"),
            ("TLSV1_ALERT_", "the remote ended the handshake with an alert"),
        ]
        if let (_, words) = known.first(where: { text.contains($0.0) }) { return words }
        // "…:OPENSSL_internal:SOME_REASON at /path…" → "some reason"
        if let start = text.range(of: "OPENSSL_internal:")?.upperBound {
            let reason = text[start...].prefix { $0 != " " && $0 != "]" }
            return reason.lowercased().replacingOccurrences(of: "_", with: " ")
        }
        return text.count > 200 ? String(text.prefix(200)) + "…" : text
    }

    public func channelInactive(context: ChannelHandlerContext) {
        refuse(context: context, .closed)
        context.fireChannelInactive()
    }

    private func refuse(context: ChannelHandlerContext, _ reason: JoinRefusal) {
        guard !finished else { return }
        finished = true
        timeout?.cancel()
        promise.fail(reason)
        context.close(promise: nil)
    }
}
