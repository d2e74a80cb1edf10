import Testing

@testable import XMPPLoadKit

/// `--metrics-listen`'s figures: running totals become counters that grow by the difference,
/// the moment's state gauges, the phase a labelled 1.
@Suite("Live metrics")
struct LiveMetricsTests {
    static func progress(phase: String, sent: UInt64, up: Int) -> LoadProgress {
        var progress = LoadProgress(
            second: 1, phase: phase, sessionsUp: up, sessionsWanted: 4, sentPerSecond: 0, deliveredPerSecond: 0, p99Milliseconds: 12,
            errors: 1, inFlight: 3, clientCPUPercent: 50
        )
        progress.totalSent = sent
        progress.totalDelivered = sent - 3
        progress.established = up
        progress.behaviours = [LiveBehaviourKey(population: "pages", behaviour: .reload): BehaviourCounts(attempts: sent / 10, successes: sent / 10)]
        return progress
    }

    static func value(_ line: String, in text: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix(line + " ") }.map { String($0.split(separator: " ").last!) }
    }

    @Test("two samples: counters hold the latest totals, not their sum; the old phase goes to 0")
    func twoSamples() {
        let metrics = LiveMetrics()
        metrics.update(Self.progress(phase: "ramp-up", sent: 20, up: 2))
        metrics.update(Self.progress(phase: "messages", sent: 50, up: 4))
        // A sample that repeats a total adds nothing.
        metrics.update(Self.progress(phase: "messages", sent: 50, up: 4))
        let text = metrics.render()
        #expect(Self.value("tether_load_messages_sent_total", in: text) == "50")
        #expect(Self.value("tether_load_messages_delivered_total", in: text) == "47")
        #expect(Self.value("tether_load_sessions_established_total", in: text) == "4")
        #expect(Self.value("tether_load_errors_total", in: text) == "1")
        #expect(Self.value("tether_load_sessions_up", in: text) == "4.0")
        #expect(Self.value("tether_load_messages_in_flight", in: text) == "3.0")
        #expect(Self.value("tether_load_delivery_p99_seconds", in: text) == "0.012")
        #expect(Self.value("tether_load_client_cpu_ratio", in: text) == "0.5")
        #expect(Self.value("tether_load_phase{phase=\"ramp-up\"}", in: text) == "0.0")
        #expect(Self.value("tether_load_phase{phase=\"messages\"}", in: text) == "1.0")
        #expect(Self.value("tether_load_behaviour_attempts_total{population=\"pages\",behaviour=\"reload\"}", in: text) == "5")
    }
}
