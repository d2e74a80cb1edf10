/// Which browser origins may use Tether (CORS for BOSH, the Origin check for WebSocket).
public enum CORSPolicy: Hashable, Sendable {
    /// Emit no CORS headers at all: the proxy in front owns CORS (never both: browsers reject duplicates).
    case disabled
    /// Any origin (`Access-Control-Allow-Origin: *`).
    case anyOrigin
    /// Exactly these origins (`scheme://host[:port]`), echoed back with `Vary: Origin`.
    case origins(Set<String>)

    public init(origins: [String], disabled: Bool) {
        if disabled {
            self = .disabled
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
        case .disabled, .anyOrigin: return true
        case .origins(let allowed): return allowed.contains(origin.lowercased())
        }
    }

    /// As `allows(origin:)`, but a page served by this same host (the demo page, or a web client
    /// behind the same proxy) is never cross-origin: its `Origin` names the `Host` it talks to.
    /// With `publicHosts` (`--public-host`) only those hosts count: otherwise a DNS-rebinding page,
    /// whose own name now points at Tether, would be same-origin with it.
    public func allows(origin: String?, host: String?, publicHosts: Set<String> = []) -> Bool {
        if let origin, let host, Self.isSameOrigin(origin, host: host),
            publicHosts.isEmpty || publicHosts.contains(HTTPHost.name(of: host))
        {
            return true
        }
        return self.allows(origin: origin)
    }

    static func isSameOrigin(_ origin: String, host: String) -> Bool {
        let origin = origin.lowercased()
        let host = host.lowercased()
        return origin == "http://" + host || origin == "https://" + host
    }

    /// Headers for an actual (non-preflight) response.
    public func responseHeaders(origin: String?) -> [(String, String)] {
        switch self {
        case .disabled:
            return []
        case .anyOrigin:
            return [("Access-Control-Allow-Origin", "*")]
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
