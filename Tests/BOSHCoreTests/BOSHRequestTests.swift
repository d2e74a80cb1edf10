import NIOCore
import Testing
import XMPPCore

@testable import BOSHCore

@Suite("BOSH request and response bodies")
struct BOSHRequestTests {
    @Test("creation attributes, xbosh namespace and payload bytes are read")
    func parseCreation() throws {
        let body = """
            <body content='text/xml; charset=utf-8' hold='1' rid='1573741820' to='localhost' route='xmpp:localhost:5222' \
            ver='1.6' wait='60' ack='1' xml:lang='en' xmpp:version='1.0' xmlns='http://jabber.org/protocol/httpbind' \
            xmlns:xmpp='urn:xmpp:xbosh'/>
            """
        let request = try BOSHRequest.parse(ByteBuffer(string: body))
        #expect(request.rid == 1_573_741_820)
        #expect(request.sid == nil)
        #expect(request.to == "localhost")
        #expect(request.wait == 60)
        #expect(request.hold == 1)
        #expect(request.version == BOSHVersion(major: 1, minor: 6))
        #expect(request.xmppVersion == "1.0")
        #expect(request.language == "en")
        #expect(request.route == "xmpp:localhost:5222")
        #expect(request.payloads.isEmpty)
    }

    @Test("payloads keep their exact bytes, including Unicode and entities")
    func payloads() throws {
        let body = "<body rid='5' sid='s' xmlns='http://jabber.org/protocol/httpbind'><message to='a@b'><body>🦊 漢字 שלום &amp;</body></message><presence/></body>"
        let request = try BOSHRequest.parse(ByteBuffer(string: body))
        #expect(request.payloads.map { String(buffer: $0) } == ["<message to='a@b'><body>🦊 漢字 שלום &amp;</body></message>", "<presence/>"])
        #expect(!request.isEmpty)
        #expect(request.xboshAttribute("restart") == nil)
    }

    @Test(
        "bad bodies are refused with the right condition",
        arguments: [
            ("<body rid='1' xmlns='http://jabber.org/protocol/httpbind'>text</body>", TerminateCondition.badRequest),
            ("<body rid='1' xmlns='urn:wrong'/>", .badRequest),
            ("<html/>", .badRequest),
            ("<body xmlns='http://jabber.org/protocol/httpbind'/>", .badRequest),
            ("<body rid='x' xmlns='http://jabber.org/protocol/httpbind'/>", .badRequest),
            ("<body rid='9007199254740992' xmlns='http://jabber.org/protocol/httpbind'/>", .badRequest),
            ("<body rid='1' wait='-1' xmlns='http://jabber.org/protocol/httpbind'/>", .badRequest),
            ("<body rid='1' xmlns='http://jabber.org/protocol/httpbind'><!--c--></body>", .badRequest),
            ("<!DOCTYPE body><body rid='1' xmlns='http://jabber.org/protocol/httpbind'/>", .badRequest),
            ("<body rid='1' xmlns='http://jabber.org/protocol/httpbind'><message>", .badRequest),
            ("<body rid='1' xmlns='http://jabber.org/protocol/httpbind'>" + String(repeating: "<a>", count: 40), .policyViolation),
        ]
    )
    func refused(body: String, condition: TerminateCondition) {
        do {
            _ = try BOSHRequest.parse(ByteBuffer(string: body))
            Issue.record("accepted \(body)")
        } catch {
            #expect(error.condition == condition)
        }
    }

    @Test("rid up to 2^53-1 is accepted")
    func largestRID() throws {
        let request = try BOSHRequest.parse(ByteBuffer(string: "<body rid='9007199254740991' xmlns='http://jabber.org/protocol/httpbind'/>"))
        #expect(request.rid == BOSHRequest.maxRID)
    }

    @Test("responses declare the namespaces they use and escape attributes")
    func encoding() {
        let response = BOSHResponse(
            attributes: [("sid", "a'b"), ("xmpp:version", "1.0")],
            payloads: [ByteBuffer(string: "<stream:features xmlns:stream='http://etherx.jabber.org/streams'/>")],
            declaresStreamNamespace: true
        )
        #expect(
            String(buffer: response.encoded())
                == "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' xmlns:stream='http://etherx.jabber.org/streams' sid='a&apos;b' xmpp:version='1.0'><stream:features xmlns:stream='http://etherx.jabber.org/streams'/></body>"
        )
        #expect(String(buffer: BOSHResponse.terminate(.hostUnknown).encoded()) == "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='host-unknown'/>")
        #expect(
            String(buffer: BOSHResponse.seeOtherURI("https://b.example/http-bind").encoded())
                == "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='see-other-uri'><uri>https://b.example/http-bind</uri></body>")
    }

    @Test(
        "an encoded answer's buffer is allocated for its size: a cached answer (§14.3) keeps its buffer while the session idles (regression: an empty answer kept 256 bytes)",
        arguments: [0, 1])
    func encodedSize(payloadCount: Int) {
        let payloads = (0..<payloadCount).map { ByteBuffer(string: "<iq id='\($0)'>" + String(repeating: "x", count: 100) + "</iq>") }
        let buffer = BOSHResponse(attributes: [("type", "terminate"), ("condition", "item-not-found")], payloads: payloads).encoded()
        // NIO rounds every allocation up to a power of two.
        var allocation = 1
        while allocation < buffer.readableBytes { allocation *= 2 }
        #expect(buffer.capacity == allocation)
        #expect(String(buffer: buffer).hasSuffix(payloadCount == 0 ? "'item-not-found'/>" : "</iq></body>"))
    }
}

extension BOSHRequestTests {
    static func content(_ value: String) throws -> String? {
        try BOSHRequest.parse(ByteBuffer(string: "<body rid='1' content='\(XMLEscaping.escapeAttribute(value))' xmlns='http://jabber.org/protocol/httpbind'/>")).content
    }

    @Test(
        "§7.1 content: text/xml and application/xml (charset utf-8 at most) are kept, normalised; anything else is ignored",
        arguments: [
            ("text/xml; charset=utf-8", "text/xml; charset=utf-8"),
            ("text/xml", "text/xml; charset=utf-8"),
            ("application/xml", "application/xml; charset=utf-8"),
            ("TEXT/XML; CHARSET=UTF-8", "text/xml; charset=utf-8"),
            ("Application/Xml;charset=Utf-8", "application/xml; charset=utf-8"),
            (" text/xml ;\tcharset=utf-8 ", "text/xml; charset=utf-8"),
            ("text/xml;", "text/xml; charset=utf-8"),
            ("text/html", nil),
            ("text/html; charset=utf-8", nil),
            ("image/svg+xml", nil),
            ("application/xhtml+xml", nil),
            ("application/xml-dtd", nil),
            ("text/xmlx", nil),
            ("text/ xml", nil),
            ("text/plain", nil),
            ("text/xml; charset=iso-8859-1", nil),
            ("text/xml; charset=utf-7", nil),
            ("text/xml; charset=utf-16", nil),
            ("text/xml; charset=\"utf-8\"", nil),
            ("text/xml; charset='utf-8'", nil),
            ("text/xml; charset =utf-8", nil),
            ("text/xml; charset=", nil),
            ("text/xml; charset=utf-8; charset=utf-8", nil),
            ("text/xml; charset=utf-8; boundary=x", nil),
            ("text/xml; q=1", nil),
            ("text/xml charset=utf-8", nil),
            ("text/xml\r\nSet-Cookie: x=1", nil),
            ("text/xml; charset=utf-8\nX-Injected: 1", nil),
            ("text/xml; charset=utf\u{2011}8", nil),
            ("", nil),
            ("text/xml; charset=utf-8" + String(repeating: " ", count: 120), nil),
        ] as [(String, String?)]
    )
    func contentAttribute(value: String, expected: String?) throws {
        #expect(try Self.content(value) == expected)
    }

    @Test(
        "§7.1 every BOSH answer is labelled as XML, whoever sets its Content-Type (a peer's relayed answer too)",
        arguments: [
            (nil, "text/xml; charset=utf-8"), ("text/xml; charset=utf-8", "text/xml; charset=utf-8"), ("APPLICATION/XML", "application/xml; charset=utf-8"),
            ("text/html; charset=utf-8", "text/xml; charset=utf-8"), ("text/xml\r\nSet-Cookie: a=b", "text/xml; charset=utf-8"),
        ] as [(String?, String)])
    func responseContentType(given: String?, expected: String) {
        #expect(BOSHHTTPResponse(body: ByteBuffer(), contentType: given).contentType == expected)
    }

    @Test("§7.1 a content Tether does not honour leaves responses at text/xml; charset=utf-8; an honoured one is used")
    func contentTypeOfResponses() throws {
        for (content, expected) in [("text/html", "text/xml; charset=utf-8"), ("application/xml", "application/xml; charset=utf-8")] {
            let creation = try BOSHRequest.parse(
                ByteBuffer(string: "<body rid='1' to='localhost' wait='60' hold='1' ver='1.6' content='\(content)' xmlns='http://jabber.org/protocol/httpbind'/>")
            )
            var machine = BOSHSessionStateMachine(sid: "s1", creation: creation, id: 0, domain: "localhost", limits: BOSHLimits(), isSecure: false, now: .uptimeNanoseconds(0))
            let actions = machine.upstreamReceived(
                [ByteBuffer(string: "<presence xmlns='jabber:client'/>")], streamElements: false, streamManagement: false, now: .uptimeNanoseconds(0))
            guard case .respond(0, let response) = actions.first else {
                Issue.record("no answer to the creation request: \(actions)")
                continue
            }
            #expect(response.contentType == expected)
        }
    }
}

extension BOSHRequestTests {
    static func payloads(_ body: String) throws -> [String] {
        try BOSHRequest.parse(ByteBuffer(string: body)).payloads.map { String(buffer: $0) }
    }

    @Test(
        "prefixes declared on <body/> go with the payloads that use them, at any depth; nothing else is added",
        arguments: [
            // The example from the field: <foo:x/> would reach the server with an unbound prefix.
            (
                "<body rid='2' sid='s' xmlns='http://jabber.org/protocol/httpbind' xmlns:foo='urn:foo'><message xmlns='jabber:client' to='a@b'><foo:x/></message></body>",
                ["<message xmlns:foo='urn:foo' xmlns='jabber:client' to='a@b'><foo:x/></message>"]
            ),
            // Attribute prefixes, deep down; unused body prefixes (xmpp, bar) are not added.
            (
                "<body rid='2' xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' xmlns:foo='urn:foo' xmlns:bar='urn:bar'><iq xmlns='jabber:client' type='set'><q xmlns='urn:q'><item foo:k='v'/></q></iq><presence xmlns='jabber:client'/></body>",
                ["<iq xmlns:foo='urn:foo' xmlns='jabber:client' type='set'><q xmlns='urn:q'><item foo:k='v'/></q></iq>", "<presence xmlns='jabber:client'/>"]
            ),
            // Redeclared by the payload: its own binding, nothing spliced.
            (
                "<body rid='2' xmlns='http://jabber.org/protocol/httpbind' xmlns:foo='urn:foo'><message xmlns='jabber:client' xmlns:foo='urn:mine'><foo:x/></message></body>",
                ["<message xmlns='jabber:client' xmlns:foo='urn:mine'><foo:x/></message>"]
            ),
            // Unqualified payloads stay unqualified (jabber:client upstream), never httpbind.
            (
                "<body rid='2' xmlns='http://jabber.org/protocol/httpbind' xmlns:foo='urn:foo'><message to='a@b'><body>hi</body><foo:x/></message><presence/></body>",
                ["<message xmlns:foo='urn:foo' to='a@b'><body>hi</body><foo:x/></message>", "<presence/>"]
            ),
            // xml:lang needs no declaration.
            (
                "<body rid='2' xmlns='http://jabber.org/protocol/httpbind'><message xmlns='jabber:client' xml:lang='en'/></body>",
                ["<message xmlns='jabber:client' xml:lang='en'/>"]
            ),
            // A prefixed <b:body/> with another default namespace: the payload keeps it.
            (
                "<b:body rid='2' xmlns:b='http://jabber.org/protocol/httpbind' xmlns='jabber:client'><message to='a@b'/></b:body>",
                ["<message xmlns='jabber:client' to='a@b'/>"]
            ),
        ]
    )
    func bodyNamespaces(body: String, expected: [String]) throws {
        #expect(try Self.payloads(body) == expected)
    }

    @Test("relayed payloads parse on their own with the namespaces they had inside <body/>")
    func payloadsAreStandalone() throws {
        let body = """
            <body rid='2' xmlns='http://jabber.org/protocol/httpbind' xmlns:foo='urn:foo' xmlns:q="urn:a'b&amp;c">\
            <message xmlns='jabber:client' to='a@b'><foo:x q:attr='1'><y/></foo:x><z xmlns:foo='urn:other'><foo:w/></z></message></body>
            """
        let payload = try #require(try BOSHRequest.parse(ByteBuffer(string: body)).payloads.first)
        #expect(String(buffer: payload).hasPrefix("<message xmlns:foo='urn:foo' xmlns:q='urn:a&apos;b&amp;c' xmlns='jabber:client' "))
        let message = try XMLElement.parse(payload)
        #expect(message.name == XMLName(namespace: "jabber:client", localName: "message"))
        let x = try #require(message.child("x"))
        #expect(x.name == XMLName(namespace: "urn:foo", localName: "x", prefix: "foo"))
        #expect(x.attributes.value(of: "attr", namespace: "urn:a'b&c") == "1")
        #expect(x.child("y")?.name.namespace == "jabber:client")
        #expect(message.child("z")?.child("w")?.name.namespace == "urn:other")
    }
}
