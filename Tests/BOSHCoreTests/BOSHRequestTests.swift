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
        #expect(String(buffer: BOSHResponse.seeOtherURI("https://b.example/http-bind").encoded()) == "<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' condition='see-other-uri'><uri>https://b.example/http-bind</uri></body>")
    }
}

extension BOSHRequestTests {
    @Test("§7.1 content: a plausible media type is kept; one with control characters (an HTTP header injection) is ignored")
    func contentAttribute() throws {
        let good = try BOSHRequest.parse(ByteBuffer(string: "<body rid='1' content='text/xml; charset=utf-8' xmlns='http://jabber.org/protocol/httpbind'/>"))
        #expect(good.content == "text/xml; charset=utf-8")
        let injected = try BOSHRequest.parse(ByteBuffer(string: "<body rid='1' content='text/xml&#13;&#10;Set-Cookie: x=1' xmlns='http://jabber.org/protocol/httpbind'/>"))
        #expect(injected.content == nil)
    }
}
