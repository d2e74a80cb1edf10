import NIOCore
import Testing

@testable import XMPPCore

@Suite("XML stream framer")
struct XMLStreamFramerTests {
    static let stream = """
        <?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
        id='abc' from='localhost' version='1.0' xml:lang='en'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\
        <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features> \
        <message to='a@b' type='chat'><body>héllo 🦊 漢字 שלום &amp; &lt;</body></message>
        <presence/></stream:stream>
        """

    /// Feeds `input` in chunks of `size` bytes and returns every event.
    static func frame(_ input: String, chunk size: Int, framer: XMLStreamFramer = XMLStreamFramer()) throws -> [XMLStreamFramer.Event] {
        let bytes = Array(input.utf8)
        var events: [XMLStreamFramer.Event] = []
        var index = 0
        while index < bytes.count {
            let end = min(index + size, bytes.count)
            events += try framer.feed(ByteBuffer(bytes: bytes[index..<end]))
            index = end
        }
        return events
    }

    static func strings(_ events: [XMLStreamFramer.Event]) -> [String] {
        events.map { event in
            switch event {
            case .rootOpened(let root): return "open:\(root.name)"
            case .element(let element): return String(buffer: element.bytes)
            case .rootClosed: return "close"
            }
        }
    }

    @Test(
        "a namespace URI holding the parser's separator (a space) is refused, never split into another name (expat >= 2.4.5, CVE-2022-25236)",
        arguments: [
            "<message xmlns='jabber:client iq'/>",
            "<x:message xmlns:x='jabber:client message' to='a@b'/>",
        ])
    func namespaceSeparatorInURI(stanza: String) {
        let stream = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org'>"
        #expect(throws: XMLFramerError.self) { try Self.frame(stream + stanza, chunk: 1000) }
    }

    @Test("every chunking yields the same byte-exact elements", arguments: [1, 2, 3, 5, 7, 64, 100_000])
    func chunking(size: Int) throws {
        let events = try Self.frame(Self.stream, chunk: size)
        #expect(
            Self.strings(events) == [
                "open:{http://etherx.jabber.org/streams}stream:stream",
                "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
                "<message to='a@b' type='chat'><body>héllo 🦊 漢字 שלום &amp; &lt;</body></message>",
                "<presence/>",
                "close",
            ]
        )
    }

    @Test("root attributes and stream info are read")
    func rootAttributes() throws {
        let events = try Self.frame(Self.stream, chunk: 4096)
        guard case .rootOpened(let root) = events.first else {
            Issue.record("no root")
            return
        }
        let info = StreamInfo(root: root)
        #expect(info == StreamInfo(id: "abc", from: "localhost", version: "1.0", language: "en"))
    }

    @Test("stanzas become self-contained: jabber:client and stream prefix declared, starttls removed")
    func standalone() throws {
        let events = try Self.frame(Self.stream, chunk: 4096)
        let elements = events.compactMap { event -> XMLElementSlice? in
            if case .element(let element) = event { return element }
            return nil
        }
        #expect(
            String(buffer: elements[0].standaloneBytes { $0.name.namespace == XMLNamespaces.tls })
                == "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
        )
        #expect(String(buffer: elements[1].standaloneBytes()).hasPrefix("<message xmlns='jabber:client' to='a@b'"))
        #expect(String(buffer: elements[2].standaloneBytes()) == "<presence xmlns='jabber:client'/>")
        // An element that declares its own namespace is left alone.
        let own = try Self.frame("<r xmlns='x'><a xmlns='urn:other'/></r>", chunk: 3)
        guard case .element(let element) = own[1] else {
            Issue.record("expected element")
            return
        }
        #expect(String(buffer: element.standaloneBytes()) == "<a xmlns='urn:other'/>")
    }

    @Test("whitespace keepalives between stanzas are dropped and release their bytes")
    func whitespace() throws {
        let framer = XMLStreamFramer()
        _ = try framer.feed(ByteBuffer(string: "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'>"))
        for _ in 0..<100 {
            #expect(try framer.feed(ByteBuffer(string: " \n")).isEmpty)
        }
        #expect(framer.bufferedBytes == 0)
    }

    @Test(
        "hostile constructs are refused",
        arguments: [
            ("<!DOCTYPE r [<!ENTITY a 'aaaa'>]><r/>", XMLFramerError.forbiddenConstruct("DTD")),
            ("<r><!-- hi --></r>", .forbiddenConstruct("comment")),
            ("<r><?pi x?></r>", .forbiddenConstruct("processing instruction")),
        ]
    )
    func hostile(input: String, expected: XMLFramerError) {
        #expect(throws: expected) { try Self.frame(input, chunk: 1000) }
    }

    @Test("undefined entities are not well-formed")
    func undefinedEntity() {
        #expect(throws: XMLFramerError.notWellFormed("undefined entity")) {
            try Self.frame("<r><a>&xxe;</a></r>", chunk: 1000)
        }
    }

    @Test("depth and size limits")
    func limits() {
        let deep = "<r>" + String(repeating: "<a>", count: 40)
        #expect(throws: XMLFramerError.tooDeep(limit: 32)) { try Self.frame(deep, chunk: 7) }
        let framer = XMLStreamFramer(limits: .init(maxElementBytes: 1000, maxDepth: 32))
        let big = "<r><message><body>" + String(repeating: "x", count: 2000)
        #expect(throws: XMLFramerError.elementTooLarge(limit: 1000)) { try Self.frame(big, chunk: 100, framer: framer) }
        // A complete oversized element in one read is refused as well.
        let framer2 = XMLStreamFramer(limits: .init(maxElementBytes: 1000, maxDepth: 32))
        #expect(throws: XMLFramerError.elementTooLarge(limit: 1000)) {
            try Self.frame("<r><m>" + String(repeating: "x", count: 2000) + "</m>", chunk: 100_000, framer: framer2)
        }
    }

    @Test("text directly in the root is refused when asked")
    func rootText() {
        #expect(throws: XMLFramerError.textInRoot) {
            try Self.frame("<body>hello</body>", chunk: 100, framer: XMLStreamFramer(rejectsRootText: true))
        }
        #expect(throws: Never.self) {
            try Self.frame("<body> \n </body>", chunk: 100, framer: XMLStreamFramer(rejectsRootText: true))
        }
    }

    @Test("reset starts a new document (stream restart)")
    func reset() throws {
        let framer = XMLStreamFramer()
        _ = try Self.frame("<s><success/>", chunk: 100, framer: framer)
        framer.reset()
        let events = try Self.frame("<s id='2'><features/>", chunk: 1, framer: framer)
        #expect(Self.strings(events) == ["open:s", "<features/>"])
    }

    @Test("an incomplete document is an error at finish")
    func incomplete() throws {
        let framer = XMLStreamFramer()
        _ = try framer.feed(ByteBuffer(string: "<body><message>"))
        #expect(throws: XMLFramerError.self) { try framer.finish() }
    }
}
