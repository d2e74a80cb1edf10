import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
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
    /// HTTP/2 browser connections, told `GOAWAY` at shutdown.
    private let http2Connections = HTTP2Connections()

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
    /// Open HTTP/2 connections from browsers (`--listen-tls` with ALPN `h2`).
    public var http2ConnectionCount: Int { self.http2Connections.count }

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
        // Every held request is answered and no connection can arrive any more: HTTP/2
        // browsers are told GOAWAY, and their connections close once their streams are done
        // (HTTP2GoAwayDeadline bounds each one).
        self.http2Connections.quiesceAll()
        let goAwayDeadline = NIODeadline.now() + self.configuration.shutdownGracePeriod * 2 + .seconds(2)
        while self.http2Connections.count > 0 && NIODeadline.now() < goAwayDeadline {
            try? await Task.sleep(for: .milliseconds(20))
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
            .childChannelOption(.recvAllocator, value: ReadBuffers.allocator)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try configureConnection(channel)
                }
            }
    }

    /// Sets up an accepted connection's pipeline: HTTP/1.1 with the WebSocket upgrader, then the
    /// HTTP edge; on a `--listen-tls` listener TLS first, and HTTP/2 when the browser chooses it
    /// by ALPN. Internal so the fuzzers (Fuzzing/) drive this exact pipeline on an
    /// EmbeddedChannel. The closure captures the shared pieces, not the server.
    /// - Parameter tls: a `--listen-tls` listener's connection: TLS goes first, with the
    ///   certificate of the configuration in effect when it was accepted (a reload renews it).
    func connectionInitializer(tls: Bool = false) -> @Sendable (any Channel) throws -> Void {
        let pipelines = self.edgePipelines
        return { channel in
            // A connection's pipeline is built under the configuration in effect when it was
            // accepted (as is an upgrade on its first request); each later request reads the
            // configuration in effect when it starts.
            let configuration = pipelines.store.current
            // Past the high mark a WebSocket client is not reading (see WebSocketXMPPHandler).
            let queued = configuration.webSocket.maxQueuedBytes
            try channel.syncOptions?.setOption(.writeBufferWaterMark, value: .init(low: queued / 2, high: queued))
            guard tls else {
                try pipelines.configureHTTP1(channel, configuration: configuration, tls: false)
                return
            }
            guard let edgeTLS = configuration.edgeTLS else { throw ConfigurationError("--listen-tls needs --tls-certificate and --tls-key") }
            let sync = channel.pipeline.syncOperations
            try sync.addHandler(NIOSSLServerHandler(context: edgeTLS.context))
            // Nothing reads a request before ALPN has chosen the protocol: a client that never
            // completes the handshake is closed when a request would have timed out.
            let handshake = channel.eventLoop.assumeIsolated().scheduleTask(in: configuration.httpRequestTimeout) {
                channel.close(promise: nil)
            }
            channel.closeFuture.whenComplete { _ in handshake.cancel() }
            try sync.addHandler(
                ApplicationProtocolNegotiationHandler { result, channel in
                    handshake.cancel()
                    return channel.eventLoop.makeCompletedFuture {
                        if case .negotiated("h2") = result {
                            try pipelines.configureHTTP2(channel, configuration: configuration)
                        } else {
                            // `http/1.1`, or a client that offered no ALPN at all.
                            try pipelines.configureHTTP1(channel, configuration: configuration, tls: true)
                        }
                    }
                })
        }
    }

    /// The shared pieces every connection's pipeline is built from.
    private var edgePipelines: EdgePipelines {
        EdgePipelines(
            store: self.store, bosh: self.bosh, webSockets: self.webSockets, relay: self.relay, prebind: self.prebind, gate: self.gate,
            upstreamLinks: self.upstreamLinks, status: self.status, metrics: self.metrics, http2Connections: self.http2Connections, logger: self.logger)
    }

    /// The pipeline a `--listen-tls` connection gets once ALPN has chosen `h2`, without the TLS
    /// in front of it: what the HTTP/2 fuzzer (Fuzzing/) drives on an EmbeddedChannel, whose
    /// bytes are the decrypted ones.
    func http2ConnectionInitializer() -> @Sendable (any Channel) throws -> Void {
        let pipelines = self.edgePipelines
        return { channel in
            try pipelines.configureHTTP2(channel, configuration: pipelines.store.current)
        }
    }
}
