import NIOCore
import Testing
import XMPPCore

@testable import TetherServer

/// The prebind login sequence, fed with the elements a server sends (RFC 6120 §6, §7).
@Suite("Prebind login state machine")
struct PrebindLoginStateMachineTests {
    static func element(_ text: String) -> XMLElement {
        try! XMLElement.parse(ByteBuffer(string: text))
    }

    static let saslFeatures = element(
        "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
    )
    static let bindFeatures = element(
        "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session></stream:features>"
    )
    static let success = element("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")

    static func payloadText(_ next: PrebindLoginStateMachine.Next) -> String? {
        guard case .send(let payloads) = next else { return nil }
        return payloads.map { String(buffer: $0) }.joined()
    }

    @Test("PLAIN auth, restart, bind with the requested resource, then the bound JID")
    func fullLogin() {
        var machine = PrebindLoginStateMachine(username: "alice", password: "secret", resource: "web & co")
        #expect(machine.received([]) == .poll)
        // base64("\0alice\0secret")
        #expect(Self.payloadText(machine.received([Self.saslFeatures])) == "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>")
        #expect(machine.received([Self.success]) == .restart)
        #expect(
            Self.payloadText(machine.received([Self.bindFeatures]))
                == "<iq xmlns='jabber:client' type='set' id='tether-prebind-bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web &amp; co</resource></bind></iq>")
        let bound = Self.element(
            "<iq xmlns='jabber:client' type='result' id='tether-prebind-bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/web &amp; co</jid></bind></iq>")
        #expect(machine.received([bound]) == .finished(jid: "alice@localhost/web & co"))
    }

    @Test("a server that still requires RFC 3921 sessions gets one before the login finishes")
    func requiredSession() {
        var machine = PrebindLoginStateMachine(username: "a", password: "p", resource: nil)
        _ = machine.received([Self.saslFeatures])
        _ = machine.received([Self.success])
        let features = Self.element(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></stream:features>"
        )
        #expect(Self.payloadText(machine.received([features]))?.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'></bind>") == true)
        let bound = Self.element("<iq xmlns='jabber:client' type='result' id='tether-prebind-bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>a@d/r1</jid></bind></iq>")
        #expect(Self.payloadText(machine.received([bound]))?.contains("xmpp-session") == true)
        #expect(machine.received([Self.element("<iq xmlns='jabber:client' type='result' id='tether-prebind-session'/>")]) == .finished(jid: "a@d/r1"))
    }

    @Test("failures: wrong password, no PLAIN, bind refused, stream error")
    func failures() {
        var wrong = PrebindLoginStateMachine(username: "a", password: "bad", resource: nil)
        _ = wrong.received([Self.saslFeatures])
        let failure = Self.element("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>Unable to authorize you</text></failure>")
        #expect(wrong.received([failure]) == .failed(.authenticationFailed("not-authorized")))

        var noPlain = PrebindLoginStateMachine(username: "a", password: "p", resource: nil)
        let scramOnly = Self.element(
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>"
        )
        #expect(noPlain.received([scramOnly]) == .failed(.plainNotOffered))

        var refused = PrebindLoginStateMachine(username: "a", password: "p", resource: "r")
        _ = refused.received([Self.saslFeatures])
        _ = refused.received([Self.success])
        _ = refused.received([Self.bindFeatures])
        let error = Self.element(
            "<iq xmlns='jabber:client' type='error' id='tether-prebind-bind'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
        #expect(refused.received([error]) == .failed(.bindFailed("conflict")))

        var broken = PrebindLoginStateMachine(username: "a", password: "p", resource: nil)
        let streamError = Self.element("<stream:error xmlns:stream='http://etherx.jabber.org/streams'><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
        #expect(broken.received([streamError]) == .failed(.streamError("host-unknown")))
    }

    @Test("unrelated stanzas before the bind result are skipped")
    func unrelatedStanzas() {
        var machine = PrebindLoginStateMachine(username: "a", password: "p", resource: nil)
        _ = machine.received([Self.saslFeatures])
        _ = machine.received([Self.success])
        _ = machine.received([Self.bindFeatures])
        let message = Self.element("<message xmlns='jabber:client' from='b@d'><body>hi</body></message>")
        #expect(machine.received([message]) == .poll)
    }
}
