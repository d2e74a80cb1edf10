import NIOCore
import Testing
import XMPPCore

@testable import XMPPUpstream
@testable import XMPPUpstreamCore

@Suite("Upstream stream negotiation")
struct UpstreamStreamStateMachineTests {
    static let header = StreamHeader(to: "example.org", language: "en")
    static let streamOpen = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='example.org' version='1.0'>"
    static let featuresWithTLS =
        "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
    static let featuresPlain = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"

    /// Feeds server bytes through a real framer into the machine and names the resulting actions.
    static func feed(_ text: String, _ machine: inout UpstreamStreamStateMachine, framer: XMLStreamFramer) throws -> [String] {
        var names: [String] = []
        for event in try framer.feed(ByteBuffer(string: text)) {
            names += machine.receive(event).compactMap(Self.name)
        }
        return names
    }

    /// A readable name for an action; timers are left out (nil) here and asserted by the timer tests.
    static func name(_ action: UpstreamStreamStateMachine.Action) -> String? {
        switch action {
        case .scheduleTimer, .cancelTimer: return nil
        case .sendPrelude(let bytes): return "prelude \(bytes.readableBytes) bytes"
        case .closeConnection: return "close-connection"
        case .send(let text): return text.hasPrefix("<?xml") ? "send header" : "send \(text)"
        case .resetFramer: return "reset"
        case .startTLS: return "start-tls"
        case .opened(let info): return "opened \(info.id ?? "-")"
        case .deliver(let element): return "deliver \(String(buffer: element.standaloneBytes { $0.name.namespace == XMLNamespaces.tls }))"
        case .streamError(let bytes): return "stream-error \(String(buffer: bytes))"
        case .fail(let error): return "fail \(error)"
        case .closed: return "closed"
        case .bounce(let error): return "bounce \(String(buffer: error))"
        case .finishClosing: return "finish"
        }
    }

    @Test("the header names the domain, language and version; it is escaped")
    func header() {
        #expect(
            StreamHeader(to: "a'b", language: "en").serialized
                == "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='a&apos;b' xml:lang='en' version='1.0'>"
        )
    }

    @Test("STARTTLS is negotiated when offered, then the stream restarts and features are relayed without it")
    func startTLS() throws {
        var machine = UpstreamStreamStateMachine(header: Self.header, tlsPolicy: .required)
        let framer = XMLStreamFramer()
        #expect(machine.connected().compactMap(Self.name) == ["send header"])
        #expect(try Self.feed(Self.streamOpen + Self.featuresWithTLS, &machine, framer: framer) == ["send <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"])
        #expect(try Self.feed("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", &machine, framer: framer) == ["start-tls"])
        #expect(machine.tlsHandshakeCompleted().compactMap(Self.name) == ["reset", "send header"])
        framer.reset()
        let relayed = try Self.feed(Self.streamOpen + Self.featuresPlain, &machine, framer: framer)
        #expect(
            relayed == [
                "opened s1",
                "deliver <stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
            ])
        #expect(machine.tlsEstablished)
    }

    @Test("policy required without STARTTLS on offer fails; optional and off relay the features without starttls")
    func policies() throws {
        var required = UpstreamStreamStateMachine(header: Self.header, tlsPolicy: .required)
        _ = required.connected()
        #expect(
            try Self.feed(Self.streamOpen + Self.featuresPlain, &required, framer: XMLStreamFramer()) == ["fail the server does not offer STARTTLS and the TLS policy requires it"])

        var optional = UpstreamStreamStateMachine(header: Self.header, tlsPolicy: .optional)
        _ = optional.connected()
        #expect(try Self.feed(Self.streamOpen + Self.featuresPlain, &optional, framer: XMLStreamFramer()).first == "opened s1")

        var off = UpstreamStreamStateMachine(header: Self.header, tlsPolicy: .off)
        _ = off.connected()
        let relayed = try Self.feed(Self.streamOpen + Self.featuresWithTLS, &off, framer: XMLStreamFramer())
        #expect(relayed.count == 2)
        #expect(relayed.last?.contains("starttls") == false)
    }

    @Test("a refused STARTTLS fails; a stream error is relayed; </stream:stream> closes")
    func endings() throws {
        var machine = UpstreamStreamStateMachine(header: Self.header, tlsPolicy: .required)
        let framer = XMLStreamFramer()
        _ = machine.connected()
        _ = try Self.feed(Self.streamOpen + Self.featuresWithTLS, &machine, framer: framer)
        #expect(try Self.feed("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", &machine, framer: framer) == ["fail the server refused STARTTLS"])

        var open = UpstreamStreamStateMachine(header: Self.header, tlsPolicy: .off)
        let framer2 = XMLStreamFramer()
        _ = open.connected()
        _ = try Self.feed(Self.streamOpen + Self.featuresPlain, &open, framer: framer2)
        #expect(
            try Self.feed("<message from='a@example.org'><body>x</body></message>", &open, framer: framer2) == [
                "deliver <message xmlns='jabber:client' from='a@example.org'><body>x</body></message>"
            ])
        #expect(
            try Self.feed("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>", &open, framer: framer2)
                == ["stream-error <stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"]
        )

        var closing = UpstreamStreamStateMachine(header: Self.header, tlsPolicy: .off)
        let framer3 = XMLStreamFramer()
        _ = closing.connected()
        _ = try Self.feed(Self.streamOpen + Self.featuresPlain, &closing, framer: framer3)
        #expect(try Self.feed("</stream:stream>", &closing, framer: framer3) == ["closed"])
    }

    @Test("a restart after SASL sends a new header on the same connection and relays the new features")
    func restart() throws {
        var machine = UpstreamStreamStateMachine(header: Self.header, tlsPolicy: .off)
        let framer = XMLStreamFramer()
        _ = machine.connected()
        _ = try Self.feed(Self.streamOpen + Self.featuresPlain + "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", &machine, framer: framer)
        #expect(machine.restart().compactMap(Self.name) == ["reset", "send header"])
        framer.reset()
        let relayed = try Self.feed(
            Self.streamOpen.split(separator: "s1").joined(separator: "s2") + "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>", &machine,
            framer: framer)
        #expect(
            relayed == ["opened s2", "deliver <stream:features xmlns:stream='http://etherx.jabber.org/streams'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"])
    }

    @Test("a server that does not open an XMPP stream is a protocol violation")
    func wrongRoot() throws {
        var machine = UpstreamStreamStateMachine(header: Self.header, tlsPolicy: .off)
        _ = machine.connected()
        #expect(try Self.feed("<html>", &machine, framer: XMLStreamFramer()) == ["fail XMPP protocol violation: expected <stream:stream>, got <html>"])
    }
}

@Suite("Upstream stream over Direct TLS")
struct UpstreamDirectTLSStreamTests {
    typealias Base = UpstreamStreamStateMachineTests

    @Test("Direct TLS: nothing is sent before the handshake, then the header; STARTTLS is never negotiated and is stripped")
    func directTLS() throws {
        var machine = UpstreamStreamStateMachine(header: Base.header, tlsPolicy: .required)
        let framer = XMLStreamFramer()
        #expect(machine.connectedOverTLS().compactMap(Base.name).isEmpty)
        #expect(!machine.tlsEstablished)
        #expect(machine.tlsHandshakeCompleted().map(Base.name) == ["reset", "send header"])
        // A server that still offers STARTTLS over TLS: the stream opens as it is.
        let relayed = try Base.feed(Base.streamOpen + Base.featuresWithTLS, &machine, framer: framer)
        #expect(
            relayed == [
                "opened s1",
                "deliver <stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>",
            ])
        #expect(machine.tlsEstablished)
        // A restart keeps the stream secure.
        #expect(machine.restart().map(Base.name) == ["reset", "send header"])
        #expect(machine.tlsEstablished)
    }

    @Test("Direct TLS: a server that talks before the handshake ended is a protocol violation")
    func bytesBeforeHandshake() throws {
        var machine = UpstreamStreamStateMachine(header: Base.header, tlsPolicy: .off)
        _ = machine.connectedOverTLS()
        #expect(machine.connectedOverTLS().compactMap(Base.name).isEmpty)
        let framer = XMLStreamFramer()
        let actions = try Base.feed(Base.streamOpen, &machine, framer: framer)
        #expect(actions.count == 1 && actions[0].hasPrefix("fail"))
    }
}
