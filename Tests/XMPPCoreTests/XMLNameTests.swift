import Testing

@testable import XMPPCore

/// expat's namespace triplets (`uri local prefix`) become names; the common namespaces come back
/// as shared strings, the others as their own, equal either way.
@Suite("XML names from expat triplets")
struct XMLNameTests {
    static func name(_ triplet: String) -> XMLName {
        triplet.withCString { XMLName(expatTriplet: $0) }
    }

    @Test(
        "one, two and three parts",
        arguments: [
            ("body", XMLName(namespace: nil, localName: "body")),
            ("jabber:client message", XMLName(namespace: "jabber:client", localName: "message")),
            ("http://etherx.jabber.org/streams features stream", XMLName(namespace: XMLNamespaces.streams, localName: "features", prefix: "stream")),
            ("urn:example:a-namespace-longer-than-fifteen-bytes item", XMLName(namespace: "urn:example:a-namespace-longer-than-fifteen-bytes", localName: "item")),
            // A separator inside the last part stays in it, as expat never writes one.
            ("u l p q", XMLName(namespace: "u", localName: "l", prefix: "p q")),
            // A namespace one byte off a common one is not taken for it.
            ("http://jabber.org/protocol/httpbinD body", XMLName(namespace: "http://jabber.org/protocol/httpbinD", localName: "body")),
            ("http://jabber.org/protocol/httpbind body", XMLName(namespace: XMLNamespaces.httpBind, localName: "body")),
            ("urn:ietf:params:xml:ns:xmpp-stanzas text", XMLName(namespace: "urn:ietf:params:xml:ns:xmpp-stanzas", localName: "text")),
            ("élément", XMLName(namespace: nil, localName: "élément")),
        ]
    )
    func parts(triplet: String, expected: XMLName) {
        #expect(Self.name(triplet) == expected)
    }
}
