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
    var honoursExpectations: Bool {
        self.version.major > 1 || (self.version.major == 1 && self.version.minor >= 1)
    }
}
