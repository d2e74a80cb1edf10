import NIOCore
import NIOHTTP1
import XMPPUpstream

/// Who is really on the other end of an HTTP request.
struct ClientOrigin: Hashable, Sendable {
    /// The client's address: the TCP peer, or what a trusted proxy says it forwarded.
    var address: SocketAddress
    /// The request reached the edge over TLS: Tether's own TLS listener, or a trusted proxy's
    /// `X-Forwarded-Proto`/`Forwarded proto=`.
    var isSecure: Bool
    /// The address the client connected to (Tether's listener).
    var destination: SocketAddress?

    var description: String { self.address.ipAddress ?? "unknown" }
}

/// The one header a trusted proxy names the client in (`--client-address-header`).
public enum ClientAddressHeader: String, Sendable, Hashable, CaseIterable {
    /// `X-Forwarded-For`, with the scheme from `X-Forwarded-Proto` (what nginx and most balancers set).
    case xForwardedFor = "x-forwarded-for"
    /// `Forwarded` (RFC 7239), `for=` and `proto=`.
    case forwarded

    /// The header a proxy writes to name `client` in this form: what `ForwardedHeaders` reads
    /// back. A peer node relaying a BOSH request writes the one its owner believes, so a cluster
    /// configured for `Forwarded` keeps its clients' addresses (RFC 7239 §6: IPv6 quoted in brackets).
    func headers(naming client: ClientOrigin) -> [(String, String)] {
        let scheme = client.isSecure ? "https" : "http"
        switch self {
        case .xForwardedFor:
            return [("X-Forwarded-For", client.description), ("X-Forwarded-Proto", scheme)]
        case .forwarded:
            let address = client.description
            let node = address.contains(":") ? "\"[\(address)]\"" : address
            return [("Forwarded", "for=\(node);proto=\(scheme)")]
        }
    }
}

/// Reads the client's address from exactly one proxy header, and only when the TCP peer is a
/// trusted proxy; anyone else could forge it.
///
/// Exactly one header is believed because a proxy sets or appends the header it knows and
/// passes the others through: behind nginx (which sets `X-Forwarded-For`), a client's own
/// `Forwarded: for=…;proto=https` would otherwise become its address and make it look secure.
struct ForwardedHeaders: Sendable {
    var trustedProxies: [IPNetwork]
    var header: ClientAddressHeader = .xForwardedFor

    static let loopback = [IPNetwork("127.0.0.0/8")!, IPNetwork("::1/128")!]

    /// - Parameter overTLS: the connection itself is TLS (a `--listen-tls` listener): secure,
    ///   whatever a header says.
    func origin(peer: SocketAddress?, local: SocketAddress?, headers: HTTPHeaders, overTLS: Bool = false) -> ClientOrigin {
        var origin = self.forwardedOrigin(peer: peer, local: local, headers: headers)
        if overTLS { origin.isSecure = true }
        return origin
    }

    /// A connection whose peer address is not known (parsed once, not per request).
    private static let unknownPeer = try! SocketAddress(ipAddress: "0.0.0.0", port: 0)

    private func forwardedOrigin(peer: SocketAddress?, local: SocketAddress?, headers: HTTPHeaders) -> ClientOrigin {
        guard let peer else { return ClientOrigin(address: Self.unknownPeer, isSecure: false, destination: local) }
        guard self.trusts(peer) else { return ClientOrigin(address: peer, isSecure: false, destination: local) }
        switch self.header {
        case .forwarded:
            // RFC 7239 §4, §5.2: elements are appended left to right, one per proxy; the client is
            // the rightmost hop no trusted proxy added, and `proto` is what that hop's proxy saw.
            let elements = headers[canonicalForm: "forwarded"].flatMap { $0.split(separator: ",") }.map(Self.parseForwardedElement)
            let chosen = self.rightmostUntrusted(elements, address: { $0.address })
            guard let chosen, let address = chosen.address else {
                // A trusted proxy that named no usable client: the proxy is all we know.
                return ClientOrigin(address: peer, isSecure: false, destination: local)
            }
            return ClientOrigin(address: address, isSecure: chosen.proto?.lowercased() == "https", destination: local)
        case .xForwardedFor:
            // The list grows left to right; entries that do not parse make the chain unusable from
            // there on, so the walk stops at them rather than skipping to a forged earlier entry.
            let hops = headers[canonicalForm: "x-forwarded-for"].flatMap { $0.split(separator: ",") }.map { Self.parseAddress(String($0)) }
            let client = self.rightmostUntrusted(hops, address: { $0 }).flatMap { $0 } ?? peer
            // Set (not appended) by the nearest proxy, which saw the client's scheme: its value is the last.
            let proto = headers[canonicalForm: "x-forwarded-proto"].flatMap { $0.split(separator: ",") }.last.map { String($0).trimmed().lowercased() }
            return ClientOrigin(address: client, isSecure: proto == "https", destination: local)
        }
    }

    /// The rightmost element whose address is not a trusted proxy (or the leftmost when all are
    /// trusted); an element without a usable address ends the walk there.
    private func rightmostUntrusted<Element>(_ elements: [Element], address: (Element) -> SocketAddress?) -> Element? {
        var chosen: Element?
        for element in elements.reversed() {
            chosen = element
            guard let hop = address(element), self.trusts(hop) else { break }
        }
        return chosen
    }

    private func trusts(_ address: SocketAddress) -> Bool {
        guard let bytes = IPNetwork.bytes(of: address) else { return false }
        return self.trustedProxies.contains { $0.contains(bytes) }
    }

    /// `for=192.0.2.60;proto=https;by=…` → address and proto.
    private static func parseForwardedElement(_ element: Substring) -> (address: SocketAddress?, proto: String?) {
        var address: SocketAddress?
        var proto: String?
        for pair in element.split(separator: ";") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).trimmed() }
            guard parts.count == 2 else { continue }
            switch parts[0].lowercased() {
            case "for": address = Self.parseAddress(parts[1])
            case "proto": proto = parts[1].trimmingQuotes()
            default: break
            }
        }
        return (address, proto)
    }

    /// `192.0.2.1`, `"[2001:db8::1]:4711"`, `2001:db8::1`, `192.0.2.1:80`.
    static func parseAddress(_ raw: String) -> SocketAddress? {
        var text = raw.trimmed().trimmingQuotes()
        var port = 0
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let rest = text[text.index(after: close)...]
            // UInt16: a forged port outside 0–65535 must not reach SocketAddress (it traps).
            if rest.hasPrefix(":"), let parsed = UInt16(rest.dropFirst()) { port = Int(parsed) }
            text = String(text[text.index(after: text.startIndex)..<close])
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            port = UInt16(text[text.index(after: colon)...]).map(Int.init) ?? 0
            text = String(text[..<colon])
        }
        return try? SocketAddress(ipAddress: text, port: port)
    }
}

extension String {
    fileprivate func trimmed() -> String {
        var text = Substring(self)
        while text.first?.isWhitespace == true { text = text.dropFirst() }
        while text.last?.isWhitespace == true { text = text.dropLast() }
        return String(text)
    }

    fileprivate func trimmingQuotes() -> String {
        self.count >= 2 && self.hasPrefix("\"") && self.hasSuffix("\"") ? String(self.dropFirst().dropLast()) : self
    }
}
