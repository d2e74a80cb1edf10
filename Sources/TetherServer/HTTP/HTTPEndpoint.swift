/// What a request is for, decided from its path alone: the edge's routing table.
enum HTTPEndpoint: Hashable, Sendable {
    /// XEP-0124/0206: `/http-bind`, `/http-bind/`, and `/http-bind/NODE` for this node.
    case bosh
    /// Backend-to-Tether session creation.
    case prebind
    /// XEP-0156 discovery: `/.well-known/host-meta` (XRD) or `host-meta.json` (JRD).
    case hostMeta(json: Bool)
    case demo(DemoEndpoint.Asset)
    case metrics
    /// Liveness: answers while the event loops turn.
    case health
    /// Readiness: 503 while draining.
    case ready
    case notFound

    private static let table: [String: HTTPEndpoint] = [
        "/http-bind": .bosh,
        "/http-bind/": .bosh,
        "/prebind": .prebind,
        "/.well-known/host-meta": .hostMeta(json: false),
        "/.well-known/host-meta.json": .hostMeta(json: true),
        "/demo": .demo(.redirect),
        "/demo/": .demo(.page),
        "/demo/index.html": .demo(.page),
        "/demo/strophe.js": .demo(.script),
        "/metrics": .metrics,
        "/healthz": .health,
        "/readyz": .ready,
    ]

    /// - Parameter nodeID: this node's name; `/http-bind/NODE` is routed here only for it.
    init(path: String, nodeID: String?) {
        if let endpoint = Self.table[path] {
            self = endpoint
        } else if let nodeID, path == "/http-bind/\(nodeID)" {
            self = .bosh
        } else {
            self = .notFound
        }
    }
}
