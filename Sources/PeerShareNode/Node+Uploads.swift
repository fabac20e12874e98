import NIOCore
import PeerShareStore

/// Inbound connections and upload pacing: the caps and limits every upload lives within.
extension Node {
    public func setLimits(_ limits: SessionLimits) {
        self.limits = limits
    }

    /// Admits one more inbound connection unless the cap is reached.
    func admitConnection() -> Bool {
        guard openUploadConnections < limits.maxConnections else { return false }
        openUploadConnections += 1
        metrics.connectionOpened(.inbound)
        if openUploadConnections == 1 { broadcast(.stateChanged) }
        return true
    }

    func connectionClosed() {
        openUploadConnections -= 1
        if openUploadConnections == 0 { broadcast(.stateChanged) }
    }

    /// Connections from downloaders (and anyone else) open right now.
    public var openUploadConnectionCount: Int { openUploadConnections }

    public func limitUploadSlots(to count: Int?) {
        uploadSlots = count.map { UploadSlots(capacity: $0) }
    }

    /// Limits the total upload rate; nil for no limit.
    public func limitUploads(toBytesPerSecond rate: Int?) {
        uploadRate = rate
    }

    /// When an upload of `bytes` may start so that all uploads together stay within the
    /// limit: each one books the next slot in turn.
    func uploadSlot(for bytes: Int) -> ContinuousClock.Instant? {
        guard let uploadRate, uploadRate > 0 else { return nil }
        let start = max(ContinuousClock.now, nextUploadSlot)
        nextUploadSlot = start.advanced(by: .nanoseconds(Int64(Double(bytes) / Double(uploadRate) * 1e9)))
        return start
    }
}
