import BOSHCore
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing
import XMPPCore

@testable import TetherServer
@testable import XMPPUpstream
@testable import XMPPUpstreamCore

/// The BOSH path as Tether builds it — HTTP edge, `BOSHService`, `BOSHSession` and the upstream
/// stream handler — on one `EmbeddedEventLoop`: raw HTTP requests in, raw responses out, and the
/// server's side of each upstream stream an `EmbeddedChannel` the test plays. Time is the loop's,
/// so every timer fires exactly when the test says.
final class BOSHAdapterHarness {
    /// The server's ends of the streams the sessions opened, in order; or the error each dial fails with.
    final class Upstreams: @unchecked Sendable {
        var channels: [EmbeddedChannel] = []
        var failure: UpstreamError?
    }

    let loop = EmbeddedEventLoop()
    let upstreams = Upstreams()
    let store: ConfigurationStore
    let bosh: BOSHService
    let prebind: PrebindService
    let relay: PeerRelay
    let status = ServerStatus()
    private var connections: [EmbeddedChannel] = []

    static let serverHeader =
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>"
    static let features = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"

    init() {
        var configuration = TetherConfiguration()
        configuration.domains = ["localhost"]
        self.store = ConfigurationStore(configuration)
        let logger = Logger(label: "test")
        let metrics = TetherMetrics()
        let gate = SessionGate(limiter: SessionLimiter(limits: configuration.sessionLimits), status: self.status, metrics: metrics, logger: logger)
        let loop = self.loop
        let upstreams = self.upstreams
        let links = UpstreamLinks(closing: ClosingStreams(), metrics: metrics) { _, header, _, _, delegate, _ in
            if let failure = upstreams.failure { return loop.makeFailedFuture(failure) }
            let channel = EmbeddedChannel(loop: loop)
            let handler = UpstreamChannelHandler(
                machine: UpstreamStreamStateMachine(header: header, tlsPolicy: .off), framerLimits: .init(), tlsContext: nil,
                serverHostname: header.to, addressIsLoopback: true, delegate: delegate
            )
            let address = try! SocketAddress(ipAddress: "127.0.0.1", port: 5222)
            try! channel.pipeline.syncOperations.addHandler(handler)
            try! channel.connect(to: address).wait()
            upstreams.channels.append(channel)
            return loop.makeSucceededFuture(UpstreamConnection(channel: channel, remoteAddress: address, handler: handler))
        }
        self.bosh = BOSHService(store: self.store, gate: gate, metrics: metrics, upstream: links, group: loop, logger: logger)
        self.prebind = PrebindService(store: self.store, bosh: self.bosh, logger: logger)
        self.relay = PeerRelay(peers: [:], logger: logger)
    }

    deinit {
        for channel in self.connections + self.upstreams.channels {
            _ = try? channel.finish(acceptAlreadyClosed: true)
        }
        try? self.loop.syncShutdownGracefully()
    }

    /// A new HTTP connection carrying one `POST /http-bind` with `body`.
    func post(_ body: String) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(loop: self.loop)
        let sync = channel.pipeline.syncOperations
        try sync.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
        try sync.addHandler(
            HTTPEdgeHandler(
                store: self.store, bosh: self.bosh, relay: self.relay, prebind: self.prebind, status: self.status,
                metrics: { [] }, logger: Logger(label: "test")
            ))
        try channel.connect(to: SocketAddress(ipAddress: "203.0.113.9", port: 4000)).wait()
        self.connections.append(channel)
        let request = "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        try channel.writeInbound(ByteBuffer(string: request))
        self.loop.run()
        return channel
    }

    /// The body of the answer written on `connection` so far, nil when none has been.
    static func answer(_ connection: EmbeddedChannel) throws -> String? {
        var bytes = ByteBuffer()
        while var part = try connection.readOutbound(as: ByteBuffer.self) { bytes.writeBuffer(&part) }
        let text = String(buffer: bytes)
        guard let end = text.range(of: "\r\n\r\n") else { return nil }
        #expect(text.hasPrefix("HTTP/1.1 200 OK"), "\(text)")
        return String(text[end.upperBound...])
    }

    /// What the session wrote to the server so far.
    static func written(_ upstream: EmbeddedChannel) throws -> String {
        var text = ""
        while let part = try upstream.readOutbound(as: ByteBuffer.self) { text += String(buffer: part) }
        return text
    }

    /// The server's side says `text`.
    func serverSays(_ text: String, on upstream: EmbeddedChannel) throws {
        try upstream.writeInbound(ByteBuffer(string: text))
        self.loop.run()
    }

    static func creation(rid: UInt64 = 1000, wait: Int = 30) -> String {
        "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' rid='\(rid)' to='localhost' wait='\(wait)' hold='1' ver='1.6' xmpp:version='1.0'/>"
    }

    static func request(rid: UInt64, sid: String, _ payload: String = "") -> String {
        "<body xmlns='http://jabber.org/protocol/httpbind' rid='\(rid)' sid='\(sid)'>\(payload)</body>"
    }

    /// A session whose creation has been answered; its sid and the server's end of its stream.
    func openSession() throws -> (sid: String, upstream: EmbeddedChannel) {
        let creation = try self.post(Self.creation())
        let upstream = try #require(self.upstreams.channels.last)
        try self.serverSays(Self.serverHeader + Self.features, on: upstream)
        let answer = try #require(try Self.answer(creation))
        let sid = try #require(try XMLElement.parse(ByteBuffer(string: answer)).attribute("sid"))
        _ = try Self.written(upstream)
        return (sid, upstream)
    }
}

@Suite("BOSH session adapter (EmbeddedChannel)")
struct BOSHAdapterTests {
    @Test(
        "the creation request is held until the server's stream opens, then answered with its sid, authid and features (XEP-0124 §7.1, XEP-0206 §5)"
    )
    func creation() throws {
        let harness = BOSHAdapterHarness()
        let creation = try harness.post(BOSHAdapterHarness.creation(wait: 5))
        let upstream = try #require(harness.upstreams.channels.first)
        #expect(try BOSHAdapterHarness.written(upstream).contains("to='localhost'"), "the stream header went to the server")
        // Past `wait`, and still no stream from the server: nothing to say yet.
        harness.loop.advanceTime(by: .seconds(6))
        #expect(try BOSHAdapterHarness.answer(creation) == nil)
        try harness.serverSays(BOSHAdapterHarness.serverHeader + BOSHAdapterHarness.features, on: upstream)
        let answer = try #require(try BOSHAdapterHarness.answer(creation))
        let body = try XMLElement.parse(ByteBuffer(string: answer))
        #expect(body.attribute("sid")?.count == 32)
        #expect(body.attribute("authid") == "s1")
        #expect(body.attribute("from") == "localhost")
        #expect(answer.contains("<mechanism>PLAIN</mechanism>"))
    }

    @Test("a client's stanza goes to the server; the server's answer answers the held request; an empty request is answered empty at `wait`")
    func relay() throws {
        let harness = BOSHAdapterHarness()
        let (sid, upstream) = try harness.openSession()
        let auth = try harness.post(BOSHAdapterHarness.request(rid: 1001, sid: sid, "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>"))
        #expect(try BOSHAdapterHarness.written(upstream) == "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAYg==</auth>")
        #expect(try BOSHAdapterHarness.answer(auth) == nil, "held (hold=1)")
        try harness.serverSays("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>", on: upstream)
        #expect(try BOSHAdapterHarness.answer(auth)?.contains("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>") == true)

        let poll = try harness.post(BOSHAdapterHarness.request(rid: 1002, sid: sid))
        harness.loop.advanceTime(by: .seconds(29))
        #expect(try BOSHAdapterHarness.answer(poll) == nil)
        harness.loop.advanceTime(by: .seconds(1))
        let empty = try #require(try BOSHAdapterHarness.answer(poll))
        #expect(try XMLElement.parse(ByteBuffer(string: empty)).children.isEmpty)
    }

    @Test("a held request whose connection closes is forgotten: what the server sends next waits for the client's next request (page reload)")
    func abandonedRequest() throws {
        let harness = BOSHAdapterHarness()
        let (sid, upstream) = try harness.openSession()
        let held = try harness.post(BOSHAdapterHarness.request(rid: 1001, sid: sid))
        try held.close().wait()
        harness.loop.run()
        try harness.serverSays("<message xmlns='jabber:client' id='m1'><body>during the reload</body></message>", on: upstream)
        let next = try harness.post(BOSHAdapterHarness.request(rid: 1002, sid: sid))
        #expect(try BOSHAdapterHarness.answer(next)?.contains("id='m1'") == true)
    }

    @Test(
        "a request pipelined behind a held one is taken up as the held one is answered, and the pause it asks for still ends the session (regression: performed inside the first answer, its inactivity was overwritten by the first's, and the session never timed out)"
    )
    func pipelinedBehindHeld() throws {
        let harness = BOSHAdapterHarness()
        let (sid, upstream) = try harness.openSession()
        let connection = try harness.post(BOSHAdapterHarness.request(rid: 1001, sid: sid))
        let pause = "<body xmlns='http://jabber.org/protocol/httpbind' rid='1002' sid='\(sid)' pause='10'/>"
        try connection.writeInbound(
            ByteBuffer(string: "POST /http-bind HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: \(pause.utf8.count)\r\n\r\n\(pause)"))
        harness.loop.run()
        #expect(try BOSHAdapterHarness.answer(connection) == nil, "1001 held, 1002 waits behind it")
        // The server's stanza answers 1001; writing that answer lets 1002 in, which is answered at once (§10).
        try harness.serverSays("<message xmlns='jabber:client' id='m1'/>", on: upstream)
        let both = try #require(try BOSHAdapterHarness.answer(connection))
        #expect(both.contains("id='m1'"))
        #expect(both.components(separatedBy: "HTTP/1.1 200 OK").count == 2, "\(both)")
        // Nothing comes back within the pause: the session is over.
        harness.loop.advanceTime(by: .seconds(11))
        let late = try harness.post(BOSHAdapterHarness.request(rid: 1003, sid: sid))
        #expect(try XMLElement.parse(ByteBuffer(string: try #require(try BOSHAdapterHarness.answer(late)))).attribute("condition") == "item-not-found")
    }

    @Test("a request waiting out of order when the session times out is not left hanging: its connection is closed (regression: never answered)")
    func outOfOrderAtInactivity() throws {
        let harness = BOSHAdapterHarness()
        let (sid, _) = try harness.openSession()
        // 1001 never comes: 1002 waits for it (§14.2), and nothing is held.
        let waiting = try harness.post(BOSHAdapterHarness.request(rid: 1002, sid: sid))
        #expect(try BOSHAdapterHarness.answer(waiting) == nil)
        #expect(waiting.isActive)
        harness.loop.advanceTime(by: .seconds(Int64(BOSHLimits().inactivity) + 1))
        #expect(!waiting.isActive, "the connection of the request the machine never took up is closed")
        let late = try harness.post(BOSHAdapterHarness.request(rid: 1001, sid: sid))
        #expect(try XMLElement.parse(ByteBuffer(string: try #require(try BOSHAdapterHarness.answer(late)))).attribute("condition") == "item-not-found")
    }

    /// How the upstream ends, and the `condition` the held request must carry (nil: a normal end).
    static let endings: [(name: String, condition: String?)] = [
        ("closed", nil), ("lost", "remote-connection-failed"), ("stream error", "remote-stream-error"),
    ]

    @Test(
        "the upstream's end reaches the held request as its condition (XEP-0124 §17.2, XEP-0206 §6); the sid is gone afterwards",
        arguments: Self.endings.indices
    )
    func upstreamEnds(_ index: Int) throws {
        let (name, condition) = Self.endings[index]
        let harness = BOSHAdapterHarness()
        let (sid, upstream) = try harness.openSession()
        let held = try harness.post(BOSHAdapterHarness.request(rid: 1001, sid: sid))
        switch name {
        case "closed": try harness.serverSays("</stream:stream>", on: upstream)
        case "lost":
            upstream.pipeline.fireChannelInactive()
            harness.loop.run()
        default:
            try harness.serverSays("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>", on: upstream)
        }
        let answer = try #require(try BOSHAdapterHarness.answer(held))
        let body = try XMLElement.parse(ByteBuffer(string: answer))
        #expect(body.attribute("type") == "terminate")
        #expect(body.attribute("condition") == condition)
        if name == "stream error" {
            #expect(answer.contains("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"), "the server's error goes to the client")
        }
        let late = try harness.post(BOSHAdapterHarness.request(rid: 1002, sid: sid))
        #expect(try XMLElement.parse(ByteBuffer(string: try #require(try BOSHAdapterHarness.answer(late)))).attribute("condition") == "item-not-found")
    }

    @Test("a domain that does not resolve ends the creation with host-unknown; a server that cannot be reached with remote-connection-failed")
    func connectFailures() throws {
        for (failure, condition) in [(UpstreamError.dnsFailure("localhost"), "host-unknown"), (.connectFailed("refused"), "remote-connection-failed")] {
            let harness = BOSHAdapterHarness()
            harness.upstreams.failure = failure
            let creation = try harness.post(BOSHAdapterHarness.creation())
            let body = try XMLElement.parse(ByteBuffer(string: try #require(try BOSHAdapterHarness.answer(creation))))
            #expect(body.attribute("type") == "terminate")
            #expect(body.attribute("condition") == condition)
        }
    }

    @Test("a restart request sends a new stream header on the same connection, and the server's new features answer it (XEP-0206 §5)")
    func restart() throws {
        let harness = BOSHAdapterHarness()
        let (sid, upstream) = try harness.openSession()
        let restart = try harness.post(
            "<body xmlns='http://jabber.org/protocol/httpbind' xmlns:xmpp='urn:xmpp:xbosh' rid='1001' sid='\(sid)' to='localhost' xmpp:restart='true'/>")
        #expect(try BOSHAdapterHarness.written(upstream).contains("<stream:stream"))
        #expect(harness.upstreams.channels.count == 1, "no new connection")
        try harness.serverSays(
            BOSHAdapterHarness.serverHeader + "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>", on: upstream)
        #expect(try BOSHAdapterHarness.answer(restart)?.contains("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>") == true)
    }
}
