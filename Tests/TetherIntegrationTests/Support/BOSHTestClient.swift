import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import XMPPCore

/// A parsed response `<body/>`: its attributes and its children as text.
struct ParsedBody: CustomStringConvertible {
    var status: Int
    var headers: HTTPHeaders
    var raw: String
    var attributes: [String: String]
    var children: [String]

    init(status: Int, headers: HTTPHeaders, raw: String) throws {
        self.status = status
        self.headers = headers
        self.raw = raw
        self.attributes = [:]
        self.children = []
        // Only BOSH answers are XML; refusals (403, 413, …) are plain text.
        guard !raw.isEmpty, raw.hasPrefix("<") else { return }
        let framer = XMLStreamFramer(limits: .init(maxElementBytes: 4 << 20, maxDepth: 64))
        for event in try framer.feed(ByteBuffer(string: raw)) + framer.finish() {
            switch event {
            case .rootOpened(let root):
                for attribute in root.attributes {
                    self.attributes[attribute.name.prefix.map { "\($0):\(attribute.name.localName)" } ?? attribute.name.localName] = attribute.value
                }
            case .element(let element):
                self.children.append(String(buffer: element.bytes))
            case .rootClosed:
                break
            }
        }
    }

    var type: String? { self.attributes["type"] }
    var condition: String? { self.attributes["condition"] }
    var description: String { "\(self.status) \(self.raw)" }
}

/// A BOSH client that behaves like Strophe.js: one request at a time unless told otherwise, the next rid each time.
final class BOSHTestClient: @unchecked Sendable {
    let http: HTTPClient
    var url: String
    var rid: UInt64
    var sid: String?
    var jid: String?
    var origin: String?
    /// Attributes of the creation request besides rid, to, wait, hold and the XEP-0206 ones.
    var creationAttributes = "ver='1.6'"

    init(http: HTTPClient, url: String, rid: UInt64 = UInt64.random(in: 1_000_000...9_000_000_000)) {
        self.http = http
        self.url = url
        self.rid = rid
    }

    /// When set, a request whose HTTP connection fails is sent again, the same body with the same
    /// rid, as XEP-0124 §14.3 has clients do (at most twice); `resends` counts them.
    var resendsOnConnectionLoss = false
    private(set) var resends = 0

    /// POSTs raw text to the endpoint.
    func post(_ text: String, headers extra: [(String, String)] = [], timeout: TimeAmount = .seconds(90)) async throws -> ParsedBody {
        var attempt = 1
        while true {
            do {
                return try await self.postOnce(text, headers: extra, timeout: timeout)
            } catch  where self.resendsOnConnectionLoss && attempt < 3 && (error is HTTPClientError || error is ChannelError || error is IOError) {
                // IOError: a pooled connection reset as the server closed it (ECONNRESET).
                attempt += 1
                self.resends += 1
            }
        }
    }

    private func postOnce(_ text: String, headers extra: [(String, String)], timeout: TimeAmount) async throws -> ParsedBody {
        var request = HTTPClientRequest(url: self.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "text/xml; charset=utf-8")
        if let origin = self.origin { request.headers.add(name: "Origin", value: origin) }
        request.headers.add(contentsOf: extra)
        request.body = .bytes(ByteBuffer(string: text))
        let response = try await self.http.execute(request, timeout: timeout)
        let body = try await response.body.collect(upTo: 8 << 20)
        return try ParsedBody(status: Int(response.status.code), headers: response.headers, raw: String(buffer: body))
    }

    /// Builds the next `<body/>` of the session (advancing rid) and sends it.
    func send(_ payloads: String = "", attributes: String = "") async throws -> ParsedBody {
        let body = self.nextBody(payloads, attributes: attributes)
        return try await self.post(body)
    }

    func nextBody(_ payloads: String = "", attributes: String = "") -> String {
        self.rid += 1
        let sid = self.sid.map { " sid='\($0)'" } ?? ""
        if payloads.isEmpty {
            return "<body rid='\(self.rid)'\(sid) \(attributes) xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>"
        }
        return "<body rid='\(self.rid)'\(sid) \(attributes) xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'>\(payloads)</body>"
    }

    /// Session creation; returns the creation response (features may come later, see `features()`).
    func create(to domain: String = "localhost", wait: Int = 2, hold: Int = 1, extra: String? = nil) async throws -> ParsedBody {
        let extra = extra ?? self.creationAttributes
        self.rid += 1
        let body =
            "<body rid='\(self.rid)' to='\(domain)' wait='\(wait)' hold='\(hold)' \(extra) xml:lang='en' xmpp:version='1.0' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh'/>"
        let response = try await self.post(body)
        self.sid = response.attributes["sid"]
        return response
    }

    /// Polls until an element matching `predicate` arrives; returns everything received on the way.
    func receive(until predicate: (String) -> Bool, attempts: Int = 8) async throws -> [String] {
        var received: [String] = []
        for _ in 0..<attempts {
            let response = try await self.send()
            guard response.type != "terminate" else { throw TestFailure("session terminated: \(response)") }
            received += response.children
            if received.contains(where: predicate) { return received }
        }
        throw TestFailure("nothing matched after \(attempts) polls; got \(received)")
    }

    /// Sends payloads, then keeps polling until an element matching `predicate` arrived (it may
    /// come in the answer to the send itself); returns everything received.
    func send(_ payloads: String, thenReceiveUntil predicate: (String) -> Bool) async throws -> [String] {
        let received = try await self.send(payloads).children
        if received.contains(where: predicate) { return received }
        return received + (try await self.receive(until: predicate))
    }

    /// Creation, SASL PLAIN, restart, bind, initial presence: a logged-in client.
    func login(user: String, password: String, domain: String = "localhost", resource: String = "test") async throws {
        let creation = try await self.create(to: domain)
        guard self.sid != nil else { throw TestFailure("no sid in \(creation)") }
        var features = creation.children
        if !features.contains(where: { $0.contains("mechanisms") }) {
            features += try await self.receive(until: { $0.contains("mechanisms") })
        }
        let credentials = Data("\0\(user)\0\(password)".utf8).base64EncodedString()
        let auth = try await self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>\(credentials)</auth>")
        var authResult = auth.children
        if !authResult.contains(where: { $0.hasPrefix("<success") || $0.hasPrefix("<failure") }) {
            authResult += try await self.receive(until: { $0.hasPrefix("<success") || $0.hasPrefix("<failure") })
        }
        guard authResult.contains(where: { $0.hasPrefix("<success") }) else { throw TestFailure("SASL failed: \(authResult)") }
        let restarted = try await self.send(attributes: "to='\(domain)' xml:lang='en' xmpp:restart='true'")
        var bindFeatures = restarted.children
        if !bindFeatures.contains(where: { $0.contains("urn:ietf:params:xml:ns:xmpp-bind") }) {
            bindFeatures += try await self.receive(until: { $0.contains("urn:ietf:params:xml:ns:xmpp-bind") })
        }
        let bind = try await self.send(
            "<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>\(resource)</resource></bind></iq>")
        var bound = bind.children
        if !bound.contains(where: { $0.contains("bind1") }) {
            bound += try await self.receive(until: { $0.contains("bind1") })
        }
        guard let result = bound.first(where: { $0.contains("bind1") }), let jid = Self.text(of: "jid", in: result) else {
            throw TestFailure("bind failed: \(bound)")
        }
        self.jid = jid
        _ = try await self.send("<presence xmlns='jabber:client'/>")
    }

    /// The text of the first `<name>…</name>` in `xml` (test helper, not a parser).
    static func text(of name: String, in xml: String) -> String? {
        guard let start = xml.range(of: "<\(name)>"), let end = xml.range(of: "</\(name)>", range: start.upperBound..<xml.endIndex) else { return nil }
        return String(xml[start.upperBound..<end.lowerBound])
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Unwraps or fails the test (used instead of `#require` inside async closures, which
/// currently crashes the 6.3 compiler's region-isolation pass).
func required<T>(_ value: T?, _ what: String = "value", sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    guard let value else {
        Issue.record("missing \(what)", sourceLocation: sourceLocation)
        throw TestFailure("missing \(what)")
    }
    return value
}
