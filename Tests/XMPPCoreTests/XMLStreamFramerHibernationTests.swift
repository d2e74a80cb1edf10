import NIOCore
import Testing

@testable import XMPPCore

/// An idle stream frees expat's state and picks up exactly where it was.
@Suite("XML stream framer: hibernation")
struct XMLStreamFramerHibernationTests {
    static let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='abc' version='1.0'>"
    static let stanzas = [
        "<message to='a@b' type='chat'><body>héllo 🦊</body></message>",
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
        "<presence/>",
    ]

    /// Standalone bytes of every element, feeding `chunks` and hibernating after each when `hibernating`.
    static func run(_ chunks: [String], hibernating: Bool) throws -> (elements: [String], hibernated: Int, closed: Bool) {
        let framer = XMLStreamFramer()
        var elements: [String] = []
        var hibernated = 0
        var closed = false
        for chunk in chunks {
            for event in try framer.feed(ByteBuffer(string: chunk)) {
                switch event {
                case .element(let element): elements.append(String(buffer: element.standaloneBytes()))
                case .rootClosed: closed = true
                case .rootOpened: break
                }
            }
            if hibernating {
                framer.hibernate()
                if framer.isHibernating { hibernated += 1 }
            }
        }
        return (elements, hibernated, closed)
    }

    @Test("between stanzas: same standalone elements (namespaces included) as without hibernating")
    func sameElements() throws {
        let chunks = [Self.header] + Self.stanzas + ["</stream:stream>"]
        let plain = try Self.run(chunks, hibernating: false)
        let resumed = try Self.run(chunks, hibernating: true)
        #expect(resumed.elements == plain.elements)
        #expect(resumed.elements[1] == "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>")
        #expect(resumed.hibernated == 4)
        #expect(resumed.closed)
    }

    @Test("never in the middle of a stanza; byte-by-byte input after a hibernation still frames exactly")
    func onlyWhenIdle() throws {
        let partial = String(Self.stanzas[0].prefix(20))
        let rest = String(Self.stanzas[0].dropFirst(20))
        let framer = XMLStreamFramer()
        _ = try framer.feed(ByteBuffer(string: Self.header))
        _ = try framer.feed(ByteBuffer(string: partial))
        framer.hibernate()
        #expect(!framer.isHibernating)
        var events = try framer.feed(ByteBuffer(string: rest))
        #expect(events.count == 1)
        framer.hibernate()
        #expect(framer.isHibernating)
        events = []
        for byte in Self.stanzas[2].utf8 {
            events += try framer.feed(ByteBuffer(bytes: [byte]))
        }
        guard case .element(let element) = events.first else {
            Issue.record("no element")
            return
        }
        #expect(String(buffer: element.bytes) == "<presence/>")
        #expect(String(buffer: element.standaloneBytes()) == "<presence xmlns='jabber:client'/>")
    }

    @Test("limits and refusals hold after waking: a comment is still refused")
    func refusalsAfterWaking() throws {
        let framer = XMLStreamFramer()
        _ = try framer.feed(ByteBuffer(string: Self.header))
        framer.hibernate()
        #expect(throws: XMLFramerError.self) { try framer.feed(ByteBuffer(string: "<!-- hi -->")) }
    }

    @Test("fuzz regression: not inside a CDATA section at the root (expat's mode would be lost)")
    func notInsideCDATA() throws {
        let framer = XMLStreamFramer()
        _ = try framer.feed(ByteBuffer(string: Self.header))
        _ = try framer.feed(ByteBuffer(string: "<![CDATA[ "))
        framer.hibernate()
        #expect(!framer.isHibernating)
        let events = try framer.feed(ByteBuffer(string: "]]><presence/>"))
        #expect(events.count == 1)
        framer.hibernate()
        #expect(framer.isHibernating)
    }
}
