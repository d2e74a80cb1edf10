import NIOCore
import Testing
import XMPPCore

@testable import WebSocketCore

@Suite("RFC 7395 messages")
struct WebSocketMessageTests {
    let parser = WebSocketMessageParser(limits: .init(maxElementBytes: 1000, maxDepth: 8))

    @Test("open and close are recognised; stanzas pass byte for byte")
    func recognised() throws {
        guard case .open(let to, _, let version, let language) = try parser.parse(ByteBuffer(string: "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.org' version='1.0' xml:lang='de'/>")) else {
            Issue.record("not an open")
            return
        }
        #expect(to == "example.org")
        #expect(version == "1.0")
        #expect(language == "de")
        guard case .close = try parser.parse(ByteBuffer(string: "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")) else {
            Issue.record("not a close")
            return
        }
        let stanza = "<message xmlns='jabber:client' to='a@b'><body>🦊</body></message>"
        guard case .element(let bytes) = try parser.parse(ByteBuffer(string: stanza)) else {
            Issue.record("not an element")
            return
        }
        #expect(String(buffer: bytes) == stanza)
    }

    @Test("RFC 7395 §3.3.3 violations", arguments: [
        ("", StreamErrorCondition.notWellFormed),
        (" <presence/>", .notWellFormed),
        ("<presence/><presence/>", .notWellFormed),
        ("<message><body>", .notWellFormed),
        ("<!-- x --><presence/>", .notWellFormed),
        ("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'>", .notWellFormed),
        ("<frame xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>", .unsupportedStanzaType),
        ("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>", .unsupportedStanzaType),
        ("<m>" + String(repeating: "x", count: 2000) + "</m>", .policyViolation),
        (String(repeating: "<a>", count: 10) + String(repeating: "</a>", count: 10), .policyViolation),
    ])
    func violations(message: String, condition: StreamErrorCondition) {
        #expect(throws: condition) { try parser.parse(ByteBuffer(string: message)) }
    }
}

@Suite("WebSocket session state machine")
struct WebSocketSessionStateMachineTests {
    static func describe(_ actions: [WebSocketSessionStateMachine.Action]) -> [String] {
        actions.map { action in
            switch action {
            case .connectUpstream(let header): return "connect \(header.to)"
            case .restartUpstream: return "restart"
            case .forwardUpstream(let bytes): return "forward \(String(buffer: bytes))"
            case .send(let bytes): return "send \(String(buffer: bytes))"
            case .closeUpstream(let graceful): return graceful ? "close-upstream graceful" : "close-upstream abrupt"
            case .closeWebSocket(let code): return "close-ws \(code)"
            case .startCloseTimer: return "close-timer"
            case .dropConnection: return "drop"
            case .stanzasBounced(let count, let reason): return "bounced \(count) \(reason)"
            }
        }
    }

    static let close = "send <close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"

    static func opened() -> WebSocketSessionStateMachine {
        var machine = WebSocketSessionStateMachine(serves: { $0 == "example.org" })
        _ = machine.received(.open(to: "example.org", from: nil, version: "1.0", language: "en"))
        _ = machine.upstreamOpened(StreamInfo(id: "s1", from: "example.org", version: "1.0", language: "en"))
        return machine
    }

    @Test("§3.4 open: upstream connects, the server's header becomes <open/>; §3.7 a second open restarts")
    func opening() {
        var machine = WebSocketSessionStateMachine(serves: { $0 == "example.org" })
        #expect(Self.describe(machine.received(.open(to: "Example.org", from: nil, version: "1.0", language: nil))) == ["connect example.org"])
        #expect(Self.describe(machine.upstreamOpened(StreamInfo(id: "s1", from: "example.org", version: "1.0"))) == ["send <open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='example.org' id='s1' version='1.0'/>"])
        #expect(Self.describe(machine.upstreamReceived([ByteBuffer(string: "<a/>"), ByteBuffer(string: "<b/>")])) == ["send <a/>", "send <b/>"])
        #expect(Self.describe(machine.received(.element(ByteBuffer(string: "<presence/>")))) == ["forward <presence/>"])
        #expect(Self.describe(machine.received(.open(to: "example.org", from: nil, version: "1.0", language: nil))) == ["restart"])
    }

    @Test("§3.5 an error while opening follows an <open/>; unknown hosts and missing to")
    func openingErrors() {
        var machine = WebSocketSessionStateMachine(serves: { _ in false })
        #expect(
            Self.describe(machine.received(.open(to: "other.org", from: nil, version: nil, language: nil))) == [
                "send <open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='other.org' version='1.0'/>",
                "send <stream:error xmlns:stream='http://etherx.jabber.org/streams'><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
                Self.close, "close-timer",
            ]
        )
        var noTo = WebSocketSessionStateMachine(serves: { _ in true })
        #expect(Self.describe(noTo.received(.open(to: nil, from: nil, version: nil, language: nil))).contains("send <stream:error xmlns:stream='http://etherx.jabber.org/streams'><improper-addressing xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"))
        var stanzaFirst = WebSocketSessionStateMachine(serves: { _ in true })
        #expect(Self.describe(stanzaFirst.received(.element(ByteBuffer(string: "<presence/>")))).contains("send <stream:error xmlns:stream='http://etherx.jabber.org/streams'><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"))
    }

    @Test("§3.6 client-initiated close: <close/> answered, upstream closed gracefully, the client closes the WebSocket")
    func clientClose() {
        var machine = Self.opened()
        #expect(Self.describe(machine.received(.close)) == ["close-upstream graceful", Self.close, "close-timer"])
        #expect(Self.describe(machine.webSocketCloseReceived()) == ["close-ws 1000"])
        #expect(machine.isClosed)
    }

    @Test("§3.6 server-initiated close: <close/> to the client, its <close/> answered by closing the WebSocket")
    func serverClose() {
        var machine = Self.opened()
        #expect(Self.describe(machine.upstreamEnded(.closed)) == [Self.close, "close-timer"])
        #expect(Self.describe(machine.received(.close)) == ["close-ws 1000"])
        #expect(Self.describe(machine.closeTimeoutFired()) == ["drop"])
    }

    @Test("§3.6 a WebSocket that drops: with XEP-0198 on, upstream dropped without </stream:stream> (resumption); without it, unwritten stanzas bounced, then </stream:stream>")
    func abruptDrop() {
        let unwritten = [
            "<message xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a' id='w1'><body>1</body></message>",
            "<presence xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a'/>",
            "<message xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a' id='w2'><body>2</body></message>",
        ].map { ByteBuffer(string: $0) }
        var resumable = Self.opened()
        _ = resumable.upstreamReceived([ByteBuffer(string: "<enabled xmlns='urn:xmpp:sm:3' id='sm' resume='true'/>")])
        #expect(Self.describe(resumable.connectionLost(unwritten: unwritten)) == ["close-upstream abrupt"])
        var plain = Self.opened()
        let actions = Self.describe(plain.connectionLost(unwritten: unwritten, reason: "slow-reader"))
        #expect(actions.count == 4, "\(actions)")
        #expect(actions[0].contains("id='w1'") && actions[0].contains("<service-unavailable"))
        #expect(actions[1] == "bounced 2 slow-reader")
        #expect(actions[2].contains("id='w2'"))
        #expect(actions[3] == "close-upstream graceful")
        var quiet = Self.opened()
        #expect(Self.describe(quiet.connectionLost()) == ["close-upstream graceful"])
        // A restart (after SASL) starts stream management over.
        var restarted = Self.opened()
        _ = restarted.upstreamReceived([ByteBuffer(string: "<enabled xmlns='urn:xmpp:sm:3'/>")])
        _ = restarted.received(.open(to: "example.org", from: nil, version: "1.0", language: nil))
        #expect(Self.describe(restarted.connectionLost()) == ["close-upstream graceful"])
        var framed = Self.opened()
        // A close frame without <close/> (a tab closing): the same rules, then the close answered.
        let closing = Self.describe(framed.webSocketCloseReceived(unwritten: unwritten))
        #expect(closing.count == 5 && closing[1] == "bounced 2 closed-without-close" && closing.suffix(2) == ["close-upstream graceful", "close-ws 1000"], "\(closing)")
        var framedResumable = Self.opened()
        _ = framedResumable.upstreamReceived([ByteBuffer(string: "<enabled xmlns='urn:xmpp:sm:3'/>")])
        #expect(Self.describe(framedResumable.webSocketCloseReceived(unwritten: unwritten)) == ["close-upstream abrupt", "close-ws 1000"])
    }

    @Test("§3.5 upstream stream errors and lost connections")
    func upstreamFailures() {
        var machine = Self.opened()
        let error = ByteBuffer(string: "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
        #expect(Self.describe(machine.upstreamStreamError(error)) == ["send \(String(buffer: error))", Self.close, "close-timer"])
        var lost = Self.opened()
        #expect(
            Self.describe(lost.upstreamEnded(.failed(unreachable: false))) == [
                "send <stream:error xmlns:stream='http://etherx.jabber.org/streams'><remote-connection-failed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
                Self.close, "close-timer",
            ]
        )
    }

    @Test("violations and binary frames")
    func violations() {
        var machine = Self.opened()
        #expect(
            Self.describe(machine.violation(.policyViolation)) == [
                "close-upstream graceful",
                "send <stream:error xmlns:stream='http://etherx.jabber.org/streams'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
                Self.close, "close-timer",
            ]
        )
        var binary = Self.opened()
        #expect(Self.describe(binary.binaryReceived()) == ["close-upstream graceful", "close-ws 1003"])
        var broken = Self.opened()
        #expect(Self.describe(broken.frameRulesBroken()) == ["close-upstream graceful", "close-ws 1002"])
        #expect(Self.describe(broken.frameRulesBroken()).isEmpty)
        var early = WebSocketSessionStateMachine(serves: { _ in true })
        #expect(Self.describe(early.frameRulesBroken()) == ["close-ws 1002"])
    }

    @Test("§3.6.1 shutdown: see-other-uri when redirecting, else system-shutdown; upstream dropped with XEP-0198 so sessions can resume, closed without it (regression: dropped)")
    func shutdown() {
        var redirected = Self.opened()
        _ = redirected.upstreamReceived([ByteBuffer(string: "<enabled xmlns='urn:xmpp:sm:3' id='sm' resume='true'/>")])
        #expect(Self.describe(redirected.shutdown(redirect: "wss://b.example/xmpp-websocket")) == ["close-upstream abrupt", "send <close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='wss://b.example/xmpp-websocket'/>", "close-timer"])
        var redirectedWithoutStreamManagement = Self.opened()
        #expect(Self.describe(redirectedWithoutStreamManagement.shutdown(redirect: "wss://b.example/xmpp-websocket")).first == "close-upstream graceful")
        var plain = Self.opened()
        #expect(
            Self.describe(plain.shutdown(redirect: nil)) == [
                "close-upstream graceful",
                "send <stream:error xmlns:stream='http://etherx.jabber.org/streams'><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
                Self.close, "close-timer",
            ]
        )
    }

    @Test("a shutdown before the client's <open/> sends an <open/> before its stream error (§3.5)")
    func shutdownBeforeOpen() {
        var early = WebSocketSessionStateMachine(serves: { _ in true })
        let sent = Self.describe(early.shutdown(redirect: nil))
        #expect(sent.first == "close-upstream graceful")
        #expect(sent.dropFirst().first?.hasPrefix("send <open ") == true)
        #expect(sent.contains { $0.contains("<system-shutdown") })
        #expect(sent.suffix(2) == [Self.close, "close-timer"])
    }

    @Test("no <open/> in time: connection-timeout, then the closing handshake; after <open/> the timer does nothing")
    func openTimeout() {
        var silent = WebSocketSessionStateMachine(serves: { _ in true })
        let sent = Self.describe(silent.openTimeoutFired())
        #expect(sent.first?.hasPrefix("send <open ") == true)
        #expect(sent.contains { $0.contains("<connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>") })
        #expect(sent.suffix(2) == [Self.close, "close-timer"])
        #expect(silent.openTimeoutFired().isEmpty)
        var opening = WebSocketSessionStateMachine(serves: { _ in true })
        _ = opening.received(.open(to: "example.org", from: nil, version: "1.0", language: nil))
        #expect(opening.openTimeoutFired().isEmpty)
        var opened = Self.opened()
        #expect(opened.openTimeoutFired().isEmpty)
    }

    @Test("only framing elements are read before the stream is open and while closing; nothing once closed")
    func largestUsefulMessage() {
        let limit = 1 << 20
        let framing = WebSocketSessionStateMachine.framingMessageBytes
        var machine = WebSocketSessionStateMachine(serves: { $0 == "example.org" })
        #expect(machine.largestUsefulMessage(within: limit) == framing)
        #expect(machine.largestUsefulMessage(within: 100) == 100)
        _ = machine.received(.open(to: "example.org", from: nil, version: "1.0", language: nil))
        #expect(machine.largestUsefulMessage(within: limit) == framing)
        _ = machine.upstreamOpened(StreamInfo(id: "s1", from: "example.org", version: "1.0", language: nil))
        #expect(machine.largestUsefulMessage(within: limit) == limit)
        _ = machine.violation(.policyViolation)
        #expect(machine.isClosing)
        #expect(machine.largestUsefulMessage(within: limit) == framing)
        _ = machine.received(.close)
        #expect(machine.isClosed)
        #expect(machine.largestUsefulMessage(within: limit) == 0)
    }
}

