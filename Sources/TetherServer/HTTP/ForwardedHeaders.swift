import NIOCore
import NIOHTTP1
import XMPPUpstream

/// Who is really on the other end of an HTTP request.
struct ClientOrigin: Hashable, Sendable {
    /// The client's address: the TCP peer, or what a trusted proxy says it forwarded.
    var address: SocketAddress
    /// The request reached the edge over TLS (from `X-Forwarded-Proto`/`Forwarded proto=`, trusted proxies only).
    var isSecure: Bool
    /// The address the client connected to (Tether's listener).
    var destination: SocketAddress?

    var description: String { self.address.ipAddress ?? "unknown" }
}

/// Reads `Forwarded` (RFC 7239) and `X-Forwarded-For`/`X-Forwarded-Proto`, but only when the
/// TCP peer is a trusted proxy; anyone else could forge them.
struct ForwardedHeaders: Sendable {
    var trustedProxies: [IPNetwork]

    static let loopback = [IPNetwork("127.0.0.0/8")!, IPNetwork("::1/128")!]

    func origin(peer: SocketAddress?, local: SocketAddress?, headers: HTTPHeaders) -> ClientOrigin {
        let unknown = try! SocketAddress(ipAddress: "0.0.0.0", port: 0)
        guard let peer else { return ClientOrigin(address: unknown, isSecure: false, destination: local) }
        guard self.trusts(peer) else { return ClientOrigin(address: peer, isSecure: false, destination: local) }

        // RFC 7239: the list grows left to right; the client is the rightmost hop no trusted proxy added.
        let forwarded = headers[canonicalForm: "forwarded"].flatMap { $0.split(separator: ",") }.map(Self.parseForwardedElement)
        if !forwarded.isEmpty {
            var chosen: (address: SocketAddress?, proto: String?)?
            for element in forwarded.reversed() {
                chosen = element
                guard let address = element.address, self.trusts(address) else { break }
            }
            if let chosen, let address = chosen.address {
                return ClientOrigin(address: address, isSecure: chosen.proto?.lowercased() == "https", destination: local)
            }
        }
        let hops = headers[canonicalForm: "x-forwarded-for"].flatMap { $0.split(separator: ",") }.compactMap { Self.parseAddress(String($0)) }
        var client = peer
        for hop in hops.reversed() {
            client = hop
            if !self.trusts(hop) { break }
        }
        let proto = headers.first(name: "x-forwarded-proto")?.split(separator: ",").first.map { String($0).trimmed().lowercased() }
        return ClientOrigin(address: client, isSecure: proto == "https", destination: local)
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
            if rest.hasPrefix(":"), let parsed = Int(rest.dropFirst()) { port = parsed }
            text = String(text[text.index(after: text.startIndex)..<close])
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            port = Int(text[text.index(after: colon)...]) ?? 0
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
