/// A HOST:PORT pair as typed on the command line: `127.0.0.1:7000`, `localhost:7000`, `[::1]:7000`.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public let host: String
    public let port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `allowingAnyPort`: port 0 is accepted too, for an address to listen on (the OS chooses).
    public init(parsing text: String, allowingAnyPort: Bool = false) throws(EndpointError) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .malformed(text, "an IPv6 address needs a closing ]") }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw .malformed(text, "expected :PORT after ]") }
            portPart = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw .malformed(text, "expected HOST:PORT") }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            if hostPart.contains(":") { throw .malformed(text, "write an IPv6 address as [ADDRESS]:PORT") }
        }
        guard !hostPart.isEmpty else { throw .malformed(text, "the host is empty") }
        guard !hostPart.contains(where: { $0 == " " || $0 == "/" }) else { throw .malformed(text, "the host is not a name or an address") }
        guard let port = Int(portPart), ((allowingAnyPort ? 0 : 1)...65_535).contains(port) else {
            throw .malformed(text, "the port must be a number from \(allowingAnyPort ? 0 : 1) to 65535")
        }
        self.host = String(hostPart)
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

public enum EndpointError: Error, Equatable, CustomStringConvertible {
    case malformed(String, String)

    public var description: String {
        switch self {
        case .malformed(let text, let reason): "\(text.debugDescription) is not a valid HOST:PORT: \(reason)"
        }
    }
}
