import NIOCore
import XMPPCore

/// A client's `<body/>` (XEP-0124 §6), with its attributes read and its payloads kept as raw bytes.
public struct BOSHRequest: Sendable {
    /// Largest rid a client may use (XEP-0124 §14.1: 2^53 − 1).
    public static let maxRID: UInt64 = (1 << 53) - 1

    public var rid: UInt64
    public var sid: String?
    public var attributes: [XMLAttribute]
    /// Child elements, byte for byte as the client sent them, plus the declarations of prefixes
    /// they use that only `<body/>` declared (so each parses on its own upstream).
    public var payloads: [ByteBuffer]

    public init(rid: UInt64, sid: String? = nil, attributes: [XMLAttribute] = [], payloads: [ByteBuffer] = []) {
        self.rid = rid
        self.sid = sid
        self.attributes = attributes
        self.payloads = payloads
    }

    public func attribute(_ name: String) -> String? { self.attributes.value(of: name) }
    /// An attribute in the `urn:xmpp:xbosh` namespace (XEP-0206: `xmpp:version`, `xmpp:restart`).
    public func xboshAttribute(_ name: String) -> String? { self.attributes.value(of: name, namespace: XMLNamespaces.xbosh) }

    public var to: String? { self.attribute("to") }
    public var from: String? { self.attribute("from") }
    public var route: String? { self.attribute("route") }
    public var language: String? { self.attributes.value(of: "lang", namespace: XMLNamespaces.xml) }
    /// The `Content-Type` the client asks answers to carry (§7.1), normalised, when it is an XML
    /// media type Tether can truthfully answer with; else `nil`, and answers carry
    /// `BOSHHTTPResponse.defaultContentType`. See `xmlMediaType(_:)`.
    public var content: String? { self.attribute("content").flatMap(Self.xmlMediaType) }
    public var type: String? { self.attribute("type") }
    public var key: String? { self.attribute("key") }
    public var newKey: String? { self.attribute("newkey") }
    public var isTerminate: Bool { self.type == "terminate" }
    public var isRestart: Bool { self.xboshAttribute("restart") == "true" || self.xboshAttribute("restart") == "1" }
    public var xmppVersion: String? { self.xboshAttribute("version") }
    public var version: BOSHVersion? { self.attribute("ver").flatMap(BOSHVersion.init) }
    public var wait: Int? { self.attribute("wait").flatMap { Int($0) } }
    public var hold: Int? { self.attribute("hold").flatMap { Int($0) } }
    public var pause: Int? { self.attribute("pause").flatMap { Int($0) } }
    public var ack: UInt64? { self.attribute("ack").flatMap { UInt64($0) } }
    /// No payloads and no control meaning: a plain poll.
    public var isEmpty: Bool { self.payloads.isEmpty && !self.isTerminate && !self.isRestart && self.pause == nil }
}

extension BOSHRequest {
    /// `text/xml` or `application/xml` (RFC 7303 §9.1, §9.2), matched case-insensitively, with at
    /// most a `charset` parameter (RFC 9110 §8.3.1), written back as `TYPE; charset=utf-8`.
    ///
    /// The value becomes an HTTP response header, so only these two are honoured: a browser would
    /// render or run `text/html`, `image/svg+xml` or `application/xhtml+xml` (script in a client's
    /// stanza would run on Tether's origin), and anything carrying control characters could split
    /// the header. Tether always writes UTF-8 (RFC 6120 §11.6), so the only charset it can honour is
    /// `utf-8`, which is also stated when the client names none (RFC 3023 read a bare `text/xml` as
    /// US-ASCII). Other parameters, quoted values or another charset (UTF-7 and UTF-16 labels make
    /// browsers misread bytes) cannot be honoured, and the whole value is ignored.
    static func xmlMediaType(_ value: String) -> String? {
        // What clients send (Strophe.js: the first), answered without parsing: this runs per request.
        switch value {
        case Self.textXML, "text/xml": return Self.textXML
        case Self.applicationXML, "application/xml": return Self.applicationXML
        default: break
        }
        guard value.utf8.count <= 128, value.utf8.allSatisfy({ ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x09 }) else { return nil }
        var parts = value.split(separator: ";", omittingEmptySubsequences: false).map(Self.trimmingWhitespace)
        let type = parts.removeFirst().lowercased()
        guard type == "text/xml" || type == "application/xml" else { return nil }
        var charset: String?
        for parameter in parts where !parameter.isEmpty {
            guard charset == nil, let equals = parameter.firstIndex(of: "="), parameter[..<equals].lowercased() == "charset" else {
                return nil
            }
            charset = parameter[parameter.index(after: equals)...].lowercased()
        }
        guard charset == nil || charset == "utf-8" else { return nil }
        return type + "; charset=utf-8"
    }

    private static let textXML = "text/xml; charset=utf-8"
    private static let applicationXML = "application/xml; charset=utf-8"

    /// Without optional whitespace (`OWS`: spaces and tabs, RFC 9110 §5.6.3) at either end.
    private static func trimmingWhitespace(_ text: Substring) -> Substring {
        let isWhitespace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = text.firstIndex(where: { !isWhitespace($0) }), let last = text.lastIndex(where: { !isWhitespace($0) }) else {
            return ""
        }
        return text[first...last]
    }
}

/// Why a request body was refused before it reached a session.
public enum BOSHRequestError: Error, Hashable, Sendable, CustomStringConvertible {
    case malformed(XMLFramerError)
    case notABody
    case missingRID
    case invalidAttribute(String)

    public var description: String {
        switch self {
        case .malformed(let error): return "malformed body: \(error)"
        case .notABody: return "the root element is not <body xmlns='http://jabber.org/protocol/httpbind'/>"
        case .missingRID: return "the body has no rid"
        case .invalidAttribute(let name): return "invalid value for attribute '\(name)'"
        }
    }

    /// `policy-violation` for size and depth limits, `bad-request` for everything else (XEP-0124 §17.2).
    public var condition: TerminateCondition {
        if case .malformed(let error) = self, error.isPolicyViolation { return .policyViolation }
        return .badRequest
    }
}

extension BOSHRequest {
    /// Parses a request body with libexpat, refusing DTDs, comments, PIs and text in `<body/>` (§6).
    public static func parse(_ bytes: ByteBuffer, limits: XMLStreamFramer.Limits = .init()) throws(BOSHRequestError) -> BOSHRequest {
        let framer = XMLStreamFramer(limits: limits, rejectsRootText: true)
        var events: [XMLStreamFramer.Event]
        do {
            events = try framer.feed(bytes)
            events += try framer.finish()
        } catch {
            throw .malformed(error)
        }
        var root: XMLRootElement?
        var payloads: [ByteBuffer] = []
        for event in events {
            switch event {
            case .rootOpened(let element): root = element
            case .element(var element):
                // Prefixes declared on <body/> go with the payloads that use them. Its httpbind
                // default namespace does not: an unqualified stanza is meant as jabber:client, the
                // upstream stream's default, as before. Any other default namespace (only possible
                // with a prefixed <b:body/>) is carried like a prefix: the payload keeps its meaning.
                element.inheritedNamespaces.removeAll { $0.prefix == nil && $0.uri == XMLNamespaces.httpBind }
                payloads.append(element.standaloneBytes())
            case .rootClosed: break
            }
        }
        guard let root, root.name.localName == "body", root.name.namespace == XMLNamespaces.httpBind else {
            throw .notABody
        }
        guard let ridText = root.attributes.value(of: "rid") else { throw .missingRID }
        guard let rid = UInt64(ridText), rid <= BOSHRequest.maxRID else { throw .invalidAttribute("rid") }
        let request = BOSHRequest(rid: rid, sid: root.attributes.value(of: "sid"), attributes: root.attributes, payloads: payloads)
        for name in ["wait", "hold", "pause", "ack"] where request.attribute(name) != nil {
            guard let value = request.attribute(name).flatMap({ UInt64($0) }), value <= BOSHRequest.maxRID else {
                throw .invalidAttribute(name)
            }
        }
        if request.attribute("ver") != nil && request.version == nil { throw .invalidAttribute("ver") }
        return request
    }
}

/// A BOSH protocol version, `major.minor` (XEP-0124 §7.1 `ver`).
public struct BOSHVersion: Hashable, Sendable, Comparable, CustomStringConvertible {
    public static let supported = BOSHVersion(major: 1, minor: 11)

    public var major: Int
    public var minor: Int

    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let major = Int(parts[0]), let minor = Int(parts[1]), major >= 0, minor >= 0 else { return nil }
        self.init(major: major, minor: minor)
    }

    public static func < (lhs: BOSHVersion, rhs: BOSHVersion) -> Bool {
        (lhs.major, lhs.minor) < (rhs.major, rhs.minor)
    }

    public var description: String { "\(self.major).\(self.minor)" }
}
