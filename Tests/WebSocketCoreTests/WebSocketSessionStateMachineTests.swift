import NIOCore
import Testing
import XMPPCore

@testable import WebSocketCore

/// `WebSocketSessionStateMachine` driven event by event: frames in (as NIOWebSocket hands them
/// over), actions out, timers fired by hand. No sockets, no server.
@Suite("WebSocket session state machine")
struct WebSocketSessionStateMachineTests {
    typealias Machine = WebSocketSessionStateMachine

    static func describe(_ actions: [Machine.Action]) -> [String] {
        actions.map { action in
            switch action {
            case .connectUpstream(let header): return "connect \(header.to)"
            case .restartUpstream: return "restart"
            case .forwardUpstream(let bytes): return "forward \(String(buffer: bytes))"
            case .closeUpstream(let graceful): return graceful ? "close-upstream graceful" : "close-upstream abrupt"
            case .sendText(let bytes): return "send \(String(buffer: bytes))"
            case .sendPing(let payload): return "ping \(payload.readableBytesView.map { String($0) }.joined(separator: "."))"
            case .sendPong(let payload): return "pong \(String(buffer: payload))"
            case .sendClose(let code, let thenClose): return thenClose ? "close-ws \(code) then-close" : "close-ws \(code)"
            case .closeConnection: return "drop"
            case .scheduleTimer(let timer, _): return "schedule \(timer.kind)"
            case .cancelTimer(let timer): return "cancel \(timer)"
            case .stanzasBounced(let count, let reason): return "bounced \(count) \(reason)"
            case .limitReached(let limit): return "limit \(limit)"
            }
        }
    }

    static let close = "send <close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
    static func streamError(_ condition: String) -> String {
        "send <stream:error xmlns:stream='http://etherx.jabber.org/streams'><\(condition) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
    }

    static let configuration = Machine.Configuration(maxMessageBytes: 1000, maxFragments: 4, compressionNegotiated: true)

    static func fresh(serves: @escaping (String) -> Bool = { $0 == "example.org" }) -> Machine {
        var machine = Machine(configuration: Self.configuration, serves: serves)
        _ = machine.start(.admitted)
        return machine
    }

    static func opened() -> Machine {
        var machine = Self.fresh()
        _ = machine.received(.open(to: "example.org", from: nil, version: "1.0", language: "en"))
        _ = machine.upstreamOpened(StreamInfo(id: "s1", from: "example.org", version: "1.0", language: "en"))
        return machine
    }

    /// A frame from the client, decoded by the real parser (and inflater, for `compressed`).
    static func frame(
        _ machine: inout Machine, _ opcode: WebSocketInboundFrame.Opcode, _ payload: ByteBuffer, fin: Bool = true, masked: Bool = true,
        rsv1: Bool = false, rsv2: Bool = false, undelivered: [ByteBuffer] = []
    ) -> [String] {
        let parser = WebSocketMessageParser(limits: .init(maxElementBytes: 1000, maxDepth: 8))
        let actions = machine.frameReceived(
            WebSocketInboundFrame(fin: fin, opcode: opcode, rsv1: rsv1, rsv2: rsv2, masked: masked, payload: payload),
            undelivered: { undelivered }
        ) { payload, compressed, limit in
            var payload = payload
            if compressed { payload = try PerMessageDeflateCodec().decompress(payload, maxSize: limit) }
            return try parser.parse(payload)
        }
        return Self.describe(actions)
    }

    static func frame(
        _ machine: inout Machine, _ opcode: WebSocketInboundFrame.Opcode, _ text: String, fin: Bool = true, masked: Bool = true, rsv1: Bool = false, rsv2: Bool = false
    ) -> [String] {
        Self.frame(&machine, opcode, ByteBuffer(string: text), fin: fin, masked: masked, rsv1: rsv1, rsv2: rsv2)
    }

    static func closeBody(_ code: UInt16, reason: [UInt8] = []) -> ByteBuffer {
        var body = ByteBuffer()
        body.writeInteger(code)
        body.writeBytes(reason)
        return body
    }

    // MARK: Admission and opening

    @Test("an admitted connection waits for <open/> and pings; a refused one is told policy-violation; a draining server says system-shutdown")
    func admission() {
        var admitted = Machine(configuration: Self.configuration, serves: { _ in true })
        #expect(Self.describe(admitted.start(.admitted)) == ["schedule ping", "schedule open"])
        var refused = Machine(configuration: Self.configuration, serves: { _ in true })
        let told = Self.describe(refused.start(.refused(limit: "max-sessions-per-address")))
        #expect(told.first == "schedule ping")
        #expect(told.dropFirst().first?.hasPrefix("send <open ") == true, "§3.5: an <open/> before the error")
        #expect(told.suffix(3) == [Self.streamError("policy-violation"), Self.close, "schedule close"])
        #expect(refused.end?.label == "policy-violation")
        var draining = Machine(configuration: Self.configuration, serves: { _ in true })
        #expect(
            Self.describe(draining.start(.draining(redirect: "wss://b.example/ws"))) == [
                "schedule ping", "close-upstream graceful", "send <close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='wss://b.example/ws'/>", "schedule close",
            ])
        #expect(draining.end?.label == "see-other-uri")
    }

    @Test("§3.4 open: upstream connects, the server's header becomes <open/> (to = the client's from, RFC 6120 §4.7.2); §3.7 a second open restarts")
    func opening() {
        var machine = Self.fresh()
        #expect(
            Self.frame(&machine, .text, "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='Example.org' from='alice@example.org' version='1.0'/>") == [
                "cancel open", "connect example.org",
            ])
        #expect(Self.describe(machine.upstreamConnected()).isEmpty)
        #expect(
            Self.describe(machine.upstreamOpened(StreamInfo(id: "s1", from: "example.org", version: "1.0"))) == [
                "send <open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='example.org' to='alice@example.org' id='s1' version='1.0'/>"
            ])
        #expect(Self.describe(machine.upstreamReceived([ByteBuffer(string: "<a/>"), ByteBuffer(string: "<b/>")], streamManagement: false)) == ["send <a/>", "send <b/>"])
        #expect(Self.frame(&machine, .text, "<presence/>") == ["forward <presence/>"])
        #expect(Self.describe(machine.received(.open(to: "example.org", from: nil, version: "1.0", language: nil))) == ["restart"])
        // The open timer was cancelled with the client's <open/>: a late firing does nothing.
        #expect(machine.fire(.open).isEmpty)
    }

    @Test("§3.5 an error while opening follows an <open/>; unknown hosts, a missing to, a stanza first")
    func openingErrors() {
        var machine = Self.fresh(serves: { _ in false })
        #expect(
            Self.describe(machine.received(.open(to: "other.org", from: nil, version: nil, language: nil))) == [
                "send <open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='other.org' version='1.0'/>", Self.streamError("host-unknown"), Self.close, "schedule close",
            ])
        #expect(machine.end == .streamError(.hostUnknown))
        var noTo = Self.fresh(serves: { _ in true })
        #expect(Self.describe(noTo.received(.open(to: nil, from: nil, version: nil, language: nil))).contains(Self.streamError("improper-addressing")))
        var stanzaFirst = Self.fresh(serves: { _ in true })
        #expect(Self.frame(&stanzaFirst, .text, "<presence/>").contains(Self.streamError("not-well-formed")))
    }

    @Test("no <open/> in time: connection-timeout, then the closing handshake, and the connection dropped when it does not finish")
    func openTimeout() {
        var silent = Self.fresh(serves: { _ in true })
        let sent = Self.describe(silent.fire(.open))
        #expect(sent.first?.hasPrefix("send <open ") == true)
        #expect(sent.suffix(3) == [Self.streamError("connection-timeout"), Self.close, "schedule close"])
        #expect(silent.end?.label == "connection-timeout")
        #expect(silent.fire(.open).isEmpty, "a timer fires once")
        #expect(Self.describe(silent.fire(.close)) == ["drop"])
    }

    @Test("a timer that was never scheduled, or was cancelled, does nothing when it fires")
    func staleTimers() {
        var machine = Self.opened()
        #expect(machine.fire(.close).isEmpty)
        #expect(machine.fire(.slowReader).isEmpty)
        #expect(machine.fire(.open).isEmpty)
    }

    /// The generation a `scheduleTimer` action hands out for `kind`.
    static func scheduled(_ kind: Machine.Timer, in actions: [Machine.Action]) -> Machine.TimerID? {
        for case .scheduleTimer(let timer, _) in actions where timer.kind == kind { return timer }
        return nil
    }

    @Test("a firing from an older scheduling of a timer, or after it was cancelled, changes nothing (regression: timers were told apart by kind only)")
    func timerGenerations() throws {
        var machine = Self.opened()
        let first = try #require(Self.scheduled(.close, in: machine.upstreamEnded(.closed)))
        // The client's <close/> answers ours: Tether's close frame goes out under a new close timer.
        let second = try #require(Self.scheduled(.close, in: machine.received(.close)))
        #expect(first != second)
        #expect(machine.timerFired(first).isEmpty, "the replaced scheduling fired late")
        // The close frame is answered: the timer is cancelled, and its late firing does nothing.
        #expect(Self.frame(&machine, .close, Self.closeBody(1000)) == ["cancel close", "drop"])
        #expect(machine.timerFired(second).isEmpty)
    }

    static let closeFramePaths = ["unmasked", "binary", "invalid-close-body", "client-close-frame", "frame-too-large", "malformed-frame", "handshake"]

    @Test(
        "every close frame Tether sends goes out under the close timer, whose firing closes the connection, also for a client that stopped reading (regression: a failed connection whose close frame was never written stayed open)",
        arguments: Self.closeFramePaths)
    func everyCloseFrameIsBounded(path: String) {
        var machine = Self.opened()
        _ = machine.writabilityChanged(isWritable: false)
        let actions: [String]
        switch path {
        case "unmasked": actions = Self.frame(&machine, .text, "<presence/>", masked: false)
        case "binary": actions = Self.frame(&machine, .binary, "<presence/>")
        case "invalid-close-body": actions = Self.frame(&machine, .close, ByteBuffer(bytes: [0x03]))
        case "client-close-frame": actions = Self.frame(&machine, .close, Self.closeBody(1001))
        case "frame-too-large": actions = Self.describe(machine.decoderFailed(.frameTooLarge))
        case "malformed-frame": actions = Self.describe(machine.decoderFailed(.malformedFrame))
        default:
            _ = machine.upstreamEnded(.closed)
            actions = Self.describe(machine.received(.close))
        }
        let close = actions.firstIndex { $0.hasPrefix("close-ws ") }
        #expect(close != nil && actions.dropFirst((close ?? 0) + 1).contains("schedule close"), "\(path): \(actions)")
        #expect(Self.describe(machine.fire(.close)) == ["drop"], "\(path)")
    }

    @Test(
        "RFC 6455 §7.4.1: a frame over the decoder's limit fails the connection with 1009, another decoder error with 1002; nothing follows the close frame, and after Tether's close frame nothing more is sent"
    )
    func decoderFailures() {
        var large = Self.opened()
        #expect(Self.describe(large.decoderFailed(.frameTooLarge)) == ["close-upstream graceful", "close-ws 1009 then-close", "schedule close"])
        #expect(large.end?.label == "message-too-big")
        #expect(large.decoderFailed(.malformedFrame).isEmpty)
        var malformed = Self.fresh()
        #expect(Self.describe(malformed.decoderFailed(.malformedFrame)) == ["close-ws 1002 then-close", "schedule close"])
        #expect(malformed.end?.label == "protocol-error")
        // During a closing handshake Tether started.
        var closing = Self.opened()
        _ = closing.upstreamEnded(.closed)
        _ = closing.received(.close)
        #expect(closing.decoderFailed(.frameTooLarge).isEmpty)
        #expect(Self.describe(closing.fire(.close)) == ["drop"])
    }

    @Test("a stream error to a client that is not reading ends with the close timer even though the slow-reader cut no longer applies")
    func streamErrorToSlowReader() {
        var machine = Self.opened()
        _ = machine.writabilityChanged(isWritable: false)
        #expect(Self.describe(machine.violation(.policyViolation)).last == "schedule close")
        #expect(machine.fire(.slowReader).isEmpty, "already ending: the first reason stays")
        #expect(Self.describe(machine.fire(.close)) == ["drop"])
        #expect(machine.end?.label == "policy-violation")
    }

    @Test("a close frame in the middle of a fragmented message ends it; the rest of the message is not read")
    func closeBetweenFragments() {
        var machine = Self.opened()
        #expect(Self.frame(&machine, .text, "<presence", fin: false).isEmpty)
        #expect(Self.frame(&machine, .close, Self.closeBody(1000)) == ["close-upstream graceful", "close-ws 1000 then-close", "schedule close"])
        #expect(Self.frame(&machine, .continuation, "/>").isEmpty)
    }

    @Test("an upstream connection that completes after the client's connection was lost is closed")
    func upstreamConnectedAfterLoss() {
        var machine = Self.fresh()
        _ = machine.received(.open(to: "example.org", from: nil, version: "1.0", language: nil))
        #expect(Self.describe(machine.connectionLost()) == ["close-upstream graceful", "cancel ping"])
        #expect(Self.describe(machine.upstreamConnected()) == ["close-upstream graceful"])
    }

    // MARK: Closing

    @Test("§3.6 client-initiated close: <close/> answered, upstream closed gracefully; the client's close frame is echoed and TCP closed after it")
    func clientClose() {
        var machine = Self.opened()
        #expect(Self.frame(&machine, .text, "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>") == ["close-upstream graceful", Self.close, "schedule close"])
        #expect(Self.frame(&machine, .close, Self.closeBody(1000)) == ["close-ws 1000 then-close", "schedule close"])
        #expect(machine.isClosed)
        #expect(machine.end == nil, "a normal end")
    }

    @Test(
        "§3.6 server-initiated close: <close/> to the client, its <close/> answered with Tether's close frame, its close frame ends it (the server closes TCP first, RFC 6455 §7.1.1)"
    )
    func serverClose() {
        var machine = Self.opened()
        #expect(Self.describe(machine.upstreamEnded(.closed)) == [Self.close, "schedule close"])
        #expect(Self.frame(&machine, .text, "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>") == ["close-ws 1000", "schedule close"])
        #expect(Self.frame(&machine, .close, Self.closeBody(1000)) == ["cancel close", "drop"])
        #expect(machine.end == nil)
        // The same, but the client never answers Tether's close frame.
        var silent = Self.opened()
        _ = silent.upstreamEnded(.closed)
        _ = Self.frame(&silent, .text, "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        #expect(Self.describe(silent.fire(.close)) == ["drop"])
        // Or not even with <close/>.
        var mute = Self.opened()
        _ = mute.upstreamEnded(.closed)
        #expect(Self.describe(mute.fire(.close)) == ["drop"])
    }

    @Test("RFC 6455 §5.5.1: a close frame is answered with the code it carried (1000 when it carried none)")
    func closeEcho() {
        for (body, answer) in [
            (Self.closeBody(1001), "close-ws 1001 then-close"), (ByteBuffer(), "close-ws 1000 then-close"),
            (Self.closeBody(4000, reason: Array("bye".utf8)), "close-ws 4000 then-close"),
        ] {
            var machine = Self.opened()
            _ = machine.upstreamEnded(.closed)
            #expect(Self.frame(&machine, .close, body) == [answer, "schedule close"])
        }
    }

    static let invalidCloseBodies: [(body: [UInt8], failure: UInt16)] = [
        ([0x03], 1002),
        ([0x03, 0xE7], 1002),  // 999
        ([0x03, 0xEC], 1002),  // 1004, reserved
        ([0x03, 0xED], 1002),  // 1005, never on the wire
        ([0x03, 0xEE], 1002),  // 1006, never on the wire
        ([0x03, 0xF7], 1002),  // 1015, never on the wire
        ([0x03, 0xF8], 1002),  // 1016, unassigned
        ([0x13, 0x88], 1002),  // 5000
        ([0x03, 0xE8, 0xFF, 0xFE], 1007),  // 1000 with a reason that is not UTF-8
    ]

    @Test(
        "RFC 6455 §7.4: a close frame with a one-byte body or a code that may not be sent fails with 1002; a reason that is not UTF-8 with 1007", arguments: Self.invalidCloseBodies
    )
    func invalidClose(body: [UInt8], failure: UInt16) {
        #expect(WebSocketCloseStatus(body: ByteBuffer(bytes: body)) == .invalid(failureCode: failure))
        var machine = Self.opened()
        let actions = Self.frame(&machine, .close, ByteBuffer(bytes: body))
        #expect(actions == ["close-upstream graceful", "close-ws \(failure) then-close", "schedule close"], "\(actions)")
        #expect(machine.end == .webSocketFailed(code: failure))
    }

    static let receivableCodes: [UInt16] = [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999]

    @Test("close codes that may be received", arguments: Self.receivableCodes)
    func validCloseCodes(code: UInt16) {
        #expect(WebSocketCloseStatus(body: Self.closeBody(code, reason: Array("ok é".utf8))) == .code(code))
    }

    @Test("§3.6 a close frame without <close/> (a tab closing): unwritten stanzas bounced without XEP-0198, kept for resumption with it")
    func closeFrameWithoutClose() {
        let unwritten = [
            "<message xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a' id='w1'><body>1</body></message>",
            "<presence xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a'/>",
            "<message xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a' id='w2'><body>2</body></message>",
        ].map { ByteBuffer(string: $0) }
        var plain = Self.opened()
        let closing = Self.frame(&plain, .close, Self.closeBody(1001), undelivered: unwritten)
        #expect(
            closing.count == 6 && closing[1] == "bounced 2 closed-without-close" && closing.suffix(3) == ["close-upstream graceful", "close-ws 1001 then-close", "schedule close"],
            "\(closing)")
        var resumable = Self.opened()
        _ = resumable.upstreamReceived([ByteBuffer(string: "<enabled xmlns='urn:xmpp:sm:3'/>")], streamManagement: true)
        #expect(Self.frame(&resumable, .close, Self.closeBody(1001), undelivered: unwritten) == ["close-upstream abrupt", "close-ws 1001 then-close", "schedule close"])
    }

    @Test(
        "a dropped connection: with XEP-0198 upstream dropped without </stream:stream> (resumption); without it unwritten stanzas bounced, then </stream:stream>; pending timers cancelled"
    )
    func abruptDrop() {
        let unwritten = [
            "<message xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a' id='w1'><body>1</body></message>",
            "<presence xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a'/>",
            "<message xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a' id='w2'><body>2</body></message>",
        ].map { ByteBuffer(string: $0) }
        var resumable = Self.opened()
        _ = resumable.upstreamReceived([ByteBuffer(string: "<enabled xmlns='urn:xmpp:sm:3' id='sm' resume='true'/>")], streamManagement: true)
        #expect(Self.describe(resumable.connectionLost(unwritten: unwritten)) == ["close-upstream abrupt", "cancel ping"])
        var plain = Self.opened()
        let actions = Self.describe(plain.connectionLost(unwritten: unwritten))
        #expect(actions.count == 5, "\(actions)")
        #expect(actions[0].contains("id='w1'") && actions[0].contains("<service-unavailable"))
        #expect(actions[1] == "bounced 2 connection-lost")
        #expect(actions[2].contains("id='w2'"))
        #expect(actions.suffix(2) == ["close-upstream graceful", "cancel ping"])
        var quiet = Self.opened()
        #expect(Self.describe(quiet.connectionLost()) == ["close-upstream graceful", "cancel ping"])
        // A restart (after SASL) starts stream management over.
        var restarted = Self.opened()
        _ = restarted.upstreamReceived([ByteBuffer(string: "<enabled xmlns='urn:xmpp:sm:3'/>")], streamManagement: true)
        _ = restarted.received(.open(to: "example.org", from: nil, version: "1.0", language: nil))
        #expect(Self.describe(restarted.connectionLost()).first == "close-upstream graceful")
        // Before <open/> there is no upstream to bounce through.
        var early = Self.fresh()
        #expect(Self.describe(early.connectionLost(unwritten: unwritten)) == ["close-upstream abrupt", "cancel open", "cancel ping"])
    }

    @Test("an upstream connection that is established after the session ended is closed at once")
    func lateUpstream() {
        var machine = Self.fresh()
        _ = machine.received(.open(to: "example.org", from: nil, version: "1.0", language: nil))
        _ = machine.received(.close)
        #expect(Self.describe(machine.upstreamConnected()) == ["close-upstream graceful"])
    }

    // MARK: Pings

    @Test("RFC 6455 §5.5.2–3: Tether's pings carry a counter; only a pong with the same payload answers; an unanswered ping ends the connection as ping-timeout")
    func pings() {
        var machine = Self.opened()
        #expect(Self.describe(machine.fire(.ping)) == ["ping 0.0.0.0.0.0.0.1", "schedule ping"])
        #expect(Self.frame(&machine, .pong, "unrelated").isEmpty)
        var counter = ByteBuffer()
        counter.writeInteger(UInt64(1))
        #expect(Self.frame(&machine, .pong, counter).isEmpty)
        #expect(Self.describe(machine.fire(.ping)) == ["ping 0.0.0.0.0.0.0.2", "schedule ping"], "answered: the next ping goes out")
        // An unsolicited pong (or one for an older ping) is no answer.
        _ = Self.frame(&machine, .pong, counter)
        #expect(Self.describe(machine.fire(.ping)) == ["drop"])
        #expect(machine.lostReason == "ping-timeout")
        #expect(Self.describe(machine.connectionLost()) == ["close-upstream graceful"])
    }

    @Test("a client's ping is answered with its payload, not while the client is not reading, not after Tether's close frame")
    func clientPings() {
        var machine = Self.opened()
        #expect(Self.frame(&machine, .ping, "p1") == ["pong p1"])
        #expect(Self.describe(machine.writabilityChanged(isWritable: false)) == ["schedule slowReader"])
        #expect(Self.frame(&machine, .ping, "p2").isEmpty)
        #expect(Self.describe(machine.writabilityChanged(isWritable: true)) == ["cancel slowReader"])
        #expect(Self.frame(&machine, .ping, "p3") == ["pong p3"])
        _ = machine.upstreamEnded(.closed)
        _ = machine.received(.close)
        #expect(Self.frame(&machine, .ping, "p4").isEmpty)
        #expect(machine.fire(.ping).isEmpty, "no pings once closing")
    }

    // MARK: Fragments and frame rules

    @Test("RFC 6455 §5.4: a message in fragments, with a control frame between them, is one message")
    func fragments() {
        var machine = Self.opened()
        #expect(Self.frame(&machine, .text, "<message><bo", fin: false).isEmpty)
        #expect(Self.frame(&machine, .ping, "x") == ["pong x"])
        #expect(Self.frame(&machine, .continuation, "dy>hi</bo", fin: false).isEmpty)
        #expect(Self.frame(&machine, .continuation, "dy></message>") == ["forward <message><body>hi</body></message>"])
        // Compressed (RSV1 on the first frame only, RFC 7692 §6).
        var deflated = try! PerMessageDeflateCodec().compress(ByteBuffer(string: "<presence/>"))
        let head = deflated.readSlice(length: 2)!
        #expect(Self.frame(&machine, .text, head, fin: false, rsv1: true).isEmpty)
        #expect(Self.frame(&machine, .continuation, deflated) == ["forward <presence/>"])
    }

    static let fragmentRuleCases: [(rule: String, condition: String)] = [
        ("orphan", "not-well-formed"), ("interleaved", "not-well-formed"), ("frames", "policy-violation"), ("bytes", "policy-violation"),
        ("first-fragment-bytes", "policy-violation"),
    ]

    @Test(
        "fragment rules: a continuation with nothing to continue and a new message inside one are not-well-formed; too many frames or bytes are policy-violation",
        arguments: Self.fragmentRuleCases)
    func fragmentRules(rule: String, condition: String) {
        var machine = Self.opened()
        var last: [String] = []
        switch rule {
        case "orphan":
            last = Self.frame(&machine, .continuation, "<presence/>")
        case "interleaved":
            _ = Self.frame(&machine, .text, "<presence", fin: false)
            last = Self.frame(&machine, .text, "<presence/>")
        case "frames":
            // maxFragments is 4.
            _ = Self.frame(&machine, .text, "<", fin: false)
            for _ in 0..<3 { last = Self.frame(&machine, .continuation, "a", fin: false) }
            #expect(last.isEmpty)
            last = Self.frame(&machine, .continuation, "/>")
        case "bytes":
            _ = Self.frame(&machine, .text, "<m>", fin: false)
            last = Self.frame(&machine, .continuation, String(repeating: "x", count: 1000), fin: false)
        default:
            last = Self.frame(&machine, .text, String(repeating: "x", count: 1001), fin: false)
        }
        #expect(last == ["close-upstream graceful", Self.streamError(condition), Self.close, "schedule close"], "\(last)")
        #expect(machine.end?.label == condition)
    }

    @Test("a whole message over the limit is policy-violation, also inflated; a message that does not inflate is not-well-formed")
    func messageLimits() throws {
        var big = Self.opened()
        #expect(Self.frame(&big, .text, "<m>" + String(repeating: "x", count: 1000) + "</m>").contains(Self.streamError("policy-violation")))
        var bomb = Self.opened()
        let deflated = try PerMessageDeflateCodec().compress(ByteBuffer(string: "<m>" + String(repeating: "x", count: 5000) + "</m>"))
        #expect(Self.frame(&bomb, .text, deflated, rsv1: true).contains(Self.streamError("policy-violation")))
        var garbage = Self.opened()
        #expect(Self.frame(&garbage, .text, ByteBuffer(bytes: [0xFF, 0xFF, 0xFF]), rsv1: true).contains(Self.streamError("not-well-formed")))
    }

    @Test(
        "RFC 6455 §5.1–5.2 and RFC 7692 §6: unmasked frames, RSV2, RSV1 where it means nothing fail the connection with 1002; binary messages with 1003 (RFC 7395 §3.2)",
        arguments: [
            "unmasked", "rsv2", "rsv1-on-control", "rsv1-on-continuation", "binary",
        ])
    func frameRules(rule: String) {
        var machine = Self.opened()
        var actions: [String]
        switch rule {
        case "unmasked": actions = Self.frame(&machine, .text, "<presence/>", masked: false)
        case "rsv2": actions = Self.frame(&machine, .text, "<presence/>", rsv2: true)
        case "rsv1-on-control": actions = Self.frame(&machine, .ping, "x", rsv1: true)
        case "rsv1-on-continuation":
            _ = Self.frame(&machine, .text, "<presence", fin: false)
            actions = Self.frame(&machine, .continuation, "/>", rsv1: true)
        default: actions = Self.frame(&machine, .binary, "<presence/>")
        }
        let code = rule == "binary" ? 1003 : 1002
        #expect(actions == ["close-upstream graceful", "close-ws \(code) then-close", "schedule close"], "\(actions)")
        #expect(machine.end?.label == (rule == "binary" ? "unsupported-data" : "protocol-error"))
        // The connection is failed: nothing more is read or answered.
        #expect(Self.frame(&machine, .text, "<presence/>").isEmpty)
        #expect(Self.frame(&machine, .text, "<presence/>", masked: false).isEmpty)
        #expect(Self.frame(&machine, .ping, "x").isEmpty)
    }

    @Test("compressed frames without permessage-deflate negotiated fail with 1002; before <open/> a broken frame closes only the WebSocket")
    func uncompressedConnection() {
        var machine = Machine(configuration: .init(maxMessageBytes: 1000), serves: { _ in true })
        _ = machine.start(.admitted)
        #expect(Self.frame(&machine, .text, "<open/>", rsv1: true) == ["close-ws 1002 then-close", "schedule close"])
    }

    @Test("only framing elements are read before the stream is open and while closing; nothing once closed")
    func largestUsefulMessage() {
        let limit = 1 << 20
        let framing = Machine.framingMessageBytes
        var machine = Self.fresh()
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
        #expect(Self.frame(&machine, .text, "<presence/>").isEmpty)
    }

    // MARK: Slow readers, upstream failures, shutdown

    @Test("a client that stops reading and does not catch up within slowReaderTimeout is cut: policy-violation, what it did not read bounced as slow-reader")
    func slowReader() {
        var machine = Self.opened()
        #expect(Self.describe(machine.writabilityChanged(isWritable: false)) == ["schedule slowReader"])
        #expect(machine.writabilityChanged(isWritable: false).isEmpty, "one timer")
        #expect(Self.describe(machine.fire(.slowReader)) == ["limit max-queued-bytes-to-client", "drop"])
        #expect(machine.end?.label == "policy-violation")
        let unwritten = [ByteBuffer(string: "<message xmlns='jabber:client' from='bob@example.org/b' to='alice@example.org/a' id='w1'><body>1</body></message>")]
        let lost = Self.describe(machine.connectionLost(unwritten: unwritten))
        #expect(lost.count == 4 && lost[1] == "bounced 1 slow-reader" && lost.suffix(2) == ["close-upstream graceful", "cancel ping"], "\(lost)")
        // One that catches up in time is not cut.
        var recovered = Self.opened()
        _ = recovered.writabilityChanged(isWritable: false)
        _ = recovered.writabilityChanged(isWritable: true)
        #expect(recovered.fire(.slowReader).isEmpty)
    }

    @Test("§3.5 upstream stream errors and failures, each with its condition")
    func upstreamFailures() {
        var machine = Self.opened()
        let error = ByteBuffer(string: "<stream:error xmlns:stream='http://etherx.jabber.org/streams'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
        #expect(Self.describe(machine.upstreamStreamError(error)) == ["send \(String(buffer: error))", Self.close, "schedule close"])
        #expect(machine.end?.label == "remote-stream-error")
        var lost = Self.opened()
        #expect(Self.describe(lost.upstreamEnded(.failed)) == [Self.streamError("remote-connection-failed"), Self.close, "schedule close"])
        #expect(lost.end?.label == "remote-connection-failed")
        var unknown = Self.fresh()
        _ = unknown.received(.open(to: "example.org", from: nil, version: "1.0", language: nil))
        #expect(
            Self.describe(unknown.upstreamEnded(.unreachable)) == [
                "send <open xmlns='urn:ietf:params:xml:ns:xmpp-framing' from='example.org' version='1.0'/>", Self.streamError("host-unknown"), Self.close, "schedule close",
            ])
        var stalled = Self.opened()
        #expect(
            Self.describe(stalled.upstreamEnded(.serverNotReading)) == ["limit max-queued-bytes-to-server", Self.streamError("policy-violation"), Self.close, "schedule close"])
        // The first reason is the one reported.
        _ = stalled.shutdown(redirect: nil)
        #expect(stalled.end?.label == "policy-violation")
    }

    @Test("§3.6.1 shutdown: see-other-uri when redirecting, else system-shutdown; upstream dropped with XEP-0198 so sessions can resume, closed without it (regression: dropped)")
    func shutdown() {
        var redirected = Self.opened()
        _ = redirected.upstreamReceived([ByteBuffer(string: "<enabled xmlns='urn:xmpp:sm:3' id='sm' resume='true'/>")], streamManagement: true)
        #expect(
            Self.describe(redirected.shutdown(redirect: "wss://b.example/xmpp-websocket")) == [
                "close-upstream abrupt", "send <close xmlns='urn:ietf:params:xml:ns:xmpp-framing' see-other-uri='wss://b.example/xmpp-websocket'/>", "schedule close",
            ])
        var redirectedWithoutStreamManagement = Self.opened()
        #expect(Self.describe(redirectedWithoutStreamManagement.shutdown(redirect: "wss://b.example/xmpp-websocket")).first == "close-upstream graceful")
        var plain = Self.opened()
        #expect(Self.describe(plain.shutdown(redirect: nil)) == ["close-upstream graceful", Self.streamError("system-shutdown"), Self.close, "schedule close"])
        #expect(plain.end?.label == "system-shutdown")
        #expect(plain.shutdown(redirect: nil).isEmpty, "once")
    }

    @Test("a shutdown before the client's <open/> sends an <open/> before its stream error (§3.5)")
    func shutdownBeforeOpen() {
        var early = Self.fresh(serves: { _ in true })
        let sent = Self.describe(early.shutdown(redirect: nil))
        #expect(sent.first == "close-upstream graceful")
        #expect(sent.dropFirst().first?.hasPrefix("send <open ") == true)
        #expect(sent.contains { $0.contains("<system-shutdown") })
        #expect(sent.suffix(2) == [Self.close, "schedule close"])
    }

    @Test("every ending's metric label")
    func endLabels() {
        #expect(WebSocketSessionEnd.streamError(.connectionTimeout).label == "connection-timeout")
        #expect(WebSocketSessionEnd.streamError(.systemShutdown).label == "system-shutdown")
        #expect(WebSocketSessionEnd.serverStreamError.label == "remote-stream-error")
        #expect(WebSocketSessionEnd.webSocketFailed(code: 1002).label == "protocol-error")
        #expect(WebSocketSessionEnd.webSocketFailed(code: 1003).label == "unsupported-data")
        #expect(WebSocketSessionEnd.webSocketFailed(code: 1007).label == "invalid-payload")
        #expect(WebSocketSessionEnd.redirected.label == "see-other-uri")
    }
}

extension WebSocketSessionStateMachine {
    /// Fires the pending timer of this kind as the handler would (a kind with none pending fires
    /// with a generation never handed out, as a stale firing would).
    mutating func fire(_ kind: Timer) -> [Action] {
        self.timerFired(self.timers.pendingID(kind) ?? TimerID(kind: kind, generation: 0))
    }
}
