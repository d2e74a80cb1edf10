import NIOCore
import Testing
import XMPPCore

@testable import XMPPClientCore

/// The login as prebind plays it (`POST /prebind`): SCRAM-SHA-1 where offered, else PLAIN; the
/// resource optional; the RFC 3921 session where a server requires it; no initial presence,
/// which the attaching browser sends. Fed with the elements a server sends (RFC 6120 §6, §7).
@Suite("Login as prebind plays it")
struct PrebindLoginTests {
    static func machine(password: String = "secret", resource: String? = nil) -> XMPPLoginStateMachine {
        var machine = XMPPLoginStateMachine(
            username: "alice", password: password, domain: "localhost", resource: resource, mechanisms: [.scramSHA1, .plain], sendsInitialPresence: false)
        _ = machine.connected()
        return machine
    }

    static let plainOnly =
        "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
    static let success = "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
    static let requiredSession =
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></stream:features>"

    /// A machine through PLAIN authentication, at the bound stream's features.
    static func authenticated(resource: String? = nil) throws -> XMPPLoginStateMachine {
        var machine = Self.machine(resource: resource)
        _ = machine.received(try serverElement(Self.plainOnly))
        _ = machine.received(try serverElement(Self.success))
        return machine
    }

    @Test("PLAIN when SCRAM is not offered, restart, bind with the requested resource escaped, established without presence")
    func fullLogin() throws {
        var machine = Self.machine(resource: "web & co")
        // base64("\0alice\0secret")
        #expect(machine.received(try serverElement(Self.plainOnly)) == .send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>"))
        #expect(machine.received(try serverElement(Self.success)) == .restartStream)
        #expect(
            machine.received(try serverElement(XMPPLoginStateMachineTests.bindFeatures))
                == .send("<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web &amp; co</resource></bind></iq>"))
        let bound = "<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/web &amp; co</jid></bind></iq>"
        #expect(machine.received(try serverElement(bound)) == .established(jid: "alice@localhost/web & co", presence: nil))
        #expect(machine.jid == "alice@localhost/web & co")
    }

    @Test("SCRAM-SHA-1 is preferred when the server offers both")
    func prefersSCRAM() throws {
        var machine = Self.machine()
        guard case .send(let auth) = machine.received(try serverElement(XMPPLoginStateMachineTests.plainFeatures)) else {
            Issue.record("no auth")
            return
        }
        #expect(auth.contains("mechanism='SCRAM-SHA-1'"))
        #expect(machine.phase == .authenticating)
    }

    @Test("no resource asked: the bind request is empty and the server's choice is taken")
    func serverChosenResource() throws {
        var machine = try Self.authenticated()
        #expect(
            machine.received(try serverElement(XMPPLoginStateMachineTests.bindFeatures))
                == .send("<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'></bind></iq>"))
        let bound = "<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/4f2a</jid></bind></iq>"
        #expect(machine.received(try serverElement(bound)) == .established(jid: "alice@localhost/4f2a", presence: nil))
    }

    @Test("a server that still requires RFC 3921 sessions gets one before the login finishes; an optional one is skipped")
    func requiredSession() throws {
        var machine = try Self.authenticated()
        _ = machine.received(try serverElement(Self.requiredSession))
        let bound = "<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/r1</jid></bind></iq>"
        #expect(
            machine.received(try serverElement(bound)) == .send("<iq type='set' id='session1' xmlns='jabber:client'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"))
        #expect(machine.phase == .startingSession)
        #expect(machine.received(try serverElement("<iq type='result' id='session1'/>")) == .established(jid: "alice@localhost/r1", presence: nil))

        var refused = try Self.authenticated()
        _ = refused.received(try serverElement(Self.requiredSession))
        _ = refused.received(try serverElement(bound))
        let error = "<iq type='error' id='session1'><error type='wait'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        #expect(refused.received(try serverElement(error)) == .fail(ClientFailure(.bindError, "session-internal-server-error")))

        // The bind features with <optional/> (Prosody, ejabberd) go straight to established.
        var optional = try Self.authenticated()
        _ = optional.received(try serverElement(XMPPLoginStateMachineTests.bindFeatures))
        #expect(optional.received(try serverElement(bound)) == .established(jid: "alice@localhost/r1", presence: nil))
    }

    @Test("failures: wrong password, no common mechanism, bind refused, stream error")
    func failures() throws {
        var wrong = Self.machine(password: "bad")
        _ = wrong.received(try serverElement(Self.plainOnly))
        let failure = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>Unable to authorize you</text></failure>"
        #expect(wrong.received(try serverElement(failure)) == .fail(ClientFailure(.saslFailure, "not-authorized")))

        var none = Self.machine()
        let external = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms></stream:features>"
        #expect(none.received(try serverElement(external)) == .fail(ClientFailure(.protocolViolation, "no-sasl-mechanism")))

        var refused = try Self.authenticated(resource: "r")
        _ = refused.received(try serverElement(XMPPLoginStateMachineTests.bindFeatures))
        let error = "<iq type='error' id='bind1'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        #expect(refused.received(try serverElement(error)) == .fail(ClientFailure(.bindError, "conflict")))

        var broken = Self.machine()
        let streamError = "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
        #expect(broken.received(try serverElement(streamError)) == .fail(ClientFailure(.streamError, "host-unknown")))
    }

    @Test("unrelated stanzas before the bind result are skipped")
    func unrelatedStanzas() throws {
        var machine = try Self.authenticated()
        _ = machine.received(try serverElement(XMPPLoginStateMachineTests.bindFeatures))
        #expect(machine.received(try serverElement("<message from='b@d'><body>hi</body></message>")) == .none)
        #expect(machine.received(try serverElement("<iq type='result' id='other'/>")) == .none)
        #expect(machine.phase == .binding)
    }
}
