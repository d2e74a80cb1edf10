import Logging
import Prometheus
import Synchronization
import XMPPUpstream

/// What `GET /metrics` reports, in the Prometheus text format (swift-prometheus).
///
/// Counters only grow; gauges that mirror live state (sessions) are read at scrape time.
final class TetherMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()

    enum Transport: String, Sendable {
        case bosh
        case websocket
    }

    /// The HTTP version a browser connection speaks (`http1` includes connections upgraded to WebSocket).
    enum HTTPProtocol: String, Sendable {
        case http1
        case h2
    }

    enum Direction: String, Sendable {
        case toServer = "to_server"
        case toClient = "to_client"
    }

    private let sessionsLive: [Transport: Gauge]
    private let sessionsByState: [Transport: [SessionState: Gauge]]
    private let sessionsCreated: [Transport: Counter]
    private let stanzas: [Direction: Counter]
    private let bytes: [Direction: Counter]
    private let heldRequests: Gauge
    private let httpConnections: [HTTPProtocol: Gauge]
    private let http2Streams: Counter
    private let http2StreamsPerConnection: ValueHistogram
    private let boshRequests: Counter
    private let retransmissions: Counter
    private let upstreamConnect: DurationHistogram
    /// By `kind` (`direct`, `starttls`), made on first use like the labelled counters.
    private let upstreamTLSHandshake = Mutex<[String: DurationHistogram]>([:])
    private let terminations = Mutex<[String: Counter]>([:])
    private let limitHits = Mutex<[String: Counter]>([:])
    private let bounces = Mutex<[String: Counter]>([:])

    init() {
        let registry = self.registry
        func perTransport<M>(_ make: (Transport) -> M) -> [Transport: M] {
            [.bosh: make(.bosh), .websocket: make(.websocket)]
        }
        self.sessionsLive = perTransport { registry.makeGauge(name: "tether_sessions", labels: [("transport", $0.rawValue)], help: "Live sessions") }
        self.sessionsByState = perTransport { transport in
            Dictionary(
                uniqueKeysWithValues: SessionState.allCases.map { state in
                    (
                        state,
                        registry.makeGauge(name: "tether_sessions_by_state", labels: [("transport", transport.rawValue), ("state", state.label)], help: "Live sessions by state")
                    )
                })
        }
        self.sessionsCreated = perTransport {
            registry.makeCounter(name: "tether_sessions_created_total", labels: [("transport", $0.rawValue)], help: "Sessions opened since start")
        }
        self.stanzas = [
            .toServer: registry.makeCounter(name: "tether_stanzas_total", labels: [("direction", Direction.toServer.rawValue)], help: "Elements relayed"),
            .toClient: registry.makeCounter(name: "tether_stanzas_total", labels: [("direction", Direction.toClient.rawValue)], help: "Elements relayed"),
        ]
        self.bytes = [
            .toServer: registry.makeCounter(name: "tether_stanza_bytes_total", labels: [("direction", Direction.toServer.rawValue)], help: "Bytes of elements relayed"),
            .toClient: registry.makeCounter(name: "tether_stanza_bytes_total", labels: [("direction", Direction.toClient.rawValue)], help: "Bytes of elements relayed"),
        ]
        self.heldRequests = registry.makeGauge(name: "tether_bosh_held_requests", help: "BOSH requests held open right now")
        self.httpConnections = [
            .http1: registry.makeGauge(name: "tether_http_connections", labels: [("protocol", HTTPProtocol.http1.rawValue)], help: "Open browser connections by HTTP version"),
            .h2: registry.makeGauge(name: "tether_http_connections", labels: [("protocol", HTTPProtocol.h2.rawValue)], help: "Open browser connections by HTTP version"),
        ]
        self.http2Streams = registry.makeCounter(name: "tether_http2_streams_total", help: "HTTP/2 streams (requests) opened by browsers")
        self.http2StreamsPerConnection = registry.makeValueHistogram(
            name: "tether_http2_streams_per_connection", buckets: [1, 2, 5, 10, 50, 100, 1000, 10000], help: "Streams an HTTP/2 connection carried, recorded when it closes")
        self.boshRequests = registry.makeCounter(name: "tether_bosh_requests_total", help: "BOSH requests received")
        self.retransmissions = registry.makeCounter(name: "tether_bosh_retransmitted_requests_total", help: "BOSH requests repeating an rid already seen")
        self.upstreamConnect = registry.makeDurationHistogram(
            name: "tether_upstream_connect_seconds",
            buckets: [.milliseconds(5), .milliseconds(20), .milliseconds(100), .milliseconds(500), .seconds(2), .seconds(10)],
            help: "Time to a negotiated upstream stream (resolution, TCP, STARTTLS)"
        )
    }

    func httpConnectionOpened(_ version: HTTPProtocol) { self.httpConnections[version]?.increment() }
    func httpConnectionClosed(_ version: HTTPProtocol) { self.httpConnections[version]?.decrement() }
    func http2StreamOpened() { self.http2Streams.increment() }
    func http2ConnectionClosed(streams: Int) { self.http2StreamsPerConnection.record(Double(streams)) }
    func requestHeld() { self.heldRequests.increment() }
    func requestAnswered() { self.heldRequests.decrement() }
    func boshRequestReceived() { self.boshRequests.increment() }
    func retransmissionReceived() { self.retransmissions.increment() }
    func upstreamConnected(after duration: Duration) { self.upstreamConnect.record(duration) }
    /// `UpstreamConnector.tlsHandshakeObserver` (set by `UpstreamLinks`): one handshake, by kind.
    func upstreamTLSHandshook(_ handshake: UpstreamTLSHandshake) {
        let histogram = self.upstreamTLSHandshake.withLock { histograms in
            if let histogram = histograms[handshake.kind] { return histogram }
            let histogram = self.registry.makeDurationHistogram(
                name: "tether_upstream_tls_handshake_seconds",
                labels: [("kind", handshake.kind)],
                buckets: [.milliseconds(2), .milliseconds(10), .milliseconds(50), .milliseconds(250), .seconds(1), .seconds(5)],
                help: "TLS handshakes with upstream servers: Direct TLS (XEP-0368) from connect, STARTTLS from <proceed/>, to the handshake's end"
            )
            histograms[handshake.kind] = histogram
            return histogram
        }
        histogram.record(handshake.duration)
    }

    func sessionCreated(_ transport: Transport) {
        self.sessionsCreated[transport]?.increment()
    }

    func relayed(_ direction: Direction, count: Int, bytes: Int) {
        self.stanzas[direction]?.increment(by: Int64(count))
        self.bytes[direction]?.increment(by: Int64(bytes))
    }

    /// A session ended: `condition` is the terminal condition, or `normal`.
    func terminated(_ transport: Transport, condition: String) {
        self.counter(in: self.terminations, "tether_terminations_total", [("transport", transport.rawValue), ("condition", condition)], help: "Sessions ended, by condition")
            .increment()
    }

    /// Stanzas Tether answered with errors because their session ended before it could deliver them.
    func bounced(_ transport: Transport, count: Int, reason: String) {
        self.counter(
            in: self.bounces, "tether_stanzas_bounced_total", [("transport", transport.rawValue), ("reason", reason)],
            help: "Queued stanzas answered with an error because their session ended"
        ).increment(by: Int64(count))
    }

    /// For `UpstreamConnection.close(graceful:bounced:)`: counts (and logs, counts only) the
    /// stanzas still on their way from the server that were bounced while the stream closed.
    func reportingInFlightBounces(_ transport: Transport, logger: Logger) -> (Int) -> Void {
        { count in
            guard count > 0 else { return }
            logger.notice("undelivered stanzas bounced", metadata: ["count": "\(count)", "reason": "in-flight"])
            self.bounced(transport, count: count, reason: "in-flight")
        }
    }

    func limitHit(_ limit: String) {
        self.counter(in: self.limitHits, "tether_limit_hits_total", [("limit", limit)], help: "Requests refused by a limit").increment()
    }

    /// The counter for these label values, made on first use (label values come from a small set).
    private func counter(in cache: borrowing Mutex<[String: Counter]>, _ name: String, _ labels: [(String, String)], help: String) -> Counter {
        cache.withLock { counters in
            let key = labels.map(\.1).joined(separator: "|")
            if let counter = counters[key] { return counter }
            let counter = self.registry.makeCounter(name: name, labels: labels, help: help)
            counters[key] = counter
            return counter
        }
    }

    /// The exposition text, with live gauges refreshed.
    func scrape(bosh: [SessionState], webSocket: [SessionState]) -> [UInt8] {
        for (transport, states) in [(Transport.bosh, bosh), (.websocket, webSocket)] {
            self.sessionsLive[transport]?.set(to: Double(states.count))
            var counts: [SessionState: Int] = [:]
            for state in states { counts[state, default: 0] += 1 }
            for state in SessionState.allCases {
                self.sessionsByState[transport]?[state]?.set(to: Double(counts[state] ?? 0))
            }
        }
        return self.registry.emitToBuffer()
    }
}
