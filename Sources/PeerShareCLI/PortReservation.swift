import Foundation

/// Ports on `host` (an IPv4 or IPv6 address) that were free a moment ago: bound together
/// (so they differ), read back, then released for the children to bind.
///
/// They are taken below the kernel's ephemeral range where it is known (Linux), because
/// outgoing connections draw their local ports from that range: a child killed and
/// relaunched on its port could otherwise find it taken by some other process's connection
/// meanwhile ("address already in use"). Where no such port binds, the OS chooses.
///
/// Between this call and a child's bind, the port is free to anyone: a ledger of recently
/// handed-out ports (`RecentPortLedger`) keeps other reservations, in this process or
/// another, from handing it out again in that window.
public func reserveFreePorts(_ count: Int, host: String = "127.0.0.1") throws -> [Int] {
    try RecentPortLedger().excluding { recent in
        try reservePorts(count, host: host, candidates: portsBelowEphemeralRange().filter { !recent.contains($0) })
    }
}

private func reservePorts(_ count: Int, host: String, candidates: [UInt16]) throws -> [Int] {
    var sockets: [Int32] = []
    defer { sockets.forEach { close($0) } }
    let isIPv6 = host.contains(":")
    var candidates = candidates
    var ports: [Int] = []
    while ports.count < count {
        let fd = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw PortReservationError(host: host, reason: String(cString: strerror(errno))) }
        sockets.append(fd)
        let wanted = candidates.popLast() ?? 0
        let port: UInt16? = isIPv6
            ? bindAndRead(fd, host: host, port: wanted, sockaddr_in6.self, family: AF_INET6)
            : bindAndRead(fd, host: host, port: wanted, sockaddr_in.self, family: AF_INET)
        if let port {
            ports.append(Int(port))
        } else if wanted == 0 || errno == 0 || (errno != EADDRINUSE && errno != EACCES) {
            throw PortReservationError(host: host, reason: errno == 0 ? "not an IP address" : String(cString: strerror(errno)))
        }
        // A candidate in use: the next one.
    }
    return ports
}

/// Up to 64 ports from 10000 to just below the kernel's ephemeral range, shuffled; none
/// where the range is unknown or starts too low to leave room.
private func portsBelowEphemeralRange() -> [UInt16] {
    guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
          let lowest = text.split(whereSeparator: \.isWhitespace).first.flatMap({ Int($0) }),
          lowest > 11_000, lowest <= Int(UInt16.max)
    else { return [] }
    return Array((10_000..<lowest).shuffled().prefix(64).map { UInt16($0) })
}

/// Binds `fd` to `port` (0: any) of `host` and reads back the port bound.
private func bindAndRead<Address>(_ fd: Int32, host: String, port: UInt16, _: Address.Type, family: Int32) -> UInt16? {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<Address>.size)
    return withUnsafeMutablePointer(to: &storage) { pointer -> UInt16? in
        errno = 0
        if family == AF_INET6 {
            let address = UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: sockaddr_in6.self)
            address.pointee.sin6_family = sa_family_t(AF_INET6)
            address.pointee.sin6_port = port.bigEndian
            guard inet_pton(AF_INET6, host, &address.pointee.sin6_addr) == 1 else { return nil }
        } else {
            let address = UnsafeMutableRawPointer(pointer).assumingMemoryBound(to: sockaddr_in.self)
            address.pointee.sin_family = sa_family_t(AF_INET)
            address.pointee.sin_port = port.bigEndian
            guard inet_pton(AF_INET, host, &address.pointee.sin_addr) == 1 else { return nil }
        }
        return pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw -> UInt16? in
            guard bind(fd, raw, length) == 0, getsockname(fd, raw, &length) == 0 else { return nil }
            // The port sits at the same offset in sockaddr_in and sockaddr_in6.
            return UInt16(bigEndian: UnsafeMutableRawPointer(raw).load(fromByteOffset: 2, as: UInt16.self))
        }
    }
}

public struct PortReservationError: Error, CustomStringConvertible {
    public let host: String
    public let reason: String
    public var description: String { "cannot find a free port on \(host): \(reason)" }
}
