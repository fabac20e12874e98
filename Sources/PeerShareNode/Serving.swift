#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging
import NIOCore
import NIOPosix
import PeerShareCore
import PeerShareStore
import PeerShareTrust
import PeerShareWire

/// Prints the "listening on" line that scripts and the demo wait for, on stdout.
func announce(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(1, $0, strlen($0)) }
}

/// Once the peer holds and has assembled the whole file, a stretch of `patience` with no
/// downloader connected ends its wait for downloaders (`Node.stopWaitingForDownloaders`).
/// The stretch restarts whenever one connects. A timer by design: it bounds a wait for an
/// event that may never come.
func giveUpOnAbsentDownloaders(node: Node, patience: Duration) async throws {
    while true {
        try await node.waitUntil { $0.isComplete && $0.isAssembled && $0.openUploadConnectionCount == 0 }
        let someoneConnected = try await withThrowingTaskGroup(of: Bool.self) { race in
            race.addTask { try await node.waitUntil { $0.openUploadConnectionCount > 0 }; return true }
            race.addTask { try await Task.sleep(for: patience); return false }
            let first = try await race.next() ?? false
            race.cancelAll()
            return first
        }
        if !someoneConnected {
            await node.stopWaitingForDownloaders(after: patience)
            return
        }
    }
}

/// Accepts connections until cancelled, one child task per connection. A connection's
/// failure is logged and ends only that connection.
///
/// Cancellation closes the listener instead of cancelling the accept loop: a cancelled loop
/// would drop the connections accepted but not yet handed to it, and NIO traps on a
/// connection dropped without being closed (seen when peers that wire themselves dial one
/// that is exiting). The loop closes each of those, then ends the sessions.
func serve(_ listener: Transport.Listener, node: Node) async throws {
    let accepting = Task { try await acceptConnections(listener, node: node) }
    try await withTaskCancellationHandler {
        try await accepting.value
    } onCancel: {
        listener.channel.channel.close(promise: nil)
    }
}

private func acceptConnections(_ listener: Transport.Listener, node: Node) async throws {
    try await withThrowingDiscardingTaskGroup { group in
        defer { group.cancelAll() }
        try await listener.channel.executeThenClose { inbound in
            for try await connection in inbound {
                guard await node.admitConnection() else {
                    // Over the cap: close at once rather than queue, so a flood of
                    // connections costs us nothing but the accept.
                    await node.log(.protocolError, "refused a connection from \(connection.remote): \(await node.limits.maxConnections) connections already open", level: .warning)
                    try? await connection.channel.executeThenClose { _, _ in }
                    continue
                }
                let peer = connection.remote
                group.addTask {
                    do {
                        var remoteNode: NodeID?
                        if let joined = connection.joined {
                            do {
                                let verified = try await joined.get()
                                if let reason = await node.blockReason(verified) { throw NodeError.misbehaving(reason) }
                                remoteNode = verified
                            } catch {
                                // Logged with the address, and never with the secret.
                                await node.log(.protocolError, "refused a connection from \(peer): \(error)", level: .warning)
                                try? await connection.channel.executeThenClose { _, _ in }
                                await node.connectionClosed()
                                return
                            }
                        }
                        try await UploadSession(node: node, channel: connection.channel, remoteHost: connection.remoteHost, remoteNode: remoteNode).run()
                    } catch {
                        switch SessionFault(error) {
                        case .cancelled: break
                        case .violation, .unwanted: await node.log(.protocolError, "dropped \(peer): \(error)", level: .warning)
                        case .lost, .local: await node.log(.disconnected, "upload connection from \(peer) ended: \(error)", level: .warning)
                        }
                    }
                    await node.connectionClosed()
                }
            }
        }
    }
}
