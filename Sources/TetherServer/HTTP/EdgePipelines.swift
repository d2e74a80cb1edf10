import Logging
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOWebSocket
import XMPPCore

/// Builds a browser connection's pipeline once its protocol is known: HTTP/1.1 (with the
/// WebSocket upgrade) or HTTP/2, where every stream is one request served by its own
/// `HTTPEdgeHandler`, so a BOSH request behaves the same over either.
/// A class, so what every connection keeps of it (the later-upgrade factory) is one reference.
final class EdgePipelines: Sendable {
    let store: ConfigurationStore
    let bosh: BOSHService
    let webSockets: WebSocketRegistry
    let relay: PeerRelay
    let prebind: PrebindService
    let gate: SessionGate
    let upstreamLinks: UpstreamLinks
    let status: ServerStatus
    let metrics: TetherMetrics
    let http2Connections: HTTP2Connections
    let logger: Logger

    init(
        store: ConfigurationStore, bosh: BOSHService, webSockets: WebSocketRegistry, relay: PeerRelay, prebind: PrebindService, gate: SessionGate,
        upstreamLinks: UpstreamLinks, status: ServerStatus, metrics: TetherMetrics, http2Connections: HTTP2Connections, logger: Logger
    ) {
        self.store = store
        self.bosh = bosh
        self.webSockets = webSockets
        self.relay = relay
        self.prebind = prebind
        self.gate = gate
        self.upstreamLinks = upstreamLinks
        self.status = status
        self.metrics = metrics
        self.http2Connections = http2Connections
        self.logger = logger
    }

    /// Run when a connection has been upgraded: the HTTP edge has no business on it any more.
    private static let upgraded: @Sendable (ChannelHandlerContext) -> Void = { context in
        context.pipeline.syncOperations.removeHandler(name: HTTPEdgeHandler.name, promise: nil)
    }

    /// HTTP/1.1 with the RFC 6455 upgrade on `/xmpp-websocket`, then the edge.
    func configureHTTP1(_ channel: any Channel, configuration: TetherConfiguration, tls: Bool) throws {
        let metrics = self.metrics
        metrics.httpConnectionOpened(.http1)
        channel.closeFuture.whenComplete { _ in metrics.httpConnectionClosed(.http1) }
        let sync = channel.pipeline.syncOperations
        // NIO's upgrade handler, with its upgrader, leaves after the first request. A later
        // request's upgrade builds its own (`LaterUpgrade`): an upgrader kept for the whole
        // connection cost every idle BOSH connection 1.4 KiB.
        try sync.configureHTTPServerPipeline(
            withPipeliningAssistance: true,
            withServerUpgrade: (upgraders: [self.webSocketUpgrader(configuration: configuration, tls: tls)], completionHandler: Self.upgraded),
            withErrorHandling: true
        )
        let later = HTTPEdgeHandler.LaterUpgrade(
            upgrader: { [self] configuration in self.webSocketUpgrader(configuration: configuration, tls: tls) }, completion: Self.upgraded)
        try sync.addHandler(self.edgeHandler(transport: .http1(laterUpgrade: later), tls: tls), name: HTTPEdgeHandler.name)
    }

    /// HTTP/2 (RFC 9113) on a TLS connection that chose `h2`: the limits of
    /// `HTTP2EdgeSettings`, idle connections closed after `--http-request-timeout`, `GOAWAY` at
    /// shutdown. WebSocket stays on HTTP/1.1 connections (browsers open one for it when the
    /// server offers no RFC 8441 extended CONNECT).
    func configureHTTP2(_ channel: any Channel, configuration: TetherConfiguration) throws {
        let metrics = self.metrics
        metrics.httpConnectionOpened(.h2)
        let streams = NIOLoopBoundBox(0, eventLoop: channel.eventLoop)
        let bodies = NIOLoopBound(HTTP2BodyBudget(limit: HTTP2BodyBudget.limit(maxRequestBodyBytes: configuration.maxRequestBodyBytes)), eventLoop: channel.eventLoop)
        channel.closeFuture.whenComplete { _ in
            metrics.httpConnectionClosed(.h2)
            metrics.http2ConnectionClosed(streams: streams.value)
        }
        let settings = HTTP2EdgeSettings.handlerConfiguration(maxHeaderBytes: configuration.maxHeaderBytes)
        var webSocketLogger = self.logger
        webSocketLogger[metadataKey: "http"] = "h2"
        let webSocketOpening = HTTP2StreamRouter.WebSocketOpening(
            configuration: configuration,
            session: { [webSocketLogger] head, channel in
                self.webSocketSession(head, channel: channel, configuration: configuration, tls: true, logger: webSocketLogger)
            },
            requestHandlers: [Self.http1CodecName, HTTPEdgeHandler.name])
        let management = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(maxIdleTime: configuration.httpRequestTimeout, maxAge: nil, maxGraceTime: configuration.shutdownGracePeriod, keepalive: nil))
        let http2 = NIOHTTP2Handler(
            mode: .server, eventLoop: channel.eventLoop, connectionConfiguration: settings.connection, streamConfiguration: settings.stream,
            // With inline multiplexing the HTTP/2 handler reports streams to this delegate only:
            // without it the management handler counts none, and would call a busy connection idle.
            streamDelegate: management.http2StreamDelegate,
            inboundStreamInitializer: { stream in
                stream.eventLoop.makeCompletedFuture {
                    streams.value += 1
                    metrics.http2StreamOpened()
                    let sync = stream.pipeline.syncOperations
                    // An RFC 8441 WebSocket takes the stream; any other request goes on to the edge.
                    try sync.addHandler(HTTP2StreamRouter(opening: webSocketOpening, logger: self.logger))
                    try sync.addHandler(HTTP2FramePayloadToHTTP1ServerCodec(), name: Self.http1CodecName)
                    try sync.addHandler(self.edgeHandler(transport: .http2Stream(bodies.value), tls: true), name: HTTPEdgeHandler.name)
                }
            })
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(http2)
        // Twice the grace period: the management handler's own grace timer runs after the PING.
        try sync.addHandler(HTTP2GoAwayDeadline(grace: configuration.shutdownGracePeriod * 2 + .seconds(1)))
        try sync.addHandler(management)
        // Connection errors the HTTP/2 handler answered with GOAWAY close the connection here;
        // a stream's error has reset that stream only.
        try sync.addHandler(HTTP2ConnectionErrorHandler(logger: self.logger))
        // The management handler starts its idle timer on channelActive, which this connection
        // had before ALPN chose HTTP/2: replay it from the handler in front of it.
        try sync.context(handler: http2).fireChannelActive()
        self.http2Connections.add(channel)
    }

    private func edgeHandler(transport: HTTPEdgeHandler.Transport, tls: Bool) -> HTTPEdgeHandler {
        let bosh = self.bosh
        let webSockets = self.webSockets
        let metrics = self.metrics
        return HTTPEdgeHandler(
            store: self.store,
            bosh: bosh,
            relay: self.relay,
            prebind: self.prebind,
            status: self.status,
            metrics: { metrics.scrape(bosh: bosh.sessionStates, webSocket: webSockets.states) },
            transport: transport,
            overTLS: tls,
            logger: self.logger
        )
    }

    private func webSocketUpgrader(configuration: TetherConfiguration, tls: Bool) -> NIOWebSocketServerUpgrader {
        NIOWebSocketServerUpgrader(
            // Slack above the stanza limit, so a message just over it gets the XMPP
            // `policy-violation` stream error rather than a bare close 1009.
            maxFrameSize: configuration.xmlLimits.maxElementBytes + 64 * 1024,
            // The session answers decoder errors itself (WebSocketSessionStateMachine.decoderFailed).
            automaticErrorHandling: false,
            shouldUpgrade: { channel, head in
                let secure = configuration.forwardedHeaders.origin(peer: channel.remoteAddress, local: channel.localAddress, headers: head.headers, overTLS: tls).isSecure
                return channel.eventLoop.makeSucceededFuture(WebSocketUpgradePolicy.accept(head, secure: secure, configuration: configuration))
            },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        self.webSocketSession(head, channel: channel, configuration: configuration, tls: tls, logger: self.logger))
                }
            }
        )
    }

    /// The XMPP session of an accepted WebSocket, opened by an RFC 6455 upgrade or by an RFC
    /// 8441 extended CONNECT on an HTTP/2 stream (`head` as HTTP/1.1 carries it).
    func webSocketSession(_ head: HTTPRequestHead, channel: any Channel, configuration: TetherConfiguration, tls: Bool, logger: Logger) -> WebSocketXMPPHandler {
        let compressed = WebSocketUpgradePolicy.compression(head, configuration: configuration) != nil
        let client = configuration.forwardedHeaders.origin(peer: channel.remoteAddress, local: channel.localAddress, headers: head.headers, overTLS: tls)
        return WebSocketXMPPHandler(
            configuration: configuration, client: client, compressed: compressed, upstream: self.upstreamLinks, registry: self.webSockets, gate: self.gate,
            metrics: self.metrics, logger: logger)
    }

    /// The name of a stream's HTTP/2-to-HTTP/1 codec, which an RFC 8441 WebSocket removes.
    static let http1CodecName = "tether-http2-http1-codec"
}
