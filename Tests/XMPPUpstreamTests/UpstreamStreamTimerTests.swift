import NIOCore
import NIOEmbedded
import Testing
import XMPPCore

@testable import XMPPUpstream
@testable import XMPPUpstreamCore

/// The upstream machine's own timers and start: what the channel handler used to decide itself.
@Suite("Upstream stream: timers, start, plaintext after <proceed/>")
struct UpstreamStreamTimerTests {
    typealias Machine = UpstreamStreamStateMachine
    typealias Base = UpstreamStreamStateMachineTests

    /// Timer actions only, as `schedule KIND` / `cancel KIND`.
    static func timers(_ actions: [Machine.Action]) -> [String] {
        actions.compactMap { action in
            switch action {
            case .scheduleTimer(let id, let delay): return "schedule \(id.kind) \(delay.nanoseconds / 1_000_000_000)s"
            case .cancelTimer(let kind): return "cancel \(kind)"
            default: return nil
            }
        }
    }

    static func scheduled(_ kind: Machine.Timer, in actions: [Machine.Action]) -> Machine.TimerID? {
        for case .scheduleTimer(let id, _) in actions where id.kind == kind { return id }
        return nil
    }

    static func feed(_ text: String, _ machine: inout Machine, framer: XMLStreamFramer) throws -> [Machine.Action] {
        var actions: [Machine.Action] = []
        for event in try framer.feed(ByteBuffer(string: text)) { actions += machine.receive(event, bufferedBytes: framer.bufferedBytes) }
        return actions
    }

    @Test("the stream starts once, the prelude first, under the stream-open timer; a second start (handler added as the channel turns active) does nothing")
    func startsOnce() {
        var machine = Machine(header: Base.header, tlsPolicy: .off, prelude: ByteBuffer(string: "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), timeouts: .init(streamOpen: .seconds(9)))
        let first = machine.connected()
        #expect(first.compactMap(Base.name) == ["prelude 32 bytes", "send header"])
        #expect(Self.timers(first) == ["schedule streamOpen 9s"])
        #expect(machine.connected().isEmpty)
        #expect(machine.connectedOverTLS().isEmpty)
    }

    @Test("a server that does not open its stream in time fails the stream; once it opened, the timer is cancelled and a late firing does nothing")
    func streamOpenTimeout() throws {
        var silent = Machine(header: Base.header, tlsPolicy: .off)
        let open = try #require(Self.scheduled(.streamOpen, in: silent.connected()))
        #expect(silent.timerFired(open).compactMap(Base.name) == ["fail timed out waiting for the server's stream"])
        #expect(silent.timerFired(open).isEmpty, "fires once")

        var answering = Machine(header: Base.header, tlsPolicy: .off)
        let timer = try #require(Self.scheduled(.streamOpen, in: answering.connected()))
        let opened = try Self.feed(Base.streamOpen + Base.featuresPlain, &answering, framer: XMLStreamFramer())
        #expect(Self.timers(opened) == ["cancel streamOpen"])
        #expect(answering.timerFired(timer).isEmpty)
        #expect(answering.isOpen)
    }

    @Test("RFC 6120 §5.4.3.3: bytes after <proceed/> in the same read fail the stream before TLS starts (plaintext injection)")
    func plaintextAfterProceed() throws {
        var machine = Machine(header: Base.header, tlsPolicy: .required)
        let framer = XMLStreamFramer()
        _ = machine.connected()
        _ = try Self.feed(Base.streamOpen + Base.featuresWithTLS, &machine, framer: framer)
        let injected = try Self.feed("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><stream:features", &machine, framer: framer)
        #expect(injected.compactMap(Base.name) == ["fail XMPP protocol violation: data after <proceed/>"])
        #expect(Self.timers(injected) == ["cancel streamOpen"])

        var clean = Machine(header: Base.header, tlsPolicy: .required)
        let cleanFramer = XMLStreamFramer()
        _ = clean.connected()
        _ = try Self.feed(Base.streamOpen + Base.featuresWithTLS, &clean, framer: cleanFramer)
        #expect(try Self.feed("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>", &clean, framer: cleanFramer).compactMap(Base.name) == ["start-tls"])
    }

    @Test(
        "closing: the ping's answer is awaited under the closing timer, then </stream:stream> under the linger timer, whose firing closes the connection; a late barrier firing does nothing"
    )
    func closingTimers() throws {
        func bound() throws -> (Machine, XMLStreamFramer) {
            var machine = Machine(header: StreamHeader(to: "localhost"), tlsPolicy: .off, timeouts: .init(closing: .seconds(4)))
            let framer = XMLStreamFramer()
            _ = machine.connected()
            _ = try Self.feed(UpstreamClosingTests.header + UpstreamClosingTests.features + UpstreamClosingTests.bindResult, &machine, framer: framer)
            return (machine, framer)
        }
        var late = try bound().0
        let closing = late.close(barrierID: "b1")
        #expect(Self.timers(closing) == ["schedule closingBarrier 4s"])
        let barrier = try #require(Self.scheduled(.closingBarrier, in: closing))
        let timedOut = late.timerFired(barrier)
        #expect(timedOut.compactMap(Base.name) == ["finish"])
        #expect(Self.timers(timedOut) == ["schedule linger 4s"])
        let linger = try #require(Self.scheduled(.linger, in: timedOut))
        #expect(late.timerFired(linger).compactMap(Base.name) == ["close-connection"])

        var (answered, framer) = try bound()
        let barrierTimer = try #require(Self.scheduled(.closingBarrier, in: answered.close(barrierID: "b2")))
        let answer = try Self.feed("<iq type='result' id='b2' from='localhost'/>", &answered, framer: framer)
        #expect(answer.compactMap(Base.name) == ["finish"])
        #expect(Self.timers(answer) == ["cancel closingBarrier", "schedule linger 4s"])
        #expect(answered.timerFired(barrierTimer).isEmpty)
    }

    @Test("the channel handler: a server that never opens its stream is cut when the machine's timer fires (EmbeddedChannel clock)")
    func handlerStreamOpenTimer() throws {
        let delegate = UpstreamClosingTests.Delegate()
        let handler = UpstreamChannelHandler(
            machine: Machine(header: StreamHeader(to: "localhost"), tlsPolicy: .off, timeouts: .init(streamOpen: .seconds(15))),
            framerLimits: .init(), tlsContext: nil, serverHostname: "localhost", addressIsLoopback: true, delegate: delegate
        )
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(handler: handler, loop: loop)
        try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 5222)).wait()
        #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0).hasPrefix("<?xml") } == true)
        loop.advanceTime(by: .seconds(14))
        #expect(channel.isActive)
        loop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive, "cut after the stream-open timeout")
        #expect(delegate.closed == [.timedOut("waiting for the server's stream")])
    }
}
