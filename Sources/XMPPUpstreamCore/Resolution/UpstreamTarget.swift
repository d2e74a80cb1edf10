/// How a connection to an XMPP server secures itself (XEP-0368 §3).
public enum UpstreamTransport: String, Hashable, Sendable, CaseIterable {
    /// Plain TCP, then STARTTLS as `UpstreamTLSPolicy` says (RFC 6120 §5): `_xmpp-client._tcp`
    /// records, `tcp://` routes and plain `HOST:PORT` routes.
    case startTLS = "tcp"
    /// TLS from the first byte (XEP-0368 "Direct TLS"): `_xmpps-client._tcp` records and
    /// `tls://` routes. Always TLS, whatever the STARTTLS policy says.
    case directTLS = "tls"

    /// The port a route without one uses: 5222 (RFC 6120 §3.2.2), or 5223, the port Direct
    /// TLS deployments conventionally use.
    public var defaultPort: Int {
        switch self {
        case .startTLS: return 5222
        case .directTLS: return 5223
        }
    }

    /// The SRV service that names servers of this kind for a domain.
    public func serviceName(for domain: String) -> String {
        switch self {
        case .startTLS: return "_xmpp-client._tcp.\(domain)"
        case .directTLS: return "_xmpps-client._tcp.\(domain)"
        }
    }
}

/// One place to connect to: a host (name or address literal), a port and how to secure it.
public struct UpstreamTarget: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var transport: UpstreamTransport

    public init(host: String, port: Int, transport: UpstreamTransport) {
        self.host = host
        self.port = port
        self.transport = transport
    }

    public var description: String {
        let address = self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
        return "\(self.transport.rawValue)://\(address)"
    }
}
