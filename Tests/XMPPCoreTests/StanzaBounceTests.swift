import NIOCore
import Testing

@testable import XMPPCore

@Suite("Bounces and stream management (RFC 6120 §8.3, §10.4.3; XEP-0198)")
struct StanzaBounceTests {
    static func bounce(_ stanza: String) -> String? {
        if case .bounce(let error) = StanzaBounce.outcome(for: ByteBuffer(string: stanza)) { return String(buffer: error) }
        return nil
    }

    @Test(
        "a message or an iq request becomes service-unavailable (cancel; §8.3.3.13 forbids recipient-unavailable toward senders that may not know the recipient's availability), addressed back to the sender with the same id"
    )
    func bounces() {
        #expect(
            Self.bounce("<message xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org' id='m&apos;1' type='chat'><body>hi</body></message>")
                == "<message xmlns='jabber:client' type='error' to='bob@example.org/b' from='alice@example.org' id='m&apos;1'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
        )
        #expect(
            Self.bounce("<iq xmlns='jabber:client' from='pubsub.example.org' to='alice@example.org/a' id='i1' type='set'><pubsub xmlns='http://jabber.org/protocol/pubsub'/></iq>")
                == "<iq xmlns='jabber:client' type='error' to='pubsub.example.org' from='alice@example.org/a' id='i1'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        // A message without a type is a normal message (RFC 6121 §5.2.2).
        #expect(Self.bounce("<message xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a'><body>x</body></message>")?.contains("<service-unavailable") == true)
    }

    @Test(
        "nothing is answered for presence, errors, groupchat, headlines, iq results, stanzas without a sender, other namespaces or broken XML",
        arguments: [
            "<presence xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a'/>",
            "<message xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a' type='error'><error type='cancel'/></message>",
            "<message xmlns='jabber:client' from='room@muc.example.org/bob' to='alice@example.org/a' type='groupchat'><body>x</body></message>",
            "<message xmlns='jabber:client' from='pubsub.example.org' to='alice@example.org/a' type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'/></message>",
            "<iq xmlns='jabber:client' from='example.org' to='alice@example.org/a' id='r' type='result'/>",
            "<iq xmlns='jabber:client' to='alice@example.org/a' id='p' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
            "<r xmlns='urn:xmpp:sm:3'/>",
            "<message xmlns='jabber:client' from='bob@example.org/b'",
        ])
    func drops(stanza: String) {
        #expect(StanzaBounce.outcome(for: ByteBuffer(string: stanza)) == .drop)
    }
}
