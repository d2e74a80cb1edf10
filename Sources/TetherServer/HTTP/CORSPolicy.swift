/// Which browser origins may use Tether (CORS for BOSH, the Origin check for WebSocket).
public enum CORSPolicy: Hashable, Sendable {
    /// Emit no CORS headers at all: the proxy in front owns CORS (never both: browsers reject
    /// duplicates). Origins are still checked against `origins` (`nil`: any) where no browser
    /// enforces CORS, WebSocket upgrades, and for BOSH requests.
    case disabled(origins: Set<String>?)
    /// Any origin (`Access-Control-Allow-Origin: *`).
    case anyOrigin
    /// Exactly these origins (`scheme://host[:port]`), echoed back with `Vary: Origin`.
    case origins(Set<String>)

    public init(origins: [String], disabled: Bool) {
        let list = origins.isEmpty || origins.contains("*") ? nil : Set(origins.map { $0.lowercased() })
        if disabled {
            self = .disabled(origins: list)
        } else if origins.contains("*") {
            self = .anyOrigin
        } else {
            self = .origins(Set(origins.map { $0.lowercased() }))
        }
    }

    /// Whether a request with this `Origin` header is allowed (absent origin: not a browser, allowed).
    public func allows(origin: String?) -> Bool {
        guard let origin else { return true }
        switch self {
        case .anyOrigin, .disabled(origins: nil): return true
        case .origins(let allowed), .disabled(origins: let allowed?): return allowed.contains(origin.lowercased())
        }
    }

    /// Some origins are refused (an origin list, whether or not Tether writes the CORS headers).
    public var restrictsOrigins: Bool {
        switch self {
        case .anyOrigin, .disabled(origins: nil): return false
        case .origins, .disabled(origins: _?): return true
        }
    }

    /// As `allows(origin:)`, but a page served by this same host (the demo page, or a web client
    /// behind the same proxy) is never cross-origin: its `Origin` names the `Host` it talks to.
    ///
    /// Only hosts that cannot be a DNS-rebinding page's own name count: the operator's
    /// `publicHosts` (`--public-host`), `localhost` and IP literals. Any other name could be a
    /// page's domain that now resolves to Tether, and its requests would name it as both Origin
    /// and Host. A request that reached the edge over TLS (`secure`) is same-origin only with an
    /// `https` page: an `http` page of the same name is another origin (RFC 6454 §4), one a
    /// network attacker can write.
    public func allows(origin: String?, host: String?, publicHosts: Set<String> = [], secure: Bool = false) -> Bool {
        if let origin, let host, Self.isSameOrigin(origin, host: host, secure: secure), Self.isVouchedFor(host, publicHosts: publicHosts) {
            return true
        }
        return self.allows(origin: origin)
    }

    static func isSameOrigin(_ origin: String, host: String, secure: Bool = false) -> Bool {
        let origin = origin.lowercased()
        let host = host.lowercased()
        return origin == "https://" + host || (!secure && origin == "http://" + host)
    }

    /// A `Host` no rebinding page can carry: one the operator named, `localhost`, an IP literal.
    static func isVouchedFor(_ host: String, publicHosts: Set<String>) -> Bool {
        let name = HTTPHost.name(of: host)
        return publicHosts.contains(name) || name == "localhost" || HTTPHost.isIPLiteral(name)
    }

    /// Shared by every answer under `.anyOrigin` (the default): no list built per answer.
    private static let anyOriginHeaders = [("Access-Control-Allow-Origin", "*")]

    /// Headers for an actual (non-preflight) response.
    public func responseHeaders(origin: String?) -> [(String, String)] {
        switch self {
        case .disabled:
            return []
        case .anyOrigin:
            return Self.anyOriginHeaders
        case .origins(let allowed):
            guard let origin, allowed.contains(origin.lowercased()) else { return [("Vary", "Origin")] }
            return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        }
    }

    /// Headers for an `OPTIONS` preflight, or `nil` when the origin is refused.
    public func preflightHeaders(origin: String?, requestedHeaders: String?) -> [(String, String)]? {
        if case .disabled = self { return [] }
        guard self.allows(origin: origin) else { return nil }
        return self.responseHeaders(origin: origin) + [
            ("Access-Control-Allow-Methods", "POST, GET, OPTIONS"),
            ("Access-Control-Allow-Headers", requestedHeaders ?? "Content-Type"),
            ("Access-Control-Max-Age", "86400"),
        ]
    }
}
