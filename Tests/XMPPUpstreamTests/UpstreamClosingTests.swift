import NIOCore
import NIOEmbedded
import Testing
import XMPPCore

@testable import XMPPUpstream

/// Closing the stream of a client that is gone: what the server still sends is bounced until it
/// has answered the closing ping, then `</stream:stream>` (RFC 6120 §4.4, §10.4.3).
@Suite("Upstream stream: closing without losing what is in flight")
struct UpstreamClosingTests {
    static let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>"
    static let features = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
    static let bindResult = "<iq type='result' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice@localhost/a</jid></bind></iq>"
    static let fromBob = "<message from='bob@localhost/b' to='alice@localhost/a' id='m1' type='chat'><body>hi</body></message>"

    /// A machine and a framer fed the way the channel handler feeds them.
    struct Stream {
        var machine = UpstreamStreamStateMachine(header: StreamHeader(to: "localhost"), tlsPolicy: .off)
        let framer = XMLStreamFramer(limits: .init())

        init() {
            _ = self.machine.connected()
        }

        mutating func receive(_ text: String) throws -> [String] {
            try UpstreamStreamStateMachineTests.feed(text, &self.machine, framer: self.framer)
        }
    }

    static func describe(_ action: UpstreamStreamStateMachine.Action) -> String? {
        UpstreamStreamStateMachineTests.name(action)
    }

    static let ping = "send <iq type='get' id='barrier' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"

    @Test("a stream with no bound resource closes at once: nothing can be routed to it")
    func unbound() throws {
        var stream = Stream()
        _ = try stream.receive(Self.header + Self.features)
        #expect(!stream.machine.isBound)
        #expect(stream.machine.close(barrierID: "barrier").compactMap(Self.describe) == ["finish"])
        #expect(try stream.receive(Self.fromBob).isEmpty)
    }

    @Test("with XEP-0198 on, or without a barrier id, a bound stream closes at once: the server answers for what is unacknowledged")
    func streamManagementOrNoBarrier() throws {
        var managed = Stream()
        _ = try managed.receive(Self.header + Self.features + Self.bindResult + "<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true'/>")
        #expect(managed.machine.streamManagementEnabled)
        #expect(managed.machine.close(barrierID: "barrier").compactMap(Self.describe) == ["finish"])
        var failed = Stream()
        _ = try failed.receive(Self.header + Self.features + Self.bindResult + "<enabled xmlns='urn:xmpp:sm:3'/><failed xmlns='urn:xmpp:sm:3'/>")
        #expect(!failed.machine.streamManagementEnabled)
        #expect(failed.machine.close(barrierID: "barrier").compactMap(Self.describe) == [Self.ping])
        var capped = Stream()
        _ = try capped.receive(Self.header + Self.features + Self.bindResult)
        #expect(capped.machine.close(barrierID: nil).compactMap(Self.describe) == ["finish"])
        var inline = Stream()
        _ = try inline.receive(
            Self.header + Self.features + "<success xmlns='urn:xmpp:sasl:2'><bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' resume='true'/></bound></success>")
        #expect(inline.machine.isBound)
        #expect(inline.machine.streamManagementEnabled)
    }

    @Test("a bound stream pings first; each stanza read until the answer is bounced, presence dropped; the answer ends it")
    func bound() throws {
        var stream = Stream()
        _ = try stream.receive(Self.header + Self.features + Self.bindResult)
        #expect(stream.machine.isBound)
        #expect(stream.machine.close(barrierID: "barrier").compactMap(Self.describe) == [Self.ping])
        #expect(stream.machine.isClosing)
        #expect(stream.machine.close(barrierID: "again").isEmpty)
        #expect(
            try stream.receive(Self.fromBob) == [
                "bounce <message xmlns='jabber:client' type='error' to='bob@localhost/b' from='alice@localhost/a' id='m1'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
            ]
        )
        #expect(try stream.receive("<presence from='bob@localhost/b' to='alice@localhost/a'/>").isEmpty)
        // An answer to some other iq is no barrier (and an answer is never answered).
        #expect(try stream.receive("<iq type='result' id='other' from='localhost' to='alice@localhost/a'/>").isEmpty)
        #expect(try stream.receive("<iq type='result' id='barrier' from='localhost' to='alice@localhost/a'/>") == ["finish"])
        #expect(!stream.machine.isClosing)
        #expect(try stream.receive(Self.fromBob).isEmpty)
    }

    @Test("the barrier also ends with an error answer (a server without XEP-0199), the server's own close, a stream error or the timeout")
    func otherEnds() throws {
        let ends = [
            "<iq type='error' id='barrier' from='localhost'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            "</stream:stream>",
            "<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
        ]
        for end in ends {
            var stream = Stream()
            _ = try stream.receive(Self.header + Self.features + Self.bindResult)
            _ = stream.machine.close(barrierID: "barrier")
            #expect(try stream.receive(end) == ["finish"], "\(end)")
        }
        var late = Stream()
        _ = try late.receive(Self.header + Self.features + Self.bindResult)
        _ = late.machine.close(barrierID: "barrier")
        #expect(late.machine.closingTimedOut().compactMap(Self.describe) == ["finish"])
        #expect(late.machine.closingTimedOut().isEmpty)
    }

    @Test("binding is also a SASL2 success with an inline bind or a resumed XEP-0198 stream; a plain SASL success, another result or a bind error is not")
    func bindingForms() throws {
        let binding = [
            "<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>alice@localhost/a</authorization-identifier><bound xmlns='urn:xmpp:bind:0'/></success>",
            "<resumed xmlns='urn:xmpp:sm:3' h='0' previd='x'/>",
        ]
        for element in binding {
            var stream = Stream()
            _ = try stream.receive(Self.header + Self.features + element)
            #expect(stream.machine.isBound, "\(element)")
        }
        let notBinding = [
            "<success xmlns='urn:xmpp:sasl:2'><authorization-identifier>alice@localhost</authorization-identifier></success>",
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
            "<iq type='result' id='x'><query xmlns='jabber:iq:roster'/></iq>",
            "<iq type='error' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>a</resource></bind><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        ]
        for element in notBinding {
            var stream = Stream()
            _ = try stream.receive(Self.header + Self.features + element)
            #expect(!stream.machine.isBound, "\(element)")
        }
    }

    final class Delegate: UpstreamStreamDelegate {
        var received: [String] = []
        /// What each batch said about XEP-0198.
        var streamManagement: [Bool] = []
        func upstreamOpened(_ info: StreamInfo, secure: Bool) {}
        func upstreamReceived(_ elements: [ByteBuffer], streamElements: Bool, streamManagement: Bool) {
            self.received += elements.map { String(buffer: $0) }
            self.streamManagement.append(streamManagement)
        }
        func upstreamStreamError(_ error: ByteBuffer) {}
        var closed: [UpstreamError?] = []
        func upstreamClosed(_ error: UpstreamError?) { self.closed.append(error) }
    }

    /// The handler on an open, bound stream, with what it wrote so far read off.
    static func boundHandler(closingTimeout: TimeAmount = .seconds(5), closing: ClosingStreams = ClosingStreams()) throws -> (EmbeddedChannel, UpstreamChannelHandler, Delegate) {
        let delegate = Delegate()
        let handler = UpstreamChannelHandler(
            machine: UpstreamStreamStateMachine(header: StreamHeader(to: "localhost"), tlsPolicy: .off, timeouts: .init(closing: closingTimeout)),
            framerLimits: .init(), tlsContext: nil, serverHostname: "localhost", addressIsLoopback: true,
            closingStreams: closing, delegate: delegate
        )
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 5222)).wait()
        try channel.writeInbound(ByteBuffer(string: Self.header + Self.features + Self.bindResult))
        while try channel.readOutbound(as: ByteBuffer.self) != nil {}
        #expect(delegate.received.count == 2)
        return (channel, handler, delegate)
    }

    @Test(
        "the sessions learn XEP-0198's state from the upstream machine with each batch: <enabled/>, SASL2's inline <enabled/>, <failed/> (regression: the sessions' own byte-level watch missed SASL2's inline enable, so a dying session closed a resumable stream with </stream:stream>)"
    )
    func streamManagementReachesTheSession() throws {
        let (channel, _, delegate) = try Self.boundHandler()
        #expect(delegate.streamManagement.allSatisfy { !$0 })
        // A stanza whose text looks like <enabled/> turns nothing on.
        try channel.writeInbound(ByteBuffer(string: "<message xmlns='jabber:client' id='x'><body>&lt;enabled xmlns='urn:xmpp:sm:3'/&gt;</body></message>"))
        #expect(delegate.streamManagement.last == false)
        #expect(delegate.received.last?.contains("id='x'") == true, "the look-alike was delivered as a batch of its own")
        try channel.writeInbound(ByteBuffer(string: "<enabled xmlns='urn:xmpp:sm:3' id='sm1' resume='true'/>"))
        #expect(delegate.streamManagement.last == true)
        try channel.writeInbound(ByteBuffer(string: "<failed xmlns='urn:xmpp:sm:3'/>"))
        #expect(delegate.streamManagement.last == false)
        try channel.writeInbound(ByteBuffer(string: "<sm:resumed xmlns:sm=\"urn:xmpp:sm:3\" previd='x' h='3'/>"))
        #expect(delegate.streamManagement.last == true)

        let delegate2 = Delegate()
        let handler = UpstreamChannelHandler(
            machine: UpstreamStreamStateMachine(header: StreamHeader(to: "localhost"), tlsPolicy: .off),
            framerLimits: .init(), tlsContext: nil, serverHostname: "localhost", addressIsLoopback: true,
            closingStreams: ClosingStreams(), delegate: delegate2
        )
        let sasl2 = EmbeddedChannel(handler: handler)
        try sasl2.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 5222)).wait()
        try sasl2.writeInbound(ByteBuffer(string: Self.header + Self.features))
        try sasl2.writeInbound(
            ByteBuffer(string: "<success xmlns='urn:xmpp:sasl:2'><bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' resume='true'/></bound></success>"))
        #expect(delegate2.streamManagement.last == true)
        _ = try? channel.finish(acceptAlreadyClosed: true)
        _ = try? sasl2.finish(acceptAlreadyClosed: true)
    }

    @Test(
        "the channel handler: ping written, a message in flight bounced through the stream and counted once, then </stream:stream>; the connection closes when the server closes it, read to the end (RFC 6120 §4.4)"
    )
    func handler() throws {
        let closing = ClosingStreams()
        let (channel, handler, delegate) = try Self.boundHandler(closing: closing)
        var reports: [Int] = []
        handler.beginClosing(barrierID: "barrier") { reports.append($0) }
        // Counted while closing: a shutting-down server waits for it. A second call does nothing.
        #expect(closing.current == 1)
        handler.beginClosing(barrierID: "again") { reports.append($0) }
        #expect(closing.current == 1)
        #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == String(Self.ping.dropFirst(5)))
        try channel.writeInbound(ByteBuffer(string: Self.fromBob))
        let bounce = String(buffer: try #require(try channel.readOutbound(as: ByteBuffer.self)))
        #expect(bounce.hasPrefix("<message xmlns='jabber:client' type='error' to='bob@localhost/b'"))
        // Nothing reaches the session once it is closing.
        #expect(delegate.received.count == 2)
        // An answer that does not come from the server is no barrier.
        try channel.writeInbound(ByteBuffer(string: "<iq type='result' id='barrier' from='mallory@localhost/x'/>"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        try channel.writeInbound(ByteBuffer(string: "<iq type='result' id='barrier' from='localhost'/>"))
        #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == StreamHeader.closing)
        #expect(reports == [1])
        #expect(closing.current == 0)
        // What still comes is read and dropped until the server closes.
        try channel.writeInbound(ByteBuffer(string: Self.fromBob + "</stream:stream>"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        #expect(channel.isActive)
        channel.pipeline.fireChannelInactive()
        #expect(reports == [1])
    }

    @Test("the channel handler: a server that never answers the ping gets </stream:stream> after the closing timeout, and is closed after another")
    func handlerTimeout() throws {
        let (channel, handler, _) = try Self.boundHandler(closingTimeout: .seconds(5))
        var reports: [Int] = []
        handler.beginClosing(barrierID: "barrier") { reports.append($0) }
        _ = try channel.readOutbound(as: ByteBuffer.self)
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == StreamHeader.closing)
        #expect(reports == [0])
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(!channel.isActive)
    }

    @Test("the channel handler: past the cap of streams closing at once, a stream closes without the ping")
    func handlerCap() throws {
        let closing = ClosingStreams(limit: 0)
        let (channel, handler, _) = try Self.boundHandler(closing: closing)
        var reports: [Int] = []
        handler.beginClosing(barrierID: "barrier") { reports.append($0) }
        #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == StreamHeader.closing)
        #expect(reports == [0])
        #expect(closing.current == 0)
    }
}
