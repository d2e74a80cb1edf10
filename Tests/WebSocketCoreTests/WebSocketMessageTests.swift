import NIOCore
import Testing
import XMPPCore

@testable import WebSocketCore

@Suite("RFC 7395 messages")
struct WebSocketMessageTests {
    let parser = WebSocketMessageParser(limits: .init(maxElementBytes: 1000, maxDepth: 8))

    @Test("open and close are recognised; stanzas pass byte for byte")
    func recognised() throws {
        guard
            case .open(let to, _, let version, let language) = try parser.parse(
                ByteBuffer(string: "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.org' version='1.0' xml:lang='de'/>"))
        else {
            Issue.record("not an open")
            return
        }
        #expect(to == "example.org")
        #expect(version == "1.0")
        #expect(language == "de")
        guard case .close = try parser.parse(ByteBuffer(string: "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")) else {
            Issue.record("not a close")
            return
        }
        let stanza = "<message xmlns='jabber:client' to='a@b'><body>🦊</body></message>"
        guard case .element(let bytes) = try parser.parse(ByteBuffer(string: stanza)) else {
            Issue.record("not an element")
            return
        }
        #expect(String(buffer: bytes) == stanza)
    }

    @Test(
        "RFC 7395 §3.3.3 violations",
        arguments: [
            ("", StreamErrorCondition.notWellFormed),
            (" <presence/>", .notWellFormed),
            ("<presence/><presence/>", .notWellFormed),
            ("<message><body>", .notWellFormed),
            ("<!-- x --><presence/>", .notWellFormed),
            ("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'>", .notWellFormed),
            ("<frame xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>", .unsupportedStanzaType),
            ("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>", .unsupportedStanzaType),
            ("<m>" + String(repeating: "x", count: 2000) + "</m>", .policyViolation),
            (String(repeating: "<a>", count: 10) + String(repeating: "</a>", count: 10), .policyViolation),
        ])
    func violations(message: String, condition: StreamErrorCondition) {
        #expect(throws: condition) { try parser.parse(ByteBuffer(string: message)) }
    }
}
