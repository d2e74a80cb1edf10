import NIOCore
import NIOHTTP1

/// The host part of a `Host` header or an origin's authority.
public enum HTTPHost {
    /// `Chat.Example.org.:443` → `chat.example.org`; `[2001:db8::1]:80` → `2001:db8::1`.
    public static func name(of authority: String) -> String {
        var text = Substring(authority)
        if text.hasPrefix("["), let end = text.firstIndex(of: "]") {
            text = text[text.index(after: text.startIndex)..<end]
        } else if let colon = text.lastIndex(of: ":"), text.firstIndex(of: ":") == colon {
            text = text[..<colon]
        }
        while text.hasSuffix(".") { text = text.dropLast() }
        return text.lowercased()
    }

    /// An IPv4 or IPv6 literal (not a name that DNS could point anywhere).
    public static func isIPLiteral(_ name: String) -> Bool {
        (try? SocketAddress(ipAddress: name, port: 0)) != nil
    }
}

extension HTTPRequestHead {
    /// The request target without its query (`/http-bind?x` → `/http-bind`), without allocating.
    var path: Substring {
        let uri = Substring(self.uri)
        return uri.firstIndex(of: "?").map { uri[..<$0] } ?? uri
    }

    /// RFC 9110 §10.1.1: expectations mean something from HTTP/1.1 on; an HTTP/1.0 server ignores them.
    var honoursExpectations: Bool { self.isHTTP11OrLater }

    /// What is wrong with the request's Host lines, if anything (RFC 9112 §3.2: an HTTP/1.1
    /// request has exactly one; two could name one host to Tether and another to a proxy).
    var hostLinesProblem: String? {
        let hosts = self.headers["host"]
        if hosts.count > 1 { return "More than one Host header." }
        if hosts.isEmpty && self.isHTTP11OrLater { return "A Host header is required." }
        return nil
    }

    /// HTTP/1.1 rules apply (RFC 9112 §3.2: exactly one Host line).
    var isHTTP11OrLater: Bool {
        self.version.major > 1 || (self.version.major == 1 && self.version.minor >= 1)
    }
}
