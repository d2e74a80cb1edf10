import BOSHCore
import NIOCore
import XMPPCore
import XMPPUpstream

/// Everything `tether serve` runs with, validated.
public struct TetherConfiguration: Sendable {
    /// Addresses to listen on (`--listen HOST:PORT`, repeatable).
    public var listen: [UpstreamRoute] = [UpstreamRoute(host: "127.0.0.1", port: 5280)]
    /// Addresses to listen on with TLS (`--listen-tls HOST:PORT`, repeatable), with `edgeTLS`.
    public var listenTLS: [UpstreamRoute] = []
    /// The certificate and key of the TLS listeners.
    public var edgeTLS: EdgeTLSSettings?
    /// Domains served; routes' domains are always served.
    public var domains: Set<String> = []
    /// Serve any domain a client names (subject to `AddressPolicy`). Off by default: never an open proxy.
    public var openDomains = false
    /// `route` attribute values clients may use (`xmpp:host:port`, XEP-0124 §7.1); others get `host-unknown`.
    public var allowedRouteAttributes: Set<String> = []
    public var upstream = UpstreamConfiguration()
    public var cors = CORSPolicy.anyOrigin
    /// Peers whose `Forwarded`/`X-Forwarded-*` headers are believed (default: loopback, where nginx runs).
    public var trustedProxies: [IPNetwork] = [IPNetwork("127.0.0.0/8")!, IPNetwork("::1/128")!]
    /// The one header a trusted proxy's client address is read from; the other is ignored.
    public var clientAddressHeader = ClientAddressHeader.xForwardedFor
    /// Host names this Tether is reached by (`--public-host`, host part only, lowercased). When
    /// set, requests for another `Host` get 421 and only these hosts count as same-origin.
    public var publicHosts: Set<String> = []
    public var bosh = BOSHLimits()
    public var webSocket = WebSocketSettings()
    /// Sessions in total, per client address, and new ones per second per address.
    var sessionLimits = SessionLimiter.Limits()
    /// An HTTP connection must deliver a complete request within this time after it opens or
    /// after its previous answer (idle keep-alive connections and slowloris clients are closed).
    /// Held BOSH requests are not affected.
    public var httpRequestTimeout: TimeAmount = .seconds(30)
    /// Largest HTTP request body accepted (413 beyond).
    public var maxRequestBodyBytes = 512 * 1024
    /// Largest request head (request line and headers) accepted (431 beyond). NIO's parser
    /// stops far larger heads (80 KiB) before they reach Tether.
    public var maxHeaderBytes = 16 * 1024
    /// Stanza size and depth limits in both directions: setting them sets the upstream framer's too.
    public var xmlLimits = XMLStreamFramer.Limits() {
        didSet { self.upstream.framerLimits = self.xmlLimits }
    }
    /// Where clients are sent when this node shuts down (`see-other-uri`); `nil` means `system-shutdown`.
    public var redirectURI: String?
    /// This node's name when several Tethers share a domain: it prefixes every BOSH sid, so any
    /// node can tell which one holds a session (see README, "Scale-out").
    public var nodeID: String?
    /// Other nodes by name, with the base URL their BOSH endpoint answers on (`http://10.0.0.2:5280`).
    /// A request for a session another node holds is relayed there once.
    public var peers: [String: String] = [:]
    /// `POST /prebind` for web application backends; off unless a secret is set.
    public var prebind: PrebindSettings?
    /// XEP-0156 `/.well-known/host-meta` and `host-meta.json`; off unless a public URL is set.
    public var hostMeta: HostMetaSettings?
    /// The demo page at `/demo/`; off by default.
    public var demo: DemoSettings?
    /// How long shutdown waits for held requests to be answered.
    public var shutdownGracePeriod: TimeAmount = .seconds(5)

    public init() {}

    public var maxSessions: Int {
        get { self.sessionLimits.maxSessions }
        set { self.sessionLimits.maxSessions = newValue }
    }

    public var maxSessionsPerAddress: Int {
        get { self.sessionLimits.maxSessionsPerAddress }
        set { self.sessionLimits.maxSessionsPerAddress = newValue }
    }

    public var newSessionsPerSecondPerAddress: Int {
        get { self.sessionLimits.newSessionsPerSecondPerAddress }
        set { self.sessionLimits.newSessionsPerSecondPerAddress = newValue }
    }

    public var newSessionBurstPerAddress: Int {
        get { self.sessionLimits.newSessionBurstPerAddress }
        set { self.sessionLimits.newSessionBurstPerAddress = newValue }
    }

    /// Bytes queued for a client (`--max-queued-bytes-to-client`), one limit for both transports.
    public var maxQueuedBytesToClient: Int {
        get { self.bosh.maxQueuedBytes }
        set {
            self.bosh.maxQueuedBytes = newValue
            self.webSocket.maxQueuedBytes = newValue
        }
    }

    /// How long a peer may stay behind its queue limit (`--slow-reader-timeout`), for clients and
    /// servers alike.
    public var slowReaderTimeout: TimeAmount {
        get { self.webSocket.slowReaderTimeout }
        set {
            self.webSocket.slowReaderTimeout = newValue
            self.upstream.slowReaderTimeout = newValue
        }
    }

    /// How this configuration reads proxy headers.
    var forwardedHeaders: ForwardedHeaders {
        ForwardedHeaders(trustedProxies: self.trustedProxies, header: self.clientAddressHeader)
    }

    /// Whether a request's `Host` names this Tether: any host without `--public-host`; with it,
    /// those names, `localhost`, or an IP literal. A browser sends an IP literal or `localhost`
    /// only for a page of that very address, so no rebinding domain can produce them, and
    /// operators scrape `/metrics` and `/healthz` that way.
    public func acceptsHost(_ host: String?) -> Bool {
        guard !self.publicHosts.isEmpty else { return true }
        guard let host else { return false }
        let name = HTTPHost.name(of: host)
        return self.publicHosts.contains(name) || name == "localhost" || HTTPHost.isIPLiteral(name)
    }

    /// Whether a client may open a session to this domain.
    public func serves(domain: String) -> Bool {
        self.servedDomains.contains(domain)
    }

    /// The domains clients may open sessions to, apart from the rest of the configuration: what a
    /// session keeps to judge its `to` (a closure over the whole configuration held a copy of it).
    var servedDomains: ServedDomains {
        ServedDomains(open: self.openDomains, domains: self.domains, routes: self.upstream.routes)
    }
}

/// `--domain`, `--open-domains` and the routed domains (`--route`), as `serves(domain:)` reads them.
struct ServedDomains: Sendable {
    let open: Bool
    let domains: Set<String>
    let routes: [String: UpstreamRoute]

    func contains(_ domain: String) -> Bool {
        self.open || self.domains.contains(domain) || self.routes[domain] != nil
    }
}
