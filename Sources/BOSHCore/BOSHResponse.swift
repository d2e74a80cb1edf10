import NIOCore
import XMPPCore

/// A `<body/>` Tether sends to a client.
public struct BOSHResponse: Sendable {
    public var attributes: [(name: String, value: String)]
    public var payloads: [ByteBuffer]
    /// Set when a payload is a `stream:` element (features, error): XEP-0206 §2 wants the body to declare the prefix.
    public var declaresStreamNamespace: Bool

    public init(attributes: [(name: String, value: String)] = [], payloads: [ByteBuffer] = [], declaresStreamNamespace: Bool = false) {
        self.attributes = attributes
        self.payloads = payloads
        self.declaresStreamNamespace = declaresStreamNamespace
    }

    /// A terminal error body (§17.2), optionally carrying payloads (queued stanzas, a `<stream:error/>`).
    public static func terminate(_ condition: TerminateCondition?, payloads: [ByteBuffer] = [], declaresStreamNamespace: Bool = false) -> BOSHResponse {
        var attributes: [(name: String, value: String)] = [("type", "terminate")]
        if let condition { attributes.append(("condition", condition.rawValue)) }
        return BOSHResponse(attributes: attributes, payloads: payloads, declaresStreamNamespace: declaresStreamNamespace)
    }

    /// A `see-other-uri` terminate carrying the new endpoint in `<uri/>` (§17.2).
    public static func seeOtherURI(_ uri: String) -> BOSHResponse {
        .terminate(.seeOtherURI, payloads: [ByteBuffer(string: "<uri>\(XMLEscaping.escapeText(uri))</uri>")])
    }

    /// The recoverable error of §17.3: the client resends its unanswered requests.
    public static let recoverableError = BOSHResponse(attributes: [("type", "error")])

    /// The body's bytes in a buffer allocated once for their size (NIO rounds it up to a power
    /// of two): an answer stays cached for retransmission (§14.3) while the session idles, and
    /// an estimate of 160 bytes beyond the payloads kept 256 bytes for an empty answer.
    public func encoded() -> ByteBuffer {
        var tag = "<body xmlns='http://jabber.org/protocol/httpbind'"
        if self.attributes.contains(where: { $0.name.hasPrefix("xmpp:") }) {
            tag += " xmlns:xmpp='urn:xmpp:xbosh'"
        }
        if self.declaresStreamNamespace {
            tag += " xmlns:stream='http://etherx.jabber.org/streams'"
        }
        for attribute in self.attributes {
            tag += " \(attribute.name)='\(XMLEscaping.escapeAttribute(attribute.value))'"
        }
        if self.payloads.isEmpty {
            tag += "/>"
            return ByteBuffer(string: tag)
        }
        tag += ">"
        let close = "</body>"
        var buffer = ByteBufferAllocator().buffer(capacity: tag.utf8.count + self.payloads.reduce(0) { $0 + $1.readableBytes } + close.utf8.count)
        buffer.writeString(tag)
        for var payload in self.payloads {
            buffer.writeBuffer(&payload)
        }
        buffer.writeString(close)
        return buffer
    }
}

/// A response as the HTTP edge sends it.
public struct BOSHHTTPResponse: Sendable, Equatable {
    public static let defaultContentType = "text/xml; charset=utf-8"

    public var status: Int
    public var body: ByteBuffer
    /// The client's `content` from session creation, else `text/xml; charset=utf-8` (§7.1).
    public let contentType: String

    /// `contentType` is checked like the client's `content` (`BOSHRequest.xmlMediaType(_:)`),
    /// whatever it came from (a session, a refusal, a peer's relayed answer): a BOSH answer is
    /// only ever labelled as XML, and anything else gets the default.
    public init(status: Int = 200, body: ByteBuffer, contentType: String? = nil) {
        self.status = status
        self.body = body
        self.contentType = contentType.flatMap(BOSHRequest.xmlMediaType) ?? Self.defaultContentType
    }
}
