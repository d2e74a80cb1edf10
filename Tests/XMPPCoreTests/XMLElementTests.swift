import NIOCore
import Testing

@testable import XMPPCore

@Suite("XMLElement tree")
struct XMLElementTests {
    @Test("names with namespaces, attributes, children and unescaped text")
    func parsesTree() throws {
        let element = try XMLElement.parse(
            ByteBuffer(string: "<iq xmlns='jabber:client' type='result' id='x'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>a@d/r &amp; s</jid></bind></iq>"))
        #expect(element.name == XMLName(namespace: "jabber:client", localName: "iq"))
        #expect(element.attribute("type") == "result")
        #expect(element.child("bind", namespace: "urn:ietf:params:xml:ns:xmpp-bind")?.child("jid")?.text == "a@d/r & s")
    }

    @Test("refuses DTDs, comments, depth beyond the limit and broken XML")
    func refusesHostileInput() {
        #expect(throws: XMLFramerError.self) { try XMLElement.parse(ByteBuffer(string: "<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>")) }
        #expect(throws: XMLFramerError.self) { try XMLElement.parse(ByteBuffer(string: "<x><!-- c --></x>")) }
        #expect(throws: XMLFramerError.tooDeep(limit: 3)) { try XMLElement.parse(ByteBuffer(string: "<a><b><c><d/></c></b></a>"), maxDepth: 3) }
        #expect(throws: XMLFramerError.self) { try XMLElement.parse(ByteBuffer(string: "<a><b></a>")) }
    }
}
