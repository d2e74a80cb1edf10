import NIOCore
import NIOHTTP1

/// XEP-0156 §3: the discovery files, readable by any origin, for the domains Tether serves.
enum HostMetaEndpoint {
    /// - Parameters:
    ///   - host: the request's `Host`, which names the XMPP domain asked about.
    static func answer(method: HTTPMethod, host: String?, json: Bool, configuration: TetherConfiguration) -> HTTPAnswer {
        let domain = host.map(HTTPHost.name(of:)) ?? ""
        guard let hostMeta = configuration.hostMeta, method == .GET || method == .HEAD, configuration.serves(domain: domain) else {
            return .notFound
        }
        return HTTPAnswer(
            status: .ok,
            contentType: json ? "application/jrd+json" : "application/xrd+xml; charset=utf-8",
            body: method == .HEAD ? ByteBuffer() : ByteBuffer(string: json ? hostMeta.jrd : hostMeta.xrd),
            headers: [("Access-Control-Allow-Origin", "*"), ("Cache-Control", "max-age=3600")]
        )
    }
}
