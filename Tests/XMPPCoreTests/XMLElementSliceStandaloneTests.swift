import NIOCore
import Testing
import XMPPCore

/// `standaloneBytes()` declares what an element takes from its root, at any depth, and only that.
@Suite("Standalone element bytes")
struct XMLElementSliceStandaloneTests {
    static let root = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:p='urn:p' xmlns:q='urn:q'>"

    /// The root's only element, framed in one chunk and in chunks of one byte (both must agree).
    static func element(_ child: String, root: String = Self.root) throws -> XMLElementSlice {
        var results: [XMLElementSlice] = []
        for size in [Int.max, 1] {
            let framer = XMLStreamFramer()
            let bytes = Array((root + child).utf8)
            var events: [XMLStreamFramer.Event] = []
            var index = 0
            while index < bytes.count {
                let end = min(index + min(size, bytes.count - index), bytes.count)
                events += try framer.feed(ByteBuffer(bytes: bytes[index..<end]))
                index = end
            }
            for case .element(let element) in events { results.append(element) }
        }
        #expect(results.count == 2)
        #expect(results.first?.inheritedNamespaces == results.last?.inheritedNamespaces)
        return try #require(results.first)
    }

    @Test(
        "the declarations an element relies on are spliced after its name, in order of first use",
        arguments: [
            // The element's own namespace (as before).
            ("<message to='a@b'/>", "<message xmlns='jabber:client' to='a@b'/>"),
            (
                "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>",
                "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
            ),
            // Prefixes used deeper down, by elements and attributes.
            ("<message xmlns='jabber:client'><p:x/></message>", "<message xmlns:p='urn:p' xmlns='jabber:client'><p:x/></message>"),
            (
                "<message xmlns='jabber:client'><a xmlns='urn:a'><b q:k='v'/></a></message>",
                "<message xmlns:q='urn:q' xmlns='jabber:client'><a xmlns='urn:a'><b q:k='v'/></a></message>"
            ),
            ("<message><a><b><p:c/></b></a></message>", "<message xmlns='jabber:client' xmlns:p='urn:p'><a><b><p:c/></b></a></message>"),
            // An unprefixed descendant of a prefixed element takes the root's default namespace.
            ("<stream:features><x/></stream:features>", "<stream:features xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client'><x/></stream:features>"),
            // Declared inside the element, or xml: nothing to add.
            ("<message xmlns='jabber:client' xmlns:p='urn:other'><p:x/></message>", "<message xmlns='jabber:client' xmlns:p='urn:other'><p:x/></message>"),
            (
                "<message xmlns='jabber:client' xml:lang='en'><body xml:lang='de'>x</body></message>",
                "<message xmlns='jabber:client' xml:lang='en'><body xml:lang='de'>x</body></message>"
            ),
            // Redeclared only in a subtree: the root's binding is still needed for the rest.
            (
                "<message xmlns='jabber:client'><a xmlns:p='urn:other'><p:y/></a><p:z/></message>",
                "<message xmlns:p='urn:p' xmlns='jabber:client'><a xmlns:p='urn:other'><p:y/></a><p:z/></message>"
            ),
            // Undeclared default inside: its children are in no namespace.
            ("<message xmlns=''><x/></message>", "<message xmlns=''><x/></message>"),
        ]
    )
    func splicing(child: String, expected: String) throws {
        let standalone = try Self.element(child).standaloneBytes()
        #expect(String(buffer: standalone) == expected)
        // Self-contained: parses alone, with every name in the namespace it had inside the root.
        _ = try XMLElement.parse(standalone)
    }

    @Test("namespaces survive the trip out of the root: element and attribute names at every depth")
    func namespacesKept() throws {
        let standalone = try Self.element("<message><a xmlns:p='urn:other'><p:y q:k='1'/></a><p:z/></message>").standaloneBytes()
        let tree = try XMLElement.parse(standalone)
        #expect(tree.name == XMLName(namespace: "jabber:client", localName: "message"))
        let a = try #require(tree.child("a"))
        #expect(a.name.namespace == "jabber:client")
        let y = try #require(a.child("y"))
        #expect(y.name.namespace == "urn:other")
        #expect(y.attributes == [XMLAttribute(name: XMLName(namespace: "urn:q", localName: "k", prefix: "q"), value: "1")])
        #expect(tree.child("z")?.name.namespace == "urn:p")
    }

    @Test("a namespace URI is escaped where it is spliced in")
    func escaping() throws {
        let element = try Self.element("<message xmlns='jabber:client'><p:x/></message>", root: "<r xmlns:p=\"urn:a'b&amp;c&#10;\">")
        let standalone = element.standaloneBytes()
        #expect(String(buffer: standalone) == "<message xmlns:p='urn:a&apos;b&amp;c&#10;' xmlns='jabber:client'><p:x/></message>")
        #expect(try XMLElement.parse(standalone).children.first?.name.namespace == "urn:a'b&c\n")
    }

    @Test("an element that needs nothing from the root is handed out as the same bytes")
    func unchanged() throws {
        let element = try Self.element("<presence xmlns='jabber:client'><x xmlns='urn:x'/></presence>")
        #expect(element.inheritedNamespaces.isEmpty)
        #expect(element.standaloneBytes() == element.bytes)
    }

    @Test("after hibernating, the root's declarations are still known")
    func afterHibernating() throws {
        let framer = XMLStreamFramer()
        _ = try framer.feed(ByteBuffer(string: Self.root))
        framer.hibernate()
        #expect(framer.isHibernating)
        let events = try framer.feed(ByteBuffer(string: "<message><p:x/></message>"))
        guard case .element(let element) = events.first else {
            Issue.record("no element")
            return
        }
        #expect(String(buffer: element.standaloneBytes()) == "<message xmlns='jabber:client' xmlns:p='urn:p'><p:x/></message>")
    }
}
