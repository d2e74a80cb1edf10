import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization
import XMPPCore
import XMPPUpstream

/// The connection manager: HTTP listeners in front, one upstream XMPP stream per session behind.
public final class TetherServer: Sendable {
    private let store: ConfigurationStore
    /// The configuration in effect (the latest one `reload` accepted).
    public var configuration: TetherConfiguration { self.store.current }
    private let group: any EventLoopGroup
    private let logger: Logger
    private let bosh: BOSHService
    private let webSockets = WebSocketRegistry()
    private let relay: PeerRelay
    private let prebind: PrebindService
    private let limiter: SessionLimiter
    private let status = ServerStatus()
    /// Admission for both transports.
    private let gate: SessionGate
    /// How sessions of both transports open their upstream streams.
    private let upstreamLinks: UpstreamLinks
    private let metrics = TetherMetrics()
    private let listeners = Mutex<[any Channel]>([])
    private let trimmer: MemoryTrimmer
    /// Upstream streams of ended sessions that are still bouncing what the server sends.
    private let closingStreams = ClosingStreams()

    public init(configuration: TetherConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger = Logger(label: "tether")) {
        let store = ConfigurationStore(configuration)
        self.store = store
        self.group = group
        self.logger = logger
        self.limiter = SessionLimiter(limits: configuration.sessionLimits)
        self.gate = SessionGate(limiter: self.limiter, status: self.status, metrics: self.metrics, logger: logger)
        self.upstreamLinks = UpstreamLinks(closing: self.closingStreams, metrics: self.metrics)
        let bosh = BOSHService(store: store, gate: self.gate, metrics: self.metrics, upstream: self.upstreamLinks, group: group, logger: logger)
        self.bosh = bosh
        self.relay = PeerRelay(peers: configuration.peers, logger: logger)
        self.prebind = PrebindService(store: store, bosh: bosh, logger: logger)
        self.trimmer = MemoryTrimmer(logger: logger)
    }

    /// Puts a new configuration in effect for everything that starts from now on: new sessions,
    /// new requests, new connections. Live sessions keep running. What cannot change without a
    /// restart (listen addresses, node id, peers) keeps its old value; the returned notes say so.
    /// A configuration that does not validate is refused whole: the running one stays.
    @discardableResult
    public func reload(_ new: TetherConfiguration) throws(ConfigurationError) -> [String] {
        try new.validate()
        let old = self.store.current
        var accepted = new
        var notes: [String] = []
        if Set(new.listen.map(\.description)) != Set(old.listen.map(\.description)) {
            notes.append("listen addresses change only on restart; still listening on \(old.listen.map(\.description).joined(separator: ", "))")
            accepted.listen = old.listen
        }
        if new.nodeID != old.nodeID {
            notes.append("node-id changes only on restart; still \(old.nodeID ?? "unset")")
            accepted.nodeID = old.nodeID
        }
        if Set(new.listenTLS.map(\.description)) != Set(old.listenTLS.map(\.description)) {
            notes.append("TLS listen addresses change only on restart; still listening with TLS on \(old.listenTLS.map(\.description).joined(separator: ", "))")
            accepted.listenTLS = old.listenTLS
            if !old.listenTLS.isEmpty && accepted.edgeTLS == nil { accepted.edgeTLS = old.edgeTLS }
        }
        if new.peers != old.peers {
            notes.append("peers change only on restart")
            accepted.peers = old.peers
        }
        self.store.replace(with: accepted)
        self.limiter.update(accepted.sessionLimits)
        return notes
    }

    /// Live BOSH sessions.
    public var sessionCount: Int { self.bosh.sessionCount }
    /// Live WebSocket sessions.
    public var webSocketSessionCount: Int { self.webSockets.count }

    /// Validates the configuration (`ConfigurationError`), binds every `listen` address and
    /// returns the bound addresses (port 0 becomes the real port).
    @discardableResult
    public func start() async throws -> [SocketAddress] {
        try self.store.current.validate()
        var bound: [SocketAddress] = []
        let listeners = self.configuration.listen.map { ($0, false) } + self.configuration.listenTLS.map { ($0, true) }
        for (listen, tls) in listeners {
            let channel = try await self.bootstrap(tls: tls).bind(host: listen.host, port: listen.port).get()
            self.listeners.withLock { $0.append(channel) }
            if let address = channel.localAddress {
                bound.append(address)
                self.logger.info("listening", metadata: ["address": "\(address)", "tls": "\(tls)"])
            }
        }
        let limiter = self.limiter
        let closing = self.closingStreams
        self.trimmer.start(on: self.group.next()) {
            let sessions = limiter.takePeak()
            let streams = closing.current
            return (sessions.peak + streams, sessions.live + streams)
        }
        return bound
    }

    /// Drains and stops: `/readyz` turns 503, new sessions are refused, every session is ended with
    /// `system-shutdown` (or sent to `--redirect-uri`), upstreams are closed; the listeners close
    /// once the sessions are gone or the grace period is over.
    public func shutdown() async {
        guard self.status.beginDraining() else { return }
        self.logger.info("draining", metadata: ["sessions": "\(self.bosh.sessionCount + self.webSockets.count)"])
        async let bosh: Void = self.bosh.shutdown()
        async let webSockets: Void = self.webSockets.shutdown(redirect: self.configuration.redirectURI)
        _ = await (bosh, webSockets)
        let deadline = NIODeadline.now() + self.configuration.shutdownGracePeriod
        while self.bosh.sessionCount + self.webSockets.count + self.closingStreams.current > 0 && NIODeadline.now() < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let listeners = self.listeners.withLock { channels in
            defer { channels.removeAll() }
            return channels
        }
        for listener in listeners {
            try? await listener.close()
        }
        await self.relay.shutdown()
        self.trimmer.stop()
        self.logger.info("stopped")
    }

    private func bootstrap(tls: Bool) -> ServerBootstrap {
        let configureConnection = self.connectionInitializer(tls: tls)
        return ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // BOSH requests are small and the HTTP decoder keeps its last read buffer: start
            // reads at 512 bytes (NIO's default is 2 KiB), growing for clients that send more.
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try configureConnection(channel)
                }
            }
    }

    /// Sets up an accepted connection's pipeline: HTTP/1.1 with the WebSocket upgrader, then the
    /// HTTP edge. Internal so the fuzzers (Fuzzing/) drive this exact pipeline on an
    /// EmbeddedChannel. The closure captures the shared pieces, not the server.
    /// - Parameter tls: a `--listen-tls` listener's connection: TLS goes first, with the
    ///   certificate of the configuration in effect when it was accepted (a reload renews it).
    func connectionInitializer(tls: Bool = false) -> @Sendable (any Channel) throws -> Void {
        let store = self.store
        let bosh = self.bosh
        let webSockets = self.webSockets
        let relay = self.relay
        let prebind = self.prebind
        let gate = self.gate
        let upstreamLinks = self.upstreamLinks
        let status = self.status
        let metrics = self.metrics
        let logger = self.logger
        return { channel in
            // A connection lives under the configuration in effect when it was accepted.
            let configuration = store.current
            if tls {
                guard let edgeTLS = configuration.edgeTLS else { throw ConfigurationError("--listen-tls needs --tls-certificate and --tls-key") }
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: edgeTLS.context))
            }
            // Past the high mark a WebSocket client is not reading (see WebSocketXMPPHandler).
            let queued = configuration.webSocket.maxQueuedBytes
            try channel.syncOptions?.setOption(.writeBufferWaterMark, value: .init(low: queued / 2, high: queued))
            let upgrader = NIOWebSocketServerUpgrader(
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
                        let compressed = WebSocketUpgradePolicy.compression(head, configuration: configuration) != nil
                        let client = configuration.forwardedHeaders
                            .origin(peer: channel.remoteAddress, local: channel.localAddress, headers: head.headers, overTLS: tls)
                        try channel.pipeline.syncOperations.addHandler(
                            WebSocketXMPPHandler(
                                configuration: configuration,
                                client: client,
                                compressed: compressed,
                                upstream: upstreamLinks,
                                registry: webSockets,
                                gate: gate,
                                metrics: metrics,
                                logger: logger
                            )
                        )
                    }
                }
            )
            let sync = channel.pipeline.syncOperations
            let upgraded: @Sendable (ChannelHandlerContext) -> Void = { context in
                // The HTTP edge has no business on an upgraded connection.
                context.pipeline.syncOperations.removeHandler(name: HTTPEdgeHandler.name, promise: nil)
            }
            try sync.configureHTTPServerPipeline(
                withPipeliningAssistance: true,
                withServerUpgrade: (upgraders: [upgrader], completionHandler: upgraded),
                withErrorHandling: true
            )
            try sync.addHandler(
                HTTPEdgeHandler(
                    store: store,
                    bosh: bosh,
                    relay: relay,
                    prebind: prebind,
                    status: status,
                    metrics: { metrics.scrape(bosh: bosh.sessionStates, webSocket: webSockets.states) },
                    laterUpgrade: HTTPEdgeHandler.LaterUpgrade(upgrader: upgrader, completion: upgraded),
                    overTLS: tls,
                    logger: logger
                ), name: HTTPEdgeHandler.name)
        }
    }
}
