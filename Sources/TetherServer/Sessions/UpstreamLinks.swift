import Logging
import NIOCore
import XMPPCore
import XMPPUpstream

/// How a session of either transport opens its upstream stream: one connector setup (the
/// server's streams still closing, its TLS handshake metrics) and one measurement and log line
/// per connect, whichever transport asked.
struct UpstreamLinks: Sendable {
    let closing: ClosingStreams
    let metrics: TetherMetrics
    /// Made once: every connector shares it.
    private let tlsHandshakeObserver: @Sendable (UpstreamTLSHandshake) -> Void

    /// How a connector's stream is opened: `UpstreamConnector.connect`, unless a handler test
    /// puts the stream on an `EmbeddedChannel` it drives itself.
    typealias Dial =
        @Sendable (
            _ connector: UpstreamConnector, _ header: StreamHeader, _ client: ProxyProtocolHeader?, _ eventLoop: any EventLoop,
            _ delegate: any UpstreamStreamDelegate, _ logger: Logger
        ) -> EventLoopFuture<UpstreamConnection>

    private let dial: Dial

    init(closing: ClosingStreams, metrics: TetherMetrics, dial: Dial? = nil) {
        self.closing = closing
        self.metrics = metrics
        self.tlsHandshakeObserver = { [metrics] in metrics.upstreamTLSHandshook($0) }
        self.dial =
            dial ?? { connector, header, client, eventLoop, delegate, logger in
                connector.connect(header: header, client: client, on: eventLoop, delegate: delegate, logger: logger)
            }
    }

    /// A connector for the configuration in effect when the session started.
    func connector(_ configuration: UpstreamConfiguration) -> UpstreamConnector {
        UpstreamConnector(configuration: configuration, closing: self.closing, tlsHandshakeObserver: self.tlsHandshakeObserver)
    }

    /// Opens the stream; the time to connect is recorded, and a failure logged, before the
    /// caller sees the result.
    func open(
        _ connector: UpstreamConnector,
        header: StreamHeader,
        client: ProxyProtocolHeader?,
        on eventLoop: any EventLoop,
        delegate: any UpstreamStreamDelegate,
        logger: Logger
    ) -> EventLoopFuture<UpstreamConnection> {
        let started = ContinuousClock.now
        let metrics = self.metrics
        return self.dial(connector, header, client, eventLoop, delegate, logger).always { result in
            switch result {
            case .success(let connection):
                metrics.upstreamConnected(after: ContinuousClock.now - started)
                logger.debug("upstream connected", metadata: ["address": "\(connection.remoteAddress)"])
            case .failure(let error):
                logger.warning("upstream unavailable", metadata: ["error": "\(error)"])
            }
        }
    }
}
