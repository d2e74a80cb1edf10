import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP2
import NIOPosix
import Testing
import XMPPUpstream

@testable import TetherServer

/// Tether's HTTP/2 connection pipeline (`EdgePipelines.configureHTTP2`) on an `EmbeddedChannel`,
/// against NIO's HTTP/2 client on another one; the test carries the bytes between them, so it
/// decides which frames cross on the wire.
final class HTTP2PipelinePair {
    let server = EmbeddedChannel()
    let client = EmbeddedChannel()
    private let recorder = GoAwayRecorder()

    /// The connection-level frames the client has read.
    final class GoAwayRecorder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTP2Frame
        var goAways: [HTTP2ErrorCode] = []

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .goAway(_, let code, _) = self.unwrapInboundIn(data).payload { self.goAways.append(code) }
            context.fireChannelRead(data)
        }
    }

    var goAways: [HTTP2ErrorCode] { self.recorder.goAways }

    init() throws {
        var configuration = TetherConfiguration()
        configuration.domains = ["localhost"]
        let store = ConfigurationStore(configuration)
        let logger = Logger(label: "test")
        let metrics = TetherMetrics()
        let status = ServerStatus()
        let gate = SessionGate(limiter: SessionLimiter(limits: configuration.sessionLimits), status: status, metrics: metrics, logger: logger)
        let upstream = UpstreamLinks(closing: ClosingStreams(), metrics: metrics)
        let bosh = BOSHService(store: store, gate: gate, metrics: metrics, upstream: upstream, group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        let pipelines = EdgePipelines(
            store: store, bosh: bosh, webSockets: WebSocketRegistry(), relay: PeerRelay(peers: [:], logger: logger),
            prebind: PrebindService(store: store, bosh: bosh, logger: logger), gate: gate, upstreamLinks: upstream, status: status, metrics: metrics,
            http2Connections: HTTP2Connections(), logger: logger)
        try self.server.connect(to: SocketAddress(ipAddress: "203.0.113.9", port: 4000)).wait()
        try pipelines.configureHTTP2(self.server, configuration: configuration)
        let sync = self.client.pipeline.syncOperations
        _ = try sync.configureHTTP2Pipeline(mode: .client, connectionConfiguration: .init(), streamConfiguration: .init()) { $0.close() }
        try sync.addHandler(self.recorder)
        try self.client.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
    }

    deinit {
        _ = try? self.server.finish(acceptAlreadyClosed: true)
        _ = try? self.client.finish(acceptAlreadyClosed: true)
    }

    /// Delivers everything the client has written to the server.
    func clientToServer() throws {
        while let bytes = try self.client.readOutbound(as: ByteBuffer.self) {
            guard self.server.isActive else { return }
            try self.server.writeInbound(bytes)
        }
    }

    /// Delivers everything the server has written to the client.
    func serverToClient() throws {
        while let bytes = try self.server.readOutbound(as: ByteBuffer.self) {
            guard self.client.isActive else { return }
            try self.client.writeInbound(bytes)
        }
    }

    /// Asks the server to wind the connection down, as shutdown does (`HTTP2Connections.quiesceAll`).
    func quiesce() {
        self.server.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        self.server.embeddedEventLoop.run()
    }
}

@Suite("HTTP/2 connection pipeline (EmbeddedChannel)")
struct HTTP2PipelineTests {
    @Test("a quiet connection is wound down with GOAWAY NO_ERROR and a PING, then closed once the PING is answered (RFC 9113 §6.8)")
    func gracefulGoAway() throws {
        let pair = try HTTP2PipelinePair()
        try pair.clientToServer()
        try pair.serverToClient()
        // The client's SETTINGS ACK reaches the server before the shutdown does.
        try pair.clientToServer()
        pair.quiesce()
        try pair.serverToClient()
        #expect(pair.goAways == [.noError])
        try pair.clientToServer()
        pair.server.embeddedEventLoop.run()
        #expect(!pair.server.isActive)
        #expect(pair.goAways.allSatisfy { $0 == .noError }, "\(pair.goAways)")
    }

    @Test(
        "a frame of the client's that crosses the GOAWAY of a connection with no stream (its SETTINGS ACK) gets GOAWAY PROTOCOL_ERROR from the HTTP/2 handler, and the connection is closed at once (regression: it stayed open until the deadline)"
    )
    func frameCrossingGoAway() throws {
        let pair = try HTTP2PipelinePair()
        try pair.clientToServer()
        // The client reads the server's SETTINGS and acknowledges them, but its ACK is still on
        // the wire when the server winds down.
        try pair.serverToClient()
        pair.quiesce()
        try pair.clientToServer()
        #expect(!pair.server.isActive)
        try pair.serverToClient()
        #expect(pair.goAways == [.noError, .protocolError])
    }
}
