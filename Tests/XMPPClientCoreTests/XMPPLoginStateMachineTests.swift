import NIOCore
import Testing
import XMPPCore

@testable import XMPPClientCore

/// Top-level elements of a server stream, as the framer hands them out.
func serverElements(_ xml: String) throws -> [XMLElementSlice] {
    let framer = XMLStreamFramer()
    let stream = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>" + xml
    return try framer.feed(ByteBuffer(string: stream)).compactMap { event in
        if case .element(let element) = event { return element }
        return nil
    }
}

func serverElement(_ xml: String) throws -> XMLElementSlice {
    guard let element = try serverElements(xml).first else { throw XMLFramerError.notWellFormed("no element") }
    return element
}

@Suite("Login sequence")
struct XMPPLoginStateMachineTests {
    static let plainFeatures =
        "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
    static let bindFeatures =
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session></stream:features>"

    static func machine() -> XMPPLoginStateMachine {
        XMPPLoginStateMachine(username: "user1", password: "pass1", domain: "localhost", resource: "load")
    }

    @Test("SASL PLAIN, restart, bind, presence, logout")
    func happyPath() throws {
        var machine = Self.machine()
        #expect(machine.connected() == .openStream)
        #expect(machine.phase == .awaitingFeatures)
        // base64("\0user1\0pass1") = AHVzZXIxAHBhc3Mx
        #expect(
            machine.received(try serverElement(Self.plainFeatures))
                == .send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHVzZXIxAHBhc3Mx</auth>")
        )
        #expect(machine.phase == .authenticating)
        #expect(machine.received(try serverElement("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")) == .restartStream)
        #expect(machine.phase == .awaitingBoundFeatures)
        let bind = machine.received(try serverElement(Self.bindFeatures))
        #expect(
            bind == .send("<iq type='set' id='bind1' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>load</resource></bind></iq>")
        )
        let result = "<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>user1@localhost/load</jid></bind></iq>"
        #expect(machine.received(try serverElement(result)) == .established(jid: "user1@localhost/load", presence: "<presence xmlns='jabber:client'/>"))
        #expect(machine.isEstablished)
        #expect(machine.jid == "user1@localhost/load")
        #expect(machine.logout() == .send("<presence type='unavailable' xmlns='jabber:client'/>"))
        #expect(machine.phase == .closing)
        #expect(machine.streamClosed() == .closed)
        #expect(machine.phase == .closed)
    }

    @Test("a server ping is answered while established")
    func answersPing() throws {
        var machine = try Self.establishedMachine()
        let ping = "<iq type='get' id='p1' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        #expect(machine.received(try serverElement(ping)) == .send("<iq type='result' id='p1' to='localhost' xmlns='jabber:client'/>"))
    }

    static func establishedMachine() throws -> XMPPLoginStateMachine {
        var machine = Self.machine()
        _ = machine.connected()
        _ = machine.received(try serverElement(Self.plainFeatures))
        _ = machine.received(try serverElement("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"))
        _ = machine.received(try serverElement(Self.bindFeatures))
        _ = machine.received(try serverElement("<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>u@d/r</jid></bind></iq>"))
        return machine
    }

    @Test("resumption: the same login up to the bound features, then <resume/> instead of bind; <resumed/> or <failed/>")
    func resumption() throws {
        var machine = try Self.establishedMachine()
        machine.beginResumption("<resume xmlns='urn:xmpp:sm:3' h='3' previd='x1'/>")
        #expect(machine.phase == .connecting)
        #expect(machine.connected() == .openStream)
        _ = machine.received(try serverElement(Self.plainFeatures))
        #expect(machine.received(try serverElement("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")) == .restartStream)
        #expect(machine.received(try serverElement(Self.bindFeatures)) == .send("<resume xmlns='urn:xmpp:sm:3' h='3' previd='x1'/>"))
        #expect(machine.phase == .resuming)
        #expect(machine.received(try serverElement("<resumed xmlns='urn:xmpp:sm:3' h='5' previd='x1'/>")) == .resumed(h: 5))
        #expect(machine.isEstablished)
        #expect(machine.jid == "u@d/r")

        var refused = try Self.establishedMachine()
        refused.beginResumption("<resume xmlns='urn:xmpp:sm:3' h='0' previd='gone'/>")
        _ = refused.connected()
        _ = refused.received(try serverElement(Self.plainFeatures))
        _ = refused.received(try serverElement("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"))
        _ = refused.received(try serverElement(Self.bindFeatures))
        let failed = "<failed xmlns='urn:xmpp:sm:3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
        #expect(refused.received(try serverElement(failed)) == .fail(ClientFailure(.resumeFailed, "item-not-found")))
    }

    @Test("a SASL failure is reported with its condition")
    func saslFailure() throws {
        var machine = Self.machine()
        _ = machine.connected()
        _ = machine.received(try serverElement(Self.plainFeatures))
        let failure = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>bad</text></failure>"
        #expect(machine.received(try serverElement(failure)) == .fail(ClientFailure(.saslFailure, "not-authorized")))
        #expect(machine.phase == .failed)
        // Nothing more after failing.
        #expect(machine.streamClosed() == .none)
    }

    @Test("a stream error is reported with its condition in any phase")
    func streamError() throws {
        var machine = try Self.establishedMachine()
        let error = "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
        #expect(machine.received(try serverElement(error)) == .fail(ClientFailure(.streamError, "conflict")))
        #expect(ClientFailure(.streamError, "conflict").key == "stream-error:conflict")
    }

    @Test("no PLAIN mechanism, required STARTTLS and a bind error fail the login")
    func refusals() throws {
        var noPlain = Self.machine()
        _ = noPlain.connected()
        let scramOnly = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>"
        #expect(noPlain.received(try serverElement(scramOnly)) == .fail(ClientFailure(.protocolViolation, "no-sasl-plain")))

        var tls = Self.machine()
        _ = tls.connected()
        let tlsRequired = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
        #expect(tls.received(try serverElement(tlsRequired)) == .fail(ClientFailure(.protocolViolation, "starttls-required")))

        var bind = Self.machine()
        _ = bind.connected()
        _ = bind.received(try serverElement(Self.plainFeatures))
        _ = bind.received(try serverElement("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"))
        _ = bind.received(try serverElement(Self.bindFeatures))
        let refused = "<iq type='error' id='bind1'><error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        #expect(bind.received(try serverElement(refused)) == .fail(ClientFailure(.bindError, "not-allowed")))
    }

    @Test("the connection closing before login is a failure; during logout it is the end")
    func closes() throws {
        var early = Self.machine()
        _ = early.connected()
        #expect(early.streamClosed() == .fail(ClientFailure(.closed, "while-awaitingFeatures")))

        var leaving = try Self.establishedMachine()
        _ = leaving.logout()
        #expect(leaving.transportFailed(ClientFailure(.closed, "reset")) == .closed)
    }

    @Test("base64 round trip (RFC 4648 vectors)")
    func base64() {
        let vectors = ["": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
            #expect(Base64.decode(encoded) == Array(plain.utf8))
        }
    }
}
