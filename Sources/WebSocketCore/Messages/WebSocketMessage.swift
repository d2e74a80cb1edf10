import NIOCore
import XMPPCore

/// One client WebSocket message, validated as RFC 7395 §3.3.3 requires: a single complete XML
/// element that parses as a document on its own, starting with `<`.
public enum WebSocketMessage: Sendable {
    /// `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to=… version=… xml:lang=…/>`
    case open(to: String?, from: String?, version: String?, language: String?)
    /// `<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`
    case close
    /// A stanza or nonza, relayed upstream byte for byte.
    case element(ByteBuffer)
}

/// A stream error condition (RFC 6120 §4.9.3) Tether reports to a WebSocket client.
public enum StreamErrorCondition: String, Error, Sendable, Hashable {
    case notWellFormed = "not-well-formed"
    case policyViolation = "policy-violation"
    case unsupportedStanzaType = "unsupported-stanza-type"
    case hostUnknown = "host-unknown"
    case improperAddressing = "improper-addressing"
    case remoteConnectionFailed = "remote-connection-failed"
    case connectionTimeout = "connection-timeout"
    case systemShutdown = "system-shutdown"
    case invalidNamespace = "invalid-namespace"
    case internalServerError = "internal-server-error"

    /// The error as its own WebSocket message, self-contained.
    public var element: ByteBuffer {
        ByteBuffer(string: "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><\(self.rawValue) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
    }
}

/// Parses client messages with one reusable framer (reset per message).
public final class WebSocketMessageParser {
    private let framer: XMLStreamFramer
    private let limits: XMLStreamFramer.Limits

    public init(limits: XMLStreamFramer.Limits) {
        self.framer = XMLStreamFramer(limits: limits)
        self.limits = limits
    }

    public func parse(_ bytes: ByteBuffer) throws(StreamErrorCondition) -> WebSocketMessage {
        // The message is the element: the framer's per-child limit does not see it whole.
        guard bytes.readableBytes <= self.limits.maxElementBytes else { throw .policyViolation }
        guard bytes.readableBytes > 0, bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) == UInt8(ascii: "<") else {
            throw .notWellFormed
        }
        self.framer.reset()
        let events: [XMLStreamFramer.Event]
        do {
            events = try self.framer.feed(bytes) + self.framer.finish()
        } catch {
            throw error.isPolicyViolation ? .policyViolation : .notWellFormed
        }
        guard case .rootOpened(let root) = events.first, self.framer.isRootClosed else { throw .notWellFormed }
        if root.name.namespace == XMLNamespaces.framing {
            switch root.name.localName {
            case "open":
                return .open(
                    to: root.attributes.value(of: "to"),
                    from: root.attributes.value(of: "from"),
                    version: root.attributes.value(of: "version"),
                    language: root.attributes.value(of: "lang", namespace: XMLNamespaces.xml)
                )
            case "close":
                return .close
            default:
                throw .unsupportedStanzaType
            }
        }
        if root.name.namespace == XMLNamespaces.streams && root.name.localName == "stream" {
            // The TCP stream header is not a WebSocket framing element (RFC 7395 §3.3.2).
            throw .unsupportedStanzaType
        }
        return .element(bytes)
    }
}

/// The framing elements Tether sends (RFC 7395 §3.4, §3.6).
public enum WebSocketFraming {
    /// The answer to the client's `<open/>`, from the server's stream header.
    /// `to` is the client's `from`, when it gave one (RFC 6120 §4.7.2: the response header's
    /// `to` is the initiating entity's `from`).
    public static func open(_ info: StreamInfo, fallbackFrom: String?, to: String? = nil) -> ByteBuffer {
        var text = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'"
        if let from = info.from ?? fallbackFrom { text += " from='\(XMLEscaping.escapeAttribute(from))'" }
        if let to { text += " to='\(XMLEscaping.escapeAttribute(to))'" }
        if let id = info.id { text += " id='\(XMLEscaping.escapeAttribute(id))'" }
        text += " version='\(XMLEscaping.escapeAttribute(info.version ?? "1.0"))'"
        if let language = info.language { text += " xml:lang='\(XMLEscaping.escapeAttribute(language))'" }
        return ByteBuffer(string: text + "/>")
    }

    /// `<close/>`, optionally sending the client elsewhere (§3.6.1).
    public static func close(seeOtherURI: String? = nil) -> ByteBuffer {
        if let uri = seeOtherURI {
            return ByteBuffer(string: "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='\(XMLEscaping.escapeAttribute(uri))'/>")
        }
        return ByteBuffer(string: "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
    }
}
