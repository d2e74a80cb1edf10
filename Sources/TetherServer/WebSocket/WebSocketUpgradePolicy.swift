import NIOHTTP1
import WebSocketCore

/// Who may open `GET /xmpp-websocket` (RFC 7395 §3.1, RFC 6455 §10.2).
enum WebSocketUpgradePolicy {
    static let path = "/xmpp-websocket"

    /// Headers for an accepted upgrade (exactly `Sec-WebSocket-Protocol: xmpp`), or `nil` to refuse.
    /// `secure`: the request reached the edge over TLS (see `CORSPolicy.allows(origin:host:publicHosts:secure:)`).
    static func accept(_ head: HTTPRequestHead, secure: Bool, configuration: TetherConfiguration) -> HTTPHeaders? {
        guard Self.problem(head, secure: secure, configuration: configuration) == nil else { return nil }
        var headers = HTTPHeaders([("Sec-WebSocket-Protocol", "xmpp")] + HTTPEdgeHandler.securityHeaders)
        if let extensions = Self.compression(head, configuration: configuration) {
            headers.add(name: "Sec-WebSocket-Extensions", value: extensions)
        }
        return headers
    }

    /// The permessage-deflate answer, when the client offers it and it is enabled.
    static func compression(_ head: HTTPRequestHead, configuration: TetherConfiguration) -> String? {
        guard configuration.webSocket.perMessageDeflate else { return nil }
        return PerMessageDeflate.negotiate(offers: head.headers[canonicalForm: "sec-websocket-extensions"].map(String.init))
    }

    /// Why an upgrade was refused, as the HTTP answer.
    static func refusal(_ head: HTTPRequestHead, secure: Bool, configuration: TetherConfiguration) -> (status: HTTPResponseStatus, reason: String) {
        Self.problem(head, secure: secure, configuration: configuration) ?? (.badRequest, "Invalid WebSocket upgrade request.")
    }

    private static func problem(_ head: HTTPRequestHead, secure: Bool, configuration: TetherConfiguration) -> (status: HTTPResponseStatus, reason: String)? {
        guard head.path == Self.path else { return (.notFound, "Not found.") }
        guard HTTPEdgeHandler.headBytes(head) <= configuration.maxHeaderBytes else {
            return (.requestHeaderFieldsTooLarge, "Request head larger than \(configuration.maxHeaderBytes) bytes.")
        }
        if let problem = head.hostLinesProblem { return (.badRequest, problem) }
        guard configuration.acceptsHost(head.headers.first(name: "host")) else {
            return (.misdirectedRequest, "This server does not serve that host.")
        }
        guard head.headers[canonicalForm: "upgrade"].contains(where: { $0.lowercased() == "websocket" }) else {
            return (.upgradeRequired, "WebSocket upgrade with the 'xmpp' subprotocol required.")
        }
        // RFC 6455 §4.1: the opening handshake is a GET without a body. Refused before the
        // upgrader waits for one: NIO's upgrade handler holds a reference cycle until the
        // request's end, so a body that never comes would leak the whole connection.
        let lengths = head.headers[canonicalForm: "content-length"]
        guard lengths.allSatisfy({ $0 == "0" }), !head.headers.contains(name: "transfer-encoding") else {
            return (.badRequest, "A WebSocket upgrade request carries no body.")
        }
        let origin = head.headers.first(name: "origin")
        if origin == nil && !configuration.webSocket.allowMissingOrigin {
            return (.forbidden, "An Origin header is required.")
        }
        // Browsers do not apply CORS to WebSockets: the Origin check is the server's (RFC 6455
        // §10.2), also when the proxy in front writes the CORS headers (`--no-cors`).
        if configuration.cors.restrictsOrigins,
            !configuration.cors.allows(origin: origin, host: head.headers.first(name: "host"), publicHosts: configuration.publicHosts, secure: secure)
        {
            return (.forbidden, "Origin not allowed.")
        }
        let protocols = head.headers[canonicalForm: "sec-websocket-protocol"].map { $0.trimmingWhitespace().lowercased() }
        guard protocols.contains("xmpp") else {
            return (.badRequest, "The 'xmpp' WebSocket subprotocol (RFC 7395) is required.")
        }
        return nil
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var text = self
        while text.first?.isWhitespace == true { text = text.dropFirst() }
        while text.last?.isWhitespace == true { text = text.dropLast() }
        return text
    }
}
