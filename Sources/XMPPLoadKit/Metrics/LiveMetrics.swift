import NIOConcurrencyHelpers
import Prometheus

/// The generator's live figures in the Prometheus text format (`--metrics-listen`), so a long
/// run can be watched in Grafana: fed once a second from the run's progress, read at scrape
/// time. Running totals are counters (they only grow); the state of the moment is gauges.
public final class LiveMetrics: Sendable {
    public let registry = PrometheusCollectorRegistry()
    private let sessionsUp: Gauge
    private let sessionsWanted: Gauge
    private let inFlight: Gauge
    private let p50: Gauge
    private let p99: Gauge
    private let clientCPU: Gauge
    private let started: Counter
    private let established: Counter
    private let failed: Counter
    private let sent: Counter
    private let delivered: Counter
    private let errors: Counter
    /// What the counters already hold, so each update adds the difference; the phase shown.
    private let state = NIOLockedValueBox(State())

    private struct State {
        var totals: [String: Int64] = [:]
        var phase: String?
        var behaviourTotals: [String: Int64] = [:]
    }

    public init() {
        let registry = self.registry
        self.sessionsUp = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "tether_load_sessions_up", unitName: "", helpText: "Sessions logged in now."))
        self.sessionsWanted = registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: "tether_load_sessions_wanted", unitName: "", helpText: "Sessions this generator runs."))
        self.inFlight = registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: "tether_load_messages_in_flight", unitName: "", helpText: "Messages sent and not yet delivered."))
        self.p50 = registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: "tether_load_delivery_p50_seconds", unitName: "", helpText: "Median delivery latency over the last second."))
        self.p99 = registry.makeGauge(
            descriptor: MetricNameDescriptor(metricName: "tether_load_delivery_p99_seconds", unitName: "", helpText: "99th percentile delivery latency over the last second."))
        self.clientCPU = registry.makeGauge(
            descriptor: MetricNameDescriptor(
                metricName: "tether_load_client_cpu_ratio", unitName: "", helpText: "CPU of the generator's event-loop threads over the last second (1 = one core)."))
        self.started = registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "tether_load_sessions_started_total", unitName: "", helpText: "Sessions started."))
        self.established = registry.makeCounter(
            descriptor: MetricNameDescriptor(metricName: "tether_load_sessions_established_total", unitName: "", helpText: "Sessions that logged in (first logins)."))
        self.failed = registry.makeCounter(
            descriptor: MetricNameDescriptor(metricName: "tether_load_sessions_failed_total", unitName: "", helpText: "Sessions that never logged in."))
        self.sent = registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "tether_load_messages_sent_total", unitName: "", helpText: "Chat messages sent."))
        self.delivered = registry.makeCounter(
            descriptor: MetricNameDescriptor(metricName: "tether_load_messages_delivered_total", unitName: "", helpText: "Chat messages delivered (first copies)."))
        self.errors = registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "tether_load_errors_total", unitName: "", helpText: "Errors of every kind."))
    }

    /// Takes the figures of one progress sample.
    public func update(_ progress: LoadProgress) {
        self.sessionsUp.set(Double(progress.sessionsUp))
        self.sessionsWanted.set(Double(progress.sessionsWanted))
        self.inFlight.set(Double(progress.inFlight))
        self.p50.set(progress.p50Milliseconds / 1000)
        self.p99.set(progress.p99Milliseconds / 1000)
        self.clientCPU.set(progress.clientCPUPercent / 100)
        let registry = self.registry
        self.state.withLockedValue { state in
            func advance(_ counter: Counter, _ name: String, to total: Int64) {
                let previous = state.totals[name] ?? 0
                if total > previous { counter.increment(by: total - previous) }
                state.totals[name] = max(previous, total)
            }
            advance(self.started, "started", to: Int64(progress.started))
            advance(self.established, "established", to: Int64(progress.established))
            advance(self.failed, "failed", to: Int64(progress.failed))
            advance(self.sent, "sent", to: Int64(progress.totalSent))
            advance(self.delivered, "delivered", to: Int64(progress.totalDelivered))
            advance(self.errors, "errors", to: Int64(progress.errors))
            // The phase as a labelled 1, the one before set back to 0.
            if state.phase != progress.phase {
                if let old = state.phase {
                    registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "tether_load_phase", unitName: "", helpText: ""), labels: [("phase", old)]).set(Double(0))
                }
                registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "tether_load_phase", unitName: "", helpText: ""), labels: [("phase", progress.phase)]).set(
                    Double(1))
                state.phase = progress.phase
            }
            for (key, counts) in progress.behaviours {
                let labels = [("population", key.population), ("behaviour", key.behaviour.rawValue)]
                for (name, value) in [("attempts", counts.attempts), ("successes", counts.successes), ("failures", counts.failures)] {
                    let id = "\(key.population)\u{0}\(key.behaviour.rawValue)\u{0}\(name)"
                    let previous = state.behaviourTotals[id] ?? 0
                    let total = Int64(value)
                    if total > previous {
                        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "tether_load_behaviour_\(name)_total", unitName: "", helpText: ""), labels: labels)
                            .increment(by: total - previous)
                        state.behaviourTotals[id] = total
                    }
                }
            }
        }
    }

    /// The Prometheus text exposition of everything above.
    public func render() -> String {
        self.registry.emitToString()
    }
}
