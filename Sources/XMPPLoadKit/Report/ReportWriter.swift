import Foundation

/// The JSON result and the plain-text summary printed at the end of a run.
public enum ReportWriter {
    /// Pretty-printed JSON with sorted keys (stable for diffs and tests).
    public static func json(_ result: LoadResult) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try encoder.encode(result)
    }

    public static func summary(_ result: LoadResult) -> String {
        func f(_ value: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", value) }
        let s = result.sessions
        let m = result.messages
        let l = m.latency
        var lines: [String] = []
        let targets = result.scenario.populations.map { "\($0.name): \($0.sessions) \($0.transport.rawValue) → \($0.endpoint)" }
        lines.append("tether-load " + targets.joined(separator: "; "))
        if let parts = result.mergedFrom {
            lines.append("merged     from \(parts) results: counts summed, percentiles from the summed histograms")
        }
        lines.append(
            "sessions   \(s.established)/\(s.requested) established, \(s.failed) failed, \(s.closedCleanly) closed cleanly; "
                + "\(f(s.establishmentRate)) sessions/s over \(f(s.rampSeconds, 2)) s; login p50 \(f(s.login.p50, 2)) ms p99 \(f(s.login.p99, 2)) ms"
        )
        if let cpu = s.serverCPUSecondsDuringLogin, s.established > 0 {
            let upstream = s.upstreamCPUSecondsDuringLogin.map { ", upstream \(f($0, 2)) s (\(f($0 / Double(s.established) * 1000, 3)) ms per login)" } ?? ""
            lines.append("login cpu  server \(f(cpu, 2)) s (\(f(cpu / Double(s.established) * 1000, 3)) ms per login)\(upstream)")
        }
        let phaseOrder = ["connecting", "awaitingFeatures", "authenticating", "awaitingBoundFeatures", "binding"]
        let phases = phaseOrder.compactMap { name in result.sessions.phases[name].map { "\(name) \(f($0.p50, 2))/\(f($0.p99, 2))" } }
        if !phases.isEmpty { lines.append("phases     p50/p99 ms: " + phases.joined(separator: ", ")) }
        lines.append(
            "messages   sent \(m.sent), delivered \(m.delivered), lost \(m.lost), duplicates \(m.duplicates); "
                + "target \(f(m.targetRate)) msg/s, achieved \(f(m.achievedRate)) msg/s over \(f(m.messagingSeconds)) s"
        )
        if m.behindSchedule > 0 {
            lines.append("schedule   the client fell behind its own schedule by \(m.behindSchedule) messages (its event loop ran > 50 ms late)")
        }
        lines.append("latency    p50 \(f(l.p50, 2)) ms, p90 \(f(l.p90, 2)) ms, p99 \(f(l.p99, 2)) ms, p99.9 \(f(l.p999, 2)) ms, max \(f(l.max, 2)) ms")
        for step in result.steps {
            lines.append(
                "\(step.reference == true ? "reference " : "step      ") \(f(step.targetRate, 0)) msg/s: achieved \(f(step.achievedRate)), p99 \(f(step.latency.p99, 2)) ms, "
                    + "undelivered \(step.undelivered), behind schedule \(step.behindSchedule), client cpu peak \(f(step.peakClientThreadCPUPercent, 0))%"
                    + (step.serverCPUSeconds.map { ", server cpu \(f($0, 2)) s" } ?? "") + " \(step.withinBound ? "ok" : "OVER")"
            )
        }
        if result.scenario.stepped != nil {
            lines.append(
                "knee       \(result.kneeRate.map { "\(f($0, 0)) msg/s" } ?? "none (the first step was already over the bound)") (p99 bound \(f(result.scenario.p99BoundMilliseconds, 0)) ms)"
            )
        }
        let c = result.cpu
        lines.append(
            "client cpu \(f(c.clientThreadsSeconds, 2)) s on load threads, peak \(f(c.peakClientThreadPercent, 0))% of a core; "
                + "process \(f(c.processSeconds, 2)) s (\(f(c.processPercent, 0))%) over \(f(c.wallSeconds, 1)) s"
                + (c.clientSaturated ? "  ⚠ client saturated: figures may show the client's limit" : "")
        )
        if let server = result.server {
            lines.append(
                "server rss pid \(server.pid): start \(server.rssKiBAtStart.map(String.init) ?? "?") KiB, "
                    + (server.rssKiBLoaded.map { "loaded \($0) KiB with \(server.sessionsUpWhenLoaded ?? 0) sessions up, " } ?? "")
                    + "peak \(server.rssKiBPeak.map(String.init) ?? "?") KiB, end \(server.rssKiBAtEnd.map(String.init) ?? "?") KiB"
            )
            if let cpu = m.serverCPUSeconds {
                lines.append(
                    "server cpu \(f(cpu, 2)) s over the message phase and drain (\(m.delivered > 0 ? f(cpu / Double(m.delivered) * 1000, 4) : "?") ms per delivered message)")
            }
            if let cpu = server.cpuSecondsDuringIdleHold, let seconds = server.idleHoldSeconds, seconds > 0 {
                lines.append("server cpu \(f(cpu, 2)) s over \(f(seconds, 1)) s of idle hold (\(f(cpu / seconds * 100, 2))% of one core)")
            }
        }
        if result.retransmissions > 0 { lines.append("bosh       \(result.retransmissions) retransmissions") }
        for population in result.populations {
            lines.append(
                "population \(population.name): \(population.established)/\(population.requested) logged in, \(population.failed) failed; "
                    + "login p50 \(f(population.login.p50, 2)) ms p99 \(f(population.login.p99, 2)) ms"
                    + Self.verdicts(population.slo, passed: population.passed)
            )
        }
        for behaviour in result.behaviours {
            let latency =
                behaviour.latency.count > 0
                ? "; \(behaviour.latencyOf) p50 \(f(behaviour.latency.p50, 2)) ms p99 \(f(behaviour.latency.p99, 2)) ms max \(f(behaviour.latency.max, 2)) ms" : ""
            let errors = behaviour.errors.isEmpty ? "" : "; errors " + behaviour.errors.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
            lines.append(
                "behaviour  \(behaviour.population)/\(behaviour.behaviour.rawValue): \(behaviour.successes)/\(behaviour.attempts) succeeded, \(behaviour.failures) failed"
                    + latency + errors
                    + (behaviour.messagesWhileAway.map { "; \(behaviour.messagesWhileAwayDelivered ?? 0)/\($0) messages sent while away arrived" } ?? "")
                    + Self.verdicts(behaviour.slo, passed: behaviour.passed)
            )
        }
        if result.errors.isEmpty {
            lines.append("errors     none")
        } else {
            lines.append("errors     " + result.errors.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))
        }
        lines.append(result.passed ? "PASS" : "FAIL")
        return lines.joined(separator: "\n")
    }

    /// ` — SLO ok` or ` — SLO BREACHED: p99-ms 250.0 > 200.0`.
    static func verdicts(_ verdicts: [SLOVerdict], passed: Bool) -> String {
        let breached = verdicts.filter { !$0.met }
        guard !breached.isEmpty else { return " — SLO ok" }
        let described = breached.map { verdict -> String in
            let relation = verdict.metric.hasPrefix("min") ? "<" : ">"
            return "\(verdict.metric) \(String(format: "%.3g", verdict.actual)) \(relation) \(String(format: "%.3g", verdict.limit))"
        }
        return " — SLO BREACHED: " + described.joined(separator: ", ")
    }
}
